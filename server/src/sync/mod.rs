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

use std::collections::HashSet;

use automerge::ChangeHash;
use gridcase_core::doc::split_doc_id;
use gridcase_core::model::Millis;
use gridcase_core::sync::{PushResult, SyncRequest, SyncResponse, clock_offset};

pub use check::{check_actors, check_doc_id, decode_push, pushed_heads};

use crate::db::SyncRecord;
use crate::store::{DeviceCtx, Result, Store};

/// Documents per response page when the phone does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 200;
/// The most documents per response page, whatever the phone asks for.
pub const MAX_PAGE_SIZE: u32 = 500;
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

impl Store {
    /// Handles one sync request from an authenticated device at server time `now`.
    pub fn sync(
        &self,
        device: &DeviceCtx,
        request: &SyncRequest,
        now: Millis,
    ) -> Result<SyncResponse> {
        let offset = clock_offset(request.device_time, now);
        let scope = device.scope();
        let mut record = SyncRecord {
            device_id: device.device_id.clone(),
            clock_offset: offset,
            last_seen: now,
            served_scope: device.scope_key(),
            ..Default::default()
        };

        // Case documents first, so a case and its personal data pushed together find the case.
        let mut order: Vec<usize> = (0..request.pushes.len()).collect();
        order.sort_by_key(|&i| split_doc_id(&request.pushes[i].doc_id).1);
        let mut results: Vec<Option<PushResult>> = vec![None; request.pushes.len()];
        let mut accepted: Vec<(String, Vec<ChangeHash>)> = Vec::new();
        for i in order {
            let push = &request.pushes[i];
            let pushed = self.push_doc(device, push, offset, now)?;
            if let Some(heads) = pushed.sent_heads {
                accepted.push((push.doc_id.clone(), heads));
            }
            record.holds_added.extend(pushed.holds);
            results[i] = Some(pushed.result);
        }

        let mut view = self.db().read()?;
        let served = view.served_scope(&device.device_id)?;
        let scope_changed = served.is_some_and(|s| s != record.served_scope);
        let mut responder = respond::Responder {
            view: &mut *view,
            device,
            scope: &scope,
            holds: Vec::new(),
        };
        let mut page = responder.page(request, scope_changed)?;
        responder.after_pushes(&accepted, &mut page.docs)?;
        let catch_up = responder.catch_up(&request.catch_up)?;
        let evict = responder.evictions()?;
        let holds = std::mem::take(&mut responder.holds);
        drop(view);

        record.holds_added.extend(holds);
        let mut seen = HashSet::new();
        record.holds_added.retain(|d| seen.insert(d.clone()));
        record.holds_removed = evict.clone();
        self.db().record_sync(&record)?;

        Ok(SyncResponse {
            server_time: now,
            identity: device.identity(),
            results: results.into_iter().flatten().collect(),
            docs: page.docs,
            catch_up,
            evict,
            cursor: page.cursor,
            restore: page.restore,
            remaining: page.remaining,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_capped() {
        assert_eq!(page_size(0), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(10), 10);
        assert_eq!(page_size(100_000), MAX_PAGE_SIZE);
    }
}
