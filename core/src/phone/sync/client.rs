//! The sync client as a state machine, free of I/O ("events in, effects out", after
//! samod-core): it says what the shell must do next ([`Step`]), and the shell feeds back what
//! happened. It decides which requests to build (pushes only in the first), encodes and decodes
//! the wire bytes, counts progress, stops between pages when cancelled, and turns a revoked
//! device into a wipe, but only when the server proved the revocation ([`crate::revocation`]:
//! a forged `revoked` answer fails the sync and wipes nothing). It never touches the store or
//! the network, so every path is a unit test.
//!
//! On a link that drops connections it asks for smaller responses: every request carries a byte
//! budget ([`PageBudget`]) that halves after a cut (and the page is asked for again, up to
//! [`MAX_CUTS_PER_PAGE`] times) and doubles after each page that arrives, staying under what
//! was cut twice in a row.
//! A stored page is never fetched again: the next request starts where it ended.

use super::request::plan_request;
use super::{SyncOutcome, SyncPhase, SyncProgress, SyncSummary};
use crate::model::Millis;
use crate::phone::{PhoneError, TransportError};
use crate::revocation::{RevocationKey, request_nonce};
use crate::store::meta::SyncPosition;
use crate::sync::wire;
use crate::sync::{SyncRequest, SyncResponse};

/// What the shell must do next.
#[derive(Debug)]
pub enum Step {
    /// Read the store (one short read transaction) and build the next request with
    /// [`super::request::plan_request`] within [`SyncClient::page_bytes`]; say whether pushes
    /// were left out ([`SyncClient::pushes_remain`]) and hand it to [`SyncClient::request_built`].
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
    budget: PageBudget,
    /// The last request left pushes out (over the byte budget): the next one carries them.
    pushes_left: bool,
    progress: SyncProgress,
    summary: SyncSummary,
    sent: Option<SyncRequest>,
    /// Verifies a `revoked` answer; without it no answer wipes the phone.
    revocation: Option<RevocationKey>,
    /// The nonce of the request in flight (the transport sends it in the nonce header).
    nonce: String,
}

/// Consecutive cuts of one page after which the sync fails (and the app tries later).
pub const MAX_CUTS_PER_PAGE: u32 = 10;
/// What a phone asks for before it knows its link: about 10-20 KB on the wire, compressed.
pub const INITIAL_PAGE_BYTES: u32 = 48 * 1024;
const MIN_PAGE_BYTES: u32 = 2 * 1024;
const MAX_PAGE_BYTES: u32 = 4 * 1024 * 1024;

/// How many bytes of documents one response may carry (the server sends at least one document
/// whatever the budget, so progress never stops at zero).
///
/// It shrinks after a cut and grows quickly after success, because a village link's limit is
/// usually per connection, not per response: the HTTP client keeps a connection open across
/// exchanges, so a response of any size is cut once its connection has carried ~10 KB. A cut
/// of a response that followed a whole one (on a used connection) therefore says little about
/// the budget: the page is asked for again at half (on a new connection) and, once that
/// arrives, the budget doubles straight back. Only a second cut in a row (the retry runs on
/// the fresh connection the cut forced) shows the budget itself is too large for the link; it
/// sets a ceiling of three quarters of it, which growth then stays under for the rest of the
/// sync. (Halving at every cut and growing only under the smallest size ever cut let the
/// connection's position ratchet a restore down to 2 KB parts.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageBudget {
    bytes: u32,
    /// Three quarters of the smallest budget cut twice in a row in this sync: growth stays
    /// under it.
    ceiling: Option<u32>,
    /// Consecutive cuts of the page being fetched.
    cuts: u32,
}

impl PageBudget {
    pub fn new(bytes: u32) -> PageBudget {
        PageBudget {
            bytes: bytes.clamp(MIN_PAGE_BYTES, MAX_PAGE_BYTES),
            ceiling: None,
            cuts: 0,
        }
    }

    pub fn bytes(&self) -> u32 {
        self.bytes
    }

    /// A response was cut: halve the budget; a second cut in a row also caps growth.
    fn cut(&mut self) {
        if self.cuts > 0 {
            let cap = (self.bytes - self.bytes / 4).max(MIN_PAGE_BYTES);
            self.ceiling = Some(self.ceiling.map_or(cap, |c| c.min(cap)));
        }
        self.bytes = (self.bytes / 2).max(MIN_PAGE_BYTES);
        self.cuts += 1;
    }

    /// A response arrived whole: double the budget, staying under the ceiling.
    fn arrived(&mut self) {
        self.cuts = 0;
        let ceiling = self.ceiling.unwrap_or(MAX_PAGE_BYTES);
        self.bytes = self.bytes.saturating_mul(2).min(ceiling).max(self.bytes);
    }
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
            part_bytes: 0,
            blob_bytes_sent: 0,
            blob_bytes_total: 0,
        };
        SyncClient {
            page_size,
            budget: PageBudget::new(INITIAL_PAGE_BYTES),
            pushes_left: false,
            summary: SyncSummary {
                pages: 0,
                cancelled: false,
                progress: progress.clone(),
                rejected: Vec::new(),
                kept_pending: Vec::new(),
                unreadable: Vec::new(),
                uploads: Default::default(),
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

    /// Starts from the budget a previous sync ended with (what this link carried).
    pub fn with_page_bytes(mut self, bytes: u32) -> SyncClient {
        self.budget = PageBudget::new(bytes);
        self
    }

    /// The budget now, for the next sync to start from.
    pub fn page_bytes(&self) -> u32 {
        self.budget.bytes()
    }

    /// Whether the request about to be built left pushes for a later one.
    pub fn pushes_remain(&mut self, left: bool) {
        self.pushes_left = left;
    }

    /// No more asking again after a cut (the app cancelled the sync).
    pub fn stop_retrying(&mut self) {
        self.budget.cuts = MAX_CUTS_PER_PAGE;
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
        Step::Exchange(self.encode(request))
    }

    /// The wire bytes of `request` at the current budget; it becomes the one [`SyncClient::sent`].
    fn encode(&mut self, mut request: SyncRequest) -> Vec<u8> {
        request.page_bytes = self.budget.bytes();
        if request.restore.is_some() && request.restore_remaining == 0 {
            // The token is the last stored page's, and so is this count: the server counts
            // this page off it rather than counting the rest of the scope again.
            request.restore_remaining = self.progress.remaining;
        }
        let bytes = wire::encode_request(&request);
        self.progress.phase = SyncPhase::Sending;
        self.progress.cases_sent += request.pushes.len() as u64;
        self.progress.bytes_sent += bytes.len() as u64;
        self.nonce = request_nonce(&bytes);
        self.sent = Some(request);
        bytes
    }

    pub fn exchanged(&mut self, answer: Result<Vec<u8>, TransportError>) -> Step {
        let bytes = match answer {
            Ok(bytes) => bytes,
            Err(TransportError::Unauthorized {
                wipe: true,
                message,
                proof,
            }) => return self.revoked(message, proof),
            Err(TransportError::Network(_)) if self.budget.cuts + 1 < MAX_CUTS_PER_PAGE => {
                return self.ask_again_smaller();
            }
            Err(e) => return Step::Fail(e.into()),
        };
        self.budget.arrived();
        self.progress.bytes_received += bytes.len() as u64;
        match wire::decode_response(&bytes) {
            Ok(response) => {
                self.progress.phase = SyncPhase::Applying;
                Step::Apply(Box::new(response))
            }
            Err(e) => Step::Fail(e.into()),
        }
    }

    /// The link dropped the exchange: ask for the same page (with the pushes again if the
    /// request carried them; the server answers a repeated push as before) with half the bytes.
    fn ask_again_smaller(&mut self) -> Step {
        self.budget.cut();
        let with_pushes = self
            .sent
            .as_ref()
            .is_some_and(|s| !s.pushes.is_empty() || !s.catch_up.is_empty());
        self.build(with_pushes)
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

    /// The request after `response` (the answer to [`SyncClient::sent`]), when it can be
    /// built before the page is stored, from the position the page will store alone: a plain
    /// page of a restore or of a feed cut short, neither carrying nor answering pushes,
    /// catch-ups, rules or a snapshot part (each of those changes what the next request says).
    /// The shell sends it while it stores the page, so the server assembles the next page while
    /// the phone writes this one. The page is still committed before its cursor counts: if
    /// storing it fails, the early answer is dropped and nothing of it is stored.
    pub fn next_request(
        &self,
        response: &SyncResponse,
        cancelled: bool,
        now: Millis,
    ) -> Option<SyncRequest> {
        let sent = self.sent.as_ref()?;
        let plain_request = sent.pushes.is_empty() && sent.catch_up.is_empty();
        let plain_answer = response.results.is_empty()
            && response.catch_up.is_empty()
            && response.rules.is_none()
            && response.part.is_none();
        let more = response.restore.is_some() || response.remaining > 0;
        if !(more && plain_request && plain_answer) || self.pushes_left || cancelled {
            return None;
        }
        let position = SyncPosition {
            cursor: response.cursor,
            restore: response.restore.clone(),
            rules_version: sent.rules_version,
        };
        let (mut request, _) = plan_request(&position, now, self.page_size, 0, None);
        if request.restore.is_some() {
            request.restore_remaining = response.remaining;
        }
        Some(request)
    }

    /// Sends `next` (from [`SyncClient::next_request`]) before the page it follows is stored:
    /// the bytes to exchange; the request the page answers stays with the caller.
    pub fn prefetch(&mut self, next: SyncRequest) -> (Vec<u8>, SyncRequest) {
        let answered = self.sent.take().expect("a page answers a request");
        (self.encode(next), answered)
    }

    /// The page fetched early was stored: go on with the answer to the request sent meanwhile
    /// (dropped when the sync ends here, so nothing of it is stored: it comes again next time).
    pub fn applied_then(
        &mut self,
        outcome: SyncOutcome,
        cancelled: bool,
        answer: Result<Vec<u8>, TransportError>,
    ) -> Step {
        if cancelled {
            self.stop_retrying();
        }
        match self.applied(outcome, cancelled) {
            Step::BuildRequest { .. } => self.exchanged(answer),
            done => done,
        }
    }

    /// A page was stored. `cancelled`: the app asked to stop (checked between pages).
    pub fn applied(&mut self, outcome: SyncOutcome, cancelled: bool) -> Step {
        self.summary.pages += 1;
        self.progress.cases_received += outcome.received.len() as u64;
        self.progress.part_bytes += outcome.part_bytes;
        self.progress.remaining = outcome.remaining;
        self.summary.rejected.extend(outcome.rejected);
        self.summary.kept_pending.extend(outcome.kept_pending);
        self.summary.unreadable.extend(outcome.unreadable);
        let more = outcome.more || self.pushes_left;
        if more && !cancelled {
            return self.build(self.pushes_left);
        }
        self.summary.cancelled = more && cancelled;
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

    /// Parts of a large document count in bytes while no document is received yet.
    #[test]
    fn progress_counts_the_bytes_of_parts() {
        let mut client = SyncClient::new(50);
        client.start();
        for _ in 0..3 {
            client.request_built(SyncRequest::default());
            client.exchanged(Ok(answer(true)));
            let part = SyncOutcome {
                part_bytes: 4_096,
                ..page(true, 0)
            };
            client.applied(part, false);
        }
        assert_eq!(client.progress().part_bytes, 3 * 4_096);
        assert_eq!(client.progress().cases_received, 0);
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

    /// A restore page's request carries what the stored page said remained, so the server
    /// counts the page off it; a request outside a restore carries nothing.
    #[test]
    fn a_restore_request_echoes_the_count_of_the_page_before() {
        let mut client = SyncClient::new(50);
        client.start();
        client.request_built(SyncRequest::default());
        client.exchanged(Ok(answer(true)));
        client.applied(page(true, 1), false);
        let token = RestoreToken {
            upto: 9,
            after: "c1".into(),
        };
        client.request_built(SyncRequest {
            restore: Some(token),
            ..Default::default()
        });
        assert_eq!(client.sent().restore_remaining, 7);
        client.request_built(SyncRequest::default());
        assert_eq!(client.sent().restore_remaining, 0);
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

    fn network() -> TransportError {
        TransportError::Network("connection reset".into())
    }

    #[test]
    fn a_cut_asks_for_the_same_page_with_half_the_bytes_until_it_gives_up() {
        let mut client = SyncClient::new(50).with_page_bytes(64 * 1024);
        client.start();
        let mut first = SyncRequest::default();
        first.pushes.push(crate::sync::DocPush {
            doc_id: "c1".into(),
            changes: vec![vec![1]],
        });
        client.request_built(first);
        assert_eq!(client.sent().page_bytes, 64 * 1024);
        // The pushes go again: the server answers a repeated push as before.
        assert!(matches!(
            client.exchanged(Err(network())),
            Step::BuildRequest {
                with_pushes: true,
                ..
            }
        ));
        client.request_built(SyncRequest::default());
        assert_eq!(client.sent().page_bytes, 32 * 1024);
        for _ in 1..MAX_CUTS_PER_PAGE - 1 {
            assert!(matches!(
                client.exchanged(Err(network())),
                Step::BuildRequest {
                    with_pushes: false,
                    ..
                }
            ));
            client.request_built(SyncRequest::default());
        }
        assert_eq!(client.sent().page_bytes, MIN_PAGE_BYTES);
        let Step::Fail(e) = client.exchanged(Err(network())) else {
            panic!("a page cut {MAX_CUTS_PER_PAGE} times fails the sync");
        };
        assert_eq!(e.code(), "network");
    }

    /// One exchange at the current budget through a link that drops every connection once it
    /// carried `per_connection` bytes (the budget stands in for the response's size), as the
    /// HTTP client's kept-alive connection does; a cut forces a new connection.
    fn through_link(client: &mut SyncClient, used: &mut u32, per_connection: u32) -> bool {
        client.request_built(SyncRequest::default());
        let size = client.sent().page_bytes;
        *used += size;
        if *used > per_connection {
            *used = 0;
            client.exchanged(Err(network()));
            return false;
        }
        assert!(matches!(client.exchanged(Ok(answer(true))), Step::Apply(_)));
        client.applied(page(true, 1), false);
        true
    }

    /// On a link that drops each connection after 12 KB, pages of 2 KB would always get
    /// through, but the budget does not ratchet down to them: a cut of a used connection is
    /// answered at half and then doubled back, and only a cut of a fresh one (twice in a row)
    /// caps growth. Here every connection carries a page of 8 KB or more: 4x the 2 KB floor
    /// the budget used to settle at on this link.
    #[test]
    fn the_budget_grows_back_quickly_after_a_cut_and_settles_near_what_the_link_carries() {
        let mut client = SyncClient::new(50).with_page_bytes(48 * 1024);
        client.start();
        let mut used = 0;
        let mut arrived = Vec::new();
        // Ends on a page that arrived (cuts and arrivals alternate once settled).
        for _ in 0..59 {
            if through_link(&mut client, &mut used, 12 * 1024) {
                arrived.push(client.sent().page_bytes);
            }
        }
        // 48 KB and 24 KB were cut (the second on a fresh connection: a ceiling of 18 KB);
        // 12 KB arrived, 18 KB on the same connection was cut, 9 KB arrived, and so on.
        assert_eq!(client.budget.ceiling, Some(18 * 1024));
        let settled = &arrived[arrived.len() - 10..];
        assert!(settled.iter().all(|&b| b >= 8 * 1024), "{arrived:?}");
        // Each cut is answered at half and the next page doubles back to the ceiling.
        client.request_built(SyncRequest::default());
        client.exchanged(Err(network()));
        assert_eq!(client.page_bytes(), 9 * 1024);
        client.request_built(SyncRequest::default());
        client.exchanged(Ok(answer(true)));
        assert_eq!(client.page_bytes(), 18 * 1024);
        assert_eq!(client.budget.cuts, 0);
    }

    /// On a good link the budget doubles with every page: from 48 KB to the 4 MiB most a
    /// response holds after 7 pages (W1's 500-document pages are about 1 MB).
    #[test]
    fn the_budget_doubles_after_every_page_that_arrives() {
        let mut client = SyncClient::new(500);
        client.start();
        let mut budgets = Vec::new();
        for _ in 0..8 {
            client.request_built(SyncRequest::default());
            budgets.push(client.sent().page_bytes / 1024);
            client.exchanged(Ok(answer(true)));
            client.applied(page(true, 1), false);
        }
        assert_eq!(budgets, [48, 96, 192, 384, 768, 1536, 3072, 4096]);
    }

    /// Only a plain page of a restore (or of a feed cut short) lets the next request go before
    /// it is stored: pushes, their answers, catch-ups, rules and parts change what the next
    /// request says, and the last page or a cancel ends the sync.
    #[test]
    fn only_plain_pages_with_more_to_come_are_followed_before_they_are_stored() {
        let restoring = SyncResponse {
            cursor: 3,
            restore: Some(RestoreToken {
                upto: 9,
                after: "c7".into(),
            }),
            remaining: 4,
            ..Default::default()
        };
        let mut client = SyncClient::new(50);
        client.start();
        client.request_built(SyncRequest {
            rules_version: 2,
            ..Default::default()
        });
        let next = client.next_request(&restoring, false, 77).unwrap();
        assert_eq!(
            (next.cursor, next.restore.clone()),
            (3, restoring.restore.clone())
        );
        assert_eq!(
            (next.rules_version, next.device_time, next.page_size),
            (2, 77, 50)
        );
        assert!(next.pushes.is_empty() && next.staged.is_none() && next.compact_snapshots);
        assert_eq!(next.restore_remaining, 4, "the page's count, echoed");
        let feed_cut_short = SyncResponse {
            restore: None,
            ..restoring.clone()
        };
        let next = client.next_request(&feed_cut_short, false, 77).unwrap();
        assert_eq!(next.restore_remaining, 0, "no restore, no count");

        let last = SyncResponse {
            restore: None,
            remaining: 0,
            ..restoring.clone()
        };
        let answering = SyncResponse {
            results: vec![crate::sync::PushResult::Accepted {
                doc_id: "c1".into(),
                heads: vec![],
            }],
            ..restoring.clone()
        };
        let with_rules = SyncResponse {
            rules: Some(crate::rules::RulesUpdate {
                version: 3,
                text: crate::rules::RulesText {
                    policy_toml: String::new(),
                    calendar: String::new(),
                },
            }),
            ..restoring.clone()
        };
        for response in [&last, &answering, &with_rules] {
            assert!(
                client.next_request(response, false, 77).is_none(),
                "{response:?}"
            );
        }
        assert!(
            client.next_request(&restoring, true, 77).is_none(),
            "cancelled"
        );
        client.pushes_remain(true);
        assert!(
            client.next_request(&restoring, false, 77).is_none(),
            "pushes left"
        );
        client.pushes_remain(false);
        let mut pushing = SyncRequest::default();
        pushing.pushes.push(crate::sync::DocPush {
            doc_id: "c1".into(),
            changes: vec![vec![1]],
        });
        client.request_built(pushing);
        assert!(
            client.next_request(&restoring, false, 77).is_none(),
            "answers pushes"
        );
    }

    #[test]
    fn a_cancelled_sync_does_not_ask_again() {
        let mut client = SyncClient::new(50);
        client.start();
        client.request_built(SyncRequest::default());
        client.stop_retrying();
        assert!(matches!(client.exchanged(Err(network())), Step::Fail(_)));
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
