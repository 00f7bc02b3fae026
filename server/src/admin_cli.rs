//! The `gridcase-server admin …`, `audit-draw` and `audit-verify` commands. Whoever runs the
//! command has the database: adding the first admin is how a deployment starts (no shared
//! token). `audit-draw` and `audit-verify` act for a named, enabled admin (`--admin`), under
//! that admin's role and jurisdiction, as the HTTP routes do.

use std::io::BufRead;

use clap::{Args, Subcommand};
use gridcase_core::area::Jurisdiction;

use crate::admins::AdminRole;
use crate::audit_draw::{DEFAULT_DRAW_SIZE, DrawRequest, replay};
use crate::cli::{BoxError, DataArg, at_or_now};
use crate::http::now_millis;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Add an admin account and print its bearer token (shown once).
    Add {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        name: String,
        /// admin (enrols and revokes people and devices; everything), supervisor (lists,
        /// cases, reveals, reports, draws audits) or auditor (reads; records audit results).
        #[arg(long)]
        role: String,
        /// Jurisdiction: an area-code prefix (2, 4, 6, 9 or 12 digits), or `*` for everywhere.
        #[arg(long)]
        area: String,
        /// Read a password (for the console's sign-in) from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List admin accounts (no secrets).
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// Disable an admin: its tokens and sessions stop working at once.
    Disable {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        name: String,
    },
    /// Give an admin a new token (older ones stop working) and print it; enables it again.
    Reset {
        #[command(flatten)]
        data: DataArg,
        #[arg(long)]
        name: String,
        /// Also set a new password, read from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

fn read_password(wanted: bool) -> Result<Option<String>, BoxError> {
    if !wanted {
        return Ok(None);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

impl AdminCommand {
    pub fn run(self) -> Result<(), BoxError> {
        let now = now_millis();
        match self {
            AdminCommand::Add {
                data,
                name,
                role,
                area,
                password_stdin,
            } => {
                let role = AdminRole::parse(&role).ok_or_else(|| {
                    format!("unknown role `{role}`, expected admin, supervisor or auditor")
                })?;
                let jurisdiction = Jurisdiction::parse_given(&area)?;
                let password = read_password(password_stdin)?;
                let token = data.open()?.add_admin(
                    &name,
                    role,
                    &jurisdiction,
                    password.as_deref(),
                    &mut rand::rng(),
                    now,
                )?;
                println!("{token}");
            }
            AdminCommand::List { data } => {
                for a in data.open()?.admins()? {
                    let area = if a.jurisdiction.is_empty() {
                        "*"
                    } else {
                        &a.jurisdiction
                    };
                    let state = if a.disabled { "disabled" } else { "enabled" };
                    let password = if a.password { "password" } else { "token only" };
                    println!(
                        "{:<16} {:<10} {area:<12} {state:<8} {password}",
                        a.name, a.role
                    );
                }
            }
            AdminCommand::Disable { data, name } => {
                data.open()?.disable_admin(&name, now)?;
                println!("admin {name} disabled");
            }
            AdminCommand::Reset {
                data,
                name,
                password_stdin,
            } => {
                let password = read_password(password_stdin)?;
                let token =
                    data.open()?
                        .reset_admin(&name, password.as_deref(), &mut rand::rng(), now)?;
                println!("{token}");
            }
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct AuditDrawArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// The admin drawing (recorded).
    #[arg(long)]
    pub admin: String,
    /// The month, e.g. 2026-11 (drawn once it is over).
    #[arg(long)]
    pub month: String,
    /// The jurisdiction: an area-code prefix, or `*`.
    #[arg(long)]
    pub area: String,
    #[arg(long, default_value_t = DEFAULT_DRAW_SIZE)]
    pub n: u32,
    /// Required to draw a month and area again (recorded as a redraw).
    #[arg(long)]
    pub reason: Option<String>,
    /// The instant of the draw (RFC 3339); default now.
    #[arg(long)]
    pub at: Option<String>,
}

impl AuditDrawArgs {
    pub fn run(&self) -> Result<(), BoxError> {
        let now = at_or_now(self.at.as_deref())?;
        let store = self.data.open()?;
        let admin = store.admin_ctx(&self.admin)?;
        let area = Jurisdiction::parse_given(&self.area)?;
        let req = DrawRequest {
            month: &self.month,
            area: &area,
            n: self.n,
            reason: self.reason.as_deref(),
        };
        let draw = store.draw_audit(&admin, &req, &mut rand::rng(), now)?;
        let mut value = serde_json::json!(draw);
        value["candidates"] = serde_json::json!(draw.candidates.len());
        value["replays"] = serde_json::json!(replay(&draw));
        println!("{}", serde_json::to_string_pretty(&value)?);
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    pub data: DataArg,
    /// The admin recording the result.
    #[arg(long)]
    pub admin: String,
    #[arg(long)]
    pub draw: i64,
    #[arg(long = "case")]
    pub case_id: String,
    #[arg(long, value_parser = ["confirmed", "failed"])]
    pub result: String,
    #[arg(long, default_value = "")]
    pub note: String,
}

impl AuditVerifyArgs {
    pub fn run(&self) -> Result<(), BoxError> {
        let store = self.data.open()?;
        let admin = store.admin_ctx(&self.admin)?;
        store.verify_drawn_case(
            &admin,
            self.draw,
            &self.case_id,
            &self.result,
            &self.note,
            now_millis(),
        )?;
        println!("draw {}: case {} {}", self.draw, self.case_id, self.result);
        Ok(())
    }
}
