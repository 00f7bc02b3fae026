use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The body of a `sync` map as automerge-repo 2.5.6's `cbor.encode` writes it (after its
/// 16-bit map header `b9 0005`).
const SYNC_BODY: &str = "64747970656473796e636873656e6465724964657765622d31687461726765744964\
                         687365727665722d316a646f63756d656e74496463616263646461746143010203";

fn sync_message() -> Message {
    Message::Sync {
        sender: "web-1".into(),
        target: "server-1".into(),
        document: "abc".into(),
        data: vec![1, 2, 3],
    }
}

#[test]
fn reads_what_the_javascript_client_writes() {
    assert_eq!(
        decode(&hex(&format!("b90005{SYNC_BODY}"))),
        Ok(sync_message())
    );
    // A join with peer metadata (ignored) and the versions the client speaks.
    let join = "b900046474797065646a6f696e6873656e6465724964657765622d316c706565724d657461\
                64617461b900016b6973457068656d6572616cf57819737570706f7274656450726f746f63\
                6f6c56657273696f6e73816131";
    let expected = Message::Join {
        sender: "web-1".into(),
        versions: vec!["1".into()],
    };
    assert_eq!(decode(&hex(join)), Ok(expected));
}

#[test]
fn golden_bytes_of_a_sync_message() {
    // Pinned: the same fields in the same order, with CBOR's short map header.
    assert_eq!(encode(&sync_message()), hex(&format!("a5{SYNC_BODY}")));
}

#[test]
fn malformed_frames_are_errors() {
    let map = |fields: Vec<(&str, Value)>| {
        let entries = fields.into_iter().map(|(k, v)| (text(k), v)).collect();
        encode_value(&Value::Map(entries))
    };
    assert!(matches!(decode(b""), Err(WireError::NotCbor(_))));
    assert!(matches!(decode(&[0xff, 0x00]), Err(WireError::NotCbor(_))));
    assert_eq!(
        decode(&encode_value(&text("sync"))),
        Err(WireError::NotAMap)
    );
    let int_key = encode_value(&Value::Map(vec![(Value::Integer(1.into()), text("x"))]));
    assert_eq!(decode(&int_key), Err(WireError::NotAMap));
    assert_eq!(decode(&map(vec![])), Err(WireError::Field("type")));
    let no_data = map(vec![
        ("type", text("sync")),
        ("senderId", text("a")),
        ("targetId", text("b")),
        ("documentId", text("c")),
    ]);
    assert_eq!(decode(&no_data), Err(WireError::Field("data")));
    let text_data = map(vec![
        ("type", text("sync")),
        ("senderId", text("a")),
        ("targetId", text("b")),
        ("documentId", text("c")),
        ("data", text("not bytes")),
    ]);
    assert_eq!(decode(&text_data), Err(WireError::Field("data")));
    let negative = map(vec![
        ("type", text("ephemeral")),
        ("senderId", text("a")),
        ("targetId", text("b")),
        ("documentId", text("c")),
        ("sessionId", text("s")),
        ("count", Value::Integer((-1).into())),
        ("data", Value::Bytes(vec![])),
    ]);
    assert_eq!(decode(&negative), Err(WireError::Field("count")));
    // Deep nesting is refused by the decoder's limit, not by the stack.
    let deep = [vec![0x81u8; 100_000], vec![0x00]].concat();
    assert!(matches!(decode(&deep), Err(WireError::NotCbor(_))));
    // A type this server does not act on is still a message.
    let gossip = map(vec![("type", text("remote-heads-changed"))]);
    assert_eq!(
        decode(&gossip),
        Ok(Message::Other {
            kind: "remote-heads-changed".into()
        })
    );
}

fn id() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..64)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (id(), proptest::collection::vec(id(), 0..3))
            .prop_map(|(sender, versions)| Message::Join { sender, versions }),
        (id(), id(), id()).prop_map(|(sender, target, version)| Message::Peer {
            sender,
            target,
            version
        }),
        (id(), id(), id(), data()).prop_map(|(sender, target, document, data)| {
            Message::Request {
                sender,
                target,
                document,
                data,
            }
        }),
        (id(), id(), id(), data()).prop_map(|(sender, target, document, data)| {
            Message::Sync {
                sender,
                target,
                document,
                data,
            }
        }),
        (id(), id(), id()).prop_map(|(sender, target, document)| Message::Unavailable {
            sender,
            target,
            document
        }),
        (id(), id(), id(), id(), any::<u64>(), data()).prop_map(
            |(sender, target, document, session, count, data)| Message::Ephemeral {
                sender,
                target,
                document,
                session,
                count,
                data
            }
        ),
        (id(), id(), id()).prop_map(|(sender, target, message)| Message::Error {
            sender,
            target,
            message
        }),
        id().prop_map(|sender| Message::Leave { sender }),
    ]
}

proptest! {
    #[test]
    fn roundtrip(message in message()) {
        prop_assert_eq!(decode(&encode(&message)), Ok(message));
    }

    #[test]
    fn bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn damaged_messages_never_panic(message in message(), at in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = encode(&message);
        let at = at % bytes.len();
        bytes[at] = byte;
        let _ = decode(&bytes);
        let _ = decode(&bytes[..at]);
    }
}

/// Where the `amrepo_wire` fuzz target keeps its inputs: `corpus` or `regressions`.
fn fuzz_inputs(kind: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/fuzz")
        .join(kind)
        .join("amrepo_wire")
}

/// Every input kept for the fuzz target and every crasher it found replays through its body
/// on stable, as `core/tests/fuzz_corpus.rs` does for the core's targets.
#[test]
fn fuzz_corpus_and_crashers_replay() {
    let mut replayed = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_inputs(kind)) else {
            continue;
        };
        for entry in entries.flatten() {
            fuzz_decode(&std::fs::read(entry.path()).unwrap());
            replayed += 1;
        }
    }
    assert!(
        replayed >= 8,
        "the corpus lost its seeds ({replayed} inputs)"
    );
}

/// One message of each kind, and the JavaScript client's own bytes: the corpus's start.
#[test]
#[ignore = "writes the hand-made seeds into core/fuzz/corpus/amrepo_wire"]
fn write_fuzz_seeds() {
    let (sender, target, document) = (
        "web-1".to_string(),
        "server-1".to_string(),
        "2Xc".to_string(),
    );
    let messages = [
        Message::Join {
            sender: sender.clone(),
            versions: vec!["1".into()],
        },
        Message::Peer {
            sender: sender.clone(),
            target: target.clone(),
            version: "1".into(),
        },
        Message::Request {
            sender: sender.clone(),
            target: target.clone(),
            document: document.clone(),
            data: vec![0x42, 0, 0, 0],
        },
        Message::Unavailable {
            sender: sender.clone(),
            target: target.clone(),
            document: document.clone(),
        },
        Message::Ephemeral {
            sender: sender.clone(),
            target: target.clone(),
            document,
            session: "s".into(),
            count: 3,
            data: encode_value(&Value::Map(Vec::new())),
        },
        Message::Error {
            sender: sender.clone(),
            target,
            message: "bye".into(),
        },
        Message::Leave { sender },
    ];
    let dir = fuzz_inputs("corpus");
    std::fs::create_dir_all(&dir).unwrap();
    for (n, message) in messages.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{n}")), encode(message)).unwrap();
    }
    let js = hex(&format!("b90005{SYNC_BODY}"));
    std::fs::write(dir.join("seed-js-sync"), js).unwrap();
}
