use proptest::prelude::*;

use super::*;
use crate::sync::times::block::{At, BlockCase, BlockTime, EventKey};
use crate::sync::{DocUpdate, Payload, TimesBlock, wire};

fn doc(doc_id: &str) -> DocUpdate {
    DocUpdate {
        doc_id: doc_id.into(),
        payload: Payload::Snapshot(doc_id.as_bytes().to_vec()),
        heads: vec![],
    }
}

fn block_case(case_id: &str) -> BlockCase {
    BlockCase {
        case_id: case_id.into(),
        times: vec![BlockTime {
            event: EventKey::Created,
            at: At::Stated(0),
        }],
    }
}

fn response(docs: &[&str], block: &[&str]) -> SyncResponse {
    SyncResponse {
        docs: docs.iter().map(|id| doc(id)).collect(),
        compact_times: Some(TimesBlock {
            actors: vec![],
            cases: block.iter().map(|id| block_case(id)).collect(),
        }),
        ..Default::default()
    }
}

fn ids(response: &SyncResponse) -> (Vec<&str>, Vec<&str>) {
    let docs = response.docs.iter().map(|d| d.doc_id.as_str()).collect();
    let block = response.compact_times.as_ref().unwrap();
    (
        docs,
        block.cases.iter().map(|c| c.case_id.as_str()).collect(),
    )
}

/// A restore page: each case id is spelled once, as its document's id.
#[test]
fn a_restore_page_names_each_case_once() {
    let built = response(&["a", "a#pii", "b", "c", "c#pii"], &["a", "b", "c"]);
    let mut sent = built.clone();
    compact(&mut sent);
    assert_eq!(
        ids(&sent),
        (vec!["a", "#pii", "b", "c", "#pii"], vec!["", "", ""])
    );
    expand(&mut sent).unwrap();
    assert_eq!(sent, built);
}

/// A case the block leaves out (no times) costs one spelled id, and references go on after
/// it; a case the documents do not hold (an acknowledged push) is spelled and moves nothing;
/// a personal-data document without its case before it keeps its id.
#[test]
fn cases_out_of_order_are_spelled() {
    let built = response(
        &["a", "b", "c", "d", "e#pii"],
        &["a", "c", "d", "pushed", "e"],
    );
    let mut sent = built.clone();
    compact(&mut sent);
    assert_eq!(
        ids(&sent),
        (
            vec!["a", "b", "c", "d", "e#pii"],
            vec!["", "c", "", "pushed", ""]
        )
    );
    expand(&mut sent).unwrap();
    assert_eq!(sent, built);
}

/// A case whose documents come twice (an incremental page in no particular order): a reference
/// after it goes on from where the last one was, on both sides (found by the proptest).
#[test]
fn a_case_listed_twice_is_read_as_it_was_written() {
    let built = response(&["b", "c", "b", "a"], &["c", "b", "a"]);
    let mut sent = built.clone();
    compact(&mut sent);
    assert_eq!(ids(&sent).1, vec!["c", "", ""]);
    expand(&mut sent).unwrap();
    assert_eq!(sent, built);
}

#[test]
fn a_damaged_reference_is_a_clear_error() {
    let damaged = [
        response(&["#pii", "a"], &[]),
        response(&["a", "#other"], &[]),
        response(&["a", "a#pii"], &["", ""]),
        response(&[], &[""]),
    ];
    for mut response in damaged {
        let err = expand(&mut response).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        // Through the wire: refused as a message that does not decode.
        let mut framed = b"GCSY".to_vec();
        framed.extend_from_slice(&6u16.to_be_bytes());
        let plain = postcard::to_allocvec(&response).unwrap();
        framed.extend_from_slice(&zstd::bulk::compress(&plain, 1).unwrap());
        assert!(matches!(
            wire::decode_response(&framed),
            Err(wire::WireError::Decode(m)) if m.contains("damaged")
        ));
    }
}

/// Documents of a few cases (some repeated, some personal data), in any order, and a block
/// naming any of those cases or others, in any order.
fn any_response() -> impl Strategy<Value = SyncResponse> {
    let case = prop_oneof!["[a-c]", "[a-z0-9-]{1,8}"];
    (
        proptest::collection::vec((case.clone(), any::<bool>()), 0..12),
        proptest::option::of(proptest::collection::vec(case, 0..12)),
    )
        .prop_map(|(docs, block)| SyncResponse {
            docs: docs
                .iter()
                .map(|(case, pii)| {
                    doc(&if *pii {
                        format!("{case}#pii")
                    } else {
                        case.clone()
                    })
                })
                .collect(),
            compact_times: block.map(|cases| TimesBlock {
                actors: vec![],
                cases: cases.iter().map(|c| block_case(c)).collect(),
            }),
            ..Default::default()
        })
}

proptest! {
    /// Whatever the documents and the block, the phone reads back what the server built, and
    /// a personal-data document that follows its case is never spelled.
    #[test]
    fn compacted_ids_round_trip(built in any_response()) {
        let mut sent = built.clone();
        compact(&mut sent);
        for pair in sent.docs.windows(2) {
            let after_its_case = pair[1].doc_id.strip_suffix("#pii") == Some(&pair[0].doc_id);
            prop_assert!(!after_its_case, "{pair:?}");
        }
        expand(&mut sent).unwrap();
        prop_assert_eq!(&sent, &built);
        prop_assert_eq!(wire::decode_response(&wire::encode_response(&built)).unwrap(), built);
    }

    /// Any ids at all, references or not, expand or fail: never a panic.
    #[test]
    fn arbitrary_references_never_panic(
        docs in proptest::collection::vec("#?[a-c#]{0,4}", 0..8),
        block in proptest::collection::vec("[a-c]?", 0..8),
    ) {
        let docs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let block: Vec<&str> = block.iter().map(String::as_str).collect();
        let _ = expand(&mut response(&docs, &block));
    }
}
