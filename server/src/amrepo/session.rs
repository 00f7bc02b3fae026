//! One client connection's protocol, without I/O: messages in, messages out. The shell
//! (`crate::http::automerge_repo`) reads frames, gives them to [`Session::receive`], calls
//! [`Session::refresh`] when the change feed moved, and writes what comes back.
//!
//! The server is the authority. Every document is looked up through [`DocSource`], which
//! applies the device's scope (the one rule, `gridcase_core::scope`): a document out of scope
//! and a document that does not exist both answer `doc-unavailable`.
//!
//! Web clients are read-only, in two layers. The server's sync state for each document is
//! Automerge's read-only state (`State::new_read_only`): its messages carry the `READ_ONLY`
//! flag, and a client that honours it (Automerge 3.5 does) stops sending changes at all. A
//! client that sends changes anyway meets `limits::decode_catch_up`, the rule that changes
//! reach the server only through judged pushes (`POST /v1/sync`): the message is refused with
//! an ephemeral notice and the session's sync state is left as it was, so the change is never
//! taken in and the client, whose own sync state remembers having sent it, does not send it
//! again on this connection. Either way nothing loops.

use std::collections::HashMap;

use automerge::AutoCommit;
use automerge::sync::{State, SyncDoc};
use ciborium::Value;
use gridcase_core::sync::limits::{self, LimitError};

use super::url;
use super::wire::{Message, PROTOCOL_VERSION};
use crate::store::Result;

/// The ephemeral notice's `type` when a write is refused.
pub const REFUSED_NOTICE: &str = "gridcase-refused";
/// Most documents one connection keeps open (sync states held in memory).
pub const MAX_OPEN_DOCS: usize = 1000;

/// Documents as one device may see them.
pub trait DocSource {
    /// The server's copy of `doc_id` if it exists and lies in the device's scope, else `None`.
    fn scoped(&mut self, doc_id: &str) -> Result<Option<AutoCommit>>;
}

/// Why a connection ends, as the `error` message tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing(pub String);

/// A document the client has asked for: its gridcase id and the sync state with the client.
struct Open {
    doc_id: String,
    state: State,
}

/// The state of one connection.
pub struct Session {
    /// The server's peer id on this connection.
    me: String,
    /// The client's peer id, once it has joined.
    client: Option<String>,
    /// By automerge-repo document id.
    open: HashMap<String, Open>,
    /// Ephemeral messages sent (the protocol counts them per session).
    notices: u64,
}

/// What one step gives back: messages to send, then possibly the end of the connection.
pub type Step = std::result::Result<Vec<Message>, Closing>;

impl Session {
    /// A session whose server peer id is `me` (random per connection, chosen by the caller).
    pub fn new(me: String) -> Session {
        Session {
            me,
            client: None,
            open: HashMap::new(),
            notices: 0,
        }
    }

    /// The server's answer to one message from the client.
    pub fn receive(&mut self, message: Message, docs: &mut dyn DocSource) -> Result<Step> {
        let Some(client) = self.client.clone() else {
            return Ok(self.join(message));
        };
        match message {
            Message::Request { document, data, .. } | Message::Sync { document, data, .. } => {
                self.sync(&client, document, &data, docs)
            }
            Message::Leave { .. } => Ok(Err(Closing("the client left".into()))),
            Message::Join { .. } => Ok(Err(Closing("joined twice".into()))),
            // Presence and gossip between web clients are not relayed; a client's errors and
            // unavailable documents need no answer.
            _ => Ok(Ok(Vec::new())),
        }
    }

    /// The first message must be a `join` that speaks protocol "1".
    fn join(&mut self, message: Message) -> Step {
        let Message::Join { sender, versions } = message else {
            return Err(Closing("the first message must be a join".into()));
        };
        if !versions.iter().any(|v| v == PROTOCOL_VERSION) {
            return Err(Closing("unsupported protocol version".into()));
        }
        self.client = Some(sender.clone());
        Ok(vec![Message::Peer {
            sender: self.me.clone(),
            target: sender,
            version: PROTOCOL_VERSION.into(),
        }])
    }

    fn unavailable(&mut self, client: &str, document: String) -> Step {
        self.open.remove(&document);
        Ok(vec![Message::Unavailable {
            sender: self.me.clone(),
            target: client.to_owned(),
            document,
        }])
    }

    /// A `request` or `sync` for one document.
    fn sync(
        &mut self,
        client: &str,
        document: String,
        data: &[u8],
        docs: &mut dyn DocSource,
    ) -> Result<Step> {
        let found = match url::doc_id_of(&document) {
            Some(doc_id) => docs.scoped(&doc_id)?.map(|doc| (doc_id, doc)),
            None => None,
        };
        let Some((doc_id, mut doc)) = found else {
            return Ok(self.unavailable(client, document));
        };
        let message = match limits::decode_catch_up(data) {
            Ok(message) => message,
            Err(LimitError::ChangesInCatchUp) => return Ok(Ok(self.refuse(client, document))),
            Err(e) => return Ok(Err(Closing(format!("bad sync message: {e}")))),
        };
        if !self.open.contains_key(&document) && self.open.len() >= MAX_OPEN_DOCS {
            return Ok(Err(Closing("too many documents open".into())));
        }
        let open = self.open.entry(document.clone()).or_insert_with(|| Open {
            doc_id,
            state: State::new_read_only(),
        });
        // The message holds no changes, so receiving it changes only the sync state.
        if let Err(e) = doc.sync().receive_sync_message(&mut open.state, message) {
            return Ok(Err(Closing(format!("bad sync message: {e}"))));
        }
        let reply = doc.sync().generate_sync_message(&mut open.state);
        Ok(Ok(reply
            .map(|m| self.sync_message(client, document, m.encode()))
            .into_iter()
            .collect()))
    }

    fn sync_message(&self, client: &str, document: String, data: Vec<u8>) -> Message {
        Message::Sync {
            sender: self.me.clone(),
            target: client.to_owned(),
            document,
            data,
        }
    }

    /// The notice that a write was refused: an ephemeral message the page can show
    /// (`handle.on("ephemeral-message")`), with `{type: "gridcase-refused", reason}`.
    fn refuse(&mut self, client: &str, document: String) -> Vec<Message> {
        self.notices += 1;
        let notice = Value::Map(vec![
            (
                Value::Text("type".into()),
                Value::Text(REFUSED_NOTICE.into()),
            ),
            (
                Value::Text("reason".into()),
                Value::Text(
                    "web clients are read-only: changes reach the server through a phone's sync"
                        .into(),
                ),
            ),
        ]);
        vec![Message::Ephemeral {
            sender: self.me.clone(),
            target: client.to_owned(),
            document,
            session: self.me.clone(),
            count: self.notices,
            data: super::wire::encode_value(&notice),
        }]
    }

    /// After the change feed moved: what each open document's client now lacks. A document
    /// that left the device's scope (or was removed) becomes unavailable and is closed.
    pub fn refresh(&mut self, docs: &mut dyn DocSource) -> Result<Vec<Message>> {
        let Some(client) = self.client.clone() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let documents: Vec<String> = self.open.keys().cloned().collect();
        for document in documents {
            let doc_id = self.open[&document].doc_id.clone();
            let Some(mut doc) = docs.scoped(&doc_id)? else {
                out.extend(self.unavailable(&client, document).unwrap_or_default());
                continue;
            };
            let open = self.open.get_mut(&document).expect("listed above");
            if let Some(m) = doc.sync().generate_sync_message(&mut open.state) {
                out.push(self.sync_message(&client, document, m.encode()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
