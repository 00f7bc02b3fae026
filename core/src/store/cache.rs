//! How many decrypted pages a connection keeps. Every page SQLCipher reads from the file is
//! decrypted and its HMAC checked, so a page evicted from SQLite's cache costs that again when
//! it is next needed. A restore appends thousands of snapshots in id order while it updates
//! the list's indexes all over: with the everyday cache those index pages were evicted by the
//! snapshot pages passing through and decrypted again and again (W1 on a 2-core machine: 5.2 s
//! encrypted against 3.7 s plain with 8 MiB; 3.6 s against 3.5 s with 64 MiB, BENCHMARKS.md).
//! So a sync gets a wide cache for its duration, and gives the memory back when it ends.

use std::ops::{Deref, DerefMut};

use super::{Store, StoreError};

/// Page cache per connection in everyday use, in KiB.
pub(super) const EVERYDAY_KIB: i64 = 8 * 1024;

/// Page cache while a sync runs, in KiB. SQLite allocates pages as it uses them, so a store
/// smaller than this (any township's) takes only its own size.
pub(super) const SYNC_KIB: i64 = 64 * 1024;

pub(super) fn set_cache_kib(store: &Store, kib: i64) -> Result<(), StoreError> {
    store.conn.pragma_update(None, "cache_size", -kib)?;
    Ok(())
}

/// A store (behind any guard, such as a `MutexGuard`) with the sync's wide cache until this
/// is dropped; then the cache shrinks back and SQLite frees the pages over it.
pub struct WideCache<S: DerefMut<Target = Store>> {
    store: S,
}

impl<S: DerefMut<Target = Store>> WideCache<S> {
    pub fn new(store: S) -> Result<WideCache<S>, StoreError> {
        set_cache_kib(&store, SYNC_KIB)?;
        Ok(WideCache { store })
    }
}

impl<S: DerefMut<Target = Store>> Deref for WideCache<S> {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

impl<S: DerefMut<Target = Store>> DerefMut for WideCache<S> {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.store
    }
}

impl<S: DerefMut<Target = Store>> Drop for WideCache<S> {
    fn drop(&mut self) {
        // Failing to shrink leaves only memory in use: nothing to report to the caller.
        let _ = set_cache_kib(&self.store, EVERYDAY_KIB);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_kib(store: &Store) -> i64 {
        -store
            .conn
            .pragma_query_value(None, "cache_size", |r| r.get::<_, i64>(0))
            .unwrap()
    }

    #[test]
    fn the_cache_is_wide_while_held_and_everyday_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("phone.db"), None).unwrap();
        assert_eq!(cache_kib(&store), EVERYDAY_KIB);
        {
            let wide = WideCache::new(&mut store).unwrap();
            assert_eq!(cache_kib(&wide), SYNC_KIB);
        }
        assert_eq!(cache_kib(&store), EVERYDAY_KIB);
    }
}
