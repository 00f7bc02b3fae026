#![no_main]
//! The automerge-repo CBOR decoder, compiled here from the server's own source file
//! (`server/src/amrepo/wire.rs`, which needs only ciborium and thiserror): the server crate
//! (axum, PostgreSQL, SQLCipher, XLSX) is too heavy for an instrumented build.

#[path = "../../../server/src/amrepo/wire.rs"]
#[allow(dead_code)]
mod wire;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wire::fuzz_decode(data);
});
