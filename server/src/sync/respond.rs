//! What a sync response sends, decided over one consistent snapshot ([`ReadView`]): a restore
//! page or an incremental feed page, what the device lacks of the documents it just pushed,
//! answers to catch-up messages, and evictions. Every document selected here is in the device's
//! scope (the SQL of `crate::scope` selects pages; its Rust twin checks single documents), and
//! every document sent whole or caught up is recorded as held, at the end of the sync.

use std::collections::{BTreeSet, HashMap, HashSet};

use automerge::ChangeHash;
use automerge::sync::{State, SyncDoc};
use gridcase_core::doc::{personal_doc_id, split_doc_id};
use gridcase_core::sync::times::block::BlockBuilder;
use gridcase_core::sync::{
    CaseTimes, CatchUp, DocUpdate, Payload, RestoreToken, SnapshotPart, StagedSnapshot,
    SyncRequest, TimesBlock, compact, limits,
};

use super::{FEED_ROW_CAP, page_bytes, page_size};
use crate::db::{ReadView, Seq, blob_to_heads};
use crate::documents::{hashes, load, load_in};
use crate::store::{DeviceCtx, Result};
use gridcase_core::scope::Scope;

mod parts;

/// How much one page may hold: documents, and bytes of them (uncompressed; the first document
/// goes in whatever its size, so a page never comes back empty).
#[derive(Debug, Clone, Copy)]
struct PageLimit {
    docs: usize,
    bytes: usize,
}

fn update_bytes(update: &DocUpdate) -> usize {
    match &update.payload {
        Payload::Snapshot(bytes) => bytes.len(),
        Payload::Changes(changes) => changes.iter().map(Vec::len).sum(),
    }
}

/// One page of the response's documents, with the cursor and restore state that go with it.
pub(crate) struct Page {
    pub docs: Vec<DocUpdate>,
    pub cursor: u64,
    pub restore: Option<RestoreToken>,
    pub remaining: u64,
}

/// Builds a response inside one snapshot, noting which documents the device now holds.
pub(crate) struct Responder<'a> {
    pub view: &'a mut dyn ReadView,
    pub device: &'a DeviceCtx,
    pub scope: &'a Scope,
    /// Documents sent whole or caught up: the device holds them once the sync is recorded.
    pub holds: Vec<String>,
    /// The device takes a restore document larger than the page in parts ([`parts`]).
    pub accept_parts: bool,
    /// What the device holds of such a document already.
    pub staged: Option<StagedSnapshot>,
    /// The part this response sends, if any.
    pub part: Option<SnapshotPart>,
    /// Documents read whole to weigh them for parts, kept for when they are sent.
    pub wholes: HashMap<String, DocUpdate>,
    /// The device takes snapshots compact (`gridcase_core::sync::compact`).
    pub compact: bool,
    /// The device takes trusted times as a block (`gridcase_core::sync::times::block`).
    pub compact_times: bool,
    /// What the device was told remained of its restore with the token it sends (0: not said,
    /// or its scope changed since): see [`Self::restore_left`].
    pub restore_remaining: u64,
}

/// The trusted times a response carries: as `CaseTimes` for a phone before protocol 5, as a
/// block for one that asked.
#[derive(Debug, Default)]
pub(crate) struct Times {
    pub listed: Vec<CaseTimes>,
    pub block: Option<TimesBlock>,
}

impl Responder<'_> {
    /// The page the request asks for: a restore (first sync, a resumed restore, or a device
    /// whose scope changed) or the feed after its cursor.
    /// `head` is the snapshot's feed head.
    pub fn page(&mut self, request: &SyncRequest, scope_changed: bool, head: Seq) -> Result<Page> {
        let size = PageLimit {
            docs: page_size(request.page_size) as usize,
            bytes: page_bytes(request.page_bytes),
        };
        // A device whose user got another role or jurisdiction has cases in its new scope whose
        // changes all lie before its cursor: it restores again (held documents merge; those that
        // left the scope are evicted).
        let cursor = if scope_changed && request.restore.is_none() {
            0
        } else {
            request.cursor
        };
        match (&request.restore, cursor) {
            (Some(token), _) => self.restore_page(token.clone(), size, request.cursor),
            (None, 0) => {
                let token = RestoreToken {
                    upto: head as u64,
                    after: String::new(),
                };
                self.restore_page(token, size, 0)
            }
            (None, cursor) => self.feed_page(cursor, size, head),
        }
    }

    /// A restore page: whole snapshots of the documents in scope, in id order after
    /// `token.after`, until the page is full in documents or bytes.
    fn restore_page(&mut self, token: RestoreToken, size: PageLimit, cursor: u64) -> Result<Page> {
        let ids = self
            .view
            .restore_ids(self.scope, &token.after, size.docs + 1)?;
        let mut more = ids.len() > size.docs;
        let mut docs = Vec::new();
        let mut bytes = 0;
        let mut last = None;
        for id in ids.iter().take(size.docs) {
            if !docs.is_empty() && bytes >= size.bytes {
                more = true;
                break;
            }
            if let Some(update) = self.snapshot(id)? {
                if self.goes_in_parts(&update, size.bytes) {
                    if docs.is_empty() {
                        return self.part_page(token, update, size.bytes, cursor);
                    }
                    // It starts the next page, in parts.
                    self.holds.pop();
                    more = true;
                    break;
                }
                bytes += update_bytes(&update);
                docs.push(update);
            }
            last = Some(id);
        }
        match (more, last) {
            (true, Some(last)) => Ok(Page {
                cursor,
                remaining: self.restore_left(last, docs.len())?,
                docs,
                restore: Some(RestoreToken {
                    upto: token.upto,
                    after: last.clone(),
                }),
            }),
            _ => Ok(Page {
                docs,
                cursor: token.upto,
                restore: None,
                remaining: 0,
            }),
        }
    }

    /// What is left of a restore that goes on after a page of `sent` documents ending at
    /// `after`: the device's count less the page, or counted when the device did not say (a
    /// first page, an older app). Counting walks the rest of the scope, so counting on every
    /// page made a restore cost the square of its size. The echoed count is only the device's
    /// progress figure (documents created meanwhile are not in it): whether the restore goes
    /// on is decided by the documents themselves, and it is at least 1 while it does.
    pub(super) fn restore_left(&mut self, after: &str, sent: usize) -> Result<u64> {
        let left = match self.restore_remaining {
            0 => self.view.restore_docs_after(self.scope, after)?,
            told => told.saturating_sub(sent as u64),
        };
        Ok(left.max(1))
    }

    /// An incremental page: the change rows after `cursor` of documents in scope, less the rows
    /// the device sent itself; a snapshot instead for documents the device does not hold yet.
    fn feed_page(&mut self, cursor: u64, size: PageLimit, head: Seq) -> Result<Page> {
        let rows = self.view.feed(
            self.scope,
            &self.device.device_id,
            cursor as Seq,
            FEED_ROW_CAP + 1,
        )?;
        if let Some(first) = rows.first()
            && self.feed_in_parts(first, true, size.bytes)?
        {
            return self.feed_part_page(&rows, cursor, size.bytes, head);
        }
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        let mut covered = cursor as Seq;
        let mut more = false;
        let mut bytes = 0;
        for (n, row) in rows.into_iter().enumerate() {
            let new_doc = !groups.contains_key(&row.doc_id);
            // Full in documents before a new one, in bytes anywhere: a document with more
            // changes than a page holds continues on the next page (rows are single changes).
            let full = (new_doc && order.len() >= size.docs) || (n > 0 && bytes >= size.bytes);
            // A document that goes in parts starts the next page.
            if n >= FEED_ROW_CAP || full || self.feed_in_parts(&row, new_doc, size.bytes)? {
                more = true;
                break;
            }
            bytes += row.bytes.iter().map(Vec::len).sum::<usize>();
            if new_doc {
                order.push(row.doc_id.clone());
            }
            let group = groups.entry(row.doc_id).or_default();
            group.extend(row.bytes);
            covered = row.seq;
        }
        if !more {
            // Everything up to the head was seen: nothing in scope lies between.
            covered = covered.max(head);
        }
        let in_page: HashSet<String> = order.iter().cloned().collect();
        let mut docs = Vec::new();
        for doc_id in order {
            let changes = groups.remove(&doc_id).unwrap_or_default();
            self.feed_doc(doc_id, changes, &in_page, &mut docs)?;
        }
        let remaining = if more {
            self.view.feed_docs_after(self.scope, covered)?
        } else {
            0
        };
        Ok(Page {
            docs,
            cursor: covered as u64,
            restore: None,
            remaining,
        })
    }

    /// One document of a feed page: its new changes, or the whole document if the device does
    /// not hold it yet (with its personal data, whose own rows may all be older).
    fn feed_doc(
        &mut self,
        doc_id: String,
        changes: Vec<Vec<u8>>,
        in_page: &HashSet<String>,
        docs: &mut Vec<DocUpdate>,
    ) -> Result<()> {
        if self.holds(&doc_id)? {
            if !changes.is_empty() {
                let heads = self.view.doc_heads(&doc_id)?.unwrap_or_default();
                docs.push(DocUpdate {
                    heads: blob_to_heads(&heads),
                    doc_id,
                    payload: Payload::Changes(changes),
                });
            }
            return Ok(()); // or only the device's own changes
        }
        if let Some(update) = self.snapshot(&doc_id)? {
            docs.push(update);
        }
        self.personal_data_with(&doc_id, in_page, docs)
    }

    /// A case newly sent to the device brings its personal data (whose own rows may all lie
    /// before the cursor), unless the page has it already or the device holds it.
    fn personal_data_with(
        &mut self,
        doc_id: &str,
        in_page: &HashSet<String>,
        docs: &mut Vec<DocUpdate>,
    ) -> Result<()> {
        let (case_id, is_pii) = split_doc_id(doc_id);
        let pii = personal_doc_id(case_id);
        let (_, _, personal_data) = self.scope.params();
        if !is_pii
            && personal_data
            && !in_page.contains(&pii)
            && !self.holds(&pii)?
            && let Some(update) = self.snapshot(&pii)?
        {
            docs.push(update);
        }
        Ok(())
    }

    /// Whether the device holds a document, counting those sent whole in this response. Not
    /// one it says it holds only parts of (`staged`): the server notes a document as held when
    /// it sends the last part, and that response may have been cut.
    fn holds(&mut self, doc_id: &str) -> Result<bool> {
        if self.staged.as_ref().is_some_and(|s| s.doc_id == doc_id) {
            return Ok(self.holds.iter().any(|d| d == doc_id));
        }
        Ok(self.holds.iter().any(|d| d == doc_id)
            || self.view.holds(&self.device.device_id, doc_id)?)
    }

    /// A document whole, as stored: the snapshot itself when no change came after it (most of a
    /// restore), else loaded and saved. Uncompressed: the response is compressed as a whole,
    /// which finds what documents have in common. No separate heads: a snapshot carries its own.
    fn snapshot(&mut self, doc_id: &str) -> Result<Option<DocUpdate>> {
        let update = match self.wholes.remove(doc_id) {
            Some(update) => Some(update),
            None => self.whole(doc_id)?,
        };
        if update.is_some() {
            self.holds.push(doc_id.to_owned());
        }
        Ok(update)
    }

    /// A document whole (see [`Self::snapshot`]), without noting that the device holds it.
    fn whole(&mut self, doc_id: &str) -> Result<Option<DocUpdate>> {
        let Some(stored) = self.view.doc(doc_id)? else {
            return Ok(None);
        };
        let bytes = if stored.changes.is_empty() && !stored.snapshot.is_empty() {
            stored.snapshot
        } else {
            load(doc_id, stored)?.doc.save_nocompress()
        };
        let bytes = match self.compact {
            true => compact::strip(&bytes).unwrap_or(bytes),
            false => bytes,
        };
        Ok(Some(DocUpdate {
            doc_id: doc_id.to_owned(),
            payload: Payload::Snapshot(bytes),
            heads: Vec::new(),
        }))
    }

    /// Whether a single document is in the device's scope (the Rust twin of the page SQL).
    fn in_scope(&mut self, doc_id: &str) -> Result<bool> {
        let case = self.view.case_scope(split_doc_id(doc_id).0)?;
        Ok(case.is_some_and(|case| self.scope.covers_doc(doc_id, &case)))
    }

    /// Whatever the server holds of the just-pushed documents beyond what the device sent.
    pub fn after_pushes(
        &mut self,
        accepted: &[(String, Vec<ChangeHash>)],
        docs: &mut Vec<DocUpdate>,
    ) -> Result<()> {
        let listed: HashSet<String> = docs.iter().map(|d| d.doc_id.clone()).collect();
        for (doc_id, sent) in accepted {
            if listed.contains(doc_id) || !self.in_scope(doc_id)? {
                continue;
            }
            let Some(mut loaded) = load_in(self.view, doc_id)? else {
                continue;
            };
            let missing: Vec<Vec<u8>> = loaded
                .doc
                .get_changes(sent)
                .iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect();
            if !missing.is_empty() {
                docs.push(DocUpdate {
                    doc_id: doc_id.clone(),
                    payload: Payload::Changes(missing),
                    heads: hashes(&loaded.doc.get_heads()),
                });
            }
        }
        Ok(())
    }

    /// Answers Automerge sync messages for documents in scope, once their cost is bounded
    /// (`gridcase_core::sync::limits`: hash counts, Bloom filters). A message that carries
    /// changes is not answered: changes reach the server only through judged pushes.
    pub fn catch_up(&mut self, asks: &[CatchUp]) -> Result<Vec<CatchUp>> {
        let mut answers = Vec::new();
        for ask in asks {
            if !self.in_scope(&ask.doc_id)? {
                continue;
            }
            let message = match limits::decode_catch_up(&ask.message) {
                Ok(message) => message,
                Err(e) => {
                    tracing::info!(doc_id = ask.doc_id, error = %e, "catch-up message refused");
                    continue;
                }
            };
            let Some(mut loaded) = load_in(self.view, &ask.doc_id)? else {
                continue;
            };
            let mut state = State::new();
            if let Err(e) = loaded.doc.sync().receive_sync_message(&mut state, message) {
                tracing::info!(doc_id = ask.doc_id, error = %e, "catch-up message refused");
                continue;
            }
            if let Some(reply) = loaded.doc.sync().generate_sync_message(&mut state) {
                answers.push(CatchUp {
                    doc_id: ask.doc_id.clone(),
                    message: reply.encode(),
                });
            }
            self.holds.push(ask.doc_id.clone());
        }
        Ok(answers)
    }

    /// The trusted times of every case this response sends (`docs`, catch-up answers) or
    /// acknowledges (`accepted`, where still in scope), so that the phone shows the server's
    /// times and due instants. Sent whole each time: a case has tens of events, and the phone
    /// then needs no bookkeeping of which it has.
    pub fn times(
        &mut self,
        accepted: &[(String, Vec<ChangeHash>)],
        docs: &[DocUpdate],
        catch_up: &[CatchUp],
    ) -> Result<Times> {
        let cases = self.timed_cases(accepted, docs, catch_up)?;
        if !self.compact_times {
            let mut listed = Vec::with_capacity(cases.len());
            for case_id in cases {
                let times = self.view.trusted_times(&case_id)?;
                if !times.is_empty() {
                    listed.push(CaseTimes::from_map(&case_id, &times));
                }
            }
            return Ok(Times {
                listed,
                block: None,
            });
        }
        // Read as stored, with the stated times: no document is loaded.
        let mut block = BlockBuilder::default();
        for case_id in cases {
            let times = self.view.stored_times(&case_id)?;
            if !times.is_empty() {
                block.add(&case_id, times);
            }
        }
        Ok(Times {
            listed: Vec::new(),
            block: Some(block.finish()),
        })
    }

    /// The cases whose times [`Self::times`] sends.
    fn timed_cases(
        &mut self,
        accepted: &[(String, Vec<ChangeHash>)],
        docs: &[DocUpdate],
        catch_up: &[CatchUp],
    ) -> Result<BTreeSet<String>> {
        let mut cases = BTreeSet::new();
        for (doc_id, _) in accepted {
            if self.in_scope(doc_id)? {
                cases.insert(split_doc_id(doc_id).0.to_owned());
            }
        }
        let sent = docs.iter().map(|d| &d.doc_id);
        // A document sent in parts is the phone's with its last part.
        let completed = self.part.iter().filter(|p| p.is_last()).map(|p| &p.doc_id);
        let sent = sent.chain(completed);
        cases.extend(
            sent.chain(catch_up.iter().map(|c| &c.doc_id))
                .map(|id| split_doc_id(id).0.to_owned()),
        );
        Ok(cases)
    }

    /// Documents the device holds that left its scope; forgotten once the sync is recorded.
    /// `changed_after` > 0 looks only at cases committed after it (see `ReadView::held_outside`).
    pub fn evictions(&mut self, changed_after: Seq) -> Result<Vec<String>> {
        Ok(self
            .view
            .held_outside(&self.device.device_id, self.scope, changed_after)?)
    }
}
