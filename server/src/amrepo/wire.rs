//! The automerge-repo network protocol's messages, version "1": one CBOR map per WebSocket
//! binary frame, keyed by text (`type`, `senderId`, `targetId`, `documentId`, `data`, …), as
//! `@automerge/automerge-repo-network-websocket` 2.5 sends them. Decoding goes through
//! `ciborium::Value` (bounded nesting, never panics) and then checks each field by hand, so a
//! malformed frame is an error the connection answers by closing, never a panic.

use ciborium::Value;

/// The one protocol version this server speaks.
pub const PROTOCOL_VERSION: &str = "1";

/// One message of the protocol. Field names follow the JavaScript ones: `sender` is
/// `senderId`, `target` `targetId`, `document` `documentId` (base58check, `super::url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A client's hello, with the protocol versions it speaks.
    Join {
        sender: String,
        versions: Vec<String>,
    },
    /// The server's answer to `join`: its peer id and the version chosen.
    Peer {
        sender: String,
        target: String,
        version: String,
    },
    /// A sync message for a document the sender does not have yet.
    Request {
        sender: String,
        target: String,
        document: String,
        data: Vec<u8>,
    },
    /// An Automerge sync message for a document.
    Sync {
        sender: String,
        target: String,
        document: String,
        data: Vec<u8>,
    },
    /// The sender does not have the document (or will not say it has).
    Unavailable {
        sender: String,
        target: String,
        document: String,
    },
    /// Application data about a document that is not stored (presence, notices); `data` is
    /// itself CBOR.
    Ephemeral {
        sender: String,
        target: String,
        document: String,
        session: String,
        count: u64,
        data: Vec<u8>,
    },
    /// An error the receiver should log; the sender closes the connection after it.
    Error {
        sender: String,
        target: String,
        message: String,
    },
    /// The client is going away.
    Leave { sender: String },
    /// A well-formed message of a type this server does not act on (remote-heads gossip).
    Other { kind: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("not CBOR: {0}")]
    NotCbor(String),
    #[error("a message is a CBOR map with text keys")]
    NotAMap,
    #[error("field `{0}` is missing or of the wrong type")]
    Field(&'static str),
}

/// The fields of a decoded map.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn text(&self, key: &'static str) -> Result<String, WireError> {
        match self.get(key) {
            Some(Value::Text(text)) => Ok(text.clone()),
            _ => Err(WireError::Field(key)),
        }
    }

    fn bytes(&self, key: &'static str) -> Result<Vec<u8>, WireError> {
        match self.get(key) {
            Some(Value::Bytes(bytes)) => Ok(bytes.clone()),
            _ => Err(WireError::Field(key)),
        }
    }

    fn count(&self, key: &'static str) -> Result<u64, WireError> {
        match self.get(key) {
            Some(Value::Integer(n)) => u64::try_from(*n).map_err(|_| WireError::Field(key)),
            _ => Err(WireError::Field(key)),
        }
    }

    fn texts(&self, key: &'static str) -> Result<Vec<String>, WireError> {
        let Some(Value::Array(items)) = self.get(key) else {
            return Err(WireError::Field(key));
        };
        items
            .iter()
            .map(|item| match item {
                Value::Text(text) => Ok(text.clone()),
                _ => Err(WireError::Field(key)),
            })
            .collect()
    }
}

/// Decodes one frame.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    let value: Value =
        ciborium::from_reader(bytes).map_err(|e| WireError::NotCbor(e.to_string()))?;
    let Value::Map(entries) = value else {
        return Err(WireError::NotAMap);
    };
    let entries = entries
        .into_iter()
        .map(|(k, v)| match k {
            Value::Text(k) => Ok((k, v)),
            _ => Err(WireError::NotAMap),
        })
        .collect::<Result<Vec<_>, _>>()?;
    from_fields(&Fields(entries))
}

fn from_fields(f: &Fields) -> Result<Message, WireError> {
    let kind = f.text("type")?;
    let sender = || f.text("senderId");
    let target = || f.text("targetId");
    let document = || f.text("documentId");
    Ok(match kind.as_str() {
        "join" => Message::Join {
            sender: sender()?,
            versions: f.texts("supportedProtocolVersions")?,
        },
        "peer" => Message::Peer {
            sender: sender()?,
            target: target()?,
            version: f.text("selectedProtocolVersion")?,
        },
        "request" | "sync" => {
            let (sender, target, document) = (sender()?, target()?, document()?);
            let data = f.bytes("data")?;
            match kind.as_str() {
                "request" => Message::Request {
                    sender,
                    target,
                    document,
                    data,
                },
                _ => Message::Sync {
                    sender,
                    target,
                    document,
                    data,
                },
            }
        }
        "doc-unavailable" => Message::Unavailable {
            sender: sender()?,
            target: target()?,
            document: document()?,
        },
        "ephemeral" => Message::Ephemeral {
            sender: sender()?,
            target: target()?,
            document: document()?,
            session: f.text("sessionId")?,
            count: f.count("count")?,
            data: f.bytes("data")?,
        },
        "error" => Message::Error {
            sender: sender()?,
            target: target()?,
            message: f.text("message")?,
        },
        "leave" => Message::Leave { sender: sender()? },
        _ => Message::Other { kind },
    })
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// The map of one message, keys in the order the JavaScript client writes them.
fn to_fields(message: &Message) -> Vec<(&'static str, Value)> {
    let ids = |kind: &str, sender: &str, target: &str| {
        vec![
            ("type", text(kind)),
            ("senderId", text(sender)),
            ("targetId", text(target)),
        ]
    };
    match message {
        Message::Join { sender, versions } => vec![
            ("type", text("join")),
            ("senderId", text(sender)),
            ("peerMetadata", Value::Map(Vec::new())),
            (
                "supportedProtocolVersions",
                Value::Array(versions.iter().map(|v| text(v)).collect()),
            ),
        ],
        Message::Peer {
            sender,
            target,
            version,
        } => {
            let mut f = ids("peer", sender, target);
            // An ephemeral peer: the client keeps no sync state for this server in storage.
            let meta = vec![(text("isEphemeral"), Value::Bool(true))];
            f.push(("peerMetadata", Value::Map(meta)));
            f.push(("selectedProtocolVersion", text(version)));
            f
        }
        Message::Request {
            sender,
            target,
            document,
            data,
        }
        | Message::Sync {
            sender,
            target,
            document,
            data,
        } => {
            let kind = if matches!(message, Message::Request { .. }) {
                "request"
            } else {
                "sync"
            };
            let mut f = ids(kind, sender, target);
            f.push(("documentId", text(document)));
            f.push(("data", Value::Bytes(data.clone())));
            f
        }
        Message::Unavailable {
            sender,
            target,
            document,
        } => {
            let mut f = ids("doc-unavailable", sender, target);
            f.push(("documentId", text(document)));
            f
        }
        Message::Ephemeral {
            sender,
            target,
            document,
            session,
            count,
            data,
        } => {
            let mut f = ids("ephemeral", sender, target);
            f.push(("documentId", text(document)));
            f.push(("sessionId", text(session)));
            f.push(("count", Value::Integer((*count).into())));
            f.push(("data", Value::Bytes(data.clone())));
            f
        }
        Message::Error {
            sender,
            target,
            message,
        } => {
            let mut f = ids("error", sender, target);
            f.push(("message", text(message)));
            f
        }
        Message::Leave { sender } => vec![("type", text("leave")), ("senderId", text(sender))],
        Message::Other { kind } => vec![("type", text(kind))],
    }
}

/// Encodes one frame.
pub fn encode(message: &Message) -> Vec<u8> {
    let map = to_fields(message)
        .into_iter()
        .map(|(k, v)| (text(k), v))
        .collect();
    encode_value(&Value::Map(map))
}

/// CBOR bytes of a value (writing to a `Vec` cannot fail).
pub fn encode_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR into a Vec");
    out
}

/// The fuzz target's body (`core/fuzz/fuzz_targets/amrepo_wire.rs`; `tests::fuzz_corpus`
/// replays its corpus on stable): any bytes decode to an error, or to a message that encodes
/// and decodes to itself.
pub fn fuzz_decode(bytes: &[u8]) {
    if let Ok(message) = decode(bytes) {
        assert_eq!(decode(&encode(&message)).as_ref(), Ok(&message));
    }
}

#[cfg(test)]
mod tests;
