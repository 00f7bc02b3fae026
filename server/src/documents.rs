//! Documents above the database: turning a stored document into an Automerge document, and
//! planning one commit ([`plan_commit`]) — new change rows, snapshot bookkeeping, trusted event
//! times, the case projection, who holds it now and the `change` audit row — for every writer:
//! a device's push, the deadline check's supervision, demo data. The backend writes the plan in
//! one transaction (`Documents::commit_doc`).

use std::collections::HashMap;

use automerge::{AutoCommit, Change, ChangeHash};
use gridcase_core::doc::split_doc_id;
use gridcase_core::model::{Case, Millis};
use gridcase_core::sync::Hash;

use crate::audit;
use crate::db::{DocWrite, Expected, NewChange, ReadView, StoredDoc};
use crate::projection::project;
use crate::store::{Result, Store, StoreError};
use gridcase_core::sync::times::block::StoredTime;
use gridcase_core::sync::{CREATED_KEY, DeviceClock, trusted_time};

/// A document as the server holds it, with what a commit of it must know.
pub struct Loaded {
    pub doc: AutoCommit,
    /// The stored version a commit expects.
    pub version: Expected,
}

impl Loaded {
    /// A document the server does not have yet.
    pub fn absent() -> Loaded {
        Loaded {
            doc: AutoCommit::new(),
            version: Expected::Absent,
        }
    }

    pub fn is_stored(&self) -> bool {
        self.version != Expected::Absent
    }
}

/// Builds the Automerge document from its snapshot and the change rows after it.
pub fn load(doc_id: &str, stored: StoredDoc) -> Result<Loaded> {
    let mut doc = if stored.snapshot.is_empty() {
        AutoCommit::new()
    } else {
        AutoCommit::load(&stored.snapshot)?
    };
    let changes = stored
        .changes
        .into_iter()
        .map(|bytes| {
            Change::from_bytes(bytes)
                .map_err(|e| StoreError::Invalid(format!("stored change of {doc_id}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    if !changes.is_empty() {
        doc.apply_changes(changes)?;
    }
    Ok(Loaded {
        doc,
        version: Expected::At(stored.last_seq),
    })
}

/// Reads and builds a document inside `view`.
pub fn load_in(view: &mut dyn ReadView, doc_id: &str) -> Result<Option<Loaded>> {
    view.doc(doc_id)?
        .map(|stored| load(doc_id, stored))
        .transpose()
}

/// Who wrote the changes of a commit.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// The device that sent them; `None` for the server's own.
    pub device: Option<&'a str>,
    /// The user behind `device`, or the server's name for its own changes (`system`, `demo`).
    pub user: &'a str,
    /// The sender's measured clock offset and causal floor (zero for the server).
    pub clock: DeviceClock,
}

/// One document's new state, ready to be planned.
pub struct NewState<'a> {
    pub doc_id: &'a str,
    pub base: &'a Loaded,
    /// The document with `new_changes` applied.
    pub doc: &'a mut AutoCommit,
    pub new_changes: &'a [Change],
    /// The case read from `doc` (case documents only).
    pub case: Option<&'a Case>,
    /// Trusted event times stored for the case before this commit.
    pub trusted: &'a HashMap<String, Millis>,
    pub writer: Writer<'a>,
    /// The device that holds the document afterwards, if any (checked against its scope).
    pub holder: Option<&'a str>,
    pub now: Millis,
}

/// Plans the commit of `s`: see the module docs.
pub fn plan_commit(store: &Store, s: NewState<'_>) -> DocWrite {
    let (case_id, is_pii) = split_doc_id(s.doc_id);
    let heads = s.doc.get_heads();
    // Every commit saves the document's snapshot, uncompressed: a restore then sends each
    // document as stored, with no Automerge work (the response is compressed as a whole). A
    // save per commit is far cheaper than a load and save per document per restore: W1's
    // restore of the demo's cases, half of them supervised after their last save, spent most
    // of the server's time there (BENCHMARKS.md).
    let snapshot = Some(s.doc.save_nocompress());
    let mut new_times = Vec::new();
    let projection = s.case.map(|case| {
        let mut trusted = s.trusted.clone();
        let events = std::iter::once((CREATED_KEY, case.created_at))
            .chain(case.timeline.iter().map(|e| (e.id.as_str(), e.at)));
        for (event, at) in events {
            if !trusted.contains_key(event) {
                let stated = at;
                let at = trusted_time(stated, s.writer.clock, s.now);
                trusted.insert(event.to_owned(), at);
                new_times.push(StoredTime {
                    event: event.to_owned(),
                    at,
                    stated: Some(stated),
                });
            }
        }
        project(case, &trusted, store.policy(), store.calendar())
    });
    let hashes: Vec<ChangeHash> = s.new_changes.iter().map(Change::hash).collect();
    DocWrite {
        doc_id: s.doc_id.to_owned(),
        case_id: case_id.to_owned(),
        is_pii,
        expected: s.base.version,
        changes: s
            .new_changes
            .iter()
            .map(|c| NewChange {
                hash: c.hash().0,
                bytes: c.raw_bytes().to_vec(),
            })
            .collect(),
        author_device: s.writer.device.map(str::to_owned),
        heads: heads.iter().flat_map(|h| h.0).collect(),
        snapshot,
        event_times: new_times,
        projection,
        holder: s.holder.map(str::to_owned),
        supervision: None,
        audit: vec![audit::change(s.writer, s.doc_id, &hashes, s.now)],
        now: s.now,
    }
}

/// Heads as the protocol sends them.
pub fn hashes(heads: &[ChangeHash]) -> Vec<Hash> {
    heads.iter().map(|h| h.0.to_vec()).collect()
}

impl Store {
    /// The trusted times the server holds for a case's events and its creation
    /// (`gridcase_core::sync::times`), as the sync responses send them.
    pub fn trusted_times(&self, case_id: &str) -> Result<HashMap<String, Millis>> {
        if !crate::db::is_storable(case_id) {
            return Ok(HashMap::new());
        }
        Ok(self.db().read()?.trusted_times(case_id)?)
    }

    /// The server's current copy of a document, if it has one.
    pub fn load_doc(&self, doc_id: &str) -> Result<Option<AutoCommit>> {
        if !crate::db::is_storable(doc_id) {
            return Ok(None);
        }
        let mut view = self.db().read()?;
        let stored = view.doc(doc_id)?;
        drop(view);
        Ok(stored
            .map(|stored| load(doc_id, stored))
            .transpose()?
            .map(|loaded| loaded.doc))
    }
}
