//! The monthly random audit (issue 11.3; shared/domain.md, "Supervision, reporting, audit"):
//! each month, per jurisdiction, N closed cases (default 10) are drawn and re-verified.
//!
//! A draw is reproducible from what it records: the candidates (the cases closed in the month,
//! by trusted time, inside the area, in id order) and their SHA-256, a fresh random nonce, and
//! the seed `SHA-256("gridcase audit draw v1", month, area, n, candidates hash, nonce)`. The
//! pick is a partial Fisher–Yates shuffle whose i-th step takes `SHA-256(seed, i)`: no library
//! RNG whose stream could change with a version. The nonce makes the pick unknowable before the
//! draw (nobody can arrange which cases will be checked); recording it makes it checkable
//! after ([`replay`]).
//!
//! A month and area are drawn once: a second draw is refused unless it gives a reason, and is
//! then recorded as a redraw (its own sequence number, reason and audit row); the first draw
//! stays. A month is drawn only once it is over.

use gridcase_core::area::Jurisdiction;
use gridcase_core::model::Millis;
use rand::Rng;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::admins::{Action, AdminCtx};
use crate::audit;
use crate::db::{AuditEntry, DrawInsert, DrawRow, NewDraw, Verification, VerifyOutcome};
use crate::report::Period;
use crate::store::{Result, Store, StoreError, sha256_hex, to_hex};

/// Cases drawn unless asked otherwise (the seeds' "10 closed cases each month").
pub const DEFAULT_DRAW_SIZE: u32 = 10;
/// The most cases one draw may take.
pub const MAX_DRAW_SIZE: u32 = 1000;
/// Longest re-verification note (characters).
pub const MAX_NOTE_CHARS: usize = 1000;

/// The SHA-256 (hex) of the candidate ids, one per line in id order.
pub fn candidates_hash(candidates: &[String]) -> String {
    sha256_hex(candidates.join("\n").as_bytes())
}

/// The seed of a draw, from its recorded inputs.
pub fn seed(month: &str, area: &str, n: u32, candidates_hash: &str, nonce: &str) -> String {
    let text = format!("gridcase audit draw v1\n{month}\n{area}\n{n}\n{candidates_hash}\n{nonce}");
    sha256_hex(text.as_bytes())
}

/// `n` of `candidates` (all of them if fewer), picked by `seed` (a partial Fisher–Yates
/// shuffle; step i draws `SHA-256(seed ‖ i)` modulo what is left: with 64 bits against at most
/// millions of candidates the modulo bias is below 10⁻¹²).
pub fn pick(seed: &str, candidates: &[String], n: u32) -> Vec<String> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    let take = (n as usize).min(candidates.len());
    for i in 0..take {
        let mut hasher = Sha256::new();
        hasher.update(seed.as_bytes());
        hasher.update((i as u64).to_be_bytes());
        let digest = hasher.finalize();
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest[..8]);
        let left = (candidates.len() - i) as u64;
        let j = i + (u64::from_be_bytes(word) % left) as usize;
        order.swap(i, j);
    }
    order[..take]
        .iter()
        .map(|&i| candidates[i].clone())
        .collect()
}

/// Whether a recorded draw follows from its recorded inputs: the candidates match their hash,
/// the seed its inputs, and the drawn cases the pick.
pub fn replay(draw: &DrawRow) -> bool {
    let hash = candidates_hash(&draw.candidates);
    let seed = seed(&draw.month, &draw.area, draw.n, &hash, &draw.nonce);
    let drawn: Vec<String> = draw.cases.iter().map(|c| c.case_id.clone()).collect();
    hash == draw.candidates_hash
        && seed == draw.seed
        && pick(&seed, &draw.candidates, draw.n) == drawn
}

/// The month `2026-11` as a period; other forms are refused.
fn month_period(month: &str) -> Result<Period> {
    let bad = || StoreError::Invalid(format!("month {:?}: use 2026-11", audit::bounded(month)));
    if month.len() != 7 {
        return Err(bad());
    }
    Period::parse(month).map_err(|_| bad())
}

/// A draw's request.
#[derive(Debug, Clone)]
pub struct DrawRequest<'a> {
    pub month: &'a str,
    pub area: &'a Jurisdiction,
    pub n: u32,
    /// Required for a redraw.
    pub reason: Option<&'a str>,
}

fn draw_entry(admin: &AdminCtx, draw: &NewDraw, id: i64) -> AuditEntry {
    AuditEntry {
        at: draw.at,
        kind: audit::AUDIT_DRAW,
        user_id: Some(admin.name.clone()),
        area: Some(draw.area.clone()),
        detail: Some(
            json!({
                "draw": id, "month": draw.month, "n": draw.n, "nonce": draw.nonce,
                "seed": draw.seed, "candidates": draw.candidates.len(),
                "candidates_hash": draw.candidates_hash, "drawn": draw.drawn,
                "redraw_reason": draw.reason,
            })
            .to_string(),
        ),
        ..Default::default()
    }
}

impl Store {
    /// Draws the month's audit for `admin` (see the module doc). Refused: outside the admin's
    /// role or jurisdiction, a month not over at `now`, no closed case, or a second draw
    /// without a reason ([`StoreError::Conflict`]).
    pub fn draw_audit(
        &self,
        admin: &AdminCtx,
        req: &DrawRequest<'_>,
        rng: &mut impl Rng,
        now: Millis,
    ) -> Result<DrawRow> {
        admin.require(Action::Draw)?;
        admin.require_covers(req.area.as_prefix())?;
        if !(1..=MAX_DRAW_SIZE).contains(&req.n) {
            return Err(StoreError::Invalid(format!(
                "n must be from 1 to {MAX_DRAW_SIZE}"
            )));
        }
        let reason = req.reason.map(audit::check_reason).transpose()?;
        let period = month_period(req.month)?;
        if period.to > now {
            return Err(StoreError::Invalid(format!(
                "{} is not over yet: draw it once it has ended",
                req.month
            )));
        }
        let area = req.area.as_prefix().to_owned();
        let candidates = self.db().closed_case_ids(&area, period.from, period.to)?;
        if candidates.is_empty() {
            return Err(StoreError::Invalid(format!(
                "no case closed in {} inside `{}`",
                req.month,
                req.area.as_given()
            )));
        }
        let nonce = to_hex(&rng.random::<[u8; 16]>());
        let hash = candidates_hash(&candidates);
        let seed = seed(req.month, &area, req.n, &hash, &nonce);
        let draw = NewDraw {
            month: req.month.to_owned(),
            drawn: pick(&seed, &candidates, req.n),
            area,
            n: req.n,
            nonce,
            seed,
            candidates_hash: hash,
            candidates,
            reason: reason.map(str::to_owned),
            by: admin.name.clone(),
            at: now,
        };
        match self
            .db()
            .insert_draw(&draw, &|id| draw_entry(admin, &draw, id))?
        {
            DrawInsert::Inserted { id, .. } => self.audit_draw_row(id),
            DrawInsert::Exists { id } => Err(StoreError::Conflict(format!(
                "{} inside `{}` was drawn already (draw {id}); a redraw needs a reason",
                req.month,
                req.area.as_given()
            ))),
        }
    }

    fn audit_draw_row(&self, id: i64) -> Result<DrawRow> {
        self.db()
            .draw(id)?
            .ok_or_else(|| StoreError::NotFound(format!("audit draw {id}")))
    }

    /// A draw with its cases' results, for an admin whose jurisdiction covers its area.
    pub fn audit_draw(&self, admin: &AdminCtx, id: i64) -> Result<DrawRow> {
        admin.require(Action::View)?;
        let draw = self.audit_draw_row(id)?;
        admin.require_covers(&draw.area)?;
        Ok(draw)
    }

    /// Records a drawn case's re-verification (`confirmed` or `failed`, with a note). A result
    /// is recorded once ([`StoreError::Conflict`] after).
    pub fn verify_drawn_case(
        &self,
        admin: &AdminCtx,
        draw_id: i64,
        case_id: &str,
        result: &str,
        note: &str,
        now: Millis,
    ) -> Result<()> {
        admin.require(Action::Verify)?;
        let result = match result {
            "confirmed" => "confirmed",
            "failed" => "failed",
            _ => {
                return Err(StoreError::Invalid(
                    "result must be `confirmed` or `failed`".into(),
                ));
            }
        };
        let note = note.trim();
        if note.chars().count() > MAX_NOTE_CHARS || note.chars().any(char::is_control) {
            return Err(StoreError::Invalid(format!(
                "the note must be at most {MAX_NOTE_CHARS} characters, without control characters"
            )));
        }
        let draw = self.audit_draw_row(draw_id)?;
        admin.require_covers(&draw.area)?;
        let verification = Verification {
            draw_id,
            case_id: case_id.to_owned(),
            result,
            note: note.to_owned(),
            by: admin.name.clone(),
            at: now,
        };
        let entry = AuditEntry {
            at: now,
            kind: audit::AUDIT_VERIFY,
            user_id: Some(admin.name.clone()),
            case_id: Some(case_id.to_owned()),
            area: Some(draw.area.clone()),
            detail: Some(json!({"draw": draw_id, "result": result, "note": note}).to_string()),
            ..Default::default()
        };
        if !crate::db::is_storable(case_id) {
            return Err(StoreError::NotFound(format!("case in draw {draw_id}")));
        }
        match self.db().record_verification(&verification, &entry)? {
            VerifyOutcome::Recorded => Ok(()),
            VerifyOutcome::NotDrawn => Err(StoreError::NotFound(format!(
                "case {} in draw {draw_id}",
                audit::bounded(case_id)
            ))),
            VerifyOutcome::AlreadyRecorded => Err(StoreError::Conflict(format!(
                "the result of case {} in draw {draw_id} is recorded already",
                audit::bounded(case_id)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("case-{i:04}")).collect()
    }

    #[test]
    fn the_pick_is_a_function_of_the_seed() {
        let c = ids(200);
        let a = pick(&"ab".repeat(32), &c, 10);
        assert_eq!(a, pick(&"ab".repeat(32), &c, 10));
        assert_eq!(a.len(), 10);
        let mut unique = a.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10, "no case twice");
        assert_ne!(a, pick(&"cd".repeat(32), &c, 10));
        assert_eq!(pick("s", &ids(3), 10).len(), 3, "fewer candidates: all");
        assert!(pick("s", &[], 10).is_empty());
    }

    /// Pinned: a change to the seed or the pick (which would make old draws unreplayable)
    /// fails here.
    #[test]
    fn golden_draw() {
        let c = ids(50);
        let hash = candidates_hash(&c);
        let s = seed(
            "2026-11",
            "330604",
            3,
            &hash,
            "00112233445566778899aabbccddeeff",
        );
        let drawn = pick(&s, &c, 3);
        assert_eq!(
            s,
            "1b59f15104beab6fb18ab31574dc54bc705b17b6bf2a646fcdc8e9e293f29fc7"
        );
        assert_eq!(drawn, ["case-0021", "case-0004", "case-0035"]);
    }

    #[test]
    fn every_candidate_can_be_drawn() {
        let c = ids(5);
        let mut seen = std::collections::HashSet::new();
        for k in 0..200 {
            seen.extend(pick(&format!("seed{k}"), &c, 1));
        }
        assert_eq!(seen.len(), 5);
    }
}
