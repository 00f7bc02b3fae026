//! What one response page does to the store, decided in memory (no I/O): the shell loads the
//! documents the page names ([`needed`]) inside its write transaction, [`plan_page`] works out
//! every document's new state, and the shell writes the [`PagePlan`] in the same transaction.
//!
//! Each document is loaded once and written once, however many parts of the page name it (an
//! acknowledgement and someone else's change to the same case arrive together).
//!
//! The acknowledgement rule lives here: the server's heads become the heads it names when the
//! phone holds them all, else the heads of what was pushed; never the document's current heads.
//! An edit made while the exchange was in flight is therefore still pending afterwards, and a
//! document received meanwhile is merged into what the store holds now.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use automerge::sync::{Message, State as SyncState, SyncDoc};
use automerge::{ActorId, AutoCommit, Change, ChangeHash};

use super::{SyncOutcome, parallel};
use crate::doc::split_doc_id;
use crate::model::{CaseId, Millis};
use crate::phone::error::bad;
use crate::phone::{PhoneError, RejectedDoc};
use crate::store::docs::holds_all;
use crate::store::meta::SyncPosition;
use crate::sync::times::block::PendingTimes;
use crate::sync::{
    CaseTimes, CatchUp, DocId, DocUpdate, Identity, Payload, PushResult, RejectCode, SyncRequest,
    SyncResponse, clock_offset, compact,
};
use compact::{ExpandError, Expanded};

/// A stored document as planning sees it.
#[derive(Debug)]
pub struct Held {
    /// `None` when only its bookkeeping was loaded (a document the page only evicts).
    pub doc: Option<AutoCommit>,
    /// The heads of what is stored.
    pub persisted: Vec<ChangeHash>,
    pub server_heads: Vec<ChangeHash>,
    pub pending: bool,
}

/// The stored documents a response names: whole documents for those it answers a push for,
/// updates or catches up on; bookkeeping only for those it just evicts.
pub fn needed(response: &SyncResponse) -> (BTreeSet<DocId>, BTreeSet<DocId>) {
    let mut whole: BTreeSet<DocId> = response
        .results
        .iter()
        .map(|r| match r {
            PushResult::Accepted { doc_id, .. } | PushResult::Rejected { doc_id, .. } => {
                doc_id.clone()
            }
        })
        .collect();
    whole.extend(response.docs.iter().map(|d| d.doc_id.clone()));
    whole.extend(response.catch_up.iter().map(|c| c.doc_id.clone()));
    let state_only = response
        .evict
        .iter()
        .filter(|id| !whole.contains(*id))
        .cloned()
        .collect();
    (whole, state_only)
}

/// How a document is written.
#[derive(Debug)]
pub enum DocWrite {
    Keep,
    /// Write what the document holds beyond `persisted` (`None`: not stored yet, write a
    /// snapshot) and record `server_heads`.
    Changes {
        persisted: Option<Vec<ChangeHash>>,
        server_heads: Vec<ChangeHash>,
    },
    /// A document new to this phone, whole from the server: stored as the bytes it came in
    /// (most of a restore's time would otherwise go to saving it again).
    Snapshot {
        bytes: Vec<u8>,
        heads: Vec<ChangeHash>,
    },
    Delete,
}

/// What the page does to one document.
#[derive(Debug)]
pub struct DocPlan {
    pub write: DocWrite,
    /// `Some(None)`: clear the rejection; `Some(Some((code, message)))`: record one.
    pub rejection: Option<Option<(String, String)>>,
    /// `Some(true)`: catch up on it next time; `Some(false)`: done catching up.
    pub refetch: Option<bool>,
    /// The document after the page, for its list row.
    pub doc: Option<AutoCommit>,
}

/// A list row to recompute after the documents are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowPlan {
    /// From the case document (in the plan, else in the store).
    Refresh(CaseId),
    Delete(CaseId),
    /// Only the "not yet sent" mark, after a change to the case's personal data.
    PendingMark(DocId),
}

/// Everything one page stores, in one transaction.
#[derive(Debug)]
pub struct PagePlan {
    pub docs: BTreeMap<DocId, DocPlan>,
    pub rows: Vec<RowPlan>,
    pub identity: Option<Identity>,
    pub position: SyncPosition,
    pub clock_offset: Millis,
    /// The trusted times the server vouched for, stored before the list rows are computed.
    pub times: Vec<CaseTimes>,
    /// The same from a protocol-5 block, placed against each case as its row is computed.
    pub pending_times: BTreeMap<CaseId, PendingTimes>,
    pub outcome: SyncOutcome,
}

/// A document while the page is worked through.
#[derive(Debug, Default)]
struct Working {
    doc: Option<AutoCommit>,
    /// `None`: not in the store.
    persisted: Option<Vec<ChangeHash>>,
    server_heads: Vec<ChangeHash>,
    stored_pending: bool,
    /// The bytes it came in, while it is exactly those bytes.
    as_received: Option<(Vec<u8>, Vec<ChangeHash>)>,
    /// `doc` was loaded from a compact snapshot and knows its changes but not its heads
    /// (`crate::sync::compact`): fit for reading its list row, not for changing; [`Working::
    /// verify`] loads `as_received` before anything changes it.
    unverified: bool,
    changed: bool,
    deleted: bool,
    rejection: Option<Option<(String, String)>>,
    refetch: Option<bool>,
}

impl Working {
    /// Makes `doc` fit to be changed: loads the bytes a compact snapshot expanded to (their
    /// heads are the real ones), once, before the page changes the document further.
    fn verify(&mut self, doc_id: &str) -> Result<(), PhoneError> {
        if let (true, Some((bytes, _)), Some(doc)) =
            (self.unverified, &self.as_received, &mut self.doc)
        {
            let actor = doc.get_actor().clone();
            *doc = AutoCommit::load(bytes)
                .map_err(|e| bad(doc_id, e))?
                .with_actor(actor);
        }
        self.unverified = false;
        Ok(())
    }

    fn held(held: Held) -> Working {
        Working {
            doc: held.doc,
            persisted: Some(held.persisted),
            server_heads: held.server_heads,
            stored_pending: held.pending,
            ..Default::default()
        }
    }

    /// Holds a document (stored, or received earlier in this page).
    fn exists(&self) -> bool {
        !self.deleted && (self.persisted.is_some() || self.doc.is_some())
    }

    fn pending(&mut self) -> bool {
        match (&mut self.doc, self.changed) {
            (Some(doc), true) => !doc.get_changes(&self.server_heads).is_empty(),
            _ => self.stored_pending,
        }
    }

    /// The document, to be changed: it will be written and no longer matches the bytes it
    /// came in.
    fn doc_mut(&mut self, actor: &ActorId) -> &mut AutoCommit {
        self.changed = true;
        self.as_received = None;
        self.doc
            .get_or_insert_with(|| AutoCommit::new().with_actor(actor.clone()))
    }

    fn into_plan(self) -> DocPlan {
        let write = if self.deleted {
            DocWrite::Delete
        } else if !self.changed {
            DocWrite::Keep
        } else if let Some((bytes, heads)) = self.as_received {
            DocWrite::Snapshot { bytes, heads }
        } else {
            DocWrite::Changes {
                persisted: self.persisted,
                server_heads: self.server_heads,
            }
        };
        DocPlan {
            write,
            rejection: self.rejection,
            refetch: self.refetch,
            doc: if self.deleted { None } else { self.doc },
        }
    }
}

/// Works out what `response` (the answer to `sent`) does to the documents in `held`.
pub fn plan_page(
    mut response: SyncResponse,
    sent: &SyncRequest,
    held: BTreeMap<DocId, Held>,
    actor: &ActorId,
) -> Result<PagePlan, PhoneError> {
    let mut page = Page {
        working: held
            .into_iter()
            .map(|(id, h)| (id, Working::held(h)))
            .collect(),
        touched: BTreeSet::new(),
        outcome: SyncOutcome {
            // A restore with pages to go, or a feed page the server cut short.
            more: response.restore.is_some() || response.remaining > 0,
            remaining: response.remaining,
            ..Default::default()
        },
        actor,
    };
    for result in &response.results {
        page.on_result(result, sent)?;
    }
    for update in parallel::map(std::mem::take(&mut response.docs), received) {
        page.on_update(update)?;
    }
    for answer in &response.catch_up {
        page.on_catch_up(answer)?;
    }
    for doc_id in &response.evict {
        page.on_evict(doc_id);
    }
    let times = std::mem::take(&mut response.times);
    let pending_times = match response.compact_times.take() {
        Some(block) => block.into_pending().map_err(|e| bad(&e.case_id, &e))?,
        None => Vec::new(),
    };
    let pending_times: BTreeMap<CaseId, PendingTimes> = pending_times
        .into_iter()
        .map(|p| (p.case_id.clone(), p))
        .collect();
    let mut rows = page.rows();
    // A case whose times arrived without a change to it still shows them.
    let timed = times.iter().map(|c| &c.case_id);
    for case_id in timed.chain(pending_times.keys()) {
        let refresh = RowPlan::Refresh(case_id.clone());
        if !rows.contains(&refresh) && !rows.contains(&RowPlan::Delete(case_id.clone())) {
            rows.push(refresh);
        }
    }
    Ok(PagePlan {
        docs: page
            .working
            .into_iter()
            .map(|(id, w)| (id, w.into_plan()))
            .collect(),
        rows,
        identity: (!response.identity.user.is_empty()).then_some(response.identity),
        position: SyncPosition {
            cursor: response.cursor,
            restore: response.restore,
            rules_version: sent.rules_version,
        },
        clock_offset: clock_offset(sent.device_time, response.server_time),
        times,
        pending_times,
        outcome: page.outcome,
    })
}

struct Page<'a> {
    working: BTreeMap<DocId, Working>,
    /// Documents whose list rows must be recomputed.
    touched: BTreeSet<DocId>,
    outcome: SyncOutcome,
    actor: &'a ActorId,
}

impl Page<'_> {
    fn existing(&mut self, doc_id: &str) -> Option<&mut Working> {
        self.working.get_mut(doc_id).filter(|w| w.exists())
    }

    fn on_result(&mut self, result: &PushResult, sent: &SyncRequest) -> Result<(), PhoneError> {
        match result {
            PushResult::Accepted { doc_id, heads } => {
                let heads = hashes(heads, doc_id)?;
                let actor = self.actor;
                let Some(w) = self.existing(doc_id) else {
                    return Ok(());
                };
                w.verify(doc_id)?;
                let old = std::mem::take(&mut w.server_heads);
                let doc = w.doc_mut(actor);
                w.server_heads = if holds_all(doc, &heads) {
                    heads
                } else {
                    heads_after_push(&old, pushed(sent, doc_id))
                };
                w.rejection = Some(None);
                self.touched.insert(doc_id.clone());
                self.outcome.accepted.push(doc_id.clone());
            }
            // The server lost history it had acknowledged: resend it all, and catch up.
            PushResult::Rejected { doc_id, reason }
                if reason.code == RejectCode::MissingHistory =>
            {
                let actor = self.actor;
                if let Some(w) = self.existing(doc_id) {
                    w.verify(doc_id)?;
                    w.doc_mut(actor);
                    w.server_heads.clear();
                    w.refetch = Some(true);
                }
                self.touched.insert(doc_id.clone());
            }
            PushResult::Rejected { doc_id, reason } => {
                let code = reason.code.as_str().to_string();
                if let Some(w) = self.existing(doc_id) {
                    w.rejection = Some(Some((code.clone(), reason.message.clone())));
                }
                self.outcome.rejected.push(RejectedDoc {
                    doc_id: doc_id.clone(),
                    code,
                    message: reason.message.clone(),
                });
            }
        }
        Ok(())
    }

    /// Merges a received snapshot or applies received changes.
    fn on_update(&mut self, update: Received) -> Result<(), PhoneError> {
        let doc_id = update.doc_id;
        let mut heads = hashes(&update.heads, &doc_id)?;
        let actor = self.actor;
        let w = self.working.entry(doc_id.clone()).or_default();
        w.verify(&doc_id)?;
        let old = std::mem::take(&mut w.server_heads);
        match update.payload {
            Arrived::Snapshot(expanded) => {
                let expanded = (*expanded).map_err(|e| bad(&doc_id, e))?;
                if heads.is_empty() {
                    heads = expanded.heads.clone();
                }
                if w.exists() {
                    let mut snapshot = expanded.loaded().map_err(|e| bad(&doc_id, e))?;
                    w.doc_mut(actor)
                        .merge(&mut snapshot)
                        .map_err(|e| bad(&doc_id, e))?;
                } else {
                    *w = Working {
                        doc: Some(expanded.doc.with_actor(actor.clone())),
                        changed: true,
                        as_received: Some((expanded.bytes, heads.clone())),
                        unverified: !expanded.verified,
                        ..Default::default()
                    };
                }
            }
            Arrived::Changes(raw) => {
                let changes = raw
                    .iter()
                    .map(|b| Change::try_from(&b[..]).map_err(|e| bad(&doc_id, e)))
                    .collect::<Result<Vec<_>, _>>()?;
                if lacks_history(w, &changes) {
                    // The server believes the phone holds this document, but the answer that
                    // brought it was lost (see [`lacks_history`]): catch up on it instead.
                    w.server_heads = old;
                    w.refetch = Some(true);
                    return Ok(());
                }
                w.deleted = false;
                w.doc_mut(actor)
                    .apply_changes(changes)
                    .map_err(|e| bad(&doc_id, e))?;
            }
        }
        let doc = w.doc_mut_unchanged();
        if doc.get_heads().is_empty() {
            return Err(bad(
                &doc_id,
                "the update left the document empty (missing dependencies?)",
            ));
        }
        w.server_heads = if holds_all(doc, &heads) { heads } else { old };
        self.touched.insert(doc_id.clone());
        self.outcome.received.push(doc_id);
        Ok(())
    }

    /// Receives the server's answer to a catch-up message, from a fresh sync state.
    fn on_catch_up(&mut self, answer: &CatchUp) -> Result<(), PhoneError> {
        let doc_id = &answer.doc_id;
        let message = Message::decode(&answer.message).map_err(|e| bad(doc_id, e))?;
        let their_heads = message.heads.clone();
        let mut doc = match self.existing(doc_id) {
            Some(w) => {
                w.verify(doc_id)?;
                w.doc.take().unwrap_or_default()
            }
            None => AutoCommit::new(),
        }
        .with_actor(self.actor.clone());
        doc.sync()
            .receive_sync_message(&mut SyncState::new(), message)
            .map_err(|e| bad(doc_id, e))?;
        let w = self.working.entry(doc_id.clone()).or_default();
        if doc.get_heads().is_empty() {
            // Nothing came: the server does not have it (any more) for us.
            w.doc = w.persisted.as_ref().map(|_| doc);
            return Ok(());
        }
        if holds_all(&mut doc, &their_heads) {
            w.server_heads = their_heads;
        }
        w.doc = Some(doc);
        w.doc_mut(self.actor);
        w.deleted = false;
        w.refetch = Some(false);
        self.touched.insert(doc_id.clone());
        self.outcome.received.push(doc_id.clone());
        Ok(())
    }

    /// Deletes a document that left the phone's scope, unless it holds unsent changes.
    fn on_evict(&mut self, doc_id: &DocId) {
        let Some(w) = self.existing(doc_id) else {
            self.working.entry(doc_id.clone()).or_default().refetch = Some(false);
            return;
        };
        if w.pending() {
            self.outcome.kept_pending.push(doc_id.clone());
        } else {
            w.deleted = true;
            self.touched.insert(doc_id.clone());
            self.outcome.evicted.push(doc_id.clone());
        }
    }

    fn rows(&self) -> Vec<RowPlan> {
        self.touched
            .iter()
            .map(|doc_id| {
                let (case_id, is_pii) = split_doc_id(doc_id);
                let deleted = self.working.get(doc_id).is_some_and(|w| w.deleted);
                match (is_pii, deleted) {
                    (true, _) => RowPlan::PendingMark(doc_id.clone()),
                    (false, true) => RowPlan::Delete(case_id.to_string()),
                    (false, false) => RowPlan::Refresh(case_id.to_string()),
                }
            })
            .collect()
    }
}

/// A document update as the page plans with it: a snapshot already loaded.
struct Received {
    doc_id: DocId,
    heads: Vec<Vec<u8>>,
    payload: Arrived,
}

enum Arrived {
    /// Boxed: a loaded document is kilobytes, and the page holds hundreds of these.
    Snapshot(Box<Result<Expanded, ExpandError>>),
    Changes(Vec<Vec<u8>>),
}

/// Loads an update's snapshot: the costliest step of a restore, and independent of every other
/// document, so a page's updates are received in parallel ([`parallel::map`]) before they are
/// planned one by one in order (what the page does is the same as loading each in turn).
fn received(update: DocUpdate) -> Received {
    let payload = match update.payload {
        Payload::Snapshot(bytes) => Arrived::Snapshot(Box::new(compact::expand(bytes))),
        Payload::Changes(raw) => Arrived::Changes(raw),
    };
    Received {
        doc_id: update.doc_id,
        heads: update.heads,
        payload,
    }
}

impl Working {
    /// The document, for reading, without marking it changed.
    fn doc_mut_unchanged(&mut self) -> &mut AutoCommit {
        self.doc.get_or_insert_with(AutoCommit::new)
    }
}

/// Whether `changes` depend on changes the phone has neither stored nor received with them.
/// The server counts a document as held by the phone once it has sent it, before the phone
/// stored it: if that answer is cut (a document that just moved into the phone's scope, sent
/// whole), later pages carry only its newer changes. Failing the page would fail it on every
/// retry; the phone skips the document and asks for it with a catch-up message (protocol 1),
/// which the server answers with everything the phone lacks, and records as held again.
fn lacks_history(w: &mut Working, changes: &[Change]) -> bool {
    let mut known: HashSet<ChangeHash> = changes.iter().map(Change::hash).collect();
    let doc = match &mut w.doc {
        Some(doc) => doc,
        None => {
            return changes
                .iter()
                .any(|c| c.deps().iter().any(|d| !known.contains(d)));
        }
    };
    for change in changes {
        for dep in change.deps() {
            if !known.contains(dep) && doc.get_change_by_hash(dep).is_none() {
                return true;
            }
            known.insert(*dep);
        }
    }
    false
}

fn pushed<'a>(sent: &'a SyncRequest, doc_id: &str) -> &'a [Vec<u8>] {
    sent.pushes
        .iter()
        .find(|p| p.doc_id == doc_id)
        .map(|p| p.changes.as_slice())
        .unwrap_or(&[])
}

fn hashes(raw: &[Vec<u8>], doc_id: &str) -> Result<Vec<ChangeHash>, PhoneError> {
    raw.iter()
        .map(|h| {
            ChangeHash::try_from(&h[..]).map_err(|_| bad(doc_id, "a head is not a 32-byte hash"))
        })
        .collect()
}

/// The heads after `old` plus `pushed` changes: pushed hashes no pushed change depends on, and
/// old heads no pushed change depends on.
pub(crate) fn heads_after_push(old: &[ChangeHash], pushed: &[Vec<u8>]) -> Vec<ChangeHash> {
    let changes: Vec<Change> = pushed
        .iter()
        .filter_map(|b| Change::try_from(&b[..]).ok())
        .collect();
    let deps: HashSet<ChangeHash> = changes
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .collect();
    let mut heads: Vec<ChangeHash> = old
        .iter()
        .copied()
        .chain(changes.iter().map(|c| c.hash()))
        .filter(|h| !deps.contains(h))
        .collect();
    heads.sort();
    heads.dedup();
    heads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::CaseDoc;
    use crate::store::tests::{T0, actor, new_case, worker};

    fn raw(heads: &[ChangeHash]) -> Vec<Vec<u8>> {
        heads.iter().map(|h| h.0.to_vec()).collect()
    }

    /// The phone pushed its case; while the request was in flight it added a note. The ack
    /// names the heads of what was pushed: the note stays pending, nothing is overwritten.
    #[test]
    fn an_ack_covers_what_was_sent_and_not_what_came_after() {
        let mut doc = CaseDoc::create(
            &new_case("c1", "噪音", "330604101201"),
            &worker(),
            actor(),
            T0,
        )
        .unwrap();
        let sent_heads = doc.heads();
        let pushed: Vec<Vec<u8>> = doc
            .automerge()
            .get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        doc.add_note("发出之后的备注", &worker(), T0 + 1).unwrap();
        let now_heads = doc.heads();
        let sent = SyncRequest {
            pushes: vec![crate::sync::DocPush {
                doc_id: "c1".into(),
                changes: pushed,
            }],
            ..Default::default()
        };
        let held = BTreeMap::from([(
            "c1".to_string(),
            Held {
                doc: Some(doc.into_automerge()),
                persisted: now_heads.clone(),
                server_heads: Vec::new(),
                pending: true,
            },
        )]);
        for ack in [sent_heads.clone(), vec![ChangeHash([9; 32])]] {
            // The server's own heads, or heads the phone does not hold (someone else's change
            // merged on the server): either way the server holds exactly what was pushed.
            let response = SyncResponse {
                results: vec![PushResult::Accepted {
                    doc_id: "c1".into(),
                    heads: raw(&ack),
                }],
                ..Default::default()
            };
            let held = held
                .iter()
                .map(|(id, h)| {
                    let doc = h.doc.clone();
                    let h = Held {
                        doc,
                        persisted: h.persisted.clone(),
                        server_heads: h.server_heads.clone(),
                        pending: h.pending,
                    };
                    (id.clone(), h)
                })
                .collect();
            let mut plan = plan_page(response, &sent, held, &actor()).unwrap();
            let c1 = plan.docs.get_mut("c1").unwrap();
            let DocWrite::Changes {
                persisted,
                server_heads,
            } = &c1.write
            else {
                panic!("an acknowledged document is written: {:?}", c1.write);
            };
            assert_eq!(
                persisted.as_deref(),
                Some(&now_heads[..]),
                "appended, not replaced"
            );
            assert_eq!(server_heads, &sent_heads);
            let doc = c1.doc.as_mut().unwrap();
            assert_eq!(
                doc.get_changes(server_heads).len(),
                1,
                "the note is still unsent"
            );
            assert_eq!(c1.rejection, Some(None));
            assert_eq!(plan.rows, [RowPlan::Refresh("c1".into())]);
            assert_eq!(plan.outcome.accepted, ["c1"]);
        }
    }

    /// The server sent a case whole, the answer was cut, and it now sends only the case's
    /// newer changes: the page still applies, and the phone catches up on that case (before,
    /// the page failed on every retry). The same changes to a phone that holds the case apply.
    #[test]
    fn changes_whose_history_the_phone_lacks_make_it_catch_up_not_fail() {
        let mut doc = CaseDoc::create(
            &new_case("c1", "噪音", "330604101201"),
            &worker(),
            actor(),
            T0,
        )
        .unwrap();
        let before = doc.heads();
        let whole_before = doc.automerge().clone();
        doc.add_note("后来的备注", &worker(), T0 + 1).unwrap();
        let newer: Vec<Vec<u8>> = doc
            .automerge()
            .get_changes(&before)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        let response = SyncResponse {
            docs: vec![DocUpdate {
                doc_id: "c1".into(),
                payload: Payload::Changes(newer),
                heads: raw(&doc.heads()),
            }],
            cursor: 7,
            ..Default::default()
        };
        let sent = SyncRequest::default();

        let plan = plan_page(response.clone(), &sent, BTreeMap::new(), &actor()).unwrap();
        let c1 = &plan.docs["c1"];
        assert!(matches!(c1.write, DocWrite::Keep), "{:?}", c1.write);
        assert_eq!(c1.refetch, Some(true));
        assert!(plan.outcome.received.is_empty());
        assert_eq!(plan.position.cursor, 7, "the page is stored, not failed");

        let held = BTreeMap::from([(
            "c1".to_string(),
            Held {
                doc: Some(whole_before),
                persisted: before.clone(),
                server_heads: before,
                pending: false,
            },
        )]);
        let mut plan = plan_page(response, &sent, held, &actor()).unwrap();
        let c1 = plan.docs.get_mut("c1").unwrap();
        assert_eq!(c1.refetch, None);
        assert_eq!(c1.doc.as_mut().unwrap().get_heads(), doc.heads());
        assert_eq!(plan.outcome.received, ["c1"]);
    }

    #[test]
    fn a_page_names_whole_documents_and_evictions_apart() {
        let response = SyncResponse {
            evict: vec!["gone".into(), "c1".into()],
            results: vec![PushResult::Accepted {
                doc_id: "c1".into(),
                heads: vec![],
            }],
            ..Default::default()
        };
        let (whole, state_only) = needed(&response);
        assert_eq!(whole.into_iter().collect::<Vec<_>>(), ["c1"]);
        assert_eq!(state_only.into_iter().collect::<Vec<_>>(), ["gone"]);
    }
}
