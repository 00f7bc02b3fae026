use std::collections::HashMap;

use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};

use super::*;
use crate::amrepo::wire::decode;

/// Documents by id; `None` of a document means "exists but out of scope" (same answer).
#[derive(Default)]
struct Docs(HashMap<String, AutoCommit>);

impl DocSource for Docs {
    fn scoped(&mut self, doc_id: &str) -> Result<Option<AutoCommit>> {
        Ok(self.0.get(doc_id).cloned())
    }
}

fn doc_with_title(title: &str) -> AutoCommit {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "title", title).unwrap();
    doc.put_object(ROOT, "notes", ObjType::List).unwrap();
    doc.commit();
    doc
}

fn joined(docs: &mut Docs) -> Session {
    let mut session = Session::new("server".into());
    let join = Message::Join {
        sender: "web".into(),
        versions: vec!["1".into()],
    };
    let answer = session.receive(join, docs).unwrap().unwrap();
    assert_eq!(
        answer,
        vec![Message::Peer {
            sender: "server".into(),
            target: "web".into(),
            version: "1".into()
        }]
    );
    session
}

/// A client's side of one document.
struct Client {
    doc: AutoCommit,
    state: State,
    document: String,
}

impl Client {
    fn new(doc_id: &str) -> Client {
        Client {
            doc: AutoCommit::new(),
            state: State::new(),
            document: url::document_id(doc_id),
        }
    }

    fn outgoing(&mut self) -> Option<Message> {
        let m = self.doc.sync().generate_sync_message(&mut self.state)?;
        Some(Message::Sync {
            sender: "web".into(),
            target: "server".into(),
            document: self.document.clone(),
            data: m.encode(),
        })
    }

    fn take(&mut self, messages: Vec<Message>) -> Vec<Message> {
        let mut others = Vec::new();
        for m in messages {
            match m {
                Message::Sync { data, .. } => {
                    let m = automerge::sync::Message::decode(&data).unwrap();
                    self.doc
                        .sync()
                        .receive_sync_message(&mut self.state, m)
                        .unwrap();
                }
                other => others.push(other),
            }
        }
        others
    }

    /// Exchanges messages until neither side has anything to say (at most `rounds`); returns
    /// the non-sync messages the server sent and how many rounds it took.
    fn settle(
        &mut self,
        session: &mut Session,
        docs: &mut Docs,
        rounds: usize,
    ) -> (Vec<Message>, usize) {
        let mut others = Vec::new();
        for round in 0..rounds {
            let Some(out) = self.outgoing() else {
                return (others, round);
            };
            let answer = session.receive(out, docs).unwrap().unwrap();
            others.extend(self.take(answer));
        }
        panic!("still talking after {rounds} rounds: {others:?}");
    }

    fn title(&self) -> Option<String> {
        self.doc
            .get(ROOT, "title")
            .unwrap()
            .map(|(v, _)| v.into_string().unwrap())
    }
}

#[test]
fn join_first_and_only_protocol_one() {
    let mut docs = Docs::default();
    let mut session = Session::new("server".into());
    let leave = Message::Leave {
        sender: "web".into(),
    };
    assert!(session.receive(leave, &mut docs).unwrap().is_err());
    let old = Message::Join {
        sender: "web".into(),
        versions: vec!["0".into()],
    };
    assert!(session.receive(old, &mut docs).unwrap().is_err());
    let mut session = joined(&mut docs);
    let again = Message::Join {
        sender: "web".into(),
        versions: vec!["1".into()],
    };
    assert!(session.receive(again, &mut docs).unwrap().is_err());
}

#[test]
fn serves_a_document_in_scope() {
    let mut docs = Docs::default();
    docs.0.insert("c-1".into(), doc_with_title("路灯坏了"));
    let mut session = joined(&mut docs);
    let mut client = Client::new("c-1");
    let (others, _) = client.settle(&mut session, &mut docs, 10);
    assert!(others.is_empty(), "{others:?}");
    assert_eq!(client.title().as_deref(), Some("路灯坏了"));
    assert_eq!(client.doc.get_heads(), docs.0["c-1"].clone().get_heads());
}

#[test]
fn missing_out_of_scope_and_malformed_ids_are_unavailable() {
    let mut docs = Docs::default();
    let mut session = joined(&mut docs);
    for document in [
        url::document_id("c-unknown"),
        "not base58 0OIl".into(),
        String::new(),
    ] {
        let mut client = Client::new("x");
        client.document = document.clone();
        let request = client.outgoing().unwrap();
        let answer = session.receive(request, &mut docs).unwrap().unwrap();
        assert_eq!(
            answer,
            vec![Message::Unavailable {
                sender: "server".into(),
                target: "web".into(),
                document
            }]
        );
    }
}

#[test]
fn a_client_honouring_read_only_sends_no_change() {
    let mut docs = Docs::default();
    docs.0.insert("c-1".into(), doc_with_title("路灯坏了"));
    let mut session = joined(&mut docs);
    let mut client = Client::new("c-1");
    client.settle(&mut session, &mut docs, 10);
    assert!(
        client.state.is_peer_read_only(),
        "the server says it is read-only"
    );
    client.doc.put(ROOT, "title", "改过的标题").unwrap();
    client.doc.commit();
    let message = client
        .outgoing()
        .expect("the client announces its new heads");
    let Message::Sync { data, .. } = &message else {
        panic!("{message:?}")
    };
    let decoded = automerge::sync::Message::decode(data).unwrap();
    assert!(
        decoded.changes.is_empty(),
        "no change is sent to a read-only peer"
    );
    let answer = session.receive(message, &mut docs).unwrap().unwrap();
    assert!(client.take(answer).is_empty());
    let (others, rounds) = client.settle(&mut session, &mut docs, 10);
    assert!(
        others.is_empty() && rounds <= 2,
        "quiet: {others:?} after {rounds} rounds"
    );
}

#[test]
fn a_sent_write_is_refused_with_a_notice_and_no_loop() {
    let mut docs = Docs::default();
    docs.0.insert("c-1".into(), doc_with_title("路灯坏了"));
    let server_heads = docs.0["c-1"].clone().get_heads();
    let mut session = joined(&mut docs);
    let mut client = Client::new("c-1");
    client.settle(&mut session, &mut docs, 10);
    // A client that ignores the read-only flag.
    client.state.peer_read_only = false;
    client.doc.put(ROOT, "title", "改过的标题").unwrap();
    client.doc.commit();
    let (others, rounds) = client.settle(&mut session, &mut docs, 10);
    assert!(rounds <= 3, "the exchange settles ({rounds} rounds)");
    let [Message::Ephemeral { data, count: 1, .. }] = others.as_slice() else {
        panic!("one refusal notice: {others:?}");
    };
    let notice: Value = ciborium::from_reader(data.as_slice()).unwrap();
    let fields = notice.into_map().unwrap();
    assert_eq!(fields[0].1, Value::Text(REFUSED_NOTICE.into()));
    assert_eq!(
        docs.0["c-1"].clone().get_heads(),
        server_heads,
        "never stored"
    );
    // A later change on the server still reaches the client, without a second refusal.
    let mut server = docs.0["c-1"].clone();
    server.put(ROOT, "status", "signed").unwrap();
    server.commit();
    docs.0.insert("c-1".into(), server);
    let pushed = session.refresh(&mut docs).unwrap();
    assert!(client.take(pushed).is_empty());
    client.state.peer_read_only = false;
    let (others, _) = client.settle(&mut session, &mut docs, 10);
    assert!(others.len() <= 1, "at most one more notice: {others:?}");
    assert!(client.doc.get(ROOT, "status").unwrap().is_some());
}

#[test]
fn refresh_sends_new_changes_and_closes_what_left_scope() {
    let mut docs = Docs::default();
    docs.0.insert("c-1".into(), doc_with_title("路灯坏了"));
    let mut session = joined(&mut docs);
    let mut client = Client::new("c-1");
    client.settle(&mut session, &mut docs, 10);
    assert!(
        session.refresh(&mut docs).unwrap().is_empty(),
        "nothing new"
    );
    let mut server = docs.0["c-1"].clone();
    server.put(ROOT, "title", "路灯修好了").unwrap();
    server.commit();
    docs.0.insert("c-1".into(), server);
    let pushed = session.refresh(&mut docs).unwrap();
    assert_eq!(pushed.len(), 1);
    client.take(pushed);
    client.settle(&mut session, &mut docs, 10);
    assert_eq!(client.title().as_deref(), Some("路灯修好了"));
    docs.0.clear();
    let gone = session.refresh(&mut docs).unwrap();
    assert!(
        matches!(gone.as_slice(), [Message::Unavailable { .. }]),
        "{gone:?}"
    );
    assert!(session.refresh(&mut docs).unwrap().is_empty(), "closed");
}

#[test]
fn garbage_sync_data_closes_the_connection() {
    let mut docs = Docs::default();
    docs.0.insert("c-1".into(), doc_with_title("x"));
    let mut session = joined(&mut docs);
    let garbage = Message::Sync {
        sender: "web".into(),
        target: "server".into(),
        document: url::document_id("c-1"),
        data: vec![0x42, 0xff, 0x00],
    };
    assert!(session.receive(garbage, &mut docs).unwrap().is_err());
    // And a frame that is not a message at all never reaches the session.
    assert!(decode(&[0xa1, 0x00]).is_err());
}
