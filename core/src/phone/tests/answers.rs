//! How the phone takes the server's refusals (issue 8.4, 8.5), through a fake transport that
//! answers each request with a closure: a `revoked` answer wipes only with the server's proof
//! for that very request; a 429 `Retry-After` is reported and waited out, with no request sent
//! sooner.

use std::sync::atomic::AtomicBool;

use super::*;
use crate::revocation::{RevocationKey, request_nonce};

/// Answers every request with `answer(request bytes)`, counting the requests.
struct Fake<F> {
    answer: F,
    requests: usize,
}

impl<F: FnMut(&[u8]) -> Result<Vec<u8>, TransportError>> Transport for Fake<F> {
    fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.requests += 1;
        (self.answer)(&request)
    }
}

fn fake<F: FnMut(&[u8]) -> Result<Vec<u8>, TransportError>>(answer: F) -> Fake<F> {
    Fake {
        answer,
        requests: 0,
    }
}

fn sync(phone: &Phone, transport: &mut dyn Transport, now: Millis) -> Result<(), PhoneError> {
    let cancel = AtomicBool::new(false);
    phone
        .sync(transport, now, &mut |_| {}, &cancel, 10)
        .map(|_| ())
}

fn revoked(proof: Option<String>) -> TransportError {
    TransportError::Unauthorized {
        wipe: true,
        message: "this device was revoked; delete its data".into(),
        proof,
    }
}

fn phone_with_a_case() -> (tempfile::TempDir, std::path::PathBuf, Phone) {
    let (dir, path, phone) = open();
    phone
        .create_case(&new_case("c1", "噪音", "330604101201"), None, T0)
        .unwrap();
    (dir, path, phone)
}

#[test]
fn a_forged_revocation_wipes_nothing() {
    let (_dir, _path, phone) = phone_with_a_case();
    let key = RevocationKey::of_token(TOKEN).unwrap();
    let other =
        RevocationKey::of_token("fedcba9876543210fedcba9876543210.someoneelsessecret").unwrap();
    let old_proof = key.proof(&request_nonce(b"a request from last week"));
    type Forge<'a> = Box<dyn Fn(&[u8]) -> Option<String> + 'a>;
    let forgeries: Vec<Forge> = vec![
        Box::new(|_| None),
        Box::new(|_| Some("ab".repeat(32))),
        Box::new(|body| Some(other.proof(&request_nonce(body)))),
        Box::new(move |_| Some(old_proof.clone())),
    ];
    for (i, forge) in forgeries.iter().enumerate() {
        let mut proxy = fake(|body| Err(revoked(forge(body))));
        let err = sync(&phone, &mut proxy, T0).unwrap_err();
        assert_eq!(err.code(), "unauthorized", "forgery {i}");
        assert!(err.to_string().contains("not wiped"), "forgery {i}: {err}");
        assert!(phone.summary("c1").unwrap().is_some(), "forgery {i} wiped");
    }
}

#[test]
fn a_proven_revocation_wipes_the_phone() {
    let (_dir, path, phone) = phone_with_a_case();
    let key = RevocationKey::of_token(TOKEN).unwrap();
    let mut server = fake(|body| Err(revoked(Some(key.proof(&request_nonce(body))))));
    let err = sync(&phone, &mut server, T0).unwrap_err();
    assert_eq!(err.code(), "unauthorized");
    assert_eq!(phone.summary("c1").unwrap_err().code(), "wiped");
    drop(phone);
    let bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.windows(6).any(|w| w == "噪音".as_bytes()));
}

#[test]
fn a_retry_after_is_reported_and_no_request_goes_sooner() {
    let (_dir, _path, phone) = phone_with_a_case();
    let mut busy = fake(|_| {
        Err(TransportError::RetryAfter {
            seconds: 120,
            message: "too many requests from this device".into(),
        })
    });
    let err = sync(&phone, &mut busy, T0).unwrap_err();
    assert_eq!(err.code(), "retry_later");
    assert!(err.to_string().contains("retry after 120 s"), "{err}");
    assert_eq!(busy.requests, 1);
    let mut server = fake(|_| Ok(wire::encode_response(&response())));
    for (after, left) in [(0, 120), (1, 120), (1_000, 119), (60_000, 60), (119_001, 1)] {
        let err = sync(&phone, &mut server, T0 + after).unwrap_err();
        assert_eq!(err.code(), "retry_later");
        assert!(
            err.to_string().contains(&format!("retry after {left} s")),
            "{err}"
        );
    }
    assert_eq!(server.requests, 0, "nothing was sent before the time");
    sync(&phone, &mut server, T0 + 120_000).unwrap();
    assert_eq!(server.requests, 1);
}
