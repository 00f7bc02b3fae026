//! Telling the app which cases changed, so screens refresh without polling: after every local
//! edit and after every applied sync page. Listeners are called after the change is committed,
//! on the thread that made it (the caller's for an edit, the sync's for a page), with no lock
//! held: a listener may call the phone back (reload a page, open a case).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::model::CaseId;

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeSource {
    /// An edit made on this phone.
    Local,
    /// A sync page from the server.
    Sync,
}

/// Which cases changed, by case id (a change to a case's personal data counts as a change to
/// the case). A case appears in at most the lists that describe what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseChanges {
    pub source: ChangeSource,
    /// Content changed (edited here, or received from the server): reload rows and details.
    pub updated: Vec<CaseId>,
    /// The server stored this phone's changes: the "not yet sent" mark may go.
    pub acknowledged: Vec<CaseId>,
    /// The server refused this phone's changes (see the sync status for why).
    pub rejected: Vec<CaseId>,
    /// No longer on this phone (left its scope, or a discarded draft).
    pub removed: Vec<CaseId>,
    /// Every list may have changed (new deadline rules, a wipe): reload everything shown.
    pub everything: bool,
}

impl CaseChanges {
    pub fn new(source: ChangeSource) -> CaseChanges {
        CaseChanges {
            source,
            updated: Vec::new(),
            acknowledged: Vec::new(),
            rejected: Vec::new(),
            removed: Vec::new(),
            everything: false,
        }
    }

    pub(crate) fn local(updated: &str) -> CaseChanges {
        CaseChanges {
            updated: vec![updated.to_string()],
            ..CaseChanges::new(ChangeSource::Local)
        }
    }

    pub(crate) fn everything(source: ChangeSource) -> CaseChanges {
        CaseChanges {
            everything: true,
            ..CaseChanges::new(source)
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.everything
            && self.updated.is_empty()
            && self.acknowledged.is_empty()
            && self.rejected.is_empty()
            && self.removed.is_empty()
    }

    /// Sorts and deduplicates each list (doc ids map to case ids, so a case and its personal
    /// data collapse into one entry).
    pub(crate) fn normalized(mut self) -> CaseChanges {
        for list in [
            &mut self.updated,
            &mut self.acknowledged,
            &mut self.rejected,
            &mut self.removed,
        ] {
            list.sort();
            list.dedup();
        }
        self
    }
}

/// Implemented by the app (through the bindings) to hear about changes.
pub trait ChangeListener: Send + Sync {
    fn cases_changed(&self, changes: &CaseChanges);
}

/// The registered listeners.
#[derive(Default)]
pub(crate) struct Listeners {
    next: AtomicU64,
    all: Mutex<Vec<(u64, Arc<dyn ChangeListener>)>>,
}

impl Listeners {
    pub(crate) fn add(&self, listener: Arc<dyn ChangeListener>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        super::lock(&self.all).push((id, listener));
        id
    }

    /// Whether `id` was registered.
    pub(crate) fn remove(&self, id: u64) -> bool {
        let mut all = super::lock(&self.all);
        let before = all.len();
        all.retain(|(i, _)| *i != id);
        all.len() != before
    }

    /// Calls every listener, outside the registry's lock (a listener may add or remove one).
    pub(crate) fn notify(&self, changes: CaseChanges) {
        if changes.is_empty() {
            return;
        }
        let listeners: Vec<Arc<dyn ChangeListener>> = super::lock(&self.all)
            .iter()
            .map(|(_, l)| l.clone())
            .collect();
        for listener in listeners {
            listener.cases_changed(&changes);
        }
    }
}
