//! A first sync of many cases comes in pages; a connection dropped halfway resumes where it
//! stopped without re-sending what already arrived.

use gridcase_core::lifecycle::Action;
use gridcase_core::model::Role;
use gridcase_core::sync::wire;
use gridcase_tests::{Backend, FlakyTransport, T0, TestPhone, TestServer, new_case};

fn restore_cut_off_halfway_resumes_without_resending(backend: Backend) {
    let server = TestServer::start(backend);
    let mut li = TestPhone::enrolled(&server, "li", Role::GridWorker, "330604101", 1);
    for i in 0..45 {
        let id = format!("c-{i:03}");
        li.phone
            .create_case(
                &new_case(&id, &format!("第{i}件"), "330604101201"),
                None,
                T0,
            )
            .unwrap();
        li.phone.act(&id, &Action::Register, T0 + 1).unwrap();
    }
    li.sync().unwrap();

    // A new phone for township staff restores 45 cases in pages of 10; the link drops after
    // the second page.
    let token = server.enrol("zhao", Role::TownshipStaff, "330604101");
    let mut zhao = TestPhone::new(&server, &token, 2);
    let mut inner = gridcase_bindings::http::HttpTransport::new(&server.url, &token);
    let mut first = FlakyTransport {
        inner: &mut inner,
        limit: 2,
        exchanges: 0,
        responses: Vec::new(),
    };
    assert!(zhao.sync_with(&mut first, 10).is_err(), "the link dropped");
    let first_ids: Vec<String> = first
        .responses
        .iter()
        .flat_map(|r| wire::decode_response(r).unwrap().docs)
        .map(|d| d.doc_id)
        .collect();
    assert_eq!(first_ids.len(), 20);
    assert_eq!(
        zhao.cases_in("330604101").len(),
        20,
        "both pages were stored"
    );
    assert!(zhao.phone.sync_status().unwrap().restoring);

    let mut second = FlakyTransport {
        inner: &mut inner,
        limit: usize::MAX,
        exchanges: 0,
        responses: Vec::new(),
    };
    zhao.sync_with(&mut second, 10).unwrap();
    let second_ids: Vec<String> = second
        .responses
        .iter()
        .flat_map(|r| wire::decode_response(r).unwrap().docs)
        .map(|d| d.doc_id)
        .collect();
    for id in &second_ids {
        assert!(!first_ids.contains(id), "{id} was sent twice");
    }
    assert_eq!(first_ids.len() + second_ids.len(), 45);
    assert_eq!(zhao.cases_in("330604101").len(), 45);
    assert!(!zhao.phone.sync_status().unwrap().restoring);

    // Sending the same request twice changes nothing: a further sync receives nothing.
    let mut third = FlakyTransport {
        inner: &mut inner,
        limit: usize::MAX,
        exchanges: 0,
        responses: Vec::new(),
    };
    zhao.sync_with(&mut third, 10).unwrap();
    let again: usize = third
        .responses
        .iter()
        .map(|r| wire::decode_response(r).unwrap().docs.len())
        .sum();
    assert_eq!(again, 0);
}

gridcase_server::backend_tests!(restore_cut_off_halfway_resumes_without_resending,);
