//! Who this phone is and where its sync stands: the identity learnt from the server, the
//! token, and the status a settings screen shows (pending changes, last sync, last error,
//! refused changes).

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::{Phone, PhoneError};
use crate::model::{Author, Millis, Role};
use crate::store::{Store, docs, meta};
use crate::sync::{DocId, Identity};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedDoc {
    pub doc_id: DocId,
    /// A [`crate::sync::RejectCode`] spelling.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncStatus {
    /// Documents holding changes the server has not acknowledged (rejected ones included).
    pub pending_docs: u64,
    pub last_sync_at: Option<Millis>,
    pub last_error: Option<String>,
    pub rejected: Vec<RejectedDoc>,
    /// A restore is under way (more pages to fetch).
    pub restoring: bool,
}

impl Phone {
    /// The device token, for the transport's `Authorization` header.
    pub fn token(&self) -> Result<String, PhoneError> {
        self.check()?;
        meta::token(self.app().conn())?.ok_or(PhoneError::Wiped)
    }

    /// Who the server says this device belongs to, once known.
    pub fn identity(&self) -> Result<Option<Identity>, PhoneError> {
        self.check()?;
        Ok(meta::identity(self.app().conn(), &self.device)?)
    }

    /// Sets the identity without a sync. For tests and for tools provisioning a phone offline;
    /// the app learns it from the server.
    pub fn set_identity_for_tests(&self, identity: &Identity) -> Result<(), PhoneError> {
        self.check()?;
        let mut store = self.app();
        let tx = store.write()?;
        meta::set_identity(&tx, identity)?;
        tx.commit()?;
        Ok(())
    }

    pub fn sync_status(&self) -> Result<SyncStatus, PhoneError> {
        self.check()?;
        let mut store = self.app();
        let tx = store.read()?;
        let rejected = docs::rejected_docs(&tx)?
            .into_iter()
            .map(|(doc_id, code, message)| RejectedDoc {
                doc_id,
                code,
                message,
            })
            .collect();
        Ok(SyncStatus {
            pending_docs: docs::pending_count(&tx)?,
            last_sync_at: meta::last_sync_at(&tx)?,
            last_error: meta::last_error(&tx)?,
            rejected,
            restoring: meta::sync_position(&tx)?.restore.is_some(),
        })
    }

    /// Keeps `message` as the last sync error. Best effort: failing to record an error must not
    /// hide the error itself.
    pub(crate) fn record_error(&self, store: &mut Store, message: &str) {
        if self.check().is_err() {
            return;
        }
        if let Ok(tx) = store.write()
            && meta::set_last_error(&tx, message).is_ok()
        {
            let _ = tx.commit();
        }
    }
}

/// The author of this phone's changes, from the identity learnt in the first sync.
pub(crate) fn author(conn: &Connection, device: &str) -> Result<Author, PhoneError> {
    let identity = meta::identity(conn, device)?.ok_or(PhoneError::NoIdentity)?;
    let role = Role::parse(&identity.role).ok_or(PhoneError::NoIdentity)?;
    Ok(Author {
        user: identity.user,
        device: device.to_string(),
        role,
    })
}
