//! The audit log: who changed, revealed, was refused, revoked or enrolled what, and when (server
//! time). Rows are written in the same transaction as what they record, so an accepted change
//! never lacks its row; a reveal is answered only once its row is committed.
//!
//! `user_id` is the user who acted (a change's author, the admin account of a reveal, an audit
//! draw or result, or an account change) or, for enrolments and revocations, the user they
//! concern; `detail` is a small JSON object; `area` places a row that concerns no case or user
//! (an admin account's, a draw's) in a jurisdiction. This module builds the rows; the backends
//! store them.

use automerge::ChangeHash;
use gridcase_core::area::Jurisdiction;
use gridcase_core::doc::{PersonalDoc, personal_doc_id, split_doc_id};
use gridcase_core::model::{Author, Complainant, Millis, Role};
use gridcase_core::sync::{DeviceClock, Rejection, trusted_time};
use serde_json::json;

use crate::db::{self, AuditEntry};
pub use crate::db::{AuditQuery, AuditRow};
use crate::documents::Writer;
use crate::store::{Result, Store, StoreError, to_hex};

/// The kinds of audit rows.
pub const CHANGE: &str = "change";
pub const REVEAL: &str = "reveal";
pub const REJECT: &str = "reject";
pub const REVOKE: &str = "revoke";
pub const ENROL: &str = "enrol";
/// An admin account added, disabled or reset.
pub const ADMIN: &str = "admin";
/// A monthly random audit drawn (see `crate::audit_draw`).
pub const AUDIT_DRAW: &str = "audit_draw";
/// A drawn case's re-verification recorded.
pub const AUDIT_VERIFY: &str = "audit_verify";
/// Every kind, in the order the console offers them as a filter.
pub const KINDS: [&str; 8] = [
    CHANGE,
    REVEAL,
    REJECT,
    REVOKE,
    ENROL,
    ADMIN,
    AUDIT_DRAW,
    AUDIT_VERIFY,
];

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

/// Cuts untrusted text to a bounded length for storage, NUL replaced (no backend stores it).
pub(crate) fn bounded(text: &str) -> String {
    let mut cut: String = text
        .chars()
        .take(MAX_STORED_TEXT)
        .map(|c| {
            if c == '\0' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect();
    if text.chars().count() > MAX_STORED_TEXT {
        cut.push('…');
    }
    cut
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

fn entry(kind: &'static str, at: Millis) -> AuditEntry {
    AuditEntry {
        at,
        kind,
        ..Default::default()
    }
}

/// A user's enrolment (or change of role or jurisdiction).
pub(crate) fn enrolment(
    user: &str,
    role: Role,
    jurisdiction: &Jurisdiction,
    now: Millis,
) -> AuditEntry {
    AuditEntry {
        user_id: Some(user.to_owned()),
        detail: Some(
            json!({"role": role.as_str(), "jurisdiction": jurisdiction.as_prefix()}).to_string(),
        ),
        ..entry(ENROL, now)
    }
}

/// A device's enrolment.
pub(crate) fn device_enrolment(user: &str, device: &str, now: Millis) -> AuditEntry {
    AuditEntry {
        user_id: Some(user.to_owned()),
        device_id: Some(device.to_owned()),
        detail: Some(json!({"device": device}).to_string()),
        ..entry(ENROL, now)
    }
}

/// A device's (with `device`) or a user's revocation.
pub(crate) fn revocation(
    user: &str,
    device: Option<&str>,
    by: Option<&str>,
    now: Millis,
) -> AuditEntry {
    let what = if device.is_some() { "device" } else { "user" };
    AuditEntry {
        user_id: Some(user.to_owned()),
        device_id: device.map(str::to_owned),
        detail: Some(json!({"by": by, "what": what}).to_string()),
        ..entry(REVOKE, now)
    }
}

/// The `change` row of a commit.
pub(crate) fn change(
    writer: Writer<'_>,
    doc_id: &str,
    hashes: &[ChangeHash],
    now: Millis,
) -> AuditEntry {
    let hashes: Vec<String> = hashes.iter().map(|h| to_hex(&h.0)).collect();
    AuditEntry {
        user_id: Some(writer.user.to_owned()),
        device_id: writer.device.map(str::to_owned),
        case_id: Some(split_doc_id(doc_id).0.to_owned()),
        doc_id: Some(doc_id.to_owned()),
        detail: Some(json!({"changes": hashes.len(), "hashes": hashes}).to_string()),
        ..entry(CHANGE, now)
    }
}

/// A refused push; the document id and message are cut short (they come from the device).
pub(crate) fn rejection(
    user: &str,
    device: &str,
    doc_id: &str,
    valid_id: bool,
    reason: &Rejection,
    changes: usize,
    now: Millis,
) -> AuditEntry {
    AuditEntry {
        user_id: Some(user.to_owned()),
        device_id: Some(device.to_owned()),
        case_id: valid_id.then(|| split_doc_id(doc_id).0.to_owned()),
        doc_id: Some(bounded(doc_id)),
        detail: Some(
            json!({
                "code": reason.code.as_str(),
                "message": bounded(&reason.message),
                "changes": changes,
            })
            .to_string(),
        ),
        ..entry(REJECT, now)
    }
}

/// A phone number revealed on a phone (offline or not), recorded with the change that carried
/// the reveal record.
pub(crate) fn reveal_on_phone(
    by: &Author,
    device_time: Millis,
    doc_id: &str,
    clock: DeviceClock,
    now: Millis,
) -> AuditEntry {
    AuditEntry {
        user_id: Some(by.user.clone()),
        device_id: Some(by.device.clone()),
        case_id: Some(split_doc_id(doc_id).0.to_owned()),
        doc_id: Some(doc_id.to_owned()),
        detail: Some(
            json!({
                "on": "phone",
                "device_time": device_time,
                "corrected_time": trusted_time(device_time, clock, now),
            })
            .to_string(),
        ),
        ..entry(REVEAL, now)
    }
}

impl Store {
    /// The audit rows matching `query`, newest first.
    pub fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        let limit = match query.limit {
            0 => DEFAULT_AUDIT_LIMIT,
            n => n.min(MAX_AUDIT_LIMIT),
        };
        let filters = [&query.case_id, &query.user_id];
        if filters
            .iter()
            .any(|f| f.as_deref().is_some_and(|f| !db::is_storable(f)))
        {
            return Ok(Vec::new());
        }
        Ok(self.db().audit_log(query, limit)?)
    }

    /// Audit rows of one kind (for tests and the CLI's summary).
    pub fn audit_count(&self, kind: &str) -> Result<u64> {
        Ok(self.db().audit_count(kind)?)
    }

    /// The complainant of a case, unmasked, for an admin `by` giving `reason`. The answer is
    /// returned only once its `reveal` audit row is committed: no row, no answer. `Ok(None)`
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
        if self.case_summary(case_id)?.is_none() {
            return Err(StoreError::NotFound(format!("case {case_id}")));
        }
        let pii = personal_doc_id(case_id);
        let complainant = self
            .load_doc(&pii)?
            .map(|doc| PersonalDoc::from_automerge(doc).read());
        self.db().write_audit(&AuditEntry {
            user_id: Some(by.to_owned()),
            case_id: Some(case_id.to_owned()),
            doc_id: Some(pii),
            detail: Some(json!({"reason": reason, "found": complainant.is_some()}).to_string()),
            ..entry(REVEAL, now)
        })?;
        Ok(complainant)
    }
}
