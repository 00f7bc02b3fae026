//! The sync client as a state machine, free of I/O ("events in, effects out", after
//! samod-core): it says what the shell must do next ([`Step`]), and the shell feeds back what
//! happened. It decides which requests to build (pushes only in the first), encodes and decodes
//! the wire bytes, counts progress, stops between pages when cancelled, and turns a revoked
//! device into a wipe, but only when the server proved the revocation ([`crate::revocation`]:
//! a forged `revoked` answer fails the sync and wipes nothing). It never touches the store or
//! the network, so every path is a unit test.
//!
//! Growing it: a byte budget per page that shrinks after a cut and grows after success is state
//! here (carried into [`Step::BuildRequest`]); policy or calendar updates and revocation proofs
//! arrive in the response and reach the page planner through [`Step::Apply`].

use super::{SyncOutcome, SyncPhase, SyncProgress, SyncSummary};
use crate::model::Millis;
use crate::phone::{PhoneError, TransportError};
use crate::revocation::{RevocationKey, request_nonce};
use crate::sync::wire;
use crate::sync::{SyncRequest, SyncResponse};

/// What the shell must do next.
#[derive(Debug)]
pub enum Step {
    /// Read the store (one short read transaction) and build the next request with
    /// [`super::request::plan_request`]; hand it to [`SyncClient::request_built`].
    BuildRequest {
        /// The first request of a sync carries the pushes and catch-ups; restore pages do not.
        with_pushes: bool,
        page_size: u32,
    },
    /// Send these bytes (no lock held) and hand the answer to [`SyncClient::exchanged`].
    Exchange(Vec<u8>),
    /// Store this page in one write transaction (the request it answers is
    /// [`SyncClient::sent`]) and hand the outcome to [`SyncClient::applied`].
    Apply(Box<SyncResponse>),
    /// The server revoked this device: delete everything, then fail with the error.
    Wipe(PhoneError),
    /// Keep the error as the last sync error and fail with it.
    Fail(PhoneError),
    /// The sync is over.
    Done(SyncSummary),
}

/// One sync, from its first request to its last page.
#[derive(Debug)]
pub struct SyncClient {
    page_size: u32,
    progress: SyncProgress,
    summary: SyncSummary,
    sent: Option<SyncRequest>,
    /// Verifies a `revoked` answer; without it no answer wipes the phone.
    revocation: Option<RevocationKey>,
    /// The nonce of the request in flight (the transport sends it in the nonce header).
    nonce: String,
}

impl SyncClient {
    pub fn new(page_size: u32) -> SyncClient {
        let progress = SyncProgress {
            phase: SyncPhase::Sending,
            cases_sent: 0,
            cases_received: 0,
            bytes_sent: 0,
            bytes_received: 0,
            remaining: 0,
        };
        SyncClient {
            page_size,
            summary: SyncSummary {
                pages: 0,
                cancelled: false,
                progress: progress.clone(),
                rejected: Vec::new(),
                kept_pending: Vec::new(),
                unreadable: Vec::new(),
            },
            progress,
            sent: None,
            revocation: None,
            nonce: String::new(),
        }
    }

    /// Wipes on a `revoked` answer only when its proof verifies with `key`.
    pub fn verifying(mut self, key: RevocationKey) -> SyncClient {
        self.revocation = Some(key);
        self
    }

    /// The first step.
    pub fn start(&mut self) -> Step {
        self.build(true)
    }

    fn build(&self, with_pushes: bool) -> Step {
        Step::BuildRequest {
            with_pushes,
            page_size: self.page_size,
        }
    }

    /// Where the sync stands, for the progress listener.
    pub fn progress(&self) -> &SyncProgress {
        &self.progress
    }

    /// The request the pending [`Step::Apply`] answers.
    pub fn sent(&self) -> &SyncRequest {
        self.sent
            .as_ref()
            .expect("Step::Apply is only given after a request was sent")
    }

    pub fn request_built(&mut self, request: SyncRequest) -> Step {
        let bytes = wire::encode_request(&request);
        self.progress.phase = SyncPhase::Sending;
        self.progress.cases_sent += request.pushes.len() as u64;
        self.progress.bytes_sent += bytes.len() as u64;
        self.nonce = request_nonce(&bytes);
        self.sent = Some(request);
        Step::Exchange(bytes)
    }

    pub fn exchanged(&mut self, answer: Result<Vec<u8>, TransportError>) -> Step {
        let bytes = match answer {
            Ok(bytes) => bytes,
            Err(TransportError::Unauthorized {
                wipe: true,
                message,
                proof,
            }) => return self.revoked(message, proof),
            Err(e) => return Step::Fail(e.into()),
        };
        self.progress.bytes_received += bytes.len() as u64;
        match wire::decode_response(&bytes) {
            Ok(response) => {
                self.progress.phase = SyncPhase::Applying;
                Step::Apply(Box::new(response))
            }
            Err(e) => Step::Fail(e.into()),
        }
    }

    /// A `revoked` answer: a wipe if its proof is this device's for the request just sent,
    /// otherwise a plain refusal (someone between phone and server may have forged it).
    fn revoked(&self, message: String, proof: Option<String>) -> Step {
        let proven = match (&self.revocation, &proof) {
            (Some(key), Some(proof)) => key.verifies(&self.nonce, proof),
            _ => false,
        };
        let message = if proven {
            message
        } else {
            format!("{message} (not wiped: the answer carries no valid proof from this server)")
        };
        let error = TransportError::Unauthorized {
            wipe: proven,
            message,
            proof,
        };
        if proven {
            Step::Wipe(error.into())
        } else {
            Step::Fail(error.into())
        }
    }

    /// A page was stored. `cancelled`: the app asked to stop (checked between pages).
    pub fn applied(&mut self, outcome: SyncOutcome, cancelled: bool) -> Step {
        self.summary.pages += 1;
        self.progress.cases_received += outcome.received.len() as u64;
        self.progress.remaining = outcome.remaining;
        self.summary.rejected.extend(outcome.rejected);
        self.summary.kept_pending.extend(outcome.kept_pending);
        self.summary.unreadable.extend(outcome.unreadable);
        if outcome.more && !cancelled {
            return self.build(false);
        }
        self.summary.cancelled = outcome.more && cancelled;
        self.progress.phase = SyncPhase::Done;
        self.summary.progress = self.progress.clone();
        Step::Done(self.summary.clone())
    }
}

/// How long a sync at `now` must still wait after a 429 asked not to come back before
/// `not_before`: `None` when it may go, else whole seconds (at least 1).
pub fn retry_wait(not_before: Option<Millis>, now: Millis) -> Option<u64> {
    let not_before = not_before?;
    (now < not_before).then(|| ((not_before - now) as u64).div_ceil(1000).max(1))
}

/// When a sync that failed with `error` at `now` may run again, if the server said.
pub fn retry_not_before(error: &PhoneError, now: Millis) -> Option<Millis> {
    match error {
        PhoneError::Transport(TransportError::RetryAfter { seconds, .. }) => {
            Some(now.saturating_add((*seconds).min(86_400) as Millis * 1000))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::RestoreToken;

    fn page(more: bool, received: usize) -> SyncOutcome {
        SyncOutcome {
            received: (0..received).map(|i| format!("d{i}")).collect(),
            more,
            remaining: if more { 7 } else { 0 },
            ..Default::default()
        }
    }

    fn answer(restore: bool) -> Vec<u8> {
        wire::encode_response(&SyncResponse {
            restore: restore.then(|| RestoreToken {
                upto: 1,
                after: "a".into(),
            }),
            ..Default::default()
        })
    }

    #[test]
    fn pushes_go_in_the_first_request_only_and_pages_follow_until_the_last() {
        let mut client = SyncClient::new(50);
        assert!(matches!(
            client.start(),
            Step::BuildRequest {
                with_pushes: true,
                page_size: 50
            }
        ));
        let Step::Exchange(bytes) = client.request_built(SyncRequest::default()) else {
            panic!("exchange expected");
        };
        assert_eq!(client.progress().bytes_sent, bytes.len() as u64);
        assert!(matches!(client.exchanged(Ok(answer(true))), Step::Apply(_)));
        assert_eq!(client.progress().phase, SyncPhase::Applying);
        assert!(matches!(
            client.applied(page(true, 2), false),
            Step::BuildRequest {
                with_pushes: false,
                ..
            }
        ));
        client.request_built(SyncRequest::default());
        client.exchanged(Ok(answer(false)));
        let Step::Done(summary) = client.applied(page(false, 3), false) else {
            panic!("done expected");
        };
        assert_eq!(summary.pages, 2);
        assert!(!summary.cancelled);
        assert_eq!(summary.progress.cases_received, 5);
        assert_eq!(summary.progress.phase, SyncPhase::Done);
    }

    #[test]
    fn a_cancel_stops_between_pages() {
        let mut client = SyncClient::new(1);
        client.start();
        client.request_built(SyncRequest::default());
        client.exchanged(Ok(answer(true)));
        let Step::Done(summary) = client.applied(page(true, 1), true) else {
            panic!("done expected");
        };
        assert!(summary.cancelled);
        assert_eq!(summary.progress.remaining, 7);
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef.secretsecretsecret42";

    fn revoked(proof: Option<String>) -> TransportError {
        TransportError::Unauthorized {
            wipe: true,
            message: "revoked".into(),
            proof,
        }
    }

    #[test]
    fn only_a_proven_revocation_wipes_and_other_failures_fail() {
        let key = RevocationKey::of_token(TOKEN).unwrap();
        let mut client = SyncClient::new(1).verifying(key.clone());
        client.start();
        let Step::Exchange(bytes) = client.request_built(SyncRequest::default()) else {
            panic!("exchange expected");
        };
        let proof = key.proof(&request_nonce(&bytes));
        assert!(matches!(
            client.exchanged(Err(revoked(Some(proof.clone())))),
            Step::Wipe(_)
        ));
        let forger =
            RevocationKey::of_token("0123456789abcdef0123456789abcdef.notthesecretatall").unwrap();
        let old_proof = key.proof(&request_nonce(b"an earlier request"));
        for forged in [
            None,
            Some("00".repeat(32)),
            Some(forger.proof(&request_nonce(&bytes))),
            Some(old_proof),
        ] {
            let Step::Fail(e) = client.exchanged(Err(revoked(forged.clone()))) else {
                panic!("{forged:?} must not wipe");
            };
            assert_eq!(e.code(), "unauthorized");
            assert!(e.to_string().contains("not wiped"), "{e}");
        }
        // Without a key (no token to check with), nothing wipes.
        let mut keyless = SyncClient::new(1);
        keyless.start();
        keyless.request_built(SyncRequest::default());
        assert!(matches!(
            keyless.exchanged(Err(revoked(Some(proof)))),
            Step::Fail(_)
        ));
        let refused = TransportError::Unauthorized {
            wipe: false,
            message: "bad token".into(),
            proof: None,
        };
        assert!(matches!(client.exchanged(Err(refused)), Step::Fail(_)));
        let Step::Fail(e) = client.exchanged(Ok(vec![1, 2, 3])) else {
            panic!("undecodable bytes fail");
        };
        assert_ne!(e.code(), "network");
    }

    #[test]
    fn a_retry_after_is_waited_out_to_the_second() {
        let busy = PhoneError::Transport(TransportError::RetryAfter {
            seconds: 30,
            message: "quota".into(),
        });
        let not_before = retry_not_before(&busy, 1_000);
        assert_eq!(not_before, Some(31_000));
        assert_eq!(retry_wait(not_before, 1_000), Some(30));
        assert_eq!(retry_wait(not_before, 30_500), Some(1));
        assert_eq!(retry_wait(not_before, 31_000), None);
        assert_eq!(retry_wait(None, 0), None);
        assert_eq!(retry_not_before(&PhoneError::Wiped, 0), None);
        let absurd = PhoneError::Transport(TransportError::RetryAfter {
            seconds: u64::MAX,
            message: String::new(),
        });
        assert_eq!(
            retry_not_before(&absurd, 0),
            Some(86_400_000),
            "at most a day"
        );
    }
}
