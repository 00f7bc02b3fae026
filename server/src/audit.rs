//! The audit log: who changed, revealed, was refused, revoked or enrolled what, and when (server
//! time). Rows are written in the same transaction as what they record, so an accepted change
//! never lacks its row and a reveal is never answered without one.
//!
//! `user_id` is the user who acted (a change's author, the admin name of a reveal) or, for
//! enrolments and revocations, the user they concern; `detail` is a small JSON object.

use gridcase_core::doc::{PersonalDoc, personal_doc_id};
use gridcase_core::model::{Complainant, Millis};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::json;

use crate::store::{Result, Store, StoreError, load_doc};

/// The kinds of audit rows.
pub const CHANGE: &str = "change";
pub const REVEAL: &str = "reveal";
pub const REJECT: &str = "reject";
pub const REVOKE: &str = "revoke";
pub const ENROL: &str = "enrol";

/// Default and largest number of rows one audit query returns.
pub const DEFAULT_AUDIT_LIMIT: u32 = 100;
pub const MAX_AUDIT_LIMIT: u32 = 10_000;
/// Longest reveal reason accepted (characters).
pub const MAX_REASON_CHARS: usize = 500;
/// Longest admin name accepted for `by` (characters).
pub const MAX_BY_CHARS: usize = 64;
/// Untrusted text (a refused document id, a rejection message) is cut to this many characters
/// before it is stored.
const MAX_STORED_TEXT: usize = 300;

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: Millis,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub kind: String,
    pub case_id: Option<String>,
    pub doc_id: Option<String>,
    pub detail: Option<String>,
}

/// A filter over the audit log. Rows come newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub case_id: Option<String>,
    pub user_id: Option<String>,
    /// Inclusive lower bound on `at`.
    pub from: Option<Millis>,
    /// Exclusive upper bound on `at`.
    pub to: Option<Millis>,
    /// 0 means the default.
    pub limit: u32,
}

/// A row about to be written.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry<'a> {
    pub at: Millis,
    pub user_id: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub kind: &'static str,
    pub case_id: Option<&'a str>,
    pub doc_id: Option<&'a str>,
    pub detail: Option<serde_json::Value>,
}

/// Cuts untrusted text to a bounded length for storage.
pub(crate) fn bounded(text: &str) -> String {
    if text.chars().count() <= MAX_STORED_TEXT {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(MAX_STORED_TEXT).collect();
        cut.push('…');
        cut
    }
}

/// Writes one row with the caller's connection (inside the caller's transaction, if any).
pub(crate) fn write(conn: &Connection, e: &Entry<'_>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, user_id, device_id, kind, case_id, doc_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        e.at,
        e.user_id,
        e.device_id,
        e.kind,
        e.case_id,
        e.doc_id,
        e.detail.as_ref().map(|d| d.to_string())
    ])?;
    Ok(())
}

/// The reason given for a reveal, trimmed; refuses an empty or overlong one.
pub fn check_reason(reason: &str) -> Result<&str> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(StoreError::Invalid("a reveal needs a reason".into()));
    }
    if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "the reason must be at most {MAX_REASON_CHARS} characters, without control characters"
        )));
    }
    Ok(reason)
}

/// The admin name given as `by`, trimmed; refuses an empty, overlong or odd one.
pub fn check_by(by: &str) -> Result<&str> {
    let by = by.trim();
    if by.is_empty() || by.chars().count() > MAX_BY_CHARS || by.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "`by` must name the admin in 1 to {MAX_BY_CHARS} characters"
        )));
    }
    Ok(by)
}

impl Store {
    /// The audit rows matching `query`, newest first.
    pub fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        let limit = match query.limit {
            0 => DEFAULT_AUDIT_LIMIT,
            n => n.min(MAX_AUDIT_LIMIT),
        };
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, at, user_id, device_id, kind, case_id, doc_id, detail FROM audit
             WHERE (?1 IS NULL OR case_id = ?1) AND (?2 IS NULL OR user_id = ?2)
               AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4)
             ORDER BY at DESC, id DESC LIMIT ?5",
        )?;
        let rows = stmt
            .query_map(
                params![query.case_id, query.user_id, query.from, query.to, limit],
                |r| {
                    Ok(AuditRow {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        user_id: r.get(2)?,
                        device_id: r.get(3)?,
                        kind: r.get(4)?,
                        case_id: r.get(5)?,
                        doc_id: r.get(6)?,
                        detail: r.get(7)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Audit rows of one kind (for tests and the CLI's summary).
    pub fn audit_count(&self, kind: &str) -> Result<u64> {
        Ok(self
            .conn()
            .query_row("SELECT count(*) FROM audit WHERE kind = ?1", [kind], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// The complainant of a case, unmasked, for an admin `by` giving `reason`. The `reveal`
    /// audit row is written in the same transaction as the read: no row, no answer. `Ok(None)`
    /// when the case has no personal-data document (still recorded: the attempt is what counts).
    /// [`StoreError::NotFound`] for an unknown case (nothing recorded).
    pub fn reveal(
        &self,
        case_id: &str,
        by: &str,
        reason: &str,
        now: Millis,
    ) -> Result<Option<Complainant>> {
        let reason = check_reason(reason)?;
        let by = check_by(by)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let known = tx
            .query_row("SELECT 1 FROM cases WHERE case_id = ?1", [case_id], |_| {
                Ok(())
            })
            .optional()?
            .is_some();
        if !known {
            return Err(StoreError::NotFound(format!("case {case_id}")));
        }
        let pii = personal_doc_id(case_id);
        let complainant = load_doc(&tx, &pii)?.map(|doc| PersonalDoc::from_automerge(doc).read());
        write(
            &tx,
            &Entry {
                at: now,
                user_id: Some(by),
                kind: REVEAL,
                case_id: Some(case_id),
                doc_id: Some(&pii),
                detail: Some(json!({"reason": reason, "found": complainant.is_some()})),
                ..Default::default()
            },
        )?;
        tx.commit()?;
        Ok(complainant)
    }
}
