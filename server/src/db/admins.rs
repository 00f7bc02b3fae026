//! What the admin accounts (`crate::admins`) and the monthly random audit (`crate::audit_draw`)
//! need from a database. The rules live above; these traits only store and find.

use gridcase_core::model::Millis;
use serde::Serialize;

use super::{AuditEntry, Result};

/// An admin account as stored. `role` and `jurisdiction` are checked by `crate::admins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRecord {
    pub name: String,
    pub role: String,
    /// An area prefix (digits; "" is everywhere).
    pub jurisdiction: String,
    /// An Argon2id PHC string, if the admin may sign in with a password.
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub created_at: Millis,
}

/// One row of the people listing: a user and one of its devices (none: `device_id` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonDeviceRow {
    pub user_id: String,
    pub role: String,
    pub jurisdiction: String,
    pub user_revoked: bool,
    pub device_id: Option<String>,
    pub device_revoked: Option<bool>,
    pub last_seen: Option<Millis>,
}

pub trait AdminAccounts {
    /// Adds an admin with a first bearer token (its SHA-256), with its audit row. `false`: the
    /// name is taken (nothing written).
    fn insert_admin(
        &self,
        admin: &AdminRecord,
        token_hash: &str,
        audit: &AuditEntry,
    ) -> Result<bool>;
    fn admin(&self, name: &str) -> Result<Option<AdminRecord>>;
    /// Every admin, by name.
    fn admins(&self) -> Result<Vec<AdminRecord>>;
    /// Users whose jurisdiction starts with `prefix`, with their devices; at most `limit` rows.
    fn people_within(&self, prefix: &str, limit: u32) -> Result<Vec<PersonDeviceRow>>;
    /// The admin holding this token hash, if the token has not expired at `now`.
    fn admin_by_token(&self, token_hash: &str, now: Millis) -> Result<Option<AdminRecord>>;
    /// Disables an admin and deletes all of its tokens, with its audit row. `false`: unknown.
    fn disable_admin(&self, name: &str, audit: &AuditEntry) -> Result<bool>;
    /// Replaces all of an admin's tokens by `token_hash` and, when given, its password hash;
    /// enables it again. With its audit row. `false`: unknown.
    fn reset_admin(
        &self,
        name: &str,
        token_hash: &str,
        password_hash: Option<&str>,
        audit: &AuditEntry,
    ) -> Result<bool>;
    /// Adds a token that expires (a signed-in session); expired tokens of the admin go.
    fn add_session(
        &self,
        name: &str,
        token_hash: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<()>;
    /// Deletes a session (a token that expires; never a bearer token) by its hash (signing
    /// out). `false`: no such session.
    fn end_session(&self, token_hash: &str) -> Result<bool>;
}

/// A draw about to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDraw {
    /// `2026-11`.
    pub month: String,
    /// The jurisdiction drawn in (digits; "" everywhere).
    pub area: String,
    pub n: u32,
    pub nonce: String,
    pub seed: String,
    pub candidates_hash: String,
    /// The candidate case ids, in id order (kept so the draw can be replayed later).
    pub candidates: Vec<String>,
    pub drawn: Vec<String>,
    /// Required for a redraw; recorded.
    pub reason: Option<String>,
    pub by: String,
    pub at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrawInsert {
    /// Recorded with this id and sequence (0 for the first draw of the month and area).
    Inserted { id: i64, sequence: i64 },
    /// A draw exists and no reason for a redraw was given: nothing written.
    Exists { id: i64 },
}

/// A recorded draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrawRow {
    pub id: i64,
    pub month: String,
    pub area: String,
    pub sequence: i64,
    pub n: u32,
    pub nonce: String,
    pub seed: String,
    pub candidates_hash: String,
    #[serde(skip)]
    pub candidates: Vec<String>,
    pub reason: Option<String>,
    pub by: String,
    pub at: Millis,
    pub cases: Vec<DrawCaseRow>,
}

/// One drawn case and its re-verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrawCaseRow {
    pub position: u32,
    pub case_id: String,
    pub result: Option<String>,
    pub note: Option<String>,
    pub verified_by: Option<String>,
    pub verified_at: Option<Millis>,
}

/// A re-verification result about to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub draw_id: i64,
    pub case_id: String,
    /// `confirmed` or `failed`.
    pub result: &'static str,
    pub note: String,
    pub by: String,
    pub at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    Recorded,
    /// The case is not in that draw (or the draw does not exist).
    NotDrawn,
    /// A result was recorded already: results are not overwritten.
    AlreadyRecorded,
}

pub trait AuditDraws {
    /// Ids of the cases closed in `[from, to)` (trusted time) whose area code starts with
    /// `area`, in id order. (A case closed before `to` was registered before it: that bound
    /// lets the scan use the facts' order by registration time.)
    fn closed_case_ids(&self, area: &str, from: Millis, to: Millis) -> Result<Vec<String>>;
    /// Records a draw, its cases and its audit row (`audit(id)`) atomically, unless one exists
    /// for the month and area and `draw.reason` is `None`.
    fn insert_draw(&self, draw: &NewDraw, audit: &dyn Fn(i64) -> AuditEntry) -> Result<DrawInsert>;
    fn draw(&self, id: i64) -> Result<Option<DrawRow>>;
    /// Records a drawn case's re-verification with its audit row.
    fn record_verification(&self, v: &Verification, audit: &AuditEntry) -> Result<VerifyOutcome>;
}
