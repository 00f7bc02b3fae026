//! Per-case locks inside one process: two requests pushing to the same case take turns, so the
//! second judges against what the first committed instead of failing its commit and redoing
//! the Automerge work. Requests for other cases do not wait (up to a hash collision between
//! stripes). Across processes the commit's version check does the same job (see
//! `crate::sync::push`); these locks only save work.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

/// Enough stripes that unrelated cases rarely share one at the concurrency a server sees.
const STRIPES: usize = 256;

pub struct CaseLocks {
    stripes: Vec<Mutex<()>>,
}

impl Default for CaseLocks {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for CaseLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseLocks")
            .field("stripes", &self.stripes.len())
            .finish()
    }
}

impl CaseLocks {
    pub fn new() -> CaseLocks {
        CaseLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Holds the case until the guard drops. A poisoned stripe is taken over: the lock guards
    /// no data, only turns.
    pub fn lock(&self, case_id: &str) -> MutexGuard<'_, ()> {
        self.stripe(case_id)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn stripe(&self, case_id: &str) -> &Mutex<()> {
        let mut hasher = DefaultHasher::new();
        case_id.hash(&mut hasher);
        &self.stripes[(hasher.finish() % STRIPES as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_case_waits_and_others_do_not() {
        let locks = CaseLocks::new();
        let held = locks.lock("case-1");
        assert!(locks.stripe("case-1").try_lock().is_err());
        let other = (0..100)
            .map(|i| format!("other-{i}"))
            .find(|id| !std::ptr::eq(locks.stripe(id), locks.stripe("case-1")))
            .unwrap();
        assert!(locks.stripe(&other).try_lock().is_ok());
        drop(held);
        assert!(locks.stripe("case-1").try_lock().is_ok());
    }
}
