//! Several server instances on one database.
//!
//! - `racing_deadline_checks_supervise_once` (both backends, in one process): two stores, as two
//!   servers would hold, run the deadline check at the same time, again and again; each overdue
//!   stage is supervised once, in the table and in the case's timeline.
//! - `three_instances_on_postgres`: three server processes on one PostgreSQL schema. Phones sync
//!   through different instances in turn and converge; exactly one instance leads the deadline
//!   check and another takes over when it is killed; every overdue case is supervised once;
//!   an instance killed in the middle of a burst loses no acknowledged change and the phones
//!   converge through the others. Skipped only when `GRIDCASE_TEST_PG` is unset or `off`.
//!
//! As in `crash.rs`, the test binary re-executes itself as a server ([`instance_child_server`],
//! ignored in a normal run). The children read their clock from a file the test moves.

use gridcase_tests::acks::{Acks, Recording};
use gridcase_tests::serve_publishing_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridcase_bindings::http::HttpTransport;
use gridcase_core::area::Jurisdiction;
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{CaseType, Millis, Role};
use gridcase_core::phone::{Phone, PhoneError, TransportError};
use gridcase_core::rules::SourcedRules;
use gridcase_core::store::StoreKey;
use gridcase_server::db::Location;
use gridcase_server::deadlines::supervise_overdue_stages;
use gridcase_server::http::AppState;
use gridcase_server::leader::spawn_deadline_leader;
use gridcase_server::store::Store;
use gridcase_server::testing::PG_ENV;
use gridcase_tests::{Backend, T0, TestDb, TestPhone, TestServer, new_case};

const CHILD_ENV: &str = "GRIDCASE_INSTANCE_CHILD";
const DB_ENV: &str = "GRIDCASE_INSTANCE_DB";
const CLOCK_ENV: &str = "GRIDCASE_INSTANCE_CLOCK";
const CHILD_TEST: &str = "instance_child_server";
const AREA: &str = "330604101";
const VILLAGE: &str = "330604101201";
const DAY: Millis = 86_400_000;

// ---- racing deadline checks, in one process ----

fn racing_deadline_checks_supervise_once(backend: Backend) {
    let server = TestServer::start(backend);
    let mut li = TestPhone::enrolled(&server, "li", Role::GridWorker, AREA, 1);
    let ids: Vec<String> = (0..6).map(|i| format!("race-{i}")).collect();
    for id in &ids {
        let mut case = new_case(id, "咨询社保办理", VILLAGE);
        case.case_type = CaseType::Inquiry;
        li.phone.create_case(&case, None, T0 + 1_000).unwrap();
        li.phone.act(id, &Action::Register, T0 + 2_000).unwrap();
        li.phone.act(id, &Action::Start, T0 + 3_000).unwrap();
    }
    li.now = T0 + 4_000;
    server.set_time(li.now);
    li.sync().unwrap();

    // Two "servers" (each store has its own actor), checking together a month later.
    let other = Arc::new(server.db.open());
    let late = T0 + 30 * DAY;
    let stores = [server.store.clone(), other];
    let supervised: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter()
            .map(|store| {
                s.spawn(move || {
                    (0..4)
                        .flat_map(|i| supervise_overdue_stages(store, late + i).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<String> = supervised.concat();
    all.sort();
    assert_eq!(all, ids, "each case supervised by exactly one check run");
    for id in &ids {
        assert_eq!(server.store.supervisions(id).unwrap().len(), 1, "{id}");
    }
    li.now = late + DAY;
    server.set_time(li.now);
    li.sync().unwrap();
    for id in &ids {
        let case = li.phone.get_case(id).unwrap().case;
        assert_eq!(case.supervisions.len(), 1, "{id}: one 督办 event");
    }
}

gridcase_server::backend_tests!(racing_deadline_checks_supervise_once);

// ---- three processes on PostgreSQL ----

/// The server half: runs only in a child process (see the module docs).
#[test]
#[ignore = "a server process of `three_instances_on_postgres`"]
fn instance_child_server() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let url = std::env::var(DB_ENV).expect("child: the database");
    let clock_file = PathBuf::from(std::env::var(CLOCK_ENV).expect("child: the clock file"));
    let store = Arc::new(
        Store::connect(&Location::Postgres(url), 8, SourcedRules::shipped())
            .expect("child: open the server store"),
    );
    let clock: gridcase_server::http::Clock = Arc::new(move || read_clock(&clock_file));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child: runtime");
    let state = AppState::new(store.clone()).with_clock(clock.clone());
    runtime.block_on(async move {
        let _leader = spawn_deadline_leader(
            store,
            Duration::from_millis(200),
            clock,
            state.metrics.clone(),
        );
        serve_publishing_port(&dir, state).await;
    });
}

fn read_clock(file: &Path) -> Millis {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(T0)
}

fn set_clock(file: &Path, now: Millis) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, now.to_string()).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// A server child process; killed (SIGKILL) when dropped.
struct Instance {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Instance {
    fn start(url: &str, dir: &Path, clock: &Path) -> Instance {
        std::fs::create_dir_all(dir).unwrap();
        let port_file = dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log).expect("child log");
        let child = Command::new(std::env::current_exe().expect("current exe"))
            .args(["--ignored", "--exact", CHILD_TEST, "--nocapture"])
            .args(["--test-threads=1"])
            .env(CHILD_ENV, dir)
            .env(DB_ENV, url)
            .env(CLOCK_ENV, clock)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("child log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn a server child");
        let mut instance = Instance {
            child,
            url: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Ok(port) = text.trim().parse::<u16>()
            {
                instance.url = format!("http://127.0.0.1:{port}");
                return instance;
            }
            if let Ok(Some(status)) = instance.child.try_wait() {
                panic!("a server child exited ({status}):\n{}", instance.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "no port:\n{}",
                instance.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether this instance says it leads the deadline check (`None`: it does not answer).
    fn leads(&self) -> Option<bool> {
        let mut response = ureq_get(&format!("{}/metrics", self.url))?;
        let text = response.body_mut().read_to_string().ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("gridcase_deadline_leader "))?;
        Some(line.ends_with(" 1"))
    }

    fn kill(mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "a server child died by itself ({status}):\n{}",
                self.log_text()
            );
        }
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ureq_get(url: &str) -> Option<ureq::http::Response<ureq::Body>> {
    ureq::get(url).call().ok()
}

struct Worker {
    name: String,
    phone: Phone,
    token: String,
    _dir: tempfile::TempDir,
    now: Millis,
}

impl Worker {
    fn sync(&mut self, url: &str, acks: &Mutex<Acks>) -> Result<(), PhoneError> {
        self.now += 1_000;
        let mut transport = Recording {
            inner: HttpTransport::new(url, &self.token),
            phone: self.name.clone(),
            acks,
        };
        let cancel = AtomicBool::new(false);
        let summary = self
            .phone
            .sync(&mut transport, self.now, &mut |_| {}, &cancel, 200)?;
        assert!(summary.rejected.is_empty(), "{}: {summary:?}", self.name);
        Ok(())
    }

    /// A grid worker registers and starts a new case; everyone edits the shared one.
    fn edit(&mut self, tag: &str) {
        self.now += 1_000;
        self.phone
            .splice_description("shared", 0, 0, &format!("[{tag}]"), self.now)
            .unwrap();
        if self.name == "zhao" {
            return;
        }
        let id = format!("{}-{tag}", self.name);
        let mut case = new_case(&id, &format!("案件{tag}"), VILLAGE);
        case.case_type = CaseType::Inquiry;
        self.phone.create_case(&case, None, self.now).unwrap();
        self.phone
            .act(&id, &Action::Register, self.now + 1)
            .unwrap();
        self.phone.act(&id, &Action::Start, self.now + 2).unwrap();
    }

    fn case_ids(&self) -> Vec<String> {
        let list = gridcase_core::phone::queries::CaseList::Area(AREA.into());
        let page = gridcase_core::store::Page::ALL;
        let cases = self.phone.list(&list, page, self.now).unwrap().cases;
        cases.into_iter().map(|c| c.case_id).collect()
    }
}

/// Syncs every phone, each through a different instance in turn, until nothing is pending.
fn converge(workers: &mut [Worker], urls: &[&str], acks: &Mutex<Acks>) {
    let mut quiet = 0;
    for pass in 0..10 {
        for (i, w) in workers.iter_mut().enumerate() {
            let url = urls[(i + pass) % urls.len()];
            w.sync(url, acks)
                .unwrap_or_else(|e| panic!("{} via {url}: {e}", w.name));
        }
        let pending: u64 = workers
            .iter()
            .map(|w| w.phone.sync_status().unwrap().pending_docs)
            .sum();
        quiet = if pending == 0 { quiet + 1 } else { 0 };
        if quiet == 2 {
            return;
        }
    }
    panic!("the phones did not converge in 10 passes");
}

fn assert_identical(workers: &[Worker], store: &Store) -> Vec<String> {
    let ids = workers[0].case_ids();
    for w in &workers[1..] {
        assert_eq!(w.case_ids(), ids, "{} and {}", w.name, workers[0].name);
        for id in &ids {
            let a = workers[0].phone.get_case(id).unwrap().case;
            assert_eq!(w.phone.get_case(id).unwrap().case, a, "{id} on {}", w.name);
        }
    }
    assert_eq!(store.case_count().unwrap(), ids.len() as u64);
    ids
}

fn check_acknowledged(store: &Store, acks: &Acks) -> usize {
    let mut checked = 0;
    for ((phone, doc_id), hashes) in &acks.required {
        let mut doc = store
            .load_doc(doc_id)
            .unwrap()
            .unwrap_or_else(|| panic!("{doc_id}, acknowledged to {phone}, is missing"));
        for hash in hashes {
            checked += 1;
            assert!(
                doc.get_change_by_hash(hash).is_some(),
                "{doc_id}: change {hash} acknowledged to {phone} is gone"
            );
        }
    }
    checked
}

/// Polls `leads` of each instance until exactly one says it leads; returns its index.
fn the_leader(instances: &[Option<Instance>]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let leading: Vec<usize> = instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.as_ref().and_then(Instance::leads) == Some(true))
            .map(|(n, _)| n)
            .collect();
        if leading.len() == 1 {
            return leading[0];
        }
        assert!(leading.len() < 2, "two leaders at once: {leading:?}");
        assert!(Instant::now() < deadline, "no leader within 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn enrol_workers(store: &Store) -> Vec<Worker> {
    let area = Jurisdiction::parse(AREA).unwrap();
    let users = [
        ("li", Role::GridWorker),
        ("wang", Role::GridWorker),
        ("zhao", Role::TownshipStaff),
    ];
    users
        .iter()
        .enumerate()
        .map(|(i, (user, role))| {
            store.enrol_user(user, *role, &area, 0).unwrap();
            let token = store.enrol_device(user, 0).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let key = StoreKey::new([i as u8 + 1; 32]);
            let nonce = [i as u8 + 1, 7, 7, 7];
            let phone = Phone::open(dir.path().join("phone.db"), &token, nonce, Some(&key));
            Worker {
                name: (*user).to_string(),
                phone: phone.unwrap(),
                token,
                _dir: dir,
                now: T0,
            }
        })
        .collect()
}

#[test]
fn three_instances_on_postgres() {
    if std::env::var(PG_ENV).map_or(true, |v| v.is_empty() || v == "off") {
        eprintln!("{PG_ENV} unset: the three-instance test needs PostgreSQL; skipped");
        return;
    }
    let db = TestDb::new(Backend::Postgres);
    let Location::Postgres(url) = db.location().clone() else {
        unreachable!()
    };
    let clock = db.dir().join("clock");
    set_clock(&clock, T0);
    let mut workers = enrol_workers(&db.open());
    let mut instances: Vec<Option<Instance>> = (0..3)
        .map(|i| {
            Some(Instance::start(
                &url,
                &db.dir().join(format!("i{i}")),
                &clock,
            ))
        })
        .collect();
    let urls: Vec<String> = instances.iter().flatten().map(|i| i.url.clone()).collect();
    let all: Vec<&str> = urls.iter().map(String::as_str).collect();

    // Phones sync through different instances in turn and converge.
    let acks = Mutex::new(Acks::default());
    workers[0].sync(all[0], &acks).unwrap();
    let now = workers[0].now;
    let shared = new_case("shared", "共享案件", VILLAGE);
    workers[0].phone.create_case(&shared, None, now).unwrap();
    workers[0]
        .phone
        .act("shared", &Action::Register, now + 1)
        .unwrap();
    converge(&mut workers, &all, &acks);
    for round in 0..3 {
        for w in workers.iter_mut() {
            w.edit(&format!("a{round}"));
        }
        converge(&mut workers, &all, &acks);
    }
    let ids = assert_identical(&workers, &db.open());
    assert_eq!(ids.len(), 1 + 2 * 3);

    // One leader; killed, another takes the deadline check over.
    let first = the_leader(&instances);
    instances[first].take().unwrap().kill();
    let second = the_leader(&instances);
    assert_ne!(first, second);
    let alive: Vec<&str> = (0..3)
        .filter(|&i| instances[i].is_some())
        .map(|i| all[i])
        .collect();

    // A month later every started case is overdue: each supervised once by the new leader.
    set_clock(&clock, T0 + 30 * DAY);
    let store = db.open();
    let started: Vec<&String> = ids.iter().filter(|id| *id != "shared").collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while started
        .iter()
        .any(|id| store.supervisions(id).unwrap().is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "the new leader did not supervise"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(600)); // a few more ticks
    for id in &started {
        assert_eq!(store.supervisions(id).unwrap().len(), 1, "{id}");
    }
    converge(&mut workers, &alive, &acks);
    for id in &started {
        let case = workers[2].phone.get_case(id).unwrap().case;
        assert_eq!(case.supervisions.len(), 1, "{id}: one 督办 on the phone");
    }

    // A burst through both survivors; one is killed in the middle of it.
    let burst_acks = Mutex::new(Acks::default());
    let victim = second;
    let victim_url = all[victim];
    let other_url = alive.iter().copied().find(|u| *u != victim_url).unwrap();
    let stopped = std::thread::scope(|s| {
        let acks = &burst_acks;
        let handles: Vec<_> = workers
            .iter_mut()
            .enumerate()
            .map(|(i, w)| {
                let url = if i % 2 == 0 { victim_url } else { other_url };
                s.spawn(move || {
                    for n in 0..40 {
                        w.edit(&format!("b{n}"));
                        match w.sync(url, acks) {
                            Ok(()) => {}
                            Err(PhoneError::Transport(TransportError::Network(_))) => {
                                return true;
                            }
                            Err(e) => panic!("{}: {e:?}", w.name),
                        }
                    }
                    false
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150));
        instances[victim].take().unwrap().kill();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<bool>>()
    });
    assert!(
        stopped.iter().any(|s| *s),
        "the kill did not land mid-burst"
    );
    let burst_acks = burst_acks.into_inner().unwrap();
    let checked = check_acknowledged(&db.open(), &burst_acks);
    assert!(checked > 0);
    converge(&mut workers, &[other_url], &acks);
    let ids = assert_identical(&workers, &db.open());
    eprintln!(
        "three instances: {} cases, {} acknowledged pushes in the burst, {checked} changes verified",
        ids.len(),
        burst_acks.accepted
    );
}
