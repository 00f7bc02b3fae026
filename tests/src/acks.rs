//! A transport that records what a server acknowledged, for the crash tests: every change a
//! phone was told is stored must be in the database after a kill.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use automerge::{Change, ChangeHash};
use gridcase_bindings::http::HttpTransport;
use gridcase_core::phone::{Transport, TransportError};
use gridcase_core::sync::PushResult;
use gridcase_core::sync::wire;

/// What the server acknowledged: the heads it reported after the merge and the hashes of the
/// changes pushed in the acknowledged request, per document.
#[derive(Default)]
pub struct Acks {
    /// (phone, doc id) → change hashes the server must hold.
    pub required: BTreeMap<(String, String), BTreeSet<ChangeHash>>,
    pub responses: usize,
    pub accepted: usize,
}

/// Passes exchanges through to HTTP and records every acknowledgement in a response that
/// reached the phone.
pub struct Recording<'a> {
    pub inner: HttpTransport,
    pub phone: String,
    pub acks: &'a Mutex<Acks>,
}

impl Transport for Recording<'_> {
    fn exchange(&mut self, body: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let request = wire::decode_request(&body).expect("the phone's request decodes");
        let answer = self.inner.exchange(body)?;
        let response = wire::decode_response(&answer).unwrap_or_else(|e| {
            panic!(
                "{}: an HTTP 200 answer that does not decode ({e}); {} bytes",
                self.phone,
                answer.len()
            )
        });
        let mut acks = self.acks.lock().unwrap();
        acks.responses += 1;
        for result in &response.results {
            let PushResult::Accepted { doc_id, heads } = result else {
                continue;
            };
            acks.accepted += 1;
            let mut hashes: BTreeSet<ChangeHash> = heads
                .iter()
                .map(|h| ChangeHash::try_from(h.as_slice()).expect("a 32-byte head"))
                .collect();
            for push in request.pushes.iter().filter(|p| &p.doc_id == doc_id) {
                for bytes in &push.changes {
                    let change = Change::from_bytes(bytes.clone()).expect("a pushed change");
                    hashes.insert(change.hash());
                }
            }
            acks.required
                .entry((self.phone.clone(), doc_id.clone()))
                .or_default()
                .extend(hashes);
        }
        Ok(answer)
    }
}
