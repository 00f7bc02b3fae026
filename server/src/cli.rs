//! The `gridcase-server` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gridcase_core::area::Jurisdiction;
use gridcase_core::calendar::to_china_time;
use gridcase_core::model::{Millis, Role};
use gridcase_core::rules::SourcedRules;

use crate::audit::{AuditQuery, AuditRow};
use crate::config::{
    DEFAULT_DATA, FileConfig, Overrides, open_store, read_file_config, resolve, serve,
};
use crate::db::Location;
use crate::deadlines::run_deadline_check;
use crate::http::{now_millis, parse_instant};
use crate::store::{CaseSummary, Store};

#[derive(Debug, Parser)]
#[command(
    name = "gridcase-server",
    version,
    about = "gridcase sync server: change feed, deadline checks, admin lists"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as text, or as one JSON object per line for a log collector.
    #[arg(
        long,
        global = true,
        env = "GRIDCASE_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DataArg {
    /// The data directory (the SQLite database lives here).
    #[arg(long, env = "GRIDCASE_DATA", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    /// A PostgreSQL database (`postgres://user@host:port/db`) instead of SQLite in --data.
    #[arg(long, env = "GRIDCASE_DATABASE")]
    pub database: Option<String>,
}

impl DataArg {
    /// Opens the store these arguments name.
    pub(crate) fn open(&self) -> Result<Store, BoxError> {
        let location = Location::from_args(self.data.clone(), self.database.as_deref())?;
        Ok(Store::connect(&location, 4, SourcedRules::shipped())?)
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [env GRIDCASE_LISTEN; default 127.0.0.1:8080].
    #[arg(long, env = "GRIDCASE_LISTEN")]
    pub listen: Option<String>,
    /// Data directory [env GRIDCASE_DATA; default ./gridcase-data].
    #[arg(long, env = "GRIDCASE_DATA")]
    pub data: Option<PathBuf>,
    /// A PostgreSQL database, `postgres://user@host:port/db`, instead of SQLite in the data
    /// directory [env GRIDCASE_DATABASE].
    #[arg(long, env = "GRIDCASE_DATABASE")]
    pub database: Option<String>,
    /// A TOML file with any of: listen, data, database, pool_size, check_every, policy,
    /// calendar, max_body_bytes, request_timeout, secure_cookie (the console cookie over TLS).
    #[arg(long, env = "GRIDCASE_CONFIG")]
    pub config: Option<PathBuf>,
    /// How often the deadline check runs, e.g. 60s, 5m [env GRIDCASE_CHECK_EVERY].
    #[arg(long, env = "GRIDCASE_CHECK_EVERY")]
    pub check_every: Option<String>,
    /// Deadline policy file [env GRIDCASE_POLICY; default: the shipped policy].
    #[arg(long, env = "GRIDCASE_POLICY")]
    pub policy: Option<PathBuf>,
    /// Holiday calendar file [env GRIDCASE_CALENDAR; default: the embedded calendar].
    #[arg(long, env = "GRIDCASE_CALENDAR")]
    pub calendar: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// The instant to evaluate at (RFC 3339); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// 2026-11 (month), 2026-11-30 (day), 2026-W48 (ISO week), 2026-11-H1 / 2026-11-H2.
    #[arg(long)]
    pub period: String,
    /// An area-code prefix (digits); default everywhere.
    #[arg(long, default_value = "")]
    pub area: String,
    /// Only cases of this responsible unit.
    #[arg(long)]
    pub unit: Option<String>,
    /// Only cases of this category.
    #[arg(long)]
    pub category: Option<String>,
    /// json (every figure), csv or xlsx (one section per sheet, Chinese headers).
    #[arg(long, value_parser = ["json", "csv", "xlsx"], default_value = "json")]
    pub format: String,
    #[arg(long)]
    pub out: PathBuf,
    /// The instant to judge running clocks at (RFC 3339); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// Put the listed cases' complainant phones in the report, unmasked, for this admin
    /// account (its role may reveal, its jurisdiction covers the cases); each reveal is
    /// recorded with `--reason`.
    #[arg(long, requires = "reason")]
    pub reveal_phones_by: Option<String>,
    /// Why the phones are needed (recorded); with `--reveal-phones-by`.
    #[arg(long, requires = "reveal_phones_by")]
    pub reason: Option<String>,
}

impl ReportArgs {
    fn run(&self) -> Result<(), BoxError> {
        let now = at_or_now(self.at.as_deref())?;
        let query = crate::report::ReportQuery {
            period: self.period.clone(),
            area: self.area.clone(),
            unit: self.unit.clone(),
            category: self.category.clone(),
        };
        let store = self.data.open()?;
        let mut report = store.report(&query, now)?;
        if let (Some(by), Some(reason)) = (&self.reveal_phones_by, &self.reason) {
            store.reveal_report_phones(&store.admin_ctx(by)?, &mut report, reason, now)?;
        }
        let bytes = match self.format.as_str() {
            "csv" => crate::report::to_csv(&report).into_bytes(),
            "xlsx" => crate::report::to_xlsx(&report)?,
            _ => serde_json::to_vec_pretty(&report)?,
        };
        std::fs::write(&self.out, bytes)?;
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server and the periodic deadline check.
    Serve(ServeArgs),
    /// Write the report of a period (totals, rates, top lists, overdue and supervised cases, hot
    /// spots, against the previous period) as JSON, CSV or XLSX.
    Report(ReportArgs),
    /// Once after upgrading: compute the rates' facts of cases committed before they existed.
    BackfillFacts {
        #[command(flatten)]
        data: DataArg,
    },
    /// Once after upgrading to attachment bytes (SQLite step 10, PostgreSQL version 6): record
    /// which blobs the cases committed before reference, so their bytes can be downloaded.
    BackfillBlobRefs {
        #[command(flatten)]
        data: DataArg,
    },
    /// Enrol a user (or change an existing user's role and area).
    EnrolUser {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        user: String,
        /// grid_worker, township_staff, handling_unit, hotline_centre or admin.
        #[arg(long)]
        role: String,
        /// Jurisdiction: an area-code prefix (2, 4, 6, 9 or 12 digits), or `*` for everywhere
        /// (hotline centre, township staff, admin only). Required: no default area.
        #[arg(long)]
        area: String,
    },
    /// Enrol a new device for a user and print its token (shown once).
    EnrolDevice {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        user: String,
    },
    /// Revoke a device: it gets no more data and is told to wipe. Recorded in the audit log.
    RevokeDevice {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        device: String,
        /// The admin doing it: an enabled admin account (`admin add`) allowed to, whose
        /// jurisdiction covers the device's user; recorded. Without it the audit row names no
        /// admin (whoever runs the command has the database).
        #[arg(long)]
        by: Option<String>,
    },
    /// Revoke a user and so all of their devices. Recorded in the audit log.
    RevokeUser {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        user: String,
        /// The admin doing it: an enabled admin account allowed to, whose jurisdiction covers
        /// the user; recorded. Without it the audit row names no admin.
        #[arg(long)]
        by: Option<String>,
    },
    /// Show a case's complainant unmasked. Every reveal is recorded in the audit log.
    Reveal {
        #[command(flatten)]
        data: DataArg,
        #[arg(long = "case")]
        case_id: String,
        /// Why the personal data is needed (recorded).
        #[arg(long)]
        reason: String,
        /// The admin asking: an enabled admin account whose role may reveal and whose
        /// jurisdiction covers the case (recorded).
        #[arg(long)]
        by: String,
    },
    /// Query the audit log (changes, reveals, rejections, revocations, enrolments), newest
    /// first.
    Audit {
        #[command(flatten)]
        data: DataArg,
        #[arg(long = "case")]
        case_id: Option<String>,
        #[arg(long)]
        user: Option<String>,
        /// From this instant (RFC 3339 or ms), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// Up to this instant (RFC 3339 or ms), exclusive.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = crate::audit::DEFAULT_AUDIT_LIMIT)]
        limit: u32,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Admin accounts for the /admin/ API: add (the first one starts a deployment), list,
    /// disable, reset.
    Admin {
        #[command(subcommand)]
        command: crate::admin_cli::AdminCommand,
    },
    /// Draw the monthly random audit: N closed cases of a month inside a jurisdiction,
    /// reproducibly, recorded in the audit log; a second draw needs --reason.
    AuditDraw(crate::admin_cli::AuditDrawArgs),
    /// Record a drawn case's re-verification result.
    AuditVerify(crate::admin_cli::AuditVerifyArgs),
    /// List overdue cases (超期).
    Overdue(ListArgs),
    /// List cases due soon (预警).
    DueSoon(ListArgs),
    /// Run the deadline check once (records supervisions of overdue cases).
    Check {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        at: Option<String>,
    },
    /// Move up: copy an SQLite data directory (server stopped) into an empty PostgreSQL
    /// database, every document, change, cursor, device and audit row; phones keep syncing
    /// against a server on the new database without a restore.
    Migrate {
        /// The SQLite data directory.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL database, `postgres://user@host:port/db`.
        #[arg(long)]
        to: String,
    },
    /// Fill the server with realistic demo cases and enrol demo users and devices.
    Demo {
        #[command(flatten)]
        data: DataArg,
        #[arg(long, default_value_t = 500)]
        cases: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The instant the demo is built around (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
    },
}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn at_or_now(at: Option<&str>) -> Result<Millis, BoxError> {
    match at {
        None => Ok(now_millis()),
        Some(text) => parse_instant(text).ok_or_else(|| {
            format!("`{text}` is not an RFC 3339 instant or milliseconds since the epoch").into()
        }),
    }
}

fn china(at: Option<Millis>) -> String {
    at.and_then(to_china_time)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_list(cases: &[CaseSummary], now: Millis, json: bool) -> Result<(), BoxError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let result = (|| -> std::io::Result<()> {
        if json {
            serde_json::to_writer_pretty(&mut out, cases)?;
            return writeln!(out);
        }
        writeln!(out, "{} case(s)", cases.len())?;
        for c in cases {
            let left = c
                .due_at
                .map(|d| (d - now) as f64 / 3_600_000.0)
                .unwrap_or(0.0);
            writeln!(
                out,
                "{}  due {} ({:+.1} h){}  {}  {}  {}/{}  {}",
                c.number,
                china(c.due_at),
                left,
                if c.due_provisional {
                    " provisional"
                } else {
                    ""
                },
                c.area_code,
                c.category,
                c.status,
                c.stage.as_deref().unwrap_or("-"),
                c.title
            )?;
        }
        out.flush()
    })();
    match result {
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn print_audit(rows: &[AuditRow], json: bool) -> Result<(), BoxError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let result = (|| -> std::io::Result<()> {
        if json {
            serde_json::to_writer_pretty(&mut out, rows)?;
            return writeln!(out);
        }
        writeln!(out, "{} row(s), newest first", rows.len())?;
        for r in rows {
            let at = to_china_time(r.at)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| r.at.to_string());
            writeln!(
                out,
                "{at}  {:<6}  user {}  device {}  doc {}  {}",
                r.kind,
                r.user_id.as_deref().unwrap_or("-"),
                r.device_id.as_deref().unwrap_or("-"),
                r.doc_id.as_deref().unwrap_or("-"),
                r.detail.as_deref().unwrap_or("")
            )?;
        }
        out.flush()
    })();
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Serve(args) => {
            let file = match &args.config {
                Some(path) => read_file_config(path)?,
                None => FileConfig::default(),
            };
            let config = resolve(
                Overrides {
                    listen: args.listen,
                    data: args.data,
                    database: args.database,
                    check_every: args.check_every,
                    policy: args.policy,
                    calendar: args.calendar,
                },
                file,
            )?;
            // Fail early on a bad policy or calendar, before binding.
            drop(open_store(
                &config.database,
                config.pool_size,
                config.policy.as_deref(),
                config.calendar.as_deref(),
            )?);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(serve(config))?;
        }
        Command::EnrolUser {
            data,
            user,
            role,
            area,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                let names: Vec<&str> = Role::ALL
                    .iter()
                    .filter(|r| **r != Role::System)
                    .map(|r| r.as_str())
                    .collect();
                format!(
                    "unknown role `{role}`, expected one of {}",
                    names.join(", ")
                )
            })?;
            let jurisdiction = Jurisdiction::parse_given(&area)?;
            data.open()?
                .enrol_user(&user, role, &jurisdiction, now_millis())?;
            println!(
                "user {user}: {role}, jurisdiction `{}`",
                jurisdiction.as_given()
            );
        }
        Command::EnrolDevice { data, user } => {
            let token = data.open()?.enrol_device(&user, now_millis())?;
            println!("{token}");
        }
        Command::RevokeDevice { data, device, by } => {
            let store = data.open()?;
            let now = now_millis();
            let revoked = match by {
                Some(by) => store.revoke_device_as(&store.admin_ctx(&by)?, &device, now)?,
                None => store.revoke_device_by(&device, None, now)?,
            };
            if !revoked {
                return Err(format!("no device {device}").into());
            }
            println!("device {device} revoked");
        }
        Command::RevokeUser { data, user, by } => {
            let store = data.open()?;
            let now = now_millis();
            let revoked = match by {
                Some(by) => store.revoke_user_as(&store.admin_ctx(&by)?, &user, now)?,
                None => store.revoke_user_by(&user, None, now)?,
            };
            if !revoked {
                return Err(format!("no user {user}").into());
            }
            println!("user {user} revoked");
        }
        Command::Reveal {
            data,
            case_id,
            reason,
            by,
        } => {
            let store = data.open()?;
            let admin = store.admin_ctx(&by)?;
            let complainant = store.reveal_as(&admin, &case_id, &reason, now_millis())?;
            let value = serde_json::json!({
                "case_id": case_id,
                "complainant": complainant.map(|c| serde_json::json!({
                    "name": c.name, "phone": c.phone, "anonymous": c.anonymous
                })),
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Command::Audit {
            data,
            case_id,
            user,
            from,
            to,
            limit,
            json,
        } => {
            let instant = |text: Option<String>| -> Result<Option<Millis>, BoxError> {
                text.map(|t| at_or_now(Some(&t))).transpose()
            };
            let query = AuditQuery {
                case_id,
                user_id: user,
                kind: None,
                from: instant(from)?,
                to: instant(to)?,
                limit,
                within: None,
            };
            let rows = data.open()?.audit_log(&query)?;
            print_audit(&rows, json)?;
        }
        Command::Admin { command } => command.run()?,
        Command::AuditDraw(args) => args.run()?,
        Command::AuditVerify(args) => args.run()?,
        Command::Report(args) => args.run()?,
        Command::BackfillFacts { data } => {
            println!("{} cases", data.open()?.backfill_facts()?);
        }
        Command::BackfillBlobRefs { data } => {
            let added = crate::blobs::backfill_references(&data.open()?)?;
            println!("{added} references");
        }
        Command::Overdue(args) => {
            let now = at_or_now(args.at.as_deref())?;
            let cases = args.data.open()?.overdue(now, u32::MAX)?;
            print_list(&cases, now, args.json)?;
        }
        Command::DueSoon(args) => {
            let now = at_or_now(args.at.as_deref())?;
            let cases = args.data.open()?.due_soon(now, u32::MAX)?;
            print_list(&cases, now, args.json)?;
        }
        Command::Check { data, at } => {
            let now = at_or_now(at.as_deref())?;
            let report = run_deadline_check(&data.open()?, now)?;
            println!(
                "due soon: {}, overdue: {}, newly supervised: {}",
                report.due_soon.len(),
                report.overdue.len(),
                report.supervised.len()
            );
        }
        Command::Migrate { from, to } => {
            let Location::Postgres(url) = Location::from_args(from.clone(), Some(&to))? else {
                unreachable!("from_args gives PostgreSQL for a URL")
            };
            let copied = crate::db::move_up::copy(&from, &url)?;
            for (table, rows) in &copied.0 {
                println!("{table:<14} {rows} row(s)");
            }
            println!("copied into {}", Location::Postgres(url).describe());
        }
        Command::Demo {
            data,
            cases,
            seed,
            at,
        } => {
            let now = at_or_now(at.as_deref())?;
            let store = data.open()?;
            let report = crate::demo::fill(&store, cases, seed, now)?;
            println!(
                "demo: {} case(s) created, {} already present",
                report.cases_created, report.cases_skipped
            );
            println!("devices (tokens are shown once):");
            for (user, role, token) in &report.tokens {
                println!("  {user:<12} {:<15} {token}", role.as_str());
            }
            println!(
                "overdue now: {}, due soon: {}",
                store.overdue(now, u32::MAX)?.len(),
                store.due_soon(now, u32::MAX)?.len()
            );
        }
    }
    Ok(())
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "gridcase-server",
            "enrol-user",
            "--data",
            "/tmp/x",
            "--user",
            "w1",
            "--role",
            "grid_worker",
            "--area",
            "330604101",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::EnrolUser { .. }));
        let cli = Cli::try_parse_from(["gridcase-server", "serve", "--check-every", "5s"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.check_every.as_deref(), Some("5s"));
    }

    fn run_args(args: &[&str]) -> Result<(), BoxError> {
        let mut all = vec!["gridcase-server"];
        all.extend_from_slice(args);
        run(Cli::try_parse_from(all)?)
    }

    #[test]
    fn enrol_user_refuses_malformed_areas_and_user_ids() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        for area in ["3306041", "33060410x", "abc", "3306041012011", " 330604"] {
            let err = run_args(&[
                "enrol-user",
                "--data",
                data,
                "--user",
                "w1",
                "--role",
                "grid_worker",
                "--area",
                area,
            ])
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(area.trim()) || err.contains("digits"),
                "{area}: {err}"
            );
        }
        let long = "u".repeat(1000);
        for user in ["", " ", "a b", "tab\there", long.as_str()] {
            let err = run_args(&[
                "enrol-user",
                "--data",
                data,
                "--user",
                user,
                "--role",
                "grid_worker",
                "--area",
                "330604101",
            ])
            .unwrap_err()
            .to_string();
            assert!(err.contains("user id"), "{user:?}: {err}");
            assert!(err.len() < 500, "the error does not echo 1000 characters");
        }
        let err = run_args(&[
            "enrol-user",
            "--data",
            data,
            "--user",
            "w1",
            "--role",
            "king",
            "--area",
            "33",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown role `king`"), "{err}");
        let store = Store::open(data).unwrap();
        assert_eq!(
            store.audit_count("enrol").unwrap(),
            0,
            "nothing was enrolled"
        );
    }

    /// Issue 8.5: no `--area` is an error, not the whole country; `*` spells everywhere and is
    /// refused for the roles that work in one area.
    #[test]
    fn enrol_user_needs_an_explicit_area_and_everywhere_only_for_wide_roles() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let enrol = |role: &str, area: Option<&str>| {
            let mut args = vec!["enrol-user", "--data", data, "--user", "u1", "--role", role];
            args.extend(area.map(|a| ["--area", a]).into_iter().flatten());
            run_args(&args).map_err(|e| e.to_string())
        };
        let err = enrol("hotline_centre", None).unwrap_err();
        assert!(err.contains("--area"), "{err}");
        let err = enrol("hotline_centre", Some("")).unwrap_err();
        assert!(err.contains("`*` for everywhere"), "{err}");
        for role in ["grid_worker", "handling_unit"] {
            let err = enrol(role, Some("*")).unwrap_err();
            assert!(err.contains("not everywhere"), "{role}: {err}");
        }
        let store = Store::open(data).unwrap();
        assert_eq!(store.audit_count("enrol").unwrap(), 0, "nothing enrolled");
        drop(store);
        for role in ["hotline_centre", "township_staff", "admin"] {
            enrol(role, Some("*")).unwrap();
        }
        enrol("handling_unit", Some("330604")).unwrap();
        let store = Store::open(data).unwrap();
        assert_eq!(store.audit_count("enrol").unwrap(), 4);
    }

    #[test]
    fn reveal_audit_and_revoke_commands() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        run_args(&[
            "demo",
            "--data",
            data,
            "--cases",
            "3",
            "--at",
            "2025-03-03T09:00:00+08:00",
        ])
        .unwrap();
        let store = Store::open(data).unwrap();
        let case_id = store.overdue(i64::MAX, 1).unwrap()[0].case_id.clone();
        crate::testing::add_admin(&store, "z", crate::admins::AdminRole::Supervisor, "*");
        crate::testing::add_admin(&store, "gone", crate::admins::AdminRole::Admin, "*");
        crate::testing::add_admin(&store, "reader", crate::admins::AdminRole::Auditor, "*");
        store.disable_admin("gone", 0).unwrap();
        drop(store);
        // `--by` names an enabled admin account allowed to act, not any text.
        for by in ["nobody", "gone", "reader"] {
            let reveal = [
                "reveal", "--data", data, "--case", &case_id, "--reason", "r",
            ];
            assert!(
                run_args(&[&reveal[..], &["--by", by]].concat()).is_err(),
                "{by}"
            );
            let revoke = [
                "revoke-user",
                "--data",
                data,
                "--user",
                "nobody",
                "--by",
                by,
            ];
            assert!(run_args(&revoke).is_err(), "{by}");
        }
        assert!(
            run_args(&[
                "reveal", "--data", data, "--case", &case_id, "--reason", " ", "--by", "z"
            ])
            .is_err()
        );
        assert!(
            run_args(&[
                "reveal", "--data", data, "--case", "nope", "--reason", "r", "--by", "z"
            ])
            .is_err()
        );
        run_args(&[
            "reveal", "--data", data, "--case", &case_id, "--reason", "回访", "--by", "z",
        ])
        .unwrap();
        run_args(&["audit", "--data", data, "--case", &case_id, "--json"]).unwrap();
        run_args(&["audit", "--data", data, "--user", "z", "--from", "0"]).unwrap();
        assert!(run_args(&["audit", "--data", data, "--from", "soon"]).is_err());
        assert!(run_args(&["revoke-user", "--data", data, "--user", "nobody"]).is_err());
        let store = Store::open(data).unwrap();
        assert_eq!(store.audit_count("reveal").unwrap(), 1);
        let rows = store
            .audit_log(&AuditQuery {
                case_id: Some(case_id),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(rows[0].kind, "reveal");
        assert_eq!(rows[0].user_id.as_deref(), Some("z"));
        assert!(rows.iter().any(|r| r.kind == "change"));
        assert_eq!(store.audit_count("revoke").unwrap(), 0);
    }

    /// Issue 11.5 and 11.3 from the command line: admin accounts, then a draw and a result
    /// recorded for named admins, each under its role.
    #[test]
    fn admin_accounts_and_the_audit_draw_commands() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let at = "2026-11-28T10:00:00+08:00";
        run_args(&["demo", "--data", data, "--cases", "200", "--at", at]).unwrap();
        let add = |name: &str, role: &str| {
            run_args(&[
                "admin", "add", "--data", data, "--name", name, "--role", role, "--area", "330604",
            ])
        };
        add("zhang", "supervisor").unwrap();
        add("qian", "auditor").unwrap();
        assert!(add("zhang", "auditor").is_err(), "names are unique");
        let err = add("sun", "king").unwrap_err().to_string();
        assert!(err.contains("unknown role"), "{err}");
        run_args(&["admin", "list", "--data", data]).unwrap();
        let draw = |admin: &str, reason: Option<&str>| {
            let mut args = vec![
                "audit-draw",
                "--data",
                data,
                "--admin",
                admin,
                "--month",
                "2026-11",
                "--area",
                "330604",
                "--n",
                "3",
                "--at",
                "2026-12-03T10:00:00+08:00",
            ];
            args.extend(reason.map(|r| ["--reason", r]).into_iter().flatten());
            run_args(&args).map_err(|e| e.to_string())
        };
        assert!(draw("qian", None).unwrap_err().contains("auditor may not"));
        draw("zhang", None).unwrap();
        assert!(draw("zhang", None).unwrap_err().contains("needs a reason"));
        assert!(draw("nobody", None).is_err());
        let store = Store::open(data).unwrap();
        let drawn = store.db().draw(1).unwrap().unwrap();
        assert!(crate::audit_draw::replay(&drawn));
        assert_eq!(drawn.by, "zhang");
        drop(store);
        let case = drawn.cases[0].case_id.as_str();
        let verify = |admin: &str| {
            run_args(&[
                "audit-verify",
                "--data",
                data,
                "--admin",
                admin,
                "--draw",
                "1",
                "--case",
                case,
                "--result",
                "confirmed",
                "--note",
                "回访属实",
            ])
        };
        run_args(&["admin", "disable", "--data", data, "--name", "qian"]).unwrap();
        assert!(verify("qian").is_err(), "a disabled admin does nothing");
        run_args(&["admin", "reset", "--data", data, "--name", "qian"]).unwrap();
        verify("qian").unwrap();
        assert!(verify("qian").is_err(), "recorded once");
        let store = Store::open(data).unwrap();
        assert_eq!(store.audit_count("admin").unwrap(), 4);
        assert_eq!(store.audit_count("audit_draw").unwrap(), 1);
        assert_eq!(store.audit_count("audit_verify").unwrap(), 1);
        assert_eq!(
            store.db().draw(1).unwrap().unwrap().cases[0]
                .result
                .as_deref(),
            Some("confirmed")
        );
    }

    /// Every admin command takes `--database` for PostgreSQL, as `serve` does.
    #[test]
    fn admin_commands_work_on_postgres() {
        use crate::testing::{Backend, TestDb};
        if crate::testing::skip_postgres() {
            return;
        }
        let db = TestDb::new(Backend::Postgres);
        let Location::Postgres(url) = db.location() else {
            unreachable!()
        };
        let data = db.dir().to_str().unwrap();
        let with_db = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend_from_slice(&["--database", url]);
            run_args(&all)
        };
        with_db(&["demo", "--cases", "3", "--at", "2025-03-03T09:00:00+08:00"]).unwrap();
        with_db(&[
            "enrol-user",
            "--user",
            "w9",
            "--role",
            "grid_worker",
            "--area",
            "330604101",
        ])
        .unwrap();
        with_db(&["enrol-device", "--user", "w9"]).unwrap();
        with_db(&["revoke-user", "--user", "w9"]).unwrap();
        with_db(&["check", "--at", "2025-04-03T09:00:00+08:00"]).unwrap();
        with_db(&["overdue", "--json"]).unwrap();
        with_db(&["audit", "--user", "w9"]).unwrap();
        // Nothing went to SQLite in the data directory.
        assert!(!std::path::Path::new(data).join("data").exists());
        let store = db.open();
        assert_eq!(store.case_count().unwrap(), 3);
        assert_eq!(store.audit_count("revoke").unwrap(), 1);
        assert!(
            store
                .supervisions(&store.overdue(i64::MAX, 1).unwrap()[0].case_id)
                .unwrap()
                .len()
                == 1
        );
        assert!(
            run_args(&["audit", "--database", "mysql://nope"])
                .unwrap_err()
                .to_string()
                .contains("postgres://")
        );
    }
}
