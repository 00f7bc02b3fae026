//! The wire format: `GCSY`, a big-endian u16 protocol version, then the message as postcard
//! (compact, schema-less varints) compressed with zstd. Versioned so that an old phone talking
//! to a new server, or the reverse, gets a clear error instead of garbage.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{SyncRequest, SyncResponse, refs};

pub const MAGIC: &[u8; 4] = b"GCSY";
/// Each version added fields at the end of both messages, nothing else. Version 2: the trusted
/// times and the deadline rules to the response (`SyncResponse::times`, `rules`), the rules
/// version and the page's byte budget to the request (`SyncRequest::rules_version`,
/// `page_bytes`). Version 3: snapshots in parts (`SyncRequest::accept_parts`, `staged`;
/// `SyncResponse::part`; see [`super::parts`]). Version 4: compact snapshots
/// (`SyncRequest::compact_snapshots`, [`super::compact`]); the response's layout is unchanged.
/// Version 5: trusted times as a block relative to the stated times
/// (`SyncRequest::compact_times`, `SyncResponse::compact_times`, [`super::times::block`]).
/// Version 6: a response names each case once, the personal-data documents and the times
/// block referring to the documents' ids ([`super::refs`]); the request echoes the restore's
/// count of documents left (`SyncRequest::restore_remaining`).
pub const PROTOCOL_VERSION: u16 = 6;
/// The first version whose responses refer to case ids instead of spelling them again.
const REFS_VERSION: u16 = 6;
/// The oldest version still read and answered. An older message is a newer one without the
/// trailing fields, so decoding one appends their empty values; an older phone is answered with
/// its own version in the header over the current body, whose trailing fields it does not read
/// (postcard ignores trailing bytes). An older phone never asks for parts, so its answer holds
/// none.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// What a version-`n` response lacks at its end, for `n` = 1 to 5: after version 1, an empty
/// `times` (a postcard length of 0) and no `rules` (`None`); after version 2, no `part`;
/// after version 3, nothing; after version 4, no `compact_times`; after version 5, nothing.
const RESPONSE_TAILS: [&[u8]; 5] = [&[0, 0], &[0], &[], &[0], &[]];
/// What a version-`n` request lacks at its end, for `n` = 1 to 5: after version 1,
/// `rules_version` 0 and `page_bytes` 0 (the server's default); after version 2,
/// `accept_parts` false and no `staged`; after version 3, `compact_snapshots` false; after
/// version 4, `compact_times` false (such a phone is sent `times`); after version 5,
/// `restore_remaining` 0 (the server counts; that version alone says the phone does not read
/// references, [`REFS_VERSION`]).
const REQUEST_TAILS: [&[u8]; 5] = [&[0, 0], &[0, 0], &[0], &[0], &[0]];
const _: () = assert!(
    RESPONSE_TAILS.len() + 1 == PROTOCOL_VERSION as usize
        && REQUEST_TAILS.len() + 1 == PROTOCOL_VERSION as usize,
    "a new protocol version needs the tails its older peers lack"
);
/// A decoded message may not exceed this, whatever its compressed size: it bounds what a
/// forged body can make the server allocate.
pub const MAX_DECODED_BYTES: usize = 64 * 1024 * 1024;
/// The most change blobs one decoded request may hold, whatever their size. Each costs a
/// `Vec` (about 27 bytes of memory for a one-byte change), so 64 MiB of one-byte changes would
/// otherwise decode to about a gigabyte; this bounds that to about 14 MB. Honest requests hold
/// far fewer (hundreds of documents, tens of changes each). Counted while decoding.
pub const MAX_CHANGES_PER_REQUEST: usize = 500_000;
/// zstd level 3 for what phones send: most of the gain at a fraction of the CPU of higher
/// levels, which matters on cheap phones.
const REQUEST_ZSTD_LEVEL: i32 = 3;
/// zstd level 9 for what the server sends (decoding costs the phone the same at any level):
/// W1's restore bytes 8 % below level 3 for no server time measurable on the bench; level 10
/// saves 1.4 % more, 12 2.3 % at a third more CPU, 19 7 % at fifty times it (BENCHMARKS.md,
/// "zstd levels on W1's responses").
const RESPONSE_ZSTD_LEVEL: i32 = 9;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a gridcase sync message")]
    BadMagic,
    #[error("the message is truncated")]
    Truncated,
    #[error(
        "protocol version {found} is not supported (this side speaks {PROTOCOL_VERSION}); update the app or the server"
    )]
    UnsupportedVersion { found: u16 },
    #[error("the message does not decompress (corrupt or larger than {MAX_DECODED_BYTES} bytes)")]
    Decompress,
    #[error("the message does not decode: {0}")]
    Decode(String),
}

impl WireError {
    /// A stable code for JSON error bodies and the bindings.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::BadMagic => "bad_magic",
            WireError::Truncated => "truncated",
            WireError::UnsupportedVersion { .. } => "unsupported_version",
            WireError::Decompress => "bad_compression",
            WireError::Decode(_) => "bad_message",
        }
    }
}

fn encode<T: Serialize>(message: &T, version: u16, level: i32) -> Vec<u8> {
    let plain = postcard::to_allocvec(message).expect("sync messages always serialize");
    let compressed = codec::compress(&plain, level);
    let mut out = Vec::with_capacity(6 + compressed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&compressed);
    out
}

/// Decodes a message of any supported version; `tails[n - 1]` is what version `n` lacks of
/// version `n + 1`, appended to complete an older body.
fn decode<T: DeserializeOwned>(bytes: &[u8], tails: &[&[u8]]) -> Result<(u16, T), WireError> {
    if bytes.len() < 4 {
        return Err(if MAGIC.starts_with(bytes) {
            WireError::Truncated
        } else {
            WireError::BadMagic
        });
    }
    if &bytes[..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let Some(version) = bytes.get(4..6) else {
        return Err(WireError::Truncated);
    };
    let version = u16::from_be_bytes([version[0], version[1]]);
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
        return Err(WireError::UnsupportedVersion { found: version });
    }
    let mut plain =
        codec::decompress(&bytes[6..], MAX_DECODED_BYTES).ok_or(WireError::Decompress)?;
    for tail in tails.iter().skip(usize::from(version) - 1) {
        plain.extend_from_slice(tail);
    }
    let message = postcard::from_bytes(&plain).map_err(|e| WireError::Decode(e.to_string()))?;
    Ok((version, message))
}

/// zstd with contexts kept per thread. `zstd::bulk::compress` and `decompress` build and free
/// a context per message (its tables allocated and initialised each time: 6 % of the server's
/// CPU on the W3 bench); a sync is decoded and answered on one thread, so each thread keeps one
/// context per direction, with no lock. A frame depends only on the input and the level, never
/// on what the context compressed before, so the bytes are those of a fresh context (test
/// `reused_contexts_give_the_same_frames`). zstd shrinks a context's tables again once they
/// stay oversized, and the server's blocking threads end when idle, dropping theirs.
mod codec {
    use std::cell::RefCell;

    use zstd::bulk::{Compressor, Decompressor};
    use zstd::zstd_safe;

    thread_local! {
        /// This thread's compressor and the level it is set to.
        static COMPRESSOR: RefCell<Option<(i32, Compressor<'static>)>> =
            const { RefCell::new(None) };
        static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
    }

    /// `plain` as one zstd frame at `level` (with its content size, as `zstd::bulk` writes it).
    pub(super) fn compress(plain: &[u8], level: i32) -> Vec<u8> {
        COMPRESSOR.with_borrow_mut(|slot| {
            let (set, compressor) = slot
                .get_or_insert_with(|| (level, Compressor::new(level).expect("a zstd context")));
            if *set != level {
                compressor
                    .set_compression_level(level)
                    .expect("a valid zstd level");
                *set = level;
            }
            compressor
                .compress(plain)
                .expect("zstd compresses in memory")
        })
    }

    /// The decompressed `frame`, or `None` if it is corrupt or decodes to more than `max`
    /// bytes.
    pub(super) fn decompress(frame: &[u8], max: usize) -> Option<Vec<u8>> {
        let mut plain = Vec::with_capacity(capacity(frame, max)?);
        DECOMPRESSOR.with_borrow_mut(|slot| {
            slot.get_or_insert_with(|| Decompressor::new().expect("a zstd context"))
                .decompress_to_buffer(frame, &mut plain)
                .ok()
        })?;
        Some(plain)
    }

    /// The buffer decompressing `frame` needs: the size it declares when it is a single frame
    /// that declares one (as every frame [`compress`] writes does), else `max` (zstd stops
    /// there); `None` for a frame that declares more than `max`, refused before allocating.
    /// Without it every message would reserve `max` (64 MiB of address space, mapped and
    /// unmapped per message).
    pub(super) fn capacity(frame: &[u8], max: usize) -> Option<usize> {
        let single = zstd_safe::find_frame_compressed_size(frame).is_ok_and(|n| n == frame.len());
        match zstd_safe::get_frame_content_size(frame) {
            Ok(Some(declared)) if single => usize::try_from(declared).ok().filter(|&n| n <= max),
            _ => Some(max),
        }
    }
}

pub fn encode_request(request: &SyncRequest) -> Vec<u8> {
    encode(request, PROTOCOL_VERSION, REQUEST_ZSTD_LEVEL)
}

pub fn decode_request(bytes: &[u8]) -> Result<SyncRequest, WireError> {
    decode_request_versioned(bytes).map(|(_, request)| request)
}

/// The request and the protocol version it came in, to answer in the same version.
pub fn decode_request_versioned(bytes: &[u8]) -> Result<(u16, SyncRequest), WireError> {
    CHANGE_BUDGET.with(|b| b.set(Some(MAX_CHANGES_PER_REQUEST)));
    let decoded = decode(bytes, &REQUEST_TAILS);
    let exhausted = CHANGE_BUDGET.with(|b| b.replace(None)) == Some(0);
    match decoded {
        // postcard drops a visitor's message; say which bound was hit.
        Err(WireError::Decode(_)) if exhausted => Err(WireError::Decode(format!(
            "more than {MAX_CHANGES_PER_REQUEST} changes in one request"
        ))),
        other => other,
    }
}

thread_local! {
    /// Changes [`decode_request`] may still decode on this thread (`None`: not counting).
    static CHANGE_BUDGET: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Deserializes a push's change list (same format as `Vec<Vec<u8>>`), failing once the request
/// being decoded holds more than [`MAX_CHANGES_PER_REQUEST`] changes.
pub(crate) fn bounded_changes<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Vec<u8>>, D::Error> {
    struct Changes;
    impl<'de> serde::de::Visitor<'de> for Changes {
        type Value = Vec<Vec<u8>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of change byte strings")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut changes = Vec::new();
            while let Some(change) = seq.next_element::<Vec<u8>>()? {
                let within = CHANGE_BUDGET.with(|b| match b.get() {
                    None => true,
                    Some(0) => false,
                    Some(n) => {
                        b.set(Some(n - 1));
                        true
                    }
                });
                if !within {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_CHANGES_PER_REQUEST} changes in one request"
                    )));
                }
                changes.push(change);
            }
            Ok(changes)
        }
    }
    deserializer.deserialize_seq(Changes)
}

pub fn encode_response(response: &SyncResponse) -> Vec<u8> {
    encode_response_for(PROTOCOL_VERSION, response)
}

/// The response framed for a phone that spoke `version` (see [`MIN_PROTOCOL_VERSION`]), its
/// case ids said once from version 6 ([`super::refs`]).
pub fn encode_response_for(version: u16, response: &SyncResponse) -> Vec<u8> {
    let version = version.clamp(MIN_PROTOCOL_VERSION, PROTOCOL_VERSION);
    if version < REFS_VERSION {
        return encode(response, version, RESPONSE_ZSTD_LEVEL);
    }
    // A copy (the snapshots' bytes too: well under a millisecond a page, next to zstd's
    // tens), so the caller keeps the response as built.
    let mut compacted = response.clone();
    refs::compact(&mut compacted);
    encode(&compacted, version, RESPONSE_ZSTD_LEVEL)
}

/// A response of any supported version, every id spelled out; a reference to a document or
/// case it does not hold is a [`WireError::Decode`].
pub fn decode_response(bytes: &[u8]) -> Result<SyncResponse, WireError> {
    let (version, mut response) = decode(bytes, &RESPONSE_TAILS)?;
    if version >= REFS_VERSION {
        refs::expand(&mut response).map_err(|e| WireError::Decode(e.to_string()))?;
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Millis;

    /// Magic and this side's protocol version: a frame that is valid up to its payload.
    fn header() -> Vec<u8> {
        let mut out = b"GCSY".to_vec();
        out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        out
    }
    use crate::sync::*;

    /// A frame as an older peer of `version` sent it: magic, version, its plain message zstd'd.
    fn old_frame(version: u16, plain: &[u8]) -> Vec<u8> {
        let mut out = b"GCSY".to_vec();
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&zstd::bulk::compress(plain, 1).unwrap());
        out
    }

    #[test]
    fn a_request_holds_a_bounded_number_of_changes() {
        let request = |n: usize| SyncRequest {
            pushes: vec![
                DocPush {
                    doc_id: "a".into(),
                    changes: vec![vec![1]; n / 2],
                },
                DocPush {
                    doc_id: "b".into(),
                    changes: vec![vec![2]; n - n / 2],
                },
            ],
            ..Default::default()
        };
        let at = request(MAX_CHANGES_PER_REQUEST);
        assert_eq!(decode_request(&encode_request(&at)).unwrap(), at);
        let over = encode_request(&request(MAX_CHANGES_PER_REQUEST + 1));
        let err = decode_request(&over).unwrap_err();
        assert!(err.to_string().contains("changes in one request"), "{err}");
        // The count is per request: the next one starts afresh.
        assert_eq!(decode_request(&encode_request(&at)).unwrap(), at);
    }
    use proptest::prelude::*;

    fn request() -> impl Strategy<Value = SyncRequest> {
        (
            any::<i64>(),
            any::<u64>(),
            proptest::option::of(("[a-z0-9-]{0,12}", any::<u64>())),
            any::<u32>(),
            proptest::collection::vec(
                (
                    "[a-z0-9#-]{1,20}",
                    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4),
                ),
                0..5,
            ),
        )
            .prop_map(
                |(device_time, cursor, restore, page_size, pushes)| SyncRequest {
                    device_time,
                    cursor,
                    restore: restore.map(|(after, upto)| RestoreToken { upto, after }),
                    page_size,
                    page_bytes: page_size / 3,
                    pushes: pushes
                        .into_iter()
                        .map(|(doc_id, changes)| DocPush { doc_id, changes })
                        .collect(),
                    catch_up: vec![],
                    rules_version: cursor / 7,
                    accept_parts: cursor % 2 == 0,
                    staged: (cursor % 3 == 0).then(|| StagedSnapshot {
                        doc_id: "c1".into(),
                        hash: vec![1; 32],
                        have: cursor,
                    }),
                    compact_snapshots: cursor % 5 == 0,
                    compact_times: cursor % 7 == 0,
                    restore_remaining: cursor / 3,
                },
            )
    }

    proptest! {
        #[test]
        fn request_round_trips(req in request()) {
            let bytes = encode_request(&req);
            prop_assert_eq!(decode_request(&bytes).unwrap(), req);
        }

        /// Whatever bytes arrive, decoding returns a value or an error; it never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(&bytes);
            let mut framed = header();
            framed.extend_from_slice(&bytes);
            let _ = decode_request(&framed);
        }

        /// A valid zstd frame around arbitrary postcard bytes: the decoder's own checks hold.
        #[test]
        fn arbitrary_payload_never_panics(plain in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut framed = header();
            framed.extend_from_slice(&zstd::bulk::compress(&plain, 1).unwrap());
            let _ = decode_request(&framed);
            let _ = decode_response(&framed);
        }

        #[test]
        fn truncation_is_an_error(req in request(), cut in 0usize..1000) {
            let bytes = encode_request(&req);
            let cut = cut % bytes.len();
            prop_assert!(decode_request(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn unknown_version_is_named() {
        let mut bytes = encode_request(&SyncRequest::default());
        bytes[4..6].copy_from_slice(&7u16.to_be_bytes());
        let err = decode_request(&bytes).unwrap_err();
        assert_eq!(err, WireError::UnsupportedVersion { found: 7 });
        assert!(err.to_string().contains("version 7"));
        assert_eq!(err.code(), "unsupported_version");
    }

    #[test]
    fn other_bytes_are_rejected() {
        assert_eq!(decode_request(b"{\"json\":1}"), Err(WireError::BadMagic));
        assert_eq!(decode_request(b"GC"), Err(WireError::Truncated));
        assert_eq!(decode_request(b"GCSY\x00"), Err(WireError::Truncated));
        assert_eq!(
            decode_request(&[header(), b"abc".to_vec()].concat()),
            Err(WireError::Decompress)
        );
    }

    /// Contexts reused across messages of other sizes and levels write the frames a fresh
    /// context writes: the wire format does not depend on what a thread sent before.
    #[test]
    fn reused_contexts_give_the_same_frames() {
        let big = SyncRequest {
            pushes: vec![DocPush {
                doc_id: "a".into(),
                changes: (0..2_000u32).map(|i| i.to_le_bytes().repeat(40)).collect(),
            }],
            ..Default::default()
        };
        let small = SyncRequest {
            cursor: 7,
            ..Default::default()
        };
        let fresh = |message: &SyncRequest, level: i32| {
            let plain = postcard::to_allocvec(message).unwrap();
            zstd::bulk::compress(&plain, level).unwrap()
        };
        for _ in 0..2 {
            for message in [&big, &small] {
                assert_eq!(
                    encode_request(message)[6..],
                    fresh(message, REQUEST_ZSTD_LEVEL)
                );
                let response = SyncResponse {
                    cursor: message.cursor,
                    ..Default::default()
                };
                let plain = postcard::to_allocvec(&response).unwrap();
                assert_eq!(
                    encode_response(&response)[6..],
                    zstd::bulk::compress(&plain, RESPONSE_ZSTD_LEVEL).unwrap()
                );
                assert_eq!(decode_request(&encode_request(message)).unwrap(), *message);
            }
        }
    }

    /// A frame is decompressed into exactly the size it declares; one that declares more than
    /// the bound is refused before anything is allocated; several frames, or a frame without
    /// a size, get the bound (zstd stops there).
    #[test]
    fn decompression_reserves_the_declared_size() {
        let frame = zstd::bulk::compress(b"0123456789", 3).unwrap();
        assert_eq!(codec::capacity(&frame, MAX_DECODED_BYTES), Some(10));
        assert_eq!(codec::capacity(&frame, 9), None);
        assert_eq!(codec::decompress(&frame, 10).unwrap(), b"0123456789");
        let two = [frame.clone(), frame.clone()].concat();
        assert_eq!(codec::capacity(&two, 100), Some(100));
        assert_eq!(
            codec::decompress(&two, 100).unwrap(),
            b"01234567890123456789"
        );
        assert_eq!(codec::decompress(&two, 15), None);
        // Magic, a single-segment header declaring 2^40 bytes, one empty last raw block.
        let mut liar = vec![0x28, 0xB5, 0x2F, 0xFD, 0xE0];
        liar.extend_from_slice(&(1u64 << 40).to_le_bytes());
        liar.extend_from_slice(&[1, 0, 0]);
        assert_eq!(codec::capacity(&liar, MAX_DECODED_BYTES), None);
        assert_eq!(
            decode_request(&[header(), liar].concat()),
            Err(WireError::Decompress)
        );
        // No declared size (a streaming encoder's frame): the bound.
        let unsized_frame = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x38, 1, 0, 0];
        assert_eq!(codec::capacity(&unsized_frame, 64), Some(64));
        assert_eq!(codec::decompress(&unsized_frame, 64).unwrap(), b"");
    }

    #[test]
    fn decompression_bomb_is_refused() {
        let huge = vec![0u8; MAX_DECODED_BYTES + 1];
        let mut framed = header();
        framed.extend_from_slice(&zstd::bulk::compress(&huge, 19).unwrap());
        assert!(framed.len() < 100_000);
        assert_eq!(decode_request(&framed), Err(WireError::Decompress));
    }

    #[test]
    fn response_round_trips() {
        let resp = SyncResponse {
            server_time: 5,
            results: vec![PushResult::Rejected {
                doc_id: "c".into(),
                reason: Rejection {
                    code: RejectCode::CaseClosed,
                    message: "closed".into(),
                },
            }],
            docs: vec![DocUpdate {
                doc_id: "d".into(),
                payload: Payload::Changes(vec![vec![1, 2, 3]]),
                heads: vec![vec![9; 32]],
            }],
            cursor: 42,
            rules: Some(crate::rules::RulesUpdate {
                version: 3,
                text: crate::rules::RulesText::shipped(),
            }),
            ..Default::default()
        };
        assert_eq!(decode_response(&encode_response(&resp)).unwrap(), resp);
    }

    fn with_times() -> SyncResponse {
        SyncResponse {
            server_time: 5,
            cursor: 42,
            times: vec![CaseTimes {
                case_id: "c".into(),
                times: vec![EventTime {
                    event: CREATED_KEY.into(),
                    at: 7,
                }],
            }],
            ..Default::default()
        }
    }

    /// Golden bytes: the version-3 body of a response with one trusted time. A change to the
    /// layout fails here, as a reminder to bump the protocol version.
    #[test]
    fn version_3_response_layout_is_pinned() {
        let plain = postcard::to_allocvec(&with_times()).unwrap();
        assert_eq!(
            plain,
            [
                10, 0, 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 1, 1, b'c', 1, 7, b'c', b'r', b'e', b'a',
                b't', b'e', b'd', 14, 0, 0, 0
            ]
        );
        assert_eq!(&encode_response(&with_times())[4..6], &[0, 6]);
        let part = SyncResponse {
            part: Some(SnapshotPart {
                doc_id: "c".into(),
                hash: vec![7; 2],
                total: 300,
                offset: 1,
                bytes: vec![9],
            }),
            ..Default::default()
        };
        let plain = postcard::to_allocvec(&part).unwrap();
        assert_eq!(
            plain[plain.len() - 12..],
            [1, 1, b'c', 2, 7, 7, 0xac, 2, 1, 1, 9, 0]
        );
        let request = SyncRequest {
            accept_parts: true,
            staged: Some(StagedSnapshot {
                doc_id: "c".into(),
                hash: vec![7],
                have: 5,
            }),
            ..Default::default()
        };
        let plain = postcard::to_allocvec(&request).unwrap();
        assert_eq!(plain[plain.len() - 10..], [1, 1, 1, b'c', 1, 7, 5, 0, 0, 0]);
        let compact = SyncRequest {
            compact_snapshots: true,
            ..Default::default()
        };
        let plain = postcard::to_allocvec(&compact).unwrap();
        assert_eq!(plain[plain.len() - 5..], [0, 0, 1, 0, 0]);
        let request = SyncRequest {
            compact_times: true,
            ..Default::default()
        };
        let plain = postcard::to_allocvec(&request).unwrap();
        assert_eq!(plain[plain.len() - 3..], [0, 1, 0]);
        // Version 6: the restore's count echoed, last.
        let request = SyncRequest {
            restore_remaining: 300,
            ..Default::default()
        };
        let plain = postcard::to_allocvec(&request).unwrap();
        assert_eq!(plain[plain.len() - 3..], [0, 0xac, 2]);
        // Version 5: one case created at its stated time, one event 3 ms after it.
        let mut block = times::block::BlockBuilder::default();
        block.add(
            "c",
            vec![
                times::block::StoredTime {
                    event: CREATED_KEY.into(),
                    at: 7,
                    stated: Some(7),
                },
                times::block::StoredTime {
                    event: "2@ab".into(),
                    at: 9,
                    stated: Some(6),
                },
            ],
        );
        let compact = SyncResponse {
            compact_times: Some(block.finish()),
            ..Default::default()
        };
        let plain = postcard::to_allocvec(&compact).unwrap();
        assert_eq!(
            plain[plain.len() - 18..],
            [
                0, 1, 1, 2, b'a', b'b', 1, 1, b'c', 2, 1, 0, 2, 0, 6, 0, 0, 0
            ][..]
        );
    }

    /// A restore page of one case and its personal data, with the case's trusted time.
    fn with_pii() -> SyncResponse {
        let doc = |doc_id: &str| DocUpdate {
            doc_id: doc_id.into(),
            payload: Payload::Snapshot(vec![9]),
            heads: vec![],
        };
        let mut block = times::block::BlockBuilder::default();
        block.add(
            "c",
            vec![times::block::StoredTime {
                event: CREATED_KEY.into(),
                at: 7,
                stated: Some(7),
            }],
        );
        SyncResponse {
            docs: vec![doc("c"), doc("c#pii")],
            compact_times: Some(block.finish()),
            ..Default::default()
        }
    }

    /// Golden bytes of version 6: the personal-data document goes as `#pii` and the block's
    /// case as an empty id, both naming the case before them.
    #[test]
    fn version_6_response_layout_is_pinned() {
        let framed = encode_response(&with_pii());
        assert_eq!(&framed[4..6], &[0, 6]);
        let plain = zstd::bulk::decompress(&framed[6..], MAX_DECODED_BYTES).unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0, 0, 0, 0, 0, 0, // server time, identity, results
            2, 1, b'c', 0, 1, 9, 0, // docs: "c", a snapshot [9], no heads
            4, b'#', b'p', b'i', b'i', 0, 1, 9, 0, // "#pii": the personal data of "c"
            0, 0, 0, 0, 0, 0, 0, 0, // catch-up to part
            1, 0, 1, 0, 1, 0, 0, 0, // block: no actors, case "" (= "c"), created at +0
        ];
        assert_eq!(plain, expected);
        assert_eq!(decode_response(&framed).unwrap(), with_pii());
    }

    /// A version-5 phone (every id spelled out, no echoed count) and a version-6 server
    /// understand each other both ways: the request lacks only `restore_remaining`, which
    /// decodes as 0 (the server counts); the response to it spells every id.
    #[test]
    fn version_5_peers_are_understood() {
        let old_request = SyncRequest {
            cursor: 9,
            restore: Some(RestoreToken {
                upto: 4,
                after: "c".into(),
            }),
            compact_snapshots: true,
            compact_times: true,
            ..Default::default()
        };
        let plain = postcard::to_allocvec(&old_request).unwrap();
        let v5 = old_frame(5, &plain[..plain.len() - 1]);
        assert_eq!(decode_request_versioned(&v5).unwrap(), (5, old_request));
        let answer = encode_response_for(5, &with_pii());
        assert_eq!(&answer[4..6], &[0, 5]);
        let plain = zstd::bulk::decompress(&answer[6..], MAX_DECODED_BYTES).unwrap();
        let as_read: SyncResponse = postcard::from_bytes(&plain).unwrap();
        assert_eq!(as_read, with_pii());
        // A version-5 server's response: ids as they come, even one that reads as a reference
        // in version 6.
        let mut odd = with_pii();
        odd.docs[0].doc_id = "#pii".into();
        let framed = old_frame(5, &postcard::to_allocvec(&odd).unwrap());
        assert_eq!(decode_response(&framed).unwrap(), odd);
    }

    /// A version-3 phone (full snapshots) and a version-4 server understand each other both
    /// ways: the request lacks only `compact_snapshots`, the response's layout is the same.
    #[test]
    fn version_3_peers_are_understood() {
        let old_request = V3Request {
            device_time: 3,
            cursor: 9,
            restore: None,
            page_size: 50,
            pushes: vec![],
            catch_up: vec![],
            rules_version: 4,
            page_bytes: 2048,
            accept_parts: true,
            staged: None,
        };
        let v3 = old_frame(3, &postcard::to_allocvec(&old_request).unwrap());
        let (version, request) = decode_request_versioned(&v3).unwrap();
        assert_eq!(version, 3);
        assert!(request.accept_parts && !request.compact_snapshots);
        let answer = encode_response_for(3, &with_times());
        assert_eq!(&answer[4..6], &[0, 3]);
        assert_eq!(decode_response(&answer).unwrap(), with_times());
    }

    /// A version-4 phone (times as `CaseTimes`) and a version-5 server understand each other
    /// both ways: the request lacks only `compact_times`; the response's `times` are where
    /// they were, and the block after them is never read.
    #[test]
    fn version_4_peers_are_understood() {
        let old_request = V4Request {
            device_time: 3,
            cursor: 9,
            restore: None,
            page_size: 50,
            pushes: vec![],
            catch_up: vec![],
            rules_version: 4,
            page_bytes: 2048,
            accept_parts: true,
            staged: None,
            compact_snapshots: true,
        };
        let v4 = old_frame(4, &postcard::to_allocvec(&old_request).unwrap());
        let (version, request) = decode_request_versioned(&v4).unwrap();
        assert_eq!(version, 4);
        assert!(request.compact_snapshots && !request.compact_times);
        let answer = encode_response_for(4, &with_times());
        assert_eq!(&answer[4..6], &[0, 4]);
        assert_eq!(decode_response(&answer).unwrap(), with_times());
        // A version-4 server's response (no block) decodes with none.
        let plain = postcard::to_allocvec(&with_times()).unwrap();
        let framed = old_frame(4, &plain[..plain.len() - 1]);
        let decoded = decode_response(&framed).unwrap();
        assert_eq!(decoded, with_times());
    }

    /// `SyncRequest` as protocol 4 had it.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct V4Request {
        device_time: Millis,
        cursor: u64,
        restore: Option<RestoreToken>,
        page_size: u32,
        pushes: Vec<DocPush>,
        catch_up: Vec<CatchUp>,
        rules_version: u64,
        page_bytes: u32,
        accept_parts: bool,
        staged: Option<StagedSnapshot>,
        compact_snapshots: bool,
    }

    /// `SyncRequest` as protocol 3 had it.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct V3Request {
        device_time: Millis,
        cursor: u64,
        restore: Option<RestoreToken>,
        page_size: u32,
        pushes: Vec<DocPush>,
        catch_up: Vec<CatchUp>,
        rules_version: u64,
        page_bytes: u32,
        accept_parts: bool,
        staged: Option<StagedSnapshot>,
    }

    /// A version-1 phone and a version-2 server understand each other both ways.
    #[test]
    fn version_1_peers_are_understood() {
        // A version-1 request decodes, and says so; the fields it lacks take their defaults.
        let old_request = V1Request {
            device_time: 3,
            cursor: 9,
            restore: None,
            page_size: 50,
            pushes: vec![],
            catch_up: vec![],
        };
        let v1 = old_frame(1, &postcard::to_allocvec(&old_request).unwrap());
        let (version, request) = decode_request_versioned(&v1).unwrap();
        assert_eq!(version, 1);
        assert_eq!((request.cursor, request.page_size), (9, 50));
        assert_eq!((request.rules_version, request.page_bytes), (0, 0));
        // Answered in version 1: what a version-1 phone decodes is the response without times.
        let answer = encode_response_for(1, &with_times());
        assert_eq!(&answer[4..6], &[0, 1]);
        let plain = zstd::bulk::decompress(&answer[6..], MAX_DECODED_BYTES).unwrap();
        let old: V1Response = postcard::from_bytes(&plain).unwrap();
        assert_eq!(old.cursor, 42);
        // A version-1 server's response (no times at all) decodes with none.
        let old_plain = postcard::to_allocvec(&old).unwrap();
        let mut framed = old_frame(1, &old_plain);
        let decoded = decode_response(&framed).unwrap();
        assert_eq!(decoded.cursor, 42);
        assert!(decoded.times.is_empty());
        // The same body framed as version 2 is truncated: the tail is only added for version 1.
        framed[4..6].copy_from_slice(&2u16.to_be_bytes());
        assert!(matches!(
            decode_response(&framed),
            Err(WireError::Decode(_))
        ));
    }

    /// A version-2 phone (no parts) and a version-3 server understand each other both ways.
    #[test]
    fn version_2_peers_are_understood() {
        let old_request = V2Request {
            device_time: 3,
            cursor: 9,
            restore: None,
            page_size: 50,
            pushes: vec![],
            catch_up: vec![],
            rules_version: 4,
            page_bytes: 2048,
        };
        let v2 = old_frame(2, &postcard::to_allocvec(&old_request).unwrap());
        let (version, request) = decode_request_versioned(&v2).unwrap();
        assert_eq!(version, 2);
        assert_eq!((request.rules_version, request.page_bytes), (4, 2048));
        assert!(!request.accept_parts && request.staged.is_none());
        // Answered in version 2: the phone reads everything but the part it never asked for.
        let answer = encode_response_for(2, &with_times());
        assert_eq!(&answer[4..6], &[0, 2]);
        let plain = zstd::bulk::decompress(&answer[6..], MAX_DECODED_BYTES).unwrap();
        let old: V2Response = postcard::from_bytes(&plain).unwrap();
        assert_eq!((old.cursor, old.times.len()), (42, 1));
        // A version-2 server's response decodes with no part.
        let old_plain = postcard::to_allocvec(&old).unwrap();
        let framed = old_frame(2, &old_plain);
        let decoded = decode_response(&framed).unwrap();
        assert_eq!(decoded.times, with_times().times);
        assert!(decoded.part.is_none());
    }

    /// `SyncRequest` as protocol 2 had it.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct V2Request {
        device_time: Millis,
        cursor: u64,
        restore: Option<RestoreToken>,
        page_size: u32,
        pushes: Vec<DocPush>,
        catch_up: Vec<CatchUp>,
        rules_version: u64,
        page_bytes: u32,
    }

    /// `SyncResponse` as protocol 2 had it.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct V2Response {
        server_time: Millis,
        identity: Identity,
        results: Vec<PushResult>,
        docs: Vec<DocUpdate>,
        catch_up: Vec<CatchUp>,
        evict: Vec<DocId>,
        cursor: u64,
        restore: Option<RestoreToken>,
        remaining: u64,
        times: Vec<CaseTimes>,
        rules: Option<crate::rules::RulesUpdate>,
    }

    /// `SyncRequest` as protocol 1 had it.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct V1Request {
        device_time: Millis,
        cursor: u64,
        restore: Option<RestoreToken>,
        page_size: u32,
        pushes: Vec<DocPush>,
        catch_up: Vec<CatchUp>,
    }

    /// `SyncResponse` as protocol 1 had it.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct V1Response {
        server_time: Millis,
        identity: Identity,
        results: Vec<PushResult>,
        docs: Vec<DocUpdate>,
        catch_up: Vec<CatchUp>,
        evict: Vec<DocId>,
        cursor: u64,
        restore: Option<RestoreToken>,
        remaining: u64,
    }
}
