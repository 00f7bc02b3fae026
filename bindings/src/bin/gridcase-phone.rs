//! A phone in the terminal: the same core code the apps call through the bindings, for trying
//! the server out and for demos. The store path is the phone; `<store>.json` beside it
//! remembers the server URL and the device token given on first use. Times are printed in
//! China time (UTC+8). With `--key` (or `GRIDCASE_STORE_KEY`: 64 hex digits, kept out of the
//! remembered file) the store is encrypted as on a real phone.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use gridcase_bindings::HttpTransport;
use gridcase_core::doc::mask_phone;
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{
    CaseType, Channel, Complainant, Location, Millis, NewCase, Status, Urgency,
};
use gridcase_core::phone::Phone;
use gridcase_core::phone::display::china_time;
use gridcase_core::phone::queries::CaseList;
use gridcase_core::store::{CaseSummary, Page, StoreKey};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(name = "gridcase-phone", about = "A gridcase phone in the terminal")]
struct Cli {
    /// The phone's store (an SQLite file, created on first use).
    #[arg(long, default_value = "phone.db")]
    store: PathBuf,
    /// The server's base URL (remembered after first use).
    #[arg(long)]
    server: Option<String>,
    /// The device token printed by `gridcase-server enrol-device` (remembered).
    #[arg(long)]
    token: Option<String>,
    /// The store's encryption key, 64 hex digits (not remembered: keep it in a keyring).
    #[arg(long, env = "GRIDCASE_STORE_KEY", hide_env_values = true)]
    key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send what changed here, receive what changed elsewhere.
    Sync,
    /// Register a new case, offline.
    Register {
        #[arg(long)]
        title: String,
        /// 12-digit area code of the village.
        #[arg(long)]
        area: String,
        #[arg(long, default_value = "其他")]
        category: String,
        #[arg(long, default_value = "")]
        description: String,
        /// inquiry, help, complaint, report, suggestion or petition.
        #[arg(long, default_value = "complaint")]
        r#type: String,
        #[arg(long)]
        urgent: bool,
        #[arg(long)]
        complainant_name: Option<String>,
        #[arg(long)]
        complainant_phone: Option<String>,
    },
    /// List cases: all in my area, or one of the filters.
    List {
        #[arg(long)]
        mine: bool,
        #[arg(long)]
        overdue: bool,
        #[arg(long)]
        due_soon: bool,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        search: Option<String>,
        /// How many cases to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Skip this many first.
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// Show one case with its timeline and deadline.
    Show { id: String },
    /// Perform an action: register, sign, start, reply, approve, close, ... (see --help).
    Act {
        id: String,
        /// The action as JSON, e.g. '{"kind":"reply","text":"已修复"}' or just a name without
        /// parameters such as `sign`.
        action: String,
    },
    /// Add a note.
    Note { id: String, text: String },
    /// Append text to the description.
    Append { id: String, text: String },
    /// Attach a file (photo, recording, PDF) to a case, offline; it uploads with the next sync.
    Attach {
        id: String,
        file: PathBuf,
        /// The file's type; guessed from the extension when left out.
        #[arg(long)]
        mime: Option<String>,
        #[arg(long, default_value = "")]
        caption: String,
        /// The file shows the complainant: never sent to the unit complained about.
        #[arg(long)]
        personal: bool,
    },
    /// Write an attachment's bytes to a file (fetched from the server if not held yet).
    OpenAttachment {
        id: String,
        sha256: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Pending changes, last sync, rejections.
    Status,
    /// Fill this phone with made-up registered cases, stored as a restore stores what the
    /// server sends (offline): for trying lists on a township-sized store, and for the binding
    /// tests' 20,000-case phone.
    DemoFill {
        #[arg(long, default_value_t = 20_000)]
        cases: u32,
        /// Area code prefix the cases are spread over (20 villages below it).
        #[arg(long, default_value = "3306041012")]
        area: String,
    },
}

/// Made-up cases from a pretend server actor, applied a page at a time through the phone's own
/// sync path (`apply_response`), as a restore would.
fn demo_fill(phone: &Phone, cases: u32, area: &str) -> Result<(), String> {
    use gridcase_core::doc::CaseDoc;
    use gridcase_core::model::{Author, Role};
    use gridcase_core::sync::{DocUpdate, Payload, SyncRequest, SyncResponse};
    let author = Author {
        user: "demo".into(),
        device: "server".into(),
        role: Role::HotlineCentre,
    };
    let actor = automerge::ActorId::from(vec![0x5e; 16]);
    let at = now();
    for start in (0..cases).step_by(1000) {
        let mut response = SyncResponse::default();
        for i in start..(start + 1000).min(cases) {
            let id = format!("demo-{i:06}");
            let mut new = NewCase {
                id: id.clone(),
                number: format!("GC-{i:06}"),
                channel: Channel::Hotline,
                case_type: CaseType::Complaint,
                category: "噪音".into(),
                urgency: Urgency::General,
                priority: false,
                title: format!("夜间施工噪音扰民（{i}）"),
                description: "居民反映夜间施工噪音，影响休息。".into(),
                location: Location {
                    address: format!("城关镇{}村", i % 20 + 1),
                    area_code: format!("{area}{:02}", i % 20),
                    gps: None,
                },
            };
            new.urgency = if i % 7 == 0 {
                Urgency::Urgent
            } else {
                new.urgency
            };
            let mut doc =
                CaseDoc::create(&new, &author, actor.clone(), at).map_err(|e| e.to_string())?;
            doc.act(&Action::Register, &author, at + 1)
                .map_err(|e| e.to_string())?;
            response.docs.push(DocUpdate {
                doc_id: id,
                payload: Payload::Snapshot(doc.save()),
                heads: Vec::new(),
            });
        }
        phone
            .apply_response(&response, &SyncRequest::default(), at)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct Remembered {
    server: String,
    token: String,
}

fn now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

fn config_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

fn remembered(cli: &Cli) -> Result<Remembered, String> {
    let path = config_path(&cli.store);
    let saved: Option<Remembered> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let server = cli
        .server
        .clone()
        .or_else(|| saved.as_ref().map(|s| s.server.clone()))
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let token = cli
        .token
        .clone()
        .or_else(|| saved.as_ref().map(|s| s.token.clone()))
        .ok_or("first use: pass --token (printed by `gridcase-server enrol-device`)")?;
    let config = Remembered { server, token };
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&config).unwrap_or_default(),
    )
    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(config)
}

fn store_key(hex: Option<&str>) -> Result<Option<StoreKey>, String> {
    let Some(hex) = hex else {
        return Ok(None);
    };
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    let bytes = bytes.ok_or("--key: 64 hex digits")?;
    StoreKey::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("--key: {e}"))
}

fn print_list(cases: &[CaseSummary], more: Option<u64>) {
    if cases.is_empty() {
        println!("(no cases)");
    }
    for c in cases {
        let due = c.due_at.map_or_else(|| "-".into(), china_time);
        let pending = if c.has_pending { " *unsynced*" } else { "" };
        println!(
            "{}  {:<12} {:<10} due {} (北京时间)  {}{}",
            c.case_id, c.status, c.area_code, due, c.title, pending
        );
    }
    if let Some(next) = more {
        println!("(more: --offset {next})");
    }
}

fn parse_action(text: &str) -> Result<Action, String> {
    let json = if text.trim_start().starts_with('{') {
        text.to_string()
    } else {
        format!("{{\"kind\":\"{text}\"}}")
    };
    serde_json::from_str(&json).map_err(|e| format!("not an action: {e}"))
}

fn run(cli: Cli) -> Result<(), String> {
    let config = remembered(&cli)?;
    gridcase_core::server_url::check_server_url(&config.server).map_err(|e| e.to_string())?;
    let key = store_key(cli.key.as_deref())?;
    let phone = Phone::open(&cli.store, &config.token, rand::random(), key.as_ref())
        .map_err(|e| e.to_string())?;
    let err = |e: gridcase_core::phone::PhoneError| e.to_string();
    match cli.command {
        Command::Sync => {
            let mut transport = HttpTransport::new(&config.server, &config.token);
            let cancel = AtomicBool::new(false);
            let summary = phone
                .sync_with_attachments(
                    &mut transport,
                    now(),
                    &mut |p| {
                        if p.blob_bytes_total > 0 {
                            eprintln!(
                                "  attachments: {} of {} bytes uploaded",
                                p.blob_bytes_sent, p.blob_bytes_total
                            )
                        } else if p.remaining > 0 {
                            eprintln!(
                                "  received {} documents, {} to come",
                                p.cases_received, p.remaining
                            )
                        }
                    },
                    &cancel,
                    200,
                )
                .map_err(err)?;
            println!(
                "synced: {} documents sent, {} received in {} exchange(s)",
                summary.progress.cases_sent, summary.progress.cases_received, summary.pages
            );
            for r in summary.rejected {
                println!("REJECTED {}: {} ({})", r.doc_id, r.message, r.code);
            }
            let up = summary.uploads;
            if !up.uploaded.is_empty() {
                println!("uploaded {} attachment(s)", up.uploaded.len());
            }
            for (sha, why) in up.refused {
                println!("ATTACHMENT REFUSED {sha}: {why}");
            }
            if let Some(why) = up.deferred {
                println!("attachments wait for the next sync: {why}");
            }
        }
        Command::Register {
            title,
            area,
            category,
            description,
            r#type,
            urgent,
            complainant_name,
            complainant_phone,
        } => {
            let case_type =
                CaseType::parse(&r#type).ok_or_else(|| format!("unknown case type `{type}`"))?;
            let id = uuid::Uuid::new_v4().to_string();
            let new = NewCase {
                number: format!("GC-{}", &id[..8]),
                id: id.clone(),
                channel: Channel::Grid,
                case_type,
                category,
                urgency: if urgent {
                    Urgency::Urgent
                } else {
                    Urgency::General
                },
                priority: false,
                title,
                description,
                location: Location {
                    address: String::new(),
                    area_code: area,
                    gps: None,
                },
            };
            let complainant = complainant_name.map(|name| Complainant {
                name,
                phone: complainant_phone.unwrap_or_default(),
                anonymous: false,
            });
            let t = now();
            phone
                .create_case(&new, complainant.as_ref(), t)
                .map_err(err)?;
            phone.act(&id, &Action::Register, t).map_err(err)?;
            println!("registered {id} (offline; run `sync` to send it)");
        }
        Command::List {
            mine,
            overdue,
            due_soon,
            status,
            search,
            limit,
            offset,
        } => {
            let list = if mine {
                CaseList::Mine
            } else if overdue {
                CaseList::Overdue
            } else if due_soon {
                CaseList::DueSoon
            } else if let Some(s) = status {
                CaseList::Status(Status::parse(&s).ok_or_else(|| format!("unknown status `{s}`"))?)
            } else if let Some(q) = search {
                CaseList::Search(q)
            } else {
                CaseList::All
            };
            let page = phone
                .list(&list, Page { offset, limit }, now())
                .map_err(err)?;
            print_list(&page.cases, page.next_offset);
        }
        Command::Show { id } => {
            let detail = phone.get_case(&id).map_err(err)?;
            let c = &detail.case;
            println!("{} [{}] {}", c.number, c.status, c.title);
            println!("  {} / {} / {}", c.case_type, c.category, c.urgency);
            println!("  area {} {}", c.location.area_code, c.location.address);
            if let Some(p) = &detail.complainant {
                println!("  complainant {} {}", p.name, mask_phone(&p.phone));
            }
            println!("  {}", c.description);
            if let Some(d) = phone.deadline(&id, now()).map_err(err)? {
                println!(
                    "  stage {} due {} 北京时间 ({:?}, {:.0}% used)",
                    d.stage,
                    china_time(d.due_at),
                    d.state,
                    d.fraction_used * 100.0
                );
            }
            if c.needs_review {
                println!("  NEEDS REVIEW: conflicting offline actions were merged");
            }
            for e in &c.timeline {
                let flag = if e.conflicted { " (conflicted)" } else { "" };
                println!(
                    "  - {} {} by {} ({}){flag}",
                    china_time(e.at),
                    e.action.name(),
                    e.author.user,
                    e.author.role
                );
            }
            for n in &c.notes {
                println!(
                    "  {} note by {}: {}",
                    china_time(n.at),
                    n.author.user,
                    n.text
                );
            }
            for a in phone.attachments(&id).map_err(err)? {
                let at = &a.attachment;
                let personal = if at.personal { " personal" } else { "" };
                println!(
                    "  attachment {} {} {} bytes{personal} {:?} {}",
                    at.sha256, at.mime, at.size, a.state, at.caption
                );
            }
        }
        Command::Attach {
            id,
            file,
            mime,
            caption,
            personal,
        } => {
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let mime = mime.unwrap_or_else(|| mime_of(&file).to_string());
            phone
                .attach(&id, &bytes, &mime, &caption, personal, now())
                .map_err(err)?;
            let sha = gridcase_core::phone::blobs::sha256_hex(&bytes);
            println!(
                "attached {sha} ({mime}, {} bytes); it uploads with the next sync",
                bytes.len()
            );
        }
        Command::OpenAttachment { id, sha256, out } => {
            let mut transport = HttpTransport::new(&config.server, &config.token);
            let bytes = phone
                .open_attachment(&id, &sha256, now(), Some(&mut transport))
                .map_err(err)?;
            std::fs::write(&out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
            println!("wrote {} bytes to {}", bytes.len(), out.display());
        }
        Command::Act { id, action } => {
            let case = phone
                .act(&id, &parse_action(&action)?, now())
                .map_err(err)?;
            println!("{id} is now {}", case.status);
        }
        Command::Note { id, text } => {
            phone.add_note(&id, &text, now()).map_err(err)?;
            println!("note added");
        }
        Command::Append { id, text } => {
            let len = phone
                .get_case(&id)
                .map_err(err)?
                .case
                .description
                .chars()
                .count();
            phone
                .splice_description(&id, len, 0, &text, now())
                .map_err(err)?;
            println!("description updated");
        }
        Command::DemoFill { cases, area } => {
            demo_fill(&phone, cases, &area)?;
            println!("{cases} made-up cases stored");
        }
        Command::Status => {
            let s = phone.sync_status().map_err(err)?;
            println!(
                "pending documents: {}, last sync: {}, last error: {}",
                s.pending_docs,
                s.last_sync_at
                    .map(|t| format!("{} 北京时间", china_time(t)))
                    .unwrap_or_else(|| "never".into()),
                s.last_error.unwrap_or_else(|| "none".into())
            );
            for r in s.rejected {
                println!("rejected {}: {} ({})", r.doc_id, r.message, r.code);
            }
        }
    }
    Ok(())
}

/// A file's type from its extension (the server sniffs the bytes again).
fn mime_of(file: &Path) -> &'static str {
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "m4a" | "mp4" => "audio/mp4",
        "mp3" => "audio/mpeg",
        "amr" => "audio/amr",
        "ogg" | "opus" => "audio/ogg",
        "wav" => "audio/wav",
        _ => "application/octet-stream",
    }
}

fn main() {
    if let Err(message) = run(Cli::parse()) {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
