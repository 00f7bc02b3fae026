//! The `meta` table: one install's facts as key/value text, behind typed functions so no key
//! is spelled twice. What the sync needs to resume (cursor and restore token) is written in the
//! same transaction as the page it describes.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::model::Millis;
use crate::rules::{RulesText, RulesUpdate};
use crate::sync::{Identity, RestoreToken};

const DEVICE: &str = "device_id";
const TOKEN: &str = "device_token";
const NONCE: &str = "actor_nonce";
const USER: &str = "identity_user";
const ROLE: &str = "identity_role";
const JURISDICTION: &str = "identity_jurisdiction";
const CURSOR: &str = "cursor";
const RESTORE_UPTO: &str = "restore_upto";
const RESTORE_AFTER: &str = "restore_after";
const LAST_SYNC: &str = "last_sync_at";
const LAST_ERROR: &str = "last_error";
const SERVER_OFFSET: &str = "server_clock_offset";
const RULES_VERSION: &str = "rules_version";
const RULES_TEXT: &str = "rules_text";

pub fn get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub fn set(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

pub fn delete(conn: &Connection, key: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM meta WHERE key = ?1")?
        .execute([key])?;
    Ok(())
}

// ----- the install -----

pub fn device_id(conn: &Connection) -> Result<Option<String>, StoreError> {
    get(conn, DEVICE)
}

pub fn set_device_id(conn: &Connection, device: &str) -> Result<(), StoreError> {
    set(conn, DEVICE, device)
}

pub fn token(conn: &Connection) -> Result<Option<String>, StoreError> {
    get(conn, TOKEN)
}

pub fn set_token(conn: &Connection, token: &str) -> Result<(), StoreError> {
    set(conn, TOKEN, token)
}

/// The 4 bytes that make this install's Automerge actor unique (see `identity::actor_for`).
pub fn actor_nonce(conn: &Connection) -> Result<Option<[u8; 4]>, StoreError> {
    let Some(text) = get(conn, NONCE)? else {
        return Ok(None);
    };
    nonce_from_hex(&text)
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt {
            doc_id: "meta".into(),
            message: format!("actor nonce {text:?}"),
        })
}

pub fn set_actor_nonce(conn: &Connection, nonce: [u8; 4]) -> Result<(), StoreError> {
    let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    set(conn, NONCE, &hex)
}

fn nonce_from_hex(text: &str) -> Option<[u8; 4]> {
    if text.len() != 8 {
        return None;
    }
    let mut out = [0u8; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Who the server says this device belongs to, once a sync told it.
pub fn identity(conn: &Connection, device: &str) -> Result<Option<Identity>, StoreError> {
    let Some(user) = get(conn, USER)? else {
        return Ok(None);
    };
    Ok(Some(Identity {
        user,
        device: device.to_string(),
        role: get(conn, ROLE)?.unwrap_or_default(),
        jurisdiction: get(conn, JURISDICTION)?.unwrap_or_default(),
    }))
}

pub fn set_identity(conn: &Connection, identity: &Identity) -> Result<(), StoreError> {
    set(conn, USER, &identity.user)?;
    set(conn, ROLE, &identity.role)?;
    set(conn, JURISDICTION, &identity.jurisdiction)
}

// ----- the sync position -----

/// Where the next sync starts: the change-feed cursor and, during a restore, its token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncPosition {
    pub cursor: u64,
    pub restore: Option<RestoreToken>,
    /// The version of the server's deadline rules this phone holds (0: the shipped ones).
    pub rules_version: u64,
}

pub fn sync_position(conn: &Connection) -> Result<SyncPosition, StoreError> {
    let cursor = get(conn, CURSOR)?.and_then(|c| c.parse().ok()).unwrap_or(0);
    let restore = match (get(conn, RESTORE_UPTO)?, get(conn, RESTORE_AFTER)?) {
        (Some(upto), Some(after)) => upto.parse().ok().map(|upto| RestoreToken { upto, after }),
        _ => None,
    };
    let rules_version = get(conn, RULES_VERSION)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(SyncPosition {
        cursor,
        restore,
        rules_version,
    })
}

/// The server's deadline rules as last received, if a sync ever brought them.
pub fn server_rules(conn: &Connection) -> Result<Option<RulesUpdate>, StoreError> {
    let (Some(version), Some(text)) = (get(conn, RULES_VERSION)?, get(conn, RULES_TEXT)?) else {
        return Ok(None);
    };
    let corrupt = |what: &str| StoreError::Corrupt {
        doc_id: "meta".into(),
        message: format!("stored deadline rules: {what}"),
    };
    let version = version.parse().map_err(|_| corrupt("version"))?;
    let text: RulesText = serde_json::from_str(&text).map_err(|_| corrupt("text"))?;
    Ok(Some(RulesUpdate { version, text }))
}

pub fn set_server_rules(conn: &Connection, rules: &RulesUpdate) -> Result<(), StoreError> {
    let text = serde_json::to_string(&rules.text).expect("two strings serialise");
    set(conn, RULES_TEXT, &text)?;
    set(conn, RULES_VERSION, &rules.version.to_string())
}

/// What an applied page records besides its documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRecord<'a> {
    pub position: &'a SyncPosition,
    pub synced_at: Millis,
    /// Server time minus device time, as measured by this exchange.
    pub clock_offset: Millis,
}

/// Stores the new position, the sync time and the clock offset, and clears the last error.
pub fn record_page(conn: &Connection, page: &PageRecord<'_>) -> Result<(), StoreError> {
    set(conn, CURSOR, &page.position.cursor.to_string())?;
    match &page.position.restore {
        Some(token) => {
            set(conn, RESTORE_UPTO, &token.upto.to_string())?;
            set(conn, RESTORE_AFTER, &token.after)?;
        }
        None => {
            delete(conn, RESTORE_UPTO)?;
            delete(conn, RESTORE_AFTER)?;
        }
    }
    set(conn, SERVER_OFFSET, &page.clock_offset.to_string())?;
    set(conn, LAST_SYNC, &page.synced_at.to_string())?;
    delete(conn, LAST_ERROR)
}

/// Server time minus this phone's time, as the last sync measured it (0 before any sync).
pub fn clock_offset(conn: &Connection) -> Result<Millis, StoreError> {
    Ok(get(conn, SERVER_OFFSET)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

pub fn last_sync_at(conn: &Connection) -> Result<Option<Millis>, StoreError> {
    Ok(get(conn, LAST_SYNC)?.and_then(|v| v.parse().ok()))
}

pub fn last_error(conn: &Connection) -> Result<Option<String>, StoreError> {
    get(conn, LAST_ERROR)
}

pub fn set_last_error(conn: &Connection, message: &str) -> Result<(), StoreError> {
    set(conn, LAST_ERROR, message)
}

#[cfg(test)]
pub(crate) const LAST_ERROR_KEY: &str = LAST_ERROR;
#[cfg(test)]
pub(crate) const LAST_SYNC_KEY: &str = LAST_SYNC;
