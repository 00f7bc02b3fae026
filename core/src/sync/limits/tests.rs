use super::*;
use automerge::sync::{State, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT};
use proptest::prelude::*;

fn uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn sleb(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return;
        }
    }
}

/// A change chunk with the given (spec, column bytes); the checksum is not real (the scan does
/// not look at it, Automerge does).
fn chunk(chunk_type: u8, columns: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    uleb(&mut body, 0); // deps
    uleb(&mut body, 16);
    body.extend_from_slice(&[7; 16]); // actor
    uleb(&mut body, 1); // seq
    uleb(&mut body, 1); // start op
    sleb(&mut body, 0); // time
    uleb(&mut body, 0); // message
    uleb(&mut body, 0); // other actors
    uleb(&mut body, columns.len() as u64);
    for (spec, data) in columns {
        uleb(&mut body, u64::from(*spec));
        uleb(&mut body, data.len() as u64);
    }
    for (_, data) in columns {
        body.extend_from_slice(data);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[0; 4]);
    out.push(chunk_type);
    uleb(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out
}

fn run(count: i64, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    sleb(&mut out, count);
    uleb(&mut out, value);
    out
}

fn real_changes() -> Vec<Change> {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "title", "菜市场噪音").unwrap();
    let text = doc.put_object(ROOT, "description", ObjType::Text).unwrap();
    doc.splice_text(&text, 0, 0, "夜里十一点以后还在卸货")
        .unwrap();
    doc.commit();
    let list = doc.put_object(ROOT, "timeline", ObjType::List).unwrap();
    doc.insert(&list, 0, "x").unwrap();
    doc.put(ROOT, "title", "菜市场夜间噪音").unwrap();
    doc.commit();
    doc.get_changes(&[])
}

#[test]
fn real_changes_pass_and_their_operations_are_counted() {
    for change in real_changes() {
        let shape = scan_change(change.raw_bytes()).unwrap();
        assert_eq!(shape.ops, change.len() as u64);
        let decoded = decode_change(change.raw_bytes()).unwrap();
        assert_eq!(decoded.hash(), change.hash());
    }
}

#[test]
fn compressed_chunks_are_refused_before_inflating() {
    // What Automerge itself sends for a large change: a DEFLATE chunk.
    let mut doc = AutoCommit::new();
    let text = doc.put_object(ROOT, "description", ObjType::Text).unwrap();
    doc.splice_text(&text, 0, 0, &"噪".repeat(2_000)).unwrap();
    doc.commit();
    let mut change = doc.get_changes(&[]).remove(0);
    let compressed = change.bytes().into_owned();
    assert_eq!(compressed[8], 2, "Automerge compressed the chunk");
    assert_eq!(scan_change(&compressed), Err(LimitError::Compressed));
    // A forged one whose DEFLATE stream would inflate without bound is refused the same way,
    // by its type byte alone.
    let mut bomb = MAGIC.to_vec();
    bomb.extend_from_slice(&[0, 0, 0, 0, 2, 8]);
    bomb.extend_from_slice(&[0xed, 0xc1, 0x01, 0x0d, 0, 0, 0, 0xc2]);
    assert_eq!(decode_change(&bomb).unwrap_err(), LimitError::Compressed);
    // So is a change whose columns are marked as deflated.
    let deflated = chunk(1, &[(ACTION_COLUMN | DEFLATE_BIT, vec![1, 2, 3])]);
    assert_eq!(scan_change(&deflated), Err(LimitError::Compressed));
}

#[test]
fn run_length_bombs_are_refused_without_counting() {
    // Ten bytes announcing four billion operations.
    let ops = chunk(1, &[(ACTION_COLUMN, run(4_000_000_000, 1))]);
    assert!(ops.len() < 64);
    assert_eq!(
        scan_change(&ops),
        Err(LimitError::TooManyOps {
            max: MAX_OPS_PER_CHANGE
        })
    );
    // One operation claiming a billion predecessors.
    let preds = chunk(
        1,
        &[
            (ACTION_COLUMN, run(1, 1)),
            (PRED_GROUP_COLUMN, run(1, 1_000_000_000)),
        ],
    );
    assert_eq!(
        scan_change(&preds),
        Err(LimitError::TooManyPreds {
            max: MAX_PREDS_PER_CHANGE
        })
    );
    // Many honest-looking runs add up.
    let mut many = Vec::new();
    for _ in 0..11 {
        many.extend(run(10_000, 1));
    }
    let summed = chunk(1, &[(ACTION_COLUMN, many)]);
    assert!(matches!(
        scan_change(&summed),
        Err(LimitError::TooManyOps { .. })
    ));
    // Just under the limit passes the scan.
    let fine = chunk(1, &[(ACTION_COLUMN, run(MAX_OPS_PER_CHANGE as i64, 1))]);
    assert_eq!(scan_change(&fine).unwrap().ops, MAX_OPS_PER_CHANGE);
}

#[test]
fn lengths_that_overrun_the_bytes_are_truncation() {
    let good = real_changes().remove(0).raw_bytes().to_vec();
    for cut in [0, 3, 8, 9, 10, good.len() / 2, good.len() - 1] {
        assert!(scan_change(&good[..cut]).is_err(), "cut at {cut}");
    }
    let mut huge_deps = chunk(1, &[]);
    huge_deps[10] = 0xff; // the first byte of the body: a dependency count beyond the limit
    assert!(scan_change(&huge_deps).is_err());
}

fn catch_up_with_bloom(bloom: &[u8]) -> Vec<u8> {
    let mut out = vec![0x42];
    uleb(&mut out, 0); // heads
    uleb(&mut out, 0); // need
    uleb(&mut out, 1); // one have
    uleb(&mut out, 0); // its last_sync
    uleb(&mut out, bloom.len() as u64);
    out.extend_from_slice(bloom);
    uleb(&mut out, 0); // changes
    out
}

#[test]
fn a_zero_bit_bloom_filter_is_refused_and_would_panic_automerge() {
    // One entry, zero bits per entry: no bits at all, and Automerge divides by their number.
    let forged = catch_up_with_bloom(&[1, 0, 7]);
    assert_eq!(decode_catch_up(&forged).unwrap_err(), LimitError::BadBloom);

    let message = Message::decode(&forged).unwrap();
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "x", 1).unwrap();
    doc.commit();
    let outcome = std::panic::catch_unwind(move || {
        let mut state = State::new();
        let _ = doc.sync().receive_sync_message(&mut state, message);
        let _ = doc.sync().generate_sync_message(&mut state);
    });
    assert!(outcome.is_err(), "the hazard this check guards against");
}

#[test]
fn huge_probe_counts_and_sizes_are_refused() {
    let mut probes = vec![1, 10];
    uleb(&mut probes, u64::from(u32::MAX));
    probes.push(0xff);
    probes.push(0xff);
    assert_eq!(
        decode_catch_up(&catch_up_with_bloom(&probes)).unwrap_err(),
        LimitError::BadBloom
    );

    let mut many_heads = vec![0x42];
    uleb(&mut many_heads, (MAX_CATCH_UP_HASHES + 1) as u64);
    many_heads.extend(std::iter::repeat_n(9u8, 32 * (MAX_CATCH_UP_HASHES + 1)));
    uleb(&mut many_heads, 0);
    uleb(&mut many_heads, 0);
    uleb(&mut many_heads, 0);
    assert_eq!(
        decode_catch_up(&many_heads).unwrap_err(),
        LimitError::CatchUpTooLarge
    );
}

#[test]
fn an_honest_catch_up_passes_and_changes_inside_are_refused() {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "x", 1).unwrap();
    doc.commit();
    let mut state = State::new();
    let first = doc.sync().generate_sync_message(&mut state).unwrap();
    assert!(decode_catch_up(&first.encode()).is_ok());

    let mut peer = AutoCommit::new();
    let mut peer_state = State::new();
    let mut ours = State::new();
    let hello = peer.sync().generate_sync_message(&mut peer_state).unwrap();
    doc.sync().receive_sync_message(&mut ours, hello).unwrap();
    let with_changes = doc.sync().generate_sync_message(&mut ours).unwrap();
    assert!(!with_changes.changes.is_empty());
    assert_eq!(
        decode_catch_up(&with_changes.encode()).unwrap_err(),
        LimitError::ChangesInCatchUp
    );
}

proptest! {
    /// Whatever bytes arrive, the scan and the decoders return; they never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = scan_change(&bytes);
        let _ = decode_change(&bytes);
        let _ = decode_catch_up(&bytes);
        let mut framed = MAGIC.to_vec();
        framed.extend_from_slice(&[0, 0, 0, 0, 1]);
        framed.extend_from_slice(&bytes);
        let _ = decode_change(&framed);
        let mut message = vec![0x42];
        message.extend_from_slice(&bytes);
        let _ = decode_catch_up(&message);
    }

    /// A real change with bytes flipped: an error or the change, never a panic.
    #[test]
    fn mutated_changes_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        for change in real_changes() {
            let mut bytes = change.raw_bytes().to_vec();
            for (at, value) in &flips {
                let at = at % bytes.len();
                bytes[at] = *value;
            }
            let _ = decode_change(&bytes);
        }
    }
}

#[test]
fn a_change_that_panics_automerge_is_refused_and_leaves_the_document_alone() {
    // Found by the `change` fuzz target: it decodes, then Automerge panics importing it.
    let mut bytes = include_bytes!(
        "../../../fuzz/regressions/change/crash-c67ea86123238372b56147b516a5b87a5fd85ec4"
    )
    .to_vec();
    crate::fuzzing::fix_checksum(&mut bytes);
    let change = decode_change(&bytes).expect("it passes the bounds and decodes");
    let mut doc = crate::fuzzing::sample_case();
    let heads = doc.get_heads();
    let refused = apply_untrusted(&mut doc, vec![change.clone()]);
    assert!(matches!(refused, Err(LimitError::Unappliable(_))));
    assert_eq!(doc.get_heads(), heads);
    let raw = std::panic::catch_unwind(move || {
        let mut doc = crate::fuzzing::sample_case();
        let _ = doc.apply_changes(vec![change]);
    });
    assert!(raw.is_err(), "the hazard this guards against");
}
