//! Encryption at rest: the phone's database is a SQLCipher file (AES-256, a HMAC per page, the
//! WAL encrypted the same way). The key comes from the app, which keeps it in the Android
//! Keystore or the iOS Keychain; nothing here stores it, so a file copied off a lost phone is
//! noise without the device's secure hardware.
//!
//! The key is a raw 256-bit key, not a passphrase: the platform keystores hand out random
//! bytes, and a raw key skips SQLCipher's PBKDF2 (which would cost every open a few hundred
//! milliseconds and adds nothing to a random key).

use rusqlite::{Connection, ErrorCode};

use super::StoreError;

/// The 32 bytes that open one install's database.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreKey([u8; 32]);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

impl StoreKey {
    pub const LEN: usize = 32;

    pub fn new(bytes: [u8; 32]) -> StoreKey {
        StoreKey(bytes)
    }

    /// A key from the app: exactly [`Self::LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<StoreKey, StoreError> {
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| StoreError::BadKey { len: bytes.len() })?;
        Ok(StoreKey(bytes))
    }

    fn sql_literal(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!("\"x'{hex}'\"")
    }
}

/// Hands `key` (if any) to the connection and proves it opens the file, before anything is
/// written: a wrong key (or a file that is not a store) fails here with
/// [`StoreError::WrongKey`] and leaves the files as they were.
pub(super) fn unlock(conn: &Connection, key: Option<&StoreKey>) -> Result<(), StoreError> {
    if let Some(key) = key {
        conn.execute_batch(&format!("PRAGMA key = {};", key.sql_literal()))?;
        // A wrong key comes back as an error below; SQLCipher need not also print it to stderr
        // (its log switches on with the first key, so this goes after it).
        let _ = conn.execute_batch("PRAGMA cipher_log_level = NONE;");
    }
    // Temporary tables and sort spills stay in memory, never in an unencrypted temp file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::NotADatabase => {
            Err(if key.is_some() {
                StoreError::WrongKey
            } else {
                StoreError::NotADatabase
            })
        }
        Err(e) => Err(e.into()),
    }
}
