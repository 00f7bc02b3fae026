//! The server side of the sync protocol (`gridcase_core::sync`).
//!
//! A sync runs in three phases, none holding a lock beyond its own: each pushed document is
//! decoded, checked and committed on its own ([`push`]); the response is built over one
//! read-only snapshot ([`respond`]); then what the sync changed about the device (clock offset,
//! the scope it was served, the documents it now holds or must evict) is written in one short
//! transaction. Devices syncing at the same time share nothing but the database.

pub mod check;
mod push;
mod respond;

use std::collections::{HashMap, HashSet};

use automerge::ChangeHash;
use gridcase_core::doc::split_doc_id;
use gridcase_core::model::Millis;
use gridcase_core::sync::{
    DeviceClock, PushResult, SyncRequest, SyncResponse, causal_floor, clock_offset,
};

pub use check::{check_actors, check_doc_id, decode_push, pushed_heads};

use crate::db::{DeviceState, Seq, SyncRecord};
use crate::store::{DeviceCtx, Result, Store};

/// Documents per response page when the phone does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 200;
/// The most documents per response page, whatever the phone asks for.
pub const MAX_PAGE_SIZE: u32 = 500;
/// Bytes of documents per page when the phone does not say (uncompressed).
pub const DEFAULT_PAGE_BYTES: u32 = 4 * 1024 * 1024;
/// The smallest byte budget honoured: below it a page would hold no useful document.
pub const MIN_PAGE_BYTES: u32 = 1024;
/// The most change rows one incremental page walks.
pub const FEED_ROW_CAP: usize = 5_000;
/// The most changes accepted in one document push.
pub const MAX_CHANGES_PER_PUSH: usize = 10_000;
/// Longest case id accepted, in characters (a document id may add `#pii`).
pub const MAX_DOC_ID_LEN: usize = 128;
/// The most document pushes in one request. A phone sends every document with unacknowledged
/// changes in one request; back from weeks offline that is hundreds, not thousands. Beyond it
/// the whole request is refused (413 `too_many_pushes`) before anything is stored, so the phone
/// keeps its changes rather than having them marked rejected.
pub const MAX_PUSHES_PER_REQUEST: usize = 5_000;
/// The most catch-up messages in one request (each costs a document load).
pub const MAX_CATCH_UPS_PER_REQUEST: usize = 5_000;
/// The most Automerge operations the changes of one request may hold, counted by
/// `limits::scan_change` (linear in the bytes, allocating nothing) before any is decoded. What
/// decoding and applying a request costs grows with its operations, and RLE lets a few bytes
/// announce 100,000 of them; this is the request's time and memory budget. An honest case is
/// a few hundred operations; 2,000 new cases fit.
pub const MAX_OPS_PER_REQUEST: u64 = 2_000_000;

/// Refuses a request with more pushes, catch-ups or operations than the server handles at
/// once: the error code and a sentence. Otherwise the request's operations.
pub fn check_request_size(request: &SyncRequest) -> Result<u64, (&'static str, String)> {
    if request.pushes.len() > MAX_PUSHES_PER_REQUEST {
        return Err((
            "too_many_pushes",
            format!(
                "{} document pushes in one request; at most {MAX_PUSHES_PER_REQUEST}",
                request.pushes.len()
            ),
        ));
    }
    if request.catch_up.len() > MAX_CATCH_UPS_PER_REQUEST {
        return Err((
            "too_many_catch_ups",
            format!(
                "{} catch-up messages in one request; at most {MAX_CATCH_UPS_PER_REQUEST}",
                request.catch_up.len()
            ),
        ));
    }
    let ops: u64 = request
        .pushes
        .iter()
        .flat_map(|p| &p.changes)
        .filter_map(|c| gridcase_core::sync::limits::scan_change(c).ok())
        .map(|shape| shape.ops)
        .sum();
    if ops > MAX_OPS_PER_REQUEST {
        return Err((
            "too_many_ops",
            format!("{ops} operations in one request; at most {MAX_OPS_PER_REQUEST}"),
        ));
    }
    Ok(ops)
}

/// The page size the server uses for a request.
pub fn page_size(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// The byte budget the server uses for a request's page (documents, uncompressed). A page holds
/// at least one document whatever the budget.
pub fn page_bytes(requested: u32) -> usize {
    match requested {
        0 => DEFAULT_PAGE_BYTES,
        n => n.clamp(MIN_PAGE_BYTES, DEFAULT_PAGE_BYTES),
    }
    .try_into()
    .unwrap_or(usize::MAX)
}

/// What the pushes of one request came to.
struct Pushes {
    /// One result per push, in request order.
    results: Vec<PushResult>,
    /// Accepted documents with the heads of what the device sent.
    accepted: Vec<(String, Vec<ChangeHash>)>,
    /// Documents the device holds as of its pushes.
    holds: Vec<String>,
}

impl Store {
    /// Handles one sync request from an authenticated device at server time `now`.
    ///
    /// A sync that pushes nothing reads one snapshot and, unless something about the device
    /// changed, writes nothing: its cost follows what changed since its cursor.
    pub fn sync(
        &self,
        device: &DeviceCtx,
        request: &SyncRequest,
        now: Millis,
    ) -> Result<SyncResponse> {
        let offset = clock_offset(request.device_time, now);
        let pushes = self.push_all(device, request, offset, now)?;
        let mut record = SyncRecord {
            device_id: device.device_id.clone(),
            clock_offset: offset,
            last_seen: now,
            served_scope: device.scope_key(),
            holds_added: pushes.holds,
            ..Default::default()
        };
        let accepted = pushes.accepted;
        let scope = device.scope();

        let mut view = self.db().read()?;
        let (stored, head) = view.device_and_head(&device.device_id)?;
        let served = stored.as_ref().and_then(|s| s.served_scope.as_deref());
        let scope_changed = served.is_some_and(|s| s != record.served_scope);
        let changed_after = eviction_horizon(request, scope_changed, head);
        let mut responder = respond::Responder {
            view: &mut *view,
            device,
            scope: &scope,
            holds: Vec::new(),
            accept_parts: request.accept_parts,
            staged: request.staged.clone(),
            part: None,
            wholes: HashMap::new(),
            compact: request.compact_snapshots,
            compact_times: request.compact_times,
            restore_remaining: match (&request.restore, scope_changed) {
                (Some(_), false) => request.restore_remaining,
                _ => 0,
            },
        };
        let mut page = responder.page(request, scope_changed, head)?;
        responder.after_pushes(&accepted, &mut page.docs)?;
        let catch_up = responder.catch_up(&request.catch_up)?;
        let times = responder.times(&accepted, &page.docs, &catch_up)?;
        let evict = responder.evictions(changed_after)?;
        let holds = std::mem::take(&mut responder.holds);
        let part = responder.part.take();
        drop(view);

        record.holds_added.extend(holds);
        let mut seen = HashSet::new();
        record.holds_added.retain(|d| seen.insert(d.clone()));
        record.holds_removed = evict.clone();
        if needs_record(&record, stored.as_ref()) {
            self.db().record_sync(&record)?;
        }

        Ok(SyncResponse {
            server_time: now,
            identity: device.identity(),
            results: pushes.results,
            docs: page.docs,
            catch_up,
            evict,
            cursor: page.cursor,
            restore: page.restore,
            remaining: page.remaining,
            times: times.listed,
            rules: self.rules_for(request.rules_version),
            part,
            compact_times: times.block,
        })
    }

    /// Judges and commits the request's pushes, case documents first (so a case and its
    /// personal data pushed together find the case). The device's clock is read only when
    /// there is something to push: only pushed events get times floored by it.
    fn push_all(
        &self,
        device: &DeviceCtx,
        request: &SyncRequest,
        offset: Millis,
        now: Millis,
    ) -> Result<Pushes> {
        let mut pushes = Pushes {
            results: Vec::new(),
            accepted: Vec::new(),
            holds: Vec::new(),
        };
        if request.pushes.is_empty() {
            return Ok(pushes);
        }
        let clock = self.device_clock(&device.device_id, offset, now)?;
        let mut order: Vec<usize> = (0..request.pushes.len()).collect();
        order.sort_by_key(|&i| split_doc_id(&request.pushes[i].doc_id).1);
        let mut results: Vec<Option<PushResult>> = vec![None; request.pushes.len()];
        for i in order {
            let push = &request.pushes[i];
            let pushed = self.push_doc(device, push, clock, now)?;
            if let Some(heads) = pushed.sent_heads {
                pushes.accepted.push((push.doc_id.clone(), heads));
            }
            pushes.holds.extend(pushed.holds);
            results[i] = Some(pushed.result);
        }
        pushes.results = results.into_iter().flatten().collect();
        Ok(pushes)
    }

    /// The device's clock as this request shows it: the measured offset and the causal floor
    /// of what it pushes now (its enrolment, or its previous sync).
    fn device_clock(&self, device: &str, offset: Millis, now: Millis) -> Result<DeviceClock> {
        let stored = self.db().read()?.device_state(device)?;
        let floor = stored.map_or(now, |s| causal_floor(s.created_at, s.last_seen));
        Ok(DeviceClock { offset, floor })
    }
}

/// How stale the stored `last_seen` may get before a sync writes it: a sync that changed
/// nothing else then writes nothing (no write transaction, no fsync).
pub const LAST_SEEN_GRANULARITY: Millis = 60_000;
/// A change of the device's clock offset smaller than this is not worth a write.
pub const OFFSET_TOLERANCE: Millis = 1_000;

/// Whether a sync must write the device's row and holdings: something changed about what it
/// holds or was served, its clock moved, or `last_seen` is older than the granularity.
pub fn needs_record(record: &SyncRecord, stored: Option<&DeviceState>) -> bool {
    let Some(stored) = stored else {
        return true;
    };
    let drifted = |old: Option<Millis>, new: Millis, tolerance: Millis| {
        old.is_none_or(|old| (new - old).abs() >= tolerance)
    };
    !record.holds_added.is_empty()
        || !record.holds_removed.is_empty()
        || stored.served_scope.as_deref() != Some(record.served_scope.as_str())
        || drifted(stored.clock_offset, record.clock_offset, OFFSET_TOLERANCE)
        || drifted(stored.last_seen, record.last_seen, LAST_SEEN_GRANULARITY)
}

/// Since when held documents can have left the device's scope: everything (0) on a first
/// sync or a changed scope; in a restore under way, cases committed after the feed position
/// it started from (its first page looked at everything as of then, so only a later commit can
/// have moved a held case out: rescanning every holding on every page made a restore cost the
/// square of its size); otherwise cases committed after the cursor the device holds everything
/// up to. A bogus position is clamped to the feed head.
pub fn eviction_horizon(request: &SyncRequest, scope_changed: bool, feed_head: Seq) -> Seq {
    if scope_changed {
        return 0;
    }
    let since = match &request.restore {
        Some(token) => token.upto,
        None => request.cursor,
    };
    i64::try_from(since)
        .unwrap_or(Seq::MAX)
        .min(feed_head)
        .max(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridcase_core::sync::RestoreToken;

    #[test]
    fn a_nothing_new_sync_writes_nothing() {
        let record = SyncRecord {
            device_id: "d".into(),
            clock_offset: 500,
            last_seen: 100_000,
            served_scope: "s".into(),
            ..Default::default()
        };
        let stored = DeviceState {
            served_scope: Some("s".into()),
            clock_offset: Some(0),
            last_seen: Some(100_000 - LAST_SEEN_GRANULARITY + 1),
            created_at: 0,
        };
        assert!(!needs_record(&record, Some(&stored)));
        assert!(needs_record(&record, None));
        let changed = |f: &dyn Fn(&mut SyncRecord)| {
            let mut r = record.clone();
            f(&mut r);
            needs_record(&r, Some(&stored))
        };
        assert!(changed(&|r| r.holds_added.push("x".into())));
        assert!(changed(&|r| r.holds_removed.push("x".into())));
        assert!(changed(&|r| r.served_scope = "t".into()));
        assert!(changed(&|r| r.clock_offset = -OFFSET_TOLERANCE));
        assert!(changed(&|r| r.last_seen += 1));
        let never = DeviceState {
            served_scope: Some("s".into()),
            ..Default::default()
        };
        assert!(needs_record(&record, Some(&never)));
    }

    #[test]
    fn evictions_look_back_to_the_cursor_only_when_nothing_else_changed() {
        let mut request = SyncRequest {
            cursor: 40,
            ..Default::default()
        };
        assert_eq!(eviction_horizon(&request, false, 100), 40);
        assert_eq!(eviction_horizon(&request, true, 100), 0);
        request.cursor = u64::MAX;
        assert_eq!(eviction_horizon(&request, false, 100), 100);
        request.cursor = 0;
        assert_eq!(eviction_horizon(&request, false, 100), 0);
    }

    #[test]
    fn a_restore_under_way_looks_back_to_where_it_started() {
        let request = SyncRequest {
            cursor: 0,
            restore: Some(RestoreToken {
                upto: 60,
                after: "case-1".into(),
            }),
            ..Default::default()
        };
        assert_eq!(eviction_horizon(&request, false, 100), 60);
        assert_eq!(eviction_horizon(&request, true, 100), 0, "a changed scope");
        assert_eq!(
            eviction_horizon(&request, false, 50),
            50,
            "clamped to the head"
        );
    }

    #[test]
    fn page_sizes_are_capped() {
        assert_eq!(page_size(0), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(10), 10);
        assert_eq!(page_size(100_000), MAX_PAGE_SIZE);
        assert_eq!(page_bytes(0), DEFAULT_PAGE_BYTES as usize);
        assert_eq!(page_bytes(1), MIN_PAGE_BYTES as usize);
        assert_eq!(page_bytes(10_000), 10_000);
        assert_eq!(page_bytes(u32::MAX), DEFAULT_PAGE_BYTES as usize);
    }
}
