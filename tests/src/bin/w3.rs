//! W3: many simulated devices on loopback doing a field day's pattern against real
//! `gridcase-server` processes: mostly "anything new?" syncs, some devices pushing a note now
//! and then (which the others then receive). Bounded concurrency (1, 4, 16 client threads);
//! syncs per second, p50/p99 latency, and each server process's peak RSS.
//!
//! ```sh
//! cargo build --release -p gridcase-server -p gridcase-tests --bin w3
//! target/release/w3 --backend sqlite --instances 1
//! target/release/w3 --backend postgres --instances 3   # GRIDCASE_TEST_PG, else the default
//! ```
//! Options: `--cases 2000 --devices 32 --pushers 4 --seconds 10 --levels 1,4,16`.
//! Not run in CI. The devices speak the wire protocol directly (no phone store), so the
//! client's CPU stays small beside the servers' on a 2-core machine.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridcase_bindings::http::HttpTransport;
use gridcase_core::area::Jurisdiction;
use gridcase_core::doc::CaseDoc;
use gridcase_core::identity::actor_for;
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{Author, Millis, Role};
use gridcase_core::phone::Transport;
use gridcase_core::sync::wire::{decode_response, encode_request};
use gridcase_core::sync::{DocPush, PushResult, RestoreToken, SyncRequest};
use gridcase_server::db::Location;
use gridcase_server::store::Store;
use gridcase_tests::{Backend, T0, TestDb, new_case};

struct Options {
    backend: Backend,
    instances: usize,
    cases: u32,
    devices: usize,
    pushers: usize,
    seconds: u64,
    levels: Vec<usize>,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number =
        |name: &str, default: u64| value(name).map_or(default, |v| v.parse().expect("a number"));
    Options {
        backend: match value("--backend").as_deref() {
            None | Some("sqlite") => Backend::Sqlite,
            Some("postgres") => Backend::Postgres,
            Some(other) => panic!("--backend sqlite|postgres, not {other}"),
        },
        instances: number("--instances", 1) as usize,
        cases: number("--cases", 2_000) as u32,
        devices: number("--devices", 32) as usize,
        pushers: number("--pushers", 4) as usize,
        seconds: number("--seconds", 10),
        levels: value("--levels")
            .unwrap_or_else(|| "1,4,16".into())
            .split(',')
            .map(|n| n.parse().expect("levels like 1,4,16"))
            .collect(),
    }
}

/// A simulated device: its connection, cursor, and for a pusher its case and next notes.
struct Device {
    transport: HttpTransport,
    cursor: u64,
    restore: Option<RestoreToken>,
    /// The rules version it holds: like a phone, it gets the server's rules once.
    rules_version: u64,
    /// (case id, pushes not yet sent); empty for a device that only asks.
    pushes: Option<(String, Vec<Vec<Vec<u8>>>)>,
    syncs: u64,
}

impl Device {
    /// One sync; a pusher pushes its next note every fifth sync. Returns the seconds taken.
    fn sync(&mut self, now: Millis) -> f64 {
        let mut request = SyncRequest {
            device_time: now,
            cursor: self.cursor,
            restore: self.restore.clone(),
            page_size: 500,
            rules_version: self.rules_version,
            ..Default::default()
        };
        if let Some((case_id, pushes)) = &mut self.pushes
            && self.syncs.is_multiple_of(5)
            && let Some(changes) = pushes.pop()
        {
            request.pushes.push(DocPush {
                doc_id: case_id.clone(),
                changes,
            });
        }
        self.syncs += 1;
        let body = encode_request(&request);
        let started = Instant::now();
        let answer = self.transport.exchange(body).expect("a sync answer");
        let took = started.elapsed().as_secs_f64();
        let response = decode_response(&answer).expect("a decodable answer");
        for result in &response.results {
            assert!(matches!(result, PushResult::Accepted { .. }), "{result:?}");
        }
        if let Some(rules) = &response.rules {
            self.rules_version = rules.version;
        }
        self.restore = response.restore.clone();
        if response.restore.is_none() {
            self.cursor = response.cursor;
        }
        took
    }

    /// Syncs until the restore is done and a sync brings nothing new.
    fn catch_up(&mut self) {
        loop {
            let before = (self.cursor, self.restore.is_some());
            self.sync(T0);
            if self.restore.is_none() && before == (self.cursor, false) {
                return;
            }
        }
    }
}

/// `n` notes on a new case of a grid worker's device, newest last popped first.
fn pusher_case(store: &Store, user: &str, n: usize) -> (String, String, Vec<Vec<Vec<u8>>>) {
    let area = Jurisdiction::parse("330604101").unwrap();
    store.enrol_user(user, Role::GridWorker, &area, T0).unwrap();
    let token = store.enrol_device(user, T0).unwrap();
    let device = token.split_once('.').unwrap().0.to_owned();
    let author = Author {
        user: user.into(),
        device: device.clone(),
        role: Role::GridWorker,
    };
    let actor = actor_for(&device, [3, 3, 3, 3]).unwrap();
    let case_id = format!("w3-{user}");
    let mut case = CaseDoc::create(
        &new_case(&case_id, "路灯不亮", "330604101201"),
        &author,
        actor,
        T0,
    )
    .unwrap();
    case.act(&Action::Register, &author, T0 + 1).unwrap();
    let mut doc = case.into_automerge();
    let mut since = Vec::new();
    let mut pushes = Vec::new();
    for k in 0..=n {
        if k > 0 {
            let mut case = CaseDoc::from_automerge(doc).unwrap();
            case.add_note(&format!("巡查第{k}次"), &author, T0 + 1 + k as Millis)
                .unwrap();
            doc = case.into_automerge();
        }
        let changes = doc.get_changes(&since);
        pushes.push(changes.iter().map(|c| c.raw_bytes().to_vec()).collect());
        since = doc.get_heads();
    }
    pushes.reverse();
    (token, case_id, pushes)
}

/// A `gridcase-server serve` process (the binary beside this one).
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(location: &Location, port: u16) -> Server {
        let exe = std::env::current_exe().unwrap();
        let binary = exe.with_file_name("gridcase-server");
        assert!(
            binary.exists(),
            "build it first: cargo build --release -p gridcase-server"
        );
        // 32 devices stand in for thousands: each syncs far more often than a phone's
        // per-device quota (600 requests a minute) allows, so the bench lifts it.
        let config = std::env::temp_dir().join(format!("w3-{}-{port}.toml", std::process::id()));
        std::fs::write(&config, "[quota]\nrequests = 100000000\n").unwrap();
        let mut command = Command::new(binary);
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--config")
            .arg(&config)
            .args(["--check-every", "60s"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        match location {
            Location::Sqlite(dir) => command.arg("--data").arg(dir),
            Location::Postgres(url) => command.args(["--database", url]),
        };
        let child = command.spawn().expect("start gridcase-server");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, url }
    }

    /// CPU seconds (user + system) the process used so far.
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(&format!("/proc/{}/stat", self.child.id()))
    }

    /// Peak resident memory (VmHWM) in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU seconds from a `/proc/<pid>/stat` file (0 where it cannot be read).
fn cpu_seconds_of(stat: &str) -> f64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // The command name may hold spaces; the fields after it are fixed: utime and stime are
    // the 12th and 13th after the closing parenthesis.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on every Linux this runs on.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of the servers and of this client process so far.
fn cpu_now(servers: &[Server]) -> (f64, f64) {
    let server = servers.iter().map(Server::cpu_seconds).sum();
    (server, cpu_seconds_of("/proc/self/stat"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] * 1000.0
}

/// Runs `threads` clients for `seconds`, each owning every `threads`-th device: syncs per
/// second, p50 and p99 in ms, and the number of syncs.
fn level(devices: &mut [Device], threads: usize, seconds: u64) -> (f64, f64, f64, usize) {
    let stop = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut groups: Vec<Vec<&mut Device>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, d) in devices.iter_mut().enumerate() {
        groups[i % threads].push(d);
    }
    let mut times: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|mut group| {
                s.spawn(move || {
                    let mut times = Vec::new();
                    let mut k = 0;
                    while Instant::now() < stop {
                        let n = group.len();
                        times.push(group[k % n].sync(T0 + k as Millis));
                        k += 1;
                    }
                    times
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    (
        times.len() as f64 / secs,
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.len(),
    )
}

fn main() {
    let o = options();
    let db = TestDb::new(o.backend);
    let store = db.open();
    // Cases around today, as the servers' clocks are the wall clock.
    let today = gridcase_server::http::now_millis();
    let demo = gridcase_server::demo::fill(&store, o.cases, 1, today).unwrap();
    let mut tokens = Vec::new();
    for _ in 0..o.devices.saturating_sub(o.pushers) {
        tokens.push((store.enrol_device("town-101", T0).unwrap(), None));
    }
    for p in 0..o.pushers {
        let (token, case, pushes) = pusher_case(&store, &format!("w3-g{p}"), 600);
        tokens.push((token, Some((case, pushes))));
    }
    drop(store);
    let base_port = 20_000 + (std::process::id() % 20_000) as u16;
    let servers: Vec<Server> = (0..o.instances)
        .map(|i| Server::start(db.location(), base_port + i as u16))
        .collect();
    let mut devices: Vec<Device> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, (token, pushes))| Device {
            transport: HttpTransport::new(&servers[i % servers.len()].url, &token),
            cursor: 0,
            restore: None,
            rules_version: 0,
            pushes,
            syncs: 1,
        })
        .collect();
    let restore_started = Instant::now();
    for d in devices.iter_mut() {
        d.catch_up();
    }
    println!(
        "W3 {:?}, {} instance(s), {} demo cases ({} users), {} devices ({} pushing a note every \
         5th sync); initial restores {:.1} s",
        o.backend,
        o.instances,
        o.cases,
        demo.tokens.len(),
        devices.len(),
        o.pushers,
        restore_started.elapsed().as_secs_f64()
    );
    println!(
        "| concurrency | syncs/s | p50 ms | p99 ms | server CPU ms/sync | client CPU ms/sync |"
    );
    println!("|---|---|---|---|---|---|");
    for &threads in &o.levels {
        let (server_before, client_before) = cpu_now(&servers);
        let (rate, p50, p99, syncs) = level(&mut devices, threads, o.seconds);
        let (server_after, client_after) = cpu_now(&servers);
        let per_sync = |cpu: f64| cpu * 1000.0 / syncs.max(1) as f64;
        println!(
            "| {threads} | {rate:.0} | {p50:.1} | {p99:.1} | {:.2} | {:.2} |",
            per_sync(server_after - server_before),
            per_sync(client_after - client_before)
        );
    }
    let rss: Vec<String> = servers
        .iter()
        .map(|s| format!("{:.0}", s.peak_rss_mib()))
        .collect();
    println!("server peak RSS (MiB, per instance): {}", rss.join(", "));
}
