//! The phone side of the sync protocol. The decisions are pure: [`client`] (the state machine:
//! which request next, when to stop, what a failure means), [`request`] (what a request
//! carries) and [`apply`] (what a response page does to each document). This module is the
//! shell that runs them: short transactions on the sync's own connection, and the network in
//! between with nothing held.
//!
//! ```text
//!   start ─▶ BuildRequest ──(read txn)──▶ Exchange ──(no lock: network)──▶ Apply ──(write txn)─┐
//!                 ▲                                                                          │
//!                 └──────────────────── more restore pages, not cancelled ◀─────────────────┘
//!                                                                           otherwise Done
//! ```
//!
//! After a plain restore page the next request needs nothing from the store
//! ([`SyncClient::next_request`]), so it is exchanged while a second thread stores the page
//! (the server works while the phone writes); the sync goes on with its answer only once the
//! page is committed. A page's snapshots are loaded and its cases read on several threads
//! (`parallel`), its writes stay in one transaction on one thread.

pub mod apply;
pub mod client;
mod parallel;
pub mod request;
mod staging;
mod write;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::TryLockError;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::{CaseChanges, ChangeSource, Phone, PhoneError, RejectedDoc, Transport, TransportError};
use crate::doc::split_doc_id;
use crate::model::Millis;
use crate::store::cache::WideCache;
use crate::store::{Store, docs, meta};
use crate::sync::{DocId, SyncRequest, SyncResponse};
use client::{Step, SyncClient};
use request::{Outbox, Unsent};

/// What one applied response did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncOutcome {
    pub accepted: Vec<DocId>,
    pub rejected: Vec<RejectedDoc>,
    /// Documents that received changes (updates and catch-up answers).
    pub received: Vec<DocId>,
    pub evicted: Vec<DocId>,
    /// Evicted by the server but kept because they hold unpushed changes.
    pub kept_pending: Vec<DocId>,
    /// Stored, but the case could not be read (e.g. a newer schema): not in the lists.
    pub unreadable: Vec<DocId>,
    /// More restore pages follow.
    pub more: bool,
    pub remaining: u64,
    /// The server's deadline rules of this version arrived and every list row was recomputed.
    pub rules_version: Option<u64>,
    /// Bytes of a document too large for one page, received as a part and staged.
    pub part_bytes: u64,
}

impl SyncOutcome {
    /// The cases this page changed, for the change listeners.
    pub fn changes(&self) -> CaseChanges {
        let case = |doc_id: &DocId| split_doc_id(doc_id).0.to_string();
        if self.rules_version.is_some() {
            return CaseChanges::everything(ChangeSource::Sync);
        }
        let mut changes = CaseChanges::new(ChangeSource::Sync);
        changes.updated = self.received.iter().map(case).collect();
        changes.acknowledged = self.accepted.iter().map(case).collect();
        changes.rejected = self.rejected.iter().map(|r| case(&r.doc_id)).collect();
        for doc_id in &self.evicted {
            match split_doc_id(doc_id) {
                (case_id, false) => changes.removed.push(case_id.to_string()),
                (case_id, true) => changes.updated.push(case_id.to_string()),
            }
        }
        changes.normalized()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPhase {
    Sending,
    Applying,
    /// Attachment bytes go up after the cases ([`Phone::sync_with_attachments`]).
    Uploading,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProgress {
    pub phase: SyncPhase,
    pub cases_sent: u64,
    pub cases_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Documents still to come in later pages (as the server last said).
    pub remaining: u64,
    /// Bytes of documents too large for one page received in parts (uncompressed, staged
    /// durably: a part counted here is not fetched again).
    pub part_bytes: u64,
    /// Attachment bytes the server holds of those queued when the upload began (a resumed
    /// upload starts from what it held before).
    pub blob_bytes_sent: u64,
    /// Bytes of the attachments queued when the upload began.
    pub blob_bytes_total: u64,
}

/// The end of a [`Phone::sync`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSummary {
    pub pages: u32,
    pub cancelled: bool,
    pub progress: SyncProgress,
    pub rejected: Vec<RejectedDoc>,
    pub kept_pending: Vec<DocId>,
    pub unreadable: Vec<DocId>,
    /// What became of the queued attachments ([`Phone::sync_with_attachments`]; empty after
    /// [`Phone::sync`]).
    #[serde(default)]
    pub uploads: crate::phone::blobs::UploadSummary,
}

impl Phone {
    /// Runs a whole sync over `transport`: the first request carries the pushes and catch-ups,
    /// then restore pages follow while the server announces more, each committed before the
    /// answer to the next is used (the next may be asked for while it is stored; a dropped
    /// connection resumes after the last page committed). `cancel` is checked between
    /// pages. An `Unauthorized { wipe: true }` answer wipes the phone if its proof verifies. After
    /// a 429 (`RetryAfter`), syncs before the time it named fail at once with the seconds left,
    /// without touching the network. Other calls go on while
    /// it runs: nothing is locked while the transport waits. A second sync at the same time
    /// fails with [`PhoneError::SyncRunning`].
    pub fn sync(
        &self,
        transport: &mut dyn Transport,
        now: Millis,
        progress: &mut dyn FnMut(SyncProgress),
        cancel: &AtomicBool,
        page_size: u32,
    ) -> Result<SyncSummary, PhoneError> {
        self.check()?;
        let store = match self.sync.try_lock() {
            Ok(store) => store,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(PhoneError::SyncRunning),
        };
        let mut store = WideCache::new(store)?;
        if let Some(seconds) = client::retry_wait(*super::lock(&self.retry_not_before), now) {
            return Err(TransportError::RetryAfter {
                seconds,
                message: "the server asked this device to wait".into(),
            }
            .into());
        }
        let mut client = SyncClient::new(page_size)
            .verifying(self.revocation.clone())
            .with_page_bytes(self.page_bytes.load(Ordering::Relaxed));
        let mut step = client.start();
        loop {
            step = match step {
                Step::BuildRequest {
                    with_pushes,
                    page_size,
                } => {
                    let budget = client.page_bytes() as usize;
                    match self.build(&mut store, now, page_size, with_pushes, budget) {
                        Ok((request, pushes_left)) => {
                            client.pushes_remain(pushes_left);
                            client.request_built(request)
                        }
                        Err(e) => Step::Fail(e),
                    }
                }
                Step::Exchange(bytes) => {
                    progress(client.progress().clone());
                    self.exchange(&mut client, transport, bytes, cancel)
                }
                Step::Apply(response) => {
                    progress(client.progress().clone());
                    self.store_page(&mut store, &mut client, transport, *response, cancel, now)?
                }
                Step::Wipe(e) => {
                    self.wipe_with(&mut store)?;
                    return Err(e);
                }
                Step::Fail(e) => {
                    *super::lock(&self.retry_not_before) = client::retry_not_before(&e, now);
                    self.record_error(&mut store, &e.to_string());
                    return Err(e);
                }
                Step::Done(summary) => {
                    progress(summary.progress.clone());
                    return Ok(summary);
                }
            }
        }
    }

    /// Sends `bytes` and takes the answer (asking again smaller after a cut, unless the app
    /// cancelled); the budget the link allowed is kept for the next sync.
    fn exchange(
        &self,
        client: &mut SyncClient,
        transport: &mut dyn Transport,
        bytes: Vec<u8>,
        cancel: &AtomicBool,
    ) -> Step {
        let answer = transport.exchange(bytes);
        if cancel.load(Ordering::SeqCst) {
            client.stop_retrying();
        }
        let step = client.exchanged(answer);
        self.page_bytes
            .store(client.page_bytes(), Ordering::Relaxed);
        step
    }

    /// Stores a received page: while the next page is asked for, when this one allows it
    /// ([`SyncClient::next_request`]), or else before anything more is asked.
    fn store_page(
        &self,
        store: &mut Store,
        client: &mut SyncClient,
        transport: &mut dyn Transport,
        response: SyncResponse,
        cancel: &AtomicBool,
        now: Millis,
    ) -> Result<Step, PhoneError> {
        let cancelled = cancel.load(Ordering::SeqCst);
        let Some(next) = client.next_request(&response, cancelled, now) else {
            let outcome = self.apply_page(store, response, client.sent(), now)?;
            return Ok(client.applied(outcome, cancel.load(Ordering::SeqCst)));
        };
        let (bytes, answered) = client.prefetch(next);
        let (outcome, answer) =
            self.apply_while_exchanging(store, transport, response, &answered, now, bytes);
        let step = client.applied_then(outcome?, cancel.load(Ordering::SeqCst), answer);
        self.page_bytes
            .store(client.page_bytes(), Ordering::Relaxed);
        Ok(step)
    }

    /// The request for the next exchange: the stored cursor and restore token, every change
    /// the server has not acknowledged (documents it refused are left out), and a catch-up
    /// message for each document marked for re-fetch.
    pub fn build_request(&self, now: Millis, page_size: u32) -> Result<SyncRequest, PhoneError> {
        let all = usize::MAX;
        let (request, _) = self.build(&mut super::lock(&self.sync), now, page_size, true, all)?;
        Ok(request)
    }

    /// Stores everything of `response` (the answer to `sent`) in one transaction: identity,
    /// acknowledgements and rejections, received documents, catch-up answers, evictions, list
    /// rows, cursor and restore token. On error nothing is stored and the error is recorded as
    /// the last sync error.
    pub fn apply_response(
        &self,
        response: &SyncResponse,
        sent: &SyncRequest,
        now: Millis,
    ) -> Result<SyncOutcome, PhoneError> {
        self.apply_page(&mut super::lock(&self.sync), response.clone(), sent, now)
    }

    /// Reads what the request carries in one read transaction, then plans it.
    fn build(
        &self,
        store: &mut Store,
        now: Millis,
        page_size: u32,
        with_pushes: bool,
        push_bytes: usize,
    ) -> Result<(SyncRequest, bool), PhoneError> {
        self.check()?;
        let actor = self.actor();
        let tx = store.read()?;
        let position = meta::sync_position(&tx)?;
        let staged = staging::staged(&tx)?;
        let outbox = if with_pushes {
            let mut outbox = Outbox::default();
            for doc_id in docs::pushable_docs(&tx)? {
                if let Some(loaded) = docs::load_doc(&tx, &doc_id, &actor)? {
                    outbox.unsent.push(Unsent {
                        doc_id,
                        doc: loaded.doc,
                        server_heads: loaded.state.server_heads,
                    });
                }
            }
            for doc_id in docs::refetch_docs(&tx)? {
                let held = docs::load_doc(&tx, &doc_id, &actor)?.map(|l| l.doc);
                outbox.catch_up.push((doc_id, held));
            }
            Some(outbox)
        } else {
            None
        };
        drop(tx);
        let (mut request, pushes_left) =
            request::plan_request(&position, now, page_size, push_bytes, outbox);
        request.staged = staged;
        Ok((request, pushes_left))
    }

    /// Stores `response` (the answer to `answered`) on a second thread while this one exchanges
    /// `bytes`, the request for the page after it: phone and server work at the same time.
    /// Storing is exactly [`Phone::apply_page`]; the transport stays on the calling thread.
    fn apply_while_exchanging(
        &self,
        store: &mut Store,
        transport: &mut dyn Transport,
        response: SyncResponse,
        answered: &SyncRequest,
        now: Millis,
        bytes: Vec<u8>,
    ) -> (
        Result<SyncOutcome, PhoneError>,
        Result<Vec<u8>, TransportError>,
    ) {
        std::thread::scope(|scope| {
            let storing = scope.spawn(|| self.apply_page(store, response, answered, now));
            let answer = transport.exchange(bytes);
            let outcome = storing
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (outcome, answer)
        })
    }

    /// Loads, plans and writes one page in one write transaction, then tells the listeners.
    fn apply_page(
        &self,
        store: &mut Store,
        mut response: SyncResponse,
        sent: &SyncRequest,
        now: Millis,
    ) -> Result<SyncOutcome, PhoneError> {
        self.check()?;
        // Automerge 0.12 can panic on changes that do not fit the document they are applied to
        // (found by the `response` fuzz target: `persist` asking a document built from forged
        // changes for its changes). Such a page fails like any unusable page: the transaction
        // rolls back as it unwinds and the app goes on, instead of crashing.
        let result = catch_unwind(AssertUnwindSafe(|| -> Result<SyncOutcome, PhoneError> {
            let tx = store.write()?;
            let part_bytes = match staging::take_part(&tx, &mut response)? {
                staging::Taken::Bytes(bytes) => bytes,
                staging::Taken::Corrupt(e) => {
                    tx.commit()?; // the discarded staging only: nothing else was written
                    return Err(e);
                }
            };
            // Read after the write lock is held: a rules change commits before or after us.
            let actor = self.actor();
            let newer_rules = write::take_newer_rules(&tx, response.rules.take())?;
            let rules = match &newer_rules {
                Some((_, rules)) => rules.clone(),
                None => self.rules(),
            };
            let (whole, state_only) = apply::needed(&response);
            let held = write::load_held(&tx, whole, state_only, &actor)?;
            let plan = apply::plan_page(response, sent, held, &actor)?;
            let mut outcome = write::write_plan(&tx, plan, &rules, &actor, now)?;
            outcome.part_bytes = part_bytes;
            if let Some((version, _)) = &newer_rules {
                super::reproject_rows(&tx, &actor, &rules, now)?;
                outcome.rules_version = Some(*version);
            }
            tx.commit()?;
            if let Some((_, rules)) = newer_rules {
                self.replace_rules(rules);
            }
            Ok(outcome)
        }))
        .unwrap_or_else(|_| {
            Err(PhoneError::BadData {
                doc_id: "a page".into(),
                message: "its documents do not load (Automerge could not apply them)".into(),
            })
        });
        match result {
            Ok(outcome) => {
                self.listeners.notify(outcome.changes());
                Ok(outcome)
            }
            Err(e) => {
                self.record_error(store, &e.to_string());
                Err(e)
            }
        }
    }
}
