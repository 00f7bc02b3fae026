//! The one error type the apps see, and the one place core errors are mapped onto it.
//!
//! Each variant carries a sentence a person can read (the core error's message). The variant
//! tells the app what to do about it:
//! - `NotAllowed`: the rules refuse this (role, state, closed case, no identity yet).
//! - `InvalidInput`: something the app passed in is unusable (empty title, bad area code, bad
//!   policy file, a store opened with another device's token).
//! - `NotFound`: no such case or document on this phone.
//! - `Unauthorized`: the server refused the token (or the token is malformed): re-enrol.
//! - `Revoked`: the device was revoked; its data is wiped and every call refuses from now on.
//! - `Network`: no connection, a timeout, a dropped transfer: try again later.
//! - `Server`: the server answered with an error or with something unusable.
//! - `Storage`: the local database cannot be opened or read (corrupt file, newer schema).
//! - `WrongKey`: the store key does not open this database (another key, or not a store);
//!   nothing was changed: open again with the right key.
//! - `Cancelled`: the sync was cancelled; what was stored so far is kept.
//! - `Internal`: a bug (a panic inside the library); the store is left as its last commit.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use gridcase_core::calendar::CalendarError;
use gridcase_core::doc::DocError;
use gridcase_core::phone::{PhoneError, TransportError};
use gridcase_core::policy::PolicyError;
use gridcase_core::server_url::ServerUrlError;
use gridcase_core::store::StoreError;

/// Exported flat: the app sees the variant and its message (Kotlin `GridcaseException.Network`
/// with `.message`, Swift `GridcaseError.Network(message:)`, Python `GridcaseError.Network`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum GridcaseError {
    #[error("{message}")]
    NotAllowed { message: String },
    #[error("{message}")]
    InvalidInput { message: String },
    #[error("{message}")]
    NotFound { message: String },
    #[error("{message}")]
    Unauthorized { message: String },
    #[error("{message}")]
    Revoked { message: String },
    #[error("{message}")]
    Network { message: String },
    #[error("{message}")]
    Server { message: String },
    #[error("{message}")]
    Storage { message: String },
    #[error("{message}")]
    WrongKey { message: String },
    #[error("{message}")]
    Cancelled { message: String },
    #[error("{message}")]
    Internal { message: String },
}

pub type Result<T, E = GridcaseError> = std::result::Result<T, E>;

impl From<PhoneError> for GridcaseError {
    fn from(e: PhoneError) -> Self {
        let message = e.to_string();
        match e {
            PhoneError::NoIdentity => GridcaseError::NotAllowed { message },
            PhoneError::NotFound(_) => GridcaseError::NotFound { message },
            PhoneError::Doc(doc) => doc.into(),
            PhoneError::Store(StoreError::WrongKey) => GridcaseError::WrongKey { message },
            PhoneError::Store(StoreError::BadKey { .. }) => GridcaseError::InvalidInput { message },
            PhoneError::Store(_) => GridcaseError::Storage { message },
            PhoneError::SyncRunning => GridcaseError::NotAllowed { message },
            PhoneError::Token(_) => GridcaseError::Unauthorized { message },
            PhoneError::DeviceMismatch { .. } => GridcaseError::InvalidInput { message },
            PhoneError::Wiped => GridcaseError::Revoked { message },
            PhoneError::Wire(_) | PhoneError::BadData { .. } => GridcaseError::Server { message },
            PhoneError::Transport(t) => t.into(),
            PhoneError::NotDownloaded(_) => GridcaseError::Network { message },
            PhoneError::BadInput(_) => GridcaseError::InvalidInput { message },
        }
    }
}

impl From<DocError> for GridcaseError {
    fn from(e: DocError) -> Self {
        let message = e.to_string();
        match e {
            DocError::Lifecycle(_) | DocError::Closed | DocError::FieldNotEditable { .. } => {
                GridcaseError::NotAllowed { message }
            }
            DocError::Area(_) | DocError::Empty(_) => GridcaseError::InvalidInput { message },
            DocError::Malformed { .. } | DocError::TooNew { .. } => {
                GridcaseError::Storage { message }
            }
            DocError::Automerge(_) => GridcaseError::Internal { message },
        }
    }
}

impl From<TransportError> for GridcaseError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Unauthorized {
                wipe: true,
                message,
                ..
            } => GridcaseError::Revoked {
                message: format!(
                    "this device was revoked and its data on this phone was deleted: {message}"
                ),
            },
            TransportError::Unauthorized { wipe: false, .. } => GridcaseError::Unauthorized {
                message: e.to_string(),
            },
            TransportError::Network(_) => GridcaseError::Network {
                message: e.to_string(),
            },
            TransportError::Server { .. } | TransportError::RetryAfter { .. } => {
                GridcaseError::Server {
                    message: e.to_string(),
                }
            }
        }
    }
}

impl From<ServerUrlError> for GridcaseError {
    fn from(e: ServerUrlError) -> Self {
        GridcaseError::InvalidInput {
            message: e.to_string(),
        }
    }
}

impl From<PolicyError> for GridcaseError {
    fn from(e: PolicyError) -> Self {
        GridcaseError::InvalidInput {
            message: format!("deadline policy: {e}"),
        }
    }
}

impl From<CalendarError> for GridcaseError {
    fn from(e: CalendarError) -> Self {
        GridcaseError::InvalidInput {
            message: format!("holiday calendar: {e}"),
        }
    }
}

/// Uniffi's own catch-all for errors it cannot map (a foreign callback that threw).
impl From<uniffi::UnexpectedUniFFICallbackError> for GridcaseError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        GridcaseError::Internal {
            message: format!("a callback failed: {}", e.reason),
        }
    }
}

impl GridcaseError {
    pub(crate) fn cancelled() -> Self {
        GridcaseError::Cancelled {
            message: "the sync was cancelled; everything received before that is kept".into(),
        }
    }

    fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        GridcaseError::Internal {
            message: format!("internal error in gridcase (please report it): {what}"),
        }
    }
}

/// Runs an exported method's body so that a panic reaches the app as [`GridcaseError::Internal`]
/// instead of crossing the boundary.
pub(crate) fn guard<T>(body: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|p| Err(GridcaseError::from_panic(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_internal_errors() {
        let r: Result<()> = guard(|| panic!("boom"));
        match r {
            Err(GridcaseError::Internal { message }) => assert!(message.contains("boom")),
            other => panic!("unexpected {other:?}"),
        }
        let r: Result<()> = guard(|| panic!("{}", String::from("formatted")));
        assert!(
            matches!(r, Err(GridcaseError::Internal { message }) if message.contains("formatted"))
        );
    }

    #[test]
    fn transport_errors_map_to_their_variants() {
        let e: GridcaseError = TransportError::Unauthorized {
            wipe: false,
            message: "bad token".into(),
            proof: None,
        }
        .into();
        assert!(matches!(e, GridcaseError::Unauthorized { .. }));
        let e: GridcaseError = PhoneError::Transport(TransportError::Unauthorized {
            wipe: true,
            message: "revoked".into(),
            proof: None,
        })
        .into();
        assert!(matches!(e, GridcaseError::Revoked { .. }));
        let e: GridcaseError =
            PhoneError::Transport(TransportError::Network("refused".into())).into();
        assert!(matches!(e, GridcaseError::Network { message } if message.contains("refused")));
        let e: GridcaseError = TransportError::Server {
            status: 500,
            code: "internal".into(),
            message: "oops".into(),
        }
        .into();
        assert!(matches!(e, GridcaseError::Server { .. }));
        let e: GridcaseError = PhoneError::NoIdentity.into();
        assert!(matches!(e, GridcaseError::NotAllowed { .. }));
        let e: GridcaseError = PhoneError::Wiped.into();
        assert!(matches!(e, GridcaseError::Revoked { .. }));
        let e: GridcaseError = PhoneError::Store(StoreError::WrongKey).into();
        assert!(matches!(e, GridcaseError::WrongKey { message } if message.contains("key")));
        let e: GridcaseError = PhoneError::Store(StoreError::BadKey { len: 3 }).into();
        assert!(matches!(e, GridcaseError::InvalidInput { .. }));
        let e: GridcaseError = PhoneError::SyncRunning.into();
        assert!(matches!(e, GridcaseError::NotAllowed { .. }));
    }
}
