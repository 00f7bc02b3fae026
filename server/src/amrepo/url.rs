//! Automerge URLs of gridcase documents. automerge-repo names a document by the base58check
//! encoding of its id's bytes (`automerge:<base58check>`); a gridcase document's id is its case
//! id (`<case id>`) or its personal-data document's id (`<case id>#pii`), so the bytes are that
//! id in UTF-8. Nothing is stored: the URL of every document follows from its id, and the id
//! from the URL.

use sha2::{Digest, Sha256};

/// The prefix of an Automerge URL.
pub const URL_PREFIX: &str = "automerge:";
/// Longest document id (base58check text) accepted from a client: the encoding of any id of up
/// to [`MAX_DOC_ID_BYTES`] bytes (base58 writes at most 1.37 characters a byte).
pub const MAX_DOCUMENT_ID_CHARS: usize = 256;
/// Longest gridcase document id with an Automerge URL: far above a case id (a UUID, 36 bytes,
/// plus `#pii`).
pub const MAX_DOC_ID_BYTES: usize = 180;

/// The base58check checksum: the first four bytes of SHA-256 twice.
fn checksum(payload: &[u8]) -> [u8; 4] {
    let twice = Sha256::digest(Sha256::digest(payload));
    [twice[0], twice[1], twice[2], twice[3]]
}

/// The automerge-repo document id of a gridcase document id.
pub fn document_id(doc_id: &str) -> String {
    let mut bytes = doc_id.as_bytes().to_vec();
    bytes.extend_from_slice(&checksum(doc_id.as_bytes()));
    bs58::encode(bytes).into_string()
}

/// The Automerge URL of a gridcase document id, as `Repo.find` takes it.
pub fn automerge_url(doc_id: &str) -> String {
    format!("{URL_PREFIX}{}", document_id(doc_id))
}

/// The gridcase document id an automerge-repo document id names, if it names one at all
/// (valid base58, a matching checksum, UTF-8 without NUL).
pub fn doc_id_of(document_id: &str) -> Option<String> {
    if document_id.len() > MAX_DOCUMENT_ID_CHARS {
        return None;
    }
    let bytes = bs58::decode(document_id).into_vec().ok()?;
    let split = bytes.len().checked_sub(4)?;
    let (payload, sum) = bytes.split_at(split);
    if payload.is_empty() || sum != checksum(payload) {
        return None;
    }
    String::from_utf8(payload.to_vec())
        .ok()
        .filter(|id| !id.contains('\0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_url() {
        // Pinned: the same id must give the same URL in every release (web clients keep them).
        // Computed independently with automerge-repo 2.5.6's `stringifyAutomergeUrl`.
        let id = "5f0c1a2e-1b2c-4d3e-a4f5-66778899aabb";
        assert_eq!(automerge_url(id), GOLDEN_URL);
        assert_eq!(doc_id_of(&document_id(id)).as_deref(), Some(id));
    }

    const GOLDEN_URL: &str = "automerge:3etbwRFX2pXPTumUXGLDefw7n4yRuA45DrcwnvCTHE27mv9eorYjoa6";

    #[test]
    fn refuses_what_names_no_document() {
        let good = document_id("c-1");
        let mut corrupted = good.clone().into_bytes();
        corrupted[0] = if corrupted[0] == b'2' { b'3' } else { b'2' };
        let corrupted = String::from_utf8(corrupted).unwrap();
        for bad in ["", "0OIl", "abc", &corrupted, &"z".repeat(300)] {
            assert_eq!(doc_id_of(bad), None, "{bad}");
        }
        assert_eq!(doc_id_of(&document_id("a\0b")), None);
        let longest = "x".repeat(MAX_DOC_ID_BYTES);
        assert_eq!(doc_id_of(&document_id(&longest)), Some(longest));
        assert_eq!(doc_id_of(&good).as_deref(), Some("c-1"));
    }

    proptest! {
        #[test]
        fn roundtrip(id in "[^\u{0}]{1,80}".prop_filter("fits", |id| id.len() <= MAX_DOC_ID_BYTES)) {
            prop_assert_eq!(doc_id_of(&document_id(&id)), Some(id));
        }

        #[test]
        fn any_text_is_safe(text in ".{0,300}") {
            let _ = doc_id_of(&text);
        }
    }
}
