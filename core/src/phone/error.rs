//! What a phone call can fail with, and the transport the sync talks through.

use crate::doc::DocError;
use crate::identity::IdentityError;
use crate::store::StoreError;
use crate::sync::wire::WireError;

#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    #[error(
        "this phone does not know who you are yet: sync once while online to learn who you are"
    )]
    NoIdentity,
    #[error("no case or document {0} on this phone")]
    NotFound(String),
    #[error(transparent)]
    Doc(#[from] DocError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Token(#[from] IdentityError),
    #[error("this database belongs to device {stored}, not to the token's device {token}")]
    DeviceMismatch { stored: String, token: String },
    #[error("this phone's data was wiped; open it again with a new token")]
    Wiped,
    #[error("a sync is already running")]
    SyncRunning,
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the server sent something unusable for {doc_id}: {message}")]
    BadData { doc_id: String, message: String },
    #[error("attachment {0} is not on this phone yet: open it again while online")]
    NotDownloaded(String),
    #[error("{0}")]
    BadInput(String),
}

impl PhoneError {
    /// A stable code for the bindings.
    pub fn code(&self) -> &'static str {
        match self {
            PhoneError::NoIdentity => "no_identity",
            PhoneError::NotFound(_) => "not_found",
            PhoneError::Doc(_) => "refused",
            PhoneError::Store(StoreError::WrongKey) => "wrong_key",
            PhoneError::Store(StoreError::BadKey { .. }) => "bad_key",
            PhoneError::Store(_) => "storage",
            PhoneError::Token(_) => "bad_token",
            PhoneError::DeviceMismatch { .. } => "device_mismatch",
            PhoneError::Wiped => "wiped",
            PhoneError::SyncRunning => "sync_running",
            PhoneError::Wire(e) => e.code(),
            PhoneError::Transport(TransportError::Unauthorized { .. }) => "unauthorized",
            PhoneError::Transport(TransportError::Network(_)) => "network",
            PhoneError::Transport(TransportError::Server { .. }) => "server",
            PhoneError::Transport(TransportError::RetryAfter { .. }) => "retry_later",
            PhoneError::BadData { .. } => "bad_data",
            PhoneError::NotDownloaded(_) => "not_downloaded",
            PhoneError::BadInput(_) => "bad_input",
        }
    }
}

impl From<rusqlite::Error> for PhoneError {
    fn from(e: rusqlite::Error) -> Self {
        PhoneError::Store(StoreError::Sqlite(e))
    }
}

pub(crate) fn bad(doc_id: &str, e: impl std::fmt::Display) -> PhoneError {
    PhoneError::BadData {
        doc_id: doc_id.into(),
        message: e.to_string(),
    }
}

/// Why an exchange with the server failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The token was refused. `wipe`: the answer says the device was revoked; the phone deletes
    /// its data only if `proof` verifies ([`crate::revocation`]).
    #[error("the server refused this device: {message}")]
    Unauthorized {
        wipe: bool,
        message: String,
        proof: Option<String>,
    },
    /// 429: this device used up its quota; the phone does not sync again for `seconds`.
    #[error("the server asks this device to wait: retry after {seconds} s ({message})")]
    RetryAfter { seconds: u64, message: String },
    #[error("network: {0}")]
    Network(String),
    #[error("server error {status} ({code}): {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
}

/// One request/response round trip with the server (HTTP in the app, in memory in tests).
/// It runs while the phone holds no lock and no transaction: it may take as long as the link
/// needs without blocking any other call.
pub trait Transport {
    fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError>;
}
