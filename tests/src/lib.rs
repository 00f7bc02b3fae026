//! Harness for the workspace-level end-to-end tests in `tests/tests/`: a real `gridcase-server`
//! on 127.0.0.1 (an ephemeral port, a fresh database of either backend from
//! `gridcase_server::testing`) and phones that are real phone stores talking HTTP to it, exactly
//! as the apps do through the bindings. Tests run on both backends with
//! `gridcase_server::backend_tests!`.

pub mod acks;
pub mod link;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use gridcase_bindings::http::HttpTransport;
use gridcase_core::area::Jurisdiction;
use gridcase_core::model::{CaseType, Channel, Location, Millis, NewCase, Role, Urgency};
use gridcase_core::phone::queries::CaseList;
use gridcase_core::phone::{Phone, SyncSummary, Transport, TransportError};
use gridcase_core::store::{Page, StoreKey};
use gridcase_server::blobs::{BlobLimits, Blobs, LocalBlobs};
use gridcase_server::http::{AppState, spawn};
use gridcase_server::store::Store;
pub use gridcase_server::testing::{Backend, TestDb};

/// A server running on its own tokio runtime in the background for the life of the value.
pub struct TestServer {
    pub url: String,
    pub store: Arc<Store>,
    /// The server's database; outlives the server (a restart opens it again).
    pub db: TestDb,
    /// The server's clock; tests move it. Starts at [`T0`].
    pub clock: Arc<AtomicI64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    /// A server on a fresh database of `backend`.
    pub fn start(backend: Backend) -> TestServer {
        let db = TestDb::new(backend);
        let store = Arc::new(db.open());
        Self::start_with(store, db)
    }

    pub fn start_with(store: Arc<Store>, db: TestDb) -> TestServer {
        let clock = Arc::new(AtomicI64::new(T0));
        let (url, runtime) = serve(store.clone(), clock.clone(), db.dir());
        TestServer {
            url,
            store,
            db,
            clock,
            runtime: Some(runtime),
        }
    }

    /// Stops this server and serves the same database with `store` (e.g. opened with other
    /// deadline rules), on a new port and the same clock. Phones must [`TestPhone::reconnect`].
    pub fn restart_with(&mut self, store: Store) {
        self.stop();
        let store = Arc::new(store);
        let (url, runtime) = serve(store.clone(), self.clock.clone(), self.db.dir());
        (self.url, self.store, self.runtime) = (url, store, Some(runtime));
    }

    pub fn set_time(&self, now: Millis) {
        self.clock.store(now, Ordering::SeqCst);
    }

    /// Enrols a user and one device; returns the device token.
    pub fn enrol(&self, user: &str, role: Role, area: &str) -> String {
        let jurisdiction = Jurisdiction::parse(area).expect("valid jurisdiction");
        self.store
            .enrol_user(user, role, &jurisdiction, 0)
            .expect("enrol user");
        self.store.enrol_device(user, 0).expect("enrol device")
    }

    /// Stops serving (connections are refused afterwards); the data directory stays.
    pub fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// In a child server process (the crash and several-instances tests): serves `state` on an
/// ephemeral 127.0.0.1 port and publishes the port in `dir/port`, written then renamed so the
/// parent never reads half a number. Returns only by panicking, when the server stops.
pub async fn serve_publishing_port(dir: &std::path::Path, state: AppState) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("child: bind 127.0.0.1");
    let port = listener.local_addr().expect("child: local addr").port();
    let tmp = dir.join("port.tmp");
    std::fs::write(&tmp, port.to_string()).expect("child: write port");
    std::fs::rename(&tmp, dir.join("port")).expect("child: publish port");
    let served = spawn(listener, state).await;
    panic!("child: the server stopped: {served:?}");
}

/// Serves `store` on an ephemeral 127.0.0.1 port from a runtime of its own, reading `clock`,
/// keeping attachment bytes under `dir/blobs` (the default limits).
fn serve(
    store: Arc<Store>,
    clock: Arc<AtomicI64>,
    dir: &std::path::Path,
) -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let blobs = LocalBlobs::open(dir.join("blobs")).expect("blob directory");
    let state = AppState::new(store)
        .with_clock(Arc::new(move || clock.load(Ordering::SeqCst)))
        .with_blobs(Blobs::new(Arc::new(blobs), BlobLimits::default()));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    {
        let _guard = runtime.enter();
        spawn(listener, state);
    }
    (format!("http://{addr}"), runtime)
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A phone: its own store file and an HTTP transport to the test server.
pub struct TestPhone {
    pub phone: Phone,
    pub transport: HttpTransport,
    pub dir: tempfile::TempDir,
    /// The phone's clock, passed to every sync.
    pub now: Millis,
    nonce: u8,
}

pub const T0: Millis = 1_767_225_600_000; // 2026-01-01T00:00:00Z

impl TestPhone {
    /// A phone whose store is encrypted, as on a real device.
    pub fn new(server: &TestServer, token: &str, nonce: u8) -> TestPhone {
        Self::with_key(server, token, nonce, Some(StoreKey::new([nonce; 32])))
    }

    /// `key: None`: an unencrypted store (to measure what encryption costs).
    pub fn with_key(
        server: &TestServer,
        token: &str,
        nonce: u8,
        key: Option<StoreKey>,
    ) -> TestPhone {
        let dir = tempfile::tempdir().expect("temp dir");
        let phone = Phone::open(
            dir.path().join("phone.db"),
            token,
            [nonce, 1, 2, 3],
            key.as_ref(),
        )
        .expect("open phone store");
        TestPhone {
            phone,
            transport: HttpTransport::new(&server.url, token),
            dir,
            now: T0,
            nonce,
        }
    }

    /// Enrols `user` and returns a phone that has synced once (so it knows who it is).
    pub fn enrolled(server: &TestServer, user: &str, role: Role, area: &str, nonce: u8) -> Self {
        let token = server.enrol(user, role, area);
        let mut phone = TestPhone::new(server, &token, nonce);
        phone.sync().expect("first sync");
        phone
    }

    pub fn sync(&mut self) -> Result<SyncSummary, gridcase_core::phone::PhoneError> {
        self.sync_via_page(200)
    }

    pub fn sync_via_page(
        &mut self,
        page: u32,
    ) -> Result<SyncSummary, gridcase_core::phone::PhoneError> {
        let cancel = AtomicBool::new(false);
        self.phone
            .sync(&mut self.transport, self.now, &mut |_| {}, &cancel, page)
    }

    pub fn sync_with(
        &mut self,
        transport: &mut dyn Transport,
        page: u32,
    ) -> Result<SyncSummary, gridcase_core::phone::PhoneError> {
        let cancel = AtomicBool::new(false);
        self.phone
            .sync(transport, self.now, &mut |_| {}, &cancel, page)
    }

    /// Talks to `server` from now on (after it restarted on another port).
    pub fn reconnect(&mut self, server: &TestServer) {
        let token = self.phone.token().expect("the phone keeps its token");
        self.transport = HttpTransport::new(&server.url, &token);
    }

    pub fn nonce(&self) -> u8 {
        self.nonce
    }

    /// The ids of the cases held in an area (a code prefix), every page.
    pub fn cases_in(&self, area_prefix: &str) -> Vec<String> {
        let list = CaseList::Area(area_prefix.into());
        let page = self.phone.list(&list, Page::ALL, self.now).expect("list");
        page.cases.into_iter().map(|c| c.case_id).collect()
    }
}

/// A new case in a village of township 330604101 (or the given area).
pub fn new_case(id: &str, title: &str, area: &str) -> NewCase {
    NewCase {
        id: id.into(),
        number: format!("GC-{id}"),
        channel: Channel::Grid,
        case_type: CaseType::Complaint,
        category: "噪音".into(),
        urgency: Urgency::General,
        priority: false,
        title: title.into(),
        description: "居民反映夜间施工噪音".into(),
        location: Location {
            address: "城关镇一村".into(),
            area_code: area.into(),
            gps: None,
        },
    }
}

/// Wraps a transport, recording every response body and failing after `limit` exchanges (a
/// connection that drops in the middle of a restore).
pub struct FlakyTransport<'a> {
    pub inner: &'a mut dyn Transport,
    pub limit: usize,
    pub exchanges: usize,
    pub responses: Vec<Vec<u8>>,
}

impl Transport for FlakyTransport<'_> {
    fn exchange(&mut self, body: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        if self.exchanges >= self.limit {
            return Err(TransportError::Network("connection dropped".into()));
        }
        self.exchanges += 1;
        let response = self.inner.exchange(body)?;
        self.responses.push(response.clone());
        Ok(response)
    }
}
