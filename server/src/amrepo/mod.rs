//! The automerge-repo network protocol (issue 14): web and JavaScript clients using an
//! unmodified `@automerge/automerge-repo` 2.5 with its `WebSocketClientAdapter` `find()` case
//! documents by their Automerge URLs over `GET /v1/automerge-repo?token=…`
//! (`crate::http::automerge_repo`).
//!
//! Written here on `automerge::sync` rather than with the `samod` crate: samod is a whole
//! repo (its own storage, its own announce policy, its own document ids), while the server
//! must stay the authority: documents live in our database and are read through our scope
//! rule on every message, and whatever a client sends is held to the same rule as a phone's
//! catch-up message. The protocol itself is small (six message types in CBOR), so owning it
//! costs less than bending samod's storage and policy hooks to our data layer.
//!
//! - [`url`]: a document's Automerge URL from its gridcase id, and back;
//! - [`wire`]: the CBOR messages;
//! - [`session`]: one connection's protocol as pure code (messages in, messages out);
//! - [`Scoped`]: the documents a device may see, through the one scope rule.
//!
//! Web clients are **read-only**: see [`session`] for how a write is refused without a loop.

pub mod session;
pub mod url;
pub mod wire;

use std::sync::Arc;

use automerge::AutoCommit;
use gridcase_core::doc::split_doc_id;
use gridcase_core::scope::Scope;

use crate::db::is_storable;
use crate::documents::load_in;
use crate::store::{Result, Store};

/// A device's view of the stored documents: [`Scope::covers_doc`] over the case's projection,
/// then the document, both from one read snapshot.
pub struct Scoped {
    pub store: Arc<Store>,
    pub scope: Scope,
}

impl session::DocSource for Scoped {
    fn scoped(&mut self, doc_id: &str) -> Result<Option<AutoCommit>> {
        if !is_storable(doc_id) {
            return Ok(None);
        }
        let mut view = self.store.db().read()?;
        let Some(case) = view.case_scope(split_doc_id(doc_id).0)? else {
            return Ok(None);
        };
        if !self.scope.covers_doc(doc_id, &case) {
            return Ok(None);
        }
        Ok(load_in(&mut *view, doc_id)?.map(|loaded| loaded.doc))
    }
}
