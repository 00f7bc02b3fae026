//! The sync and deadline benchmarks of BENCHMARKS.md, on loopback against a real server:
//!
//! - W1 restore: a new phone syncs 10,000 cases of its township.
//! - W2 return: a phone holding 20,000 cases comes back with 500 changed locally while 500
//!   others changed on the server.
//! - W4 deadline scan: 1,000,000 cases in the server's projection; the overdue scan.
//! - overlap: 16 phones, each sync pushing a note to its own case and receiving the others',
//!   from 1, 2 and 4 threads at once, on SQLite and PostgreSQL: do syncs of different devices
//!   run at the same time (throughput rising with threads) or one after another?
//!
//! Run: `cargo bench -p gridcase-tests --bench sync` (`-- w1`, `-- w2`, `-- w4`, `-- overlap`
//! for one).
//! Sizes can be lowered for a quick look with GRIDCASE_BENCH_SCALE=0.1.

use std::io::Write;
use std::time::{Duration, Instant};

use gridcase_bindings::http::HttpTransport;
use gridcase_core::doc::FieldEdit;
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{Case, Complainant, Millis, Role};
use gridcase_core::phone::queries::CaseList;
use gridcase_core::phone::{Transport, TransportError};
use gridcase_core::store::{Page, StoreKey};
use gridcase_tests::{T0, TestPhone, TestServer, new_case};

/// Counts round trips and bytes both ways.
struct Metered<'a> {
    inner: &'a mut dyn Transport,
    round_trips: usize,
    sent: usize,
    received: usize,
    /// Time spent waiting for the server (its work plus loopback), as opposed to the phone's.
    waiting: Duration,
    /// The responses as received, for [`breakdown`].
    bodies: Vec<Vec<u8>>,
}

impl Transport for Metered<'_> {
    fn exchange(&mut self, body: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.round_trips += 1;
        self.sent += body.len();
        let started = Instant::now();
        let response = self.inner.exchange(body)?;
        self.waiting += started.elapsed();
        self.received += response.len();
        self.bodies.push(response.clone());
        Ok(response)
    }
}

static SMOKE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn scale(n: usize) -> usize {
    let default = if SMOKE.load(std::sync::atomic::Ordering::SeqCst) {
        0.01
    } else {
        1.0
    };
    let factor: f64 = std::env::var("GRIDCASE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    ((n as f64) * factor).round().max(1.0) as usize
}

fn gzip_len(bytes: &[u8]) -> usize {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap().len()
}

/// A small deterministic generator, so every run benchmarks the same cases.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() as usize % items.len()]
    }
}

const CATEGORIES: &[&str] = &[
    "市场监管",
    "供水",
    "噪音",
    "邻里纠纷",
    "道路",
    "环境卫生",
    "路灯",
    "物业",
];
const SUBJECTS: &[&str] = &[
    "菜市场",
    "小区",
    "村道",
    "自来水管",
    "垃圾收集点",
    "路灯",
    "工地",
    "沿街商铺",
    "排水沟",
    "停车场",
];
const PROBLEMS: &[&str] = &[
    "夜间施工噪音扰民",
    "停水三天",
    "路面塌陷",
    "垃圾未及时清运",
    "占道经营",
    "漏水严重",
    "路灯不亮",
    "油烟污染",
    "违规停车堵塞通道",
    "价格欺诈",
];
const DETAILS: &[&str] = &[
    "居民多次反映，影响休息。",
    "老人小孩出行不便，存在安全隐患。",
    "已持续一周以上，希望尽快处理。",
    "附近商户也有同样问题。",
    "此前已拨打热线但未解决。",
    "晚上十点以后仍然施工。",
    "雨天积水严重，车辆无法通行。",
    "要求相关部门到现场核实。",
];
/// Descriptions are a few clauses of real Chinese text, so that compression sees the entropy
/// of what grid workers write, not a handful of repeated sentences.
const CLAUSES: &str = include_str!("clauses.txt");
const SURNAMES: &[&str] = &["王", "李", "张", "刘", "陈", "杨", "赵", "黄"];

/// Creates `n` realistic cases on `phone` (varied titles, descriptions of two to six clauses,
/// a complainant, registered and, for most, started with a note) and pushes them to
/// the server in batches.
fn seed(phone: &mut TestPhone, n: usize, prefix: &str) {
    let mut rng = Lcg(42);
    let clauses: Vec<&str> = CLAUSES
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    for i in 0..n {
        let id = format!("{prefix}-{i:06}");
        let village = 201 + (rng.next() % 20);
        let area = format!("330604101{village}");
        let subject = rng.pick(SUBJECTS);
        let problem = rng.pick(PROBLEMS);
        let mut case = new_case(&id, &format!("{subject}{problem}"), &area);
        case.category = rng.pick(CATEGORIES).into();
        case.location.address = format!("城关镇{}村{}号", village - 200, rng.next() % 200 + 1);
        case.description = (0..2 + rng.next() % 5)
            .map(|_| rng.pick(&clauses))
            .collect::<Vec<_>>()
            .join("，")
            + "。";
        let complainant = Complainant {
            name: format!(
                "{}{}",
                rng.pick(SURNAMES),
                rng.pick(&["先生", "女士", "大爷", "阿姨"])
            ),
            phone: format!("1{}{:08}", 30 + rng.next() % 60, rng.next() % 100_000_000),
            anonymous: false,
        };
        let t = T0 + (i as Millis) * 60_000;
        phone
            .phone
            .create_case(&case, Some(&complainant), t)
            .unwrap();
        phone.phone.act(&id, &Action::Register, t + 1_000).unwrap();
        if !rng.next().is_multiple_of(4) {
            phone.phone.act(&id, &Action::Start, t + 2_000).unwrap();
            phone
                .phone
                .add_note(
                    &id,
                    &format!("已联系{}，{}", complainant.name, rng.pick(DETAILS)),
                    t + 3_000,
                )
                .unwrap();
        }
        if i % 1000 == 999 {
            phone.sync().unwrap();
        }
    }
    phone.sync().unwrap();
}

/// A new phone of township staff `user` syncs everything: encrypted as on a device, or with
/// `encrypted: false` a plain SQLite store (to see what encryption costs).
fn restore(
    server: &TestServer,
    user: &str,
    nonce: u8,
    encrypted: bool,
) -> (TestPhone, Duration, Metered<'static>) {
    let token = server.enrol(user, Role::TownshipStaff, "330604101");
    restore_as(server, &token, nonce, encrypted)
}

/// A new phone with the device `token` syncs everything (see [`restore`]).
fn restore_as(
    server: &TestServer,
    token: &str,
    nonce: u8,
    encrypted: bool,
) -> (TestPhone, Duration, Metered<'static>) {
    let key = encrypted.then(|| StoreKey::new([nonce; 32]));
    let mut phone = TestPhone::with_key(server, token, nonce, key);
    let inner: &'static mut HttpTransport =
        Box::leak(Box::new(HttpTransport::new(&server.url, token)));
    let mut meter = Metered {
        inner,
        round_trips: 0,
        sent: 0,
        received: 0,
        waiting: Duration::ZERO,
        bodies: Vec::new(),
    };
    let started = Instant::now();
    phone.sync_with(&mut meter, 500).unwrap();
    (phone, started.elapsed(), meter)
}

/// The final state of the cases: each case with its complainant, as an app would export them
/// (as JSON, the baseline W1's bytes are compared with).
fn final_state(
    phone: &TestPhone,
    ids: impl Iterator<Item = String>,
) -> Vec<(Case, Option<Complainant>)> {
    ids.map(|id| {
        let detail = phone.phone.get_case(&id).unwrap();
        (detail.case, detail.complainant)
    })
    .collect()
}

/// W1 on the demo's documents (`gridcase_server::demo`): every lifecycle stage, timelines,
/// complainants for most cases, and the supervisions the deadline check adds to overdue cases
/// after their documents were compacted. The device restoring is the hotline's, the role that
/// sees the most: every case of the county and its personal data.
fn w1() {
    let n = scale(10_000);
    let server = TestServer::start(gridcase_tests::Backend::Sqlite);
    server.set_time(T0);
    let demo = gridcase_server::demo::fill(&server.store, n as u32, 1, T0).unwrap();
    let supervised = gridcase_server::run_deadline_check(&server.store, T0)
        .unwrap()
        .supervised
        .len();
    let hotline = |tokens: &[(String, Role, String)]| {
        let (_, _, token) = tokens.iter().find(|(user, ..)| user == "hotline").unwrap();
        token.clone()
    };
    let (phone, elapsed, meter) = restore_as(&server, &hotline(&demo.tokens), 2, true);
    let ids = phone.cases_in("330604");
    assert_eq!(ids.len(), n, "every case arrived");
    let cases = final_state(&phone, ids.into_iter());
    // Each case is a document, and so is each complainant (its personal-data document).
    let documents = n + cases.iter().filter(|(_, c)| c.is_some()).count();
    let json = serde_json::to_vec(&cases).unwrap();
    let gz = gzip_len(&json);
    let wire = meter.sent + meter.received;
    println!(
        "W1 restore (demo cases, hotline): {n} cases ({documents} documents, {supervised} supervised after compaction) in {:.2} s ({:.2} s waiting for the server), {} round trips, {} bytes on the wire; gzipped JSON of the final state {} bytes; ratio {:.2} (target: < 5 s, ratio <= 1.5)",
        elapsed.as_secs_f64(),
        meter.waiting.as_secs_f64(),
        meter.round_trips,
        wire,
        gz,
        wire as f64 / gz as f64
    );
    println!("W1 bytes by part: {}", breakdown(&meter.bodies));
    let plain_token = server.store.enrol_device("hotline", T0).unwrap();
    let (_, plain, _) = restore_as(&server, &plain_token, 3, false);
    println!(
        "W1 encryption: restore into an encrypted store {:.2} s, into a plain one {:.2} s ({:+.0} %)",
        elapsed.as_secs_f64(),
        plain.as_secs_f64(),
        (elapsed.as_secs_f64() / plain.as_secs_f64() - 1.0) * 100.0
    );
}

/// What each part of the responses costs on the wire: the bytes a response loses without it
/// (compressed as sent, so what the part shares with the rest counts once), summed over the
/// responses; the rest is the envelope (ids, heads, results, identity, cursor).
fn breakdown(bodies: &[Vec<u8>]) -> String {
    use gridcase_core::sync::SyncResponse;
    use gridcase_core::sync::wire::{decode_response, encode_response};
    let size = |r: &SyncResponse| encode_response(r).len();
    let without = |r: &SyncResponse, drop: &dyn Fn(&mut SyncResponse)| {
        let mut r = r.clone();
        drop(&mut r);
        size(&r)
    };
    let (mut whole, mut times, mut cases, mut personal, mut times_plain) = (0, 0, 0, 0, 0);
    let dump = std::env::var_os("GRIDCASE_DUMP_RESPONSES").map(std::path::PathBuf::from);
    for (i, body) in bodies.iter().enumerate() {
        let r = decode_response(body).unwrap();
        if let Some(dir) = &dump {
            dump_plain(dir, i, &r);
        }
        let full = size(&r);
        whole += body.len();
        times += full
            - without(&r, &|r| {
                r.times.clear();
                r.compact_times = None;
            });
        times_plain += postcard::to_allocvec(&(&r.times, &r.compact_times))
            .unwrap()
            .len();
        cases += full - without(&r, &|r| r.docs.retain(|d| d.doc_id.contains('#')));
        personal += full - without(&r, &|r| r.docs.retain(|d| !d.doc_id.contains('#')));
    }
    let rest = whole - times - cases - personal;
    format!(
        "responses {whole} B: trusted times {times} B ({times_plain} B before compression), case snapshots {cases} B, personal-data snapshots {personal} B, the rest {rest} B"
    )
}

/// Writes the plaintext `encode_response` compresses (postcard, ids compacted) to
/// `dir/response-NNN.postcard`, for measuring compressors outside the bench
/// (BENCHMARKS.md, "zstd levels on W1's responses").
fn dump_plain(dir: &std::path::Path, i: usize, response: &gridcase_core::sync::SyncResponse) {
    let mut compacted = response.clone();
    gridcase_core::sync::refs::compact(&mut compacted);
    let plain = postcard::to_allocvec(&compacted).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("response-{i:03}.postcard")), plain).unwrap();
}

/// Best-of-5 milliseconds of the list calls a screen makes, on a phone holding `n` cases:
/// the first page, a page deep in the list, the count, a title search, and every row a page
/// of 500 at a time.
fn list_timings(phone: &TestPhone, n: usize) -> String {
    let p = &phone.phone;
    let now = phone.now;
    let all = CaseList::All;
    let calls: [(&str, &dyn Fn() -> usize); 5] = [
        ("first page of 50", &|| {
            p.list(&all, Page::first(50), now).unwrap().cases.len()
        }),
        ("page of 50 halfway down", &|| {
            let page = Page {
                offset: (n / 2) as u64,
                limit: 50,
            };
            p.list(&all, page, now).unwrap().cases.len()
        }),
        ("count", &|| p.count(&all, now).unwrap() as usize),
        ("search", &|| {
            let list = CaseList::Search("路灯".into());
            p.list(&list, Page::first(50), now).unwrap().cases.len()
        }),
        ("all rows by 500", &|| {
            let (mut page, mut rows) = (Page::first(500), 0);
            loop {
                let got = p.list(&all, page, now).unwrap();
                rows += got.cases.len();
                match got.next_offset {
                    Some(next) => page.offset = next,
                    None => break rows,
                }
            }
        }),
    ];
    calls
        .iter()
        .map(|(what, call)| {
            let best = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    call();
                    t.elapsed().as_secs_f64() * 1000.0
                })
                .fold(f64::MAX, f64::min);
            format!("{what} {best:.2} ms")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn w2() {
    let n = scale(20_000);
    let changed = scale(500);
    let server = TestServer::start(gridcase_tests::Backend::Sqlite);
    let mut seeder = TestPhone::enrolled(&server, "seeder", Role::GridWorker, "330604101", 1);
    seed(&mut seeder, n, "w2");
    let (mut phone, _, _) = restore(&server, "returner", 2, true);
    let (plain, _, _) = restore(&server, "returner-plain", 3, false);
    println!(
        "List of {n} cases, encrypted store: {}",
        list_timings(&phone, n)
    );
    println!(
        "List of {n} cases, plain store:     {}",
        list_timings(&plain, n)
    );
    drop(plain);

    let notes_before = phone
        .phone
        .get_case(&format!("w2-{:06}", n - 1))
        .unwrap()
        .case
        .notes
        .len();
    // Offline: the phone changes `changed` cases; meanwhile others change `changed` other cases.
    let mut raw_change_bytes = 0usize;
    let at: Millis = T0 + 10_000;
    for i in 0..changed {
        let id = format!("w2-{i:06}");
        phone
            .phone
            .edit(&id, &FieldEdit::Category("路灯".into()), at)
            .unwrap();
        let j = n - 1 - i;
        let other = format!("w2-{j:06}");
        seeder.phone.add_note(&other, "已报修", at).unwrap();
    }
    let request = phone.phone.build_request(at, 500).unwrap();
    raw_change_bytes += request
        .pushes
        .iter()
        .flat_map(|p| &p.changes)
        .map(Vec::len)
        .sum::<usize>();
    let seeder_request = seeder.phone.build_request(at, 500).unwrap();
    raw_change_bytes += seeder_request
        .pushes
        .iter()
        .flat_map(|p| &p.changes)
        .map(Vec::len)
        .sum::<usize>();
    seeder.sync().unwrap();

    let mut inner = HttpTransport::new(&server.url, "unused");
    std::mem::swap(&mut inner, &mut phone.transport);
    let mut meter = Metered {
        inner: &mut inner,
        round_trips: 0,
        sent: 0,
        received: 0,
        waiting: Duration::ZERO,
        bodies: Vec::new(),
    };
    let started = Instant::now();
    phone.sync_with(&mut meter, 500).unwrap();
    let elapsed = started.elapsed();
    let wire = meter.sent + meter.received;
    let budget = (raw_change_bytes as f64 * 1.3) as usize + 100 * 2 * changed;
    println!(
        "W2 return: {n} cases held, {changed} changed locally + {changed} on the server: {} round trips, {} bytes on the wire in {:.2} s; raw change bytes {}; budget 1.3x raw + 100 B/case = {} ({})",
        meter.round_trips,
        wire,
        elapsed.as_secs_f64(),
        raw_change_bytes,
        budget,
        if wire <= budget && meter.round_trips <= 2 {
            "met"
        } else {
            "NOT met"
        }
    );
    let last = format!("w2-{:06}", n - 1);
    let notes = phone.phone.get_case(&last).unwrap().case.notes.len();
    assert_eq!(notes, notes_before + 1, "the server-side change arrived");
}

fn main() {
    // `cargo test` runs this binary without `--bench`: then it is a quick smoke run at 1% of
    // the sizes, to keep the benchmark code working; the figures only mean something under
    // `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") && std::env::var("GRIDCASE_BENCH_SCALE").is_err() {
        println!("smoke run (use `cargo bench -p gridcase-tests --bench sync` for figures)");
        SMOKE.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH
    );
    if wants("w1") {
        w1();
    }
    if wants("w2") {
        w2();
    }
    if wants("w4") {
        w4::run(scale(1_000_000));
    }
    if wants("overlap") {
        overlap(gridcase_tests::Backend::Sqlite);
        if std::env::var("GRIDCASE_TEST_PG").is_ok_and(|v| v == "off") {
            println!("overlap on PostgreSQL skipped (GRIDCASE_TEST_PG=off)");
        } else {
            overlap(gridcase_tests::Backend::Postgres);
        }
    }
}

/// Syncs per second of the server alone (`Store::sync`, no HTTP, no phone) when 16 devices sync
/// from 1, 2 and 4 threads at once; each sync pushes one note to the device's own case and
/// receives the notes the others pushed since its cursor. The notes are made before the clock
/// starts.
fn overlap(backend: gridcase_tests::Backend) {
    use gridcase_core::area::Jurisdiction;
    use gridcase_core::doc::CaseDoc;
    use gridcase_core::identity::actor_for;
    use gridcase_core::model::Author;
    use gridcase_core::sync::{DocPush, PushResult, SyncRequest};
    use gridcase_server::{Auth, DeviceCtx};

    const DEVICES: usize = 16;
    let rounds = scale(800).div_ceil(DEVICES).max(2);
    let mut results = Vec::new();
    for threads in [1usize, 2, 4] {
        // Fresh for each thread count: the cases grow with every note.
        let db = gridcase_tests::TestDb::new(backend);
        let store = db.open();
        let area = Jurisdiction::parse("330604101").unwrap();
        /// A device, its case, the pushes it will make, its cursor.
        type Device = (DeviceCtx, String, Vec<Vec<Vec<u8>>>, u64);
        let mut devices: Vec<Device> = Vec::new();
        for d in 0..DEVICES {
            let user = format!("o{d}");
            store.enrol_user(&user, Role::GridWorker, &area, 0).unwrap();
            let token = store.enrol_device(&user, 0).unwrap();
            let Auth::Device(device) = store.authenticate(&token).unwrap() else {
                panic!("enrolled")
            };
            let author = Author {
                user: user.clone(),
                device: device.device_id.clone(),
                role: Role::GridWorker,
            };
            let actor = actor_for(&device.device_id, [1, 2, 3, 4]).unwrap();
            let case_id = format!("o-{d:02}");
            let mut case = CaseDoc::create(
                &new_case(&case_id, "路灯不亮", "330604101201"),
                &author,
                actor,
                T0,
            )
            .unwrap();
            case.act(&Action::Register, &author, T0 + 1).unwrap();
            // Push k is everything since push k - 1: the registration, then one note each.
            let mut pushes = Vec::new();
            let mut doc = case.into_automerge();
            let mut since = Vec::new();
            for k in 0..=rounds {
                if k > 0 {
                    let mut case = CaseDoc::from_automerge(doc).unwrap();
                    case.add_note(&format!("第{k}次"), &author, T0 + 1 + k as Millis)
                        .unwrap();
                    doc = case.into_automerge();
                }
                let changes: Vec<Vec<u8>> = doc
                    .get_changes(&since)
                    .iter()
                    .map(|c| c.raw_bytes().to_vec())
                    .collect();
                since = doc.get_heads();
                pushes.push(changes);
            }
            devices.push((device, case_id, pushes, 0));
        }
        let sync = |store: &gridcase_server::Store, device: &mut Device, k: usize| {
            let (ctx, case_id, pushes, cursor) = device;
            let request = SyncRequest {
                device_time: T0,
                cursor: *cursor,
                pushes: vec![DocPush {
                    doc_id: case_id.clone(),
                    changes: std::mem::take(&mut pushes[k]),
                }],
                ..Default::default()
            };
            let response = store.sync(ctx, &request, T0).unwrap();
            assert!(
                matches!(response.results[0], PushResult::Accepted { .. }),
                "{:?}",
                response.results
            );
            if response.restore.is_none() {
                *cursor = response.cursor;
            }
        };
        for device in devices.iter_mut() {
            sync(&store, device, 0);
        }
        let started = Instant::now();
        let per_thread = DEVICES / threads;
        std::thread::scope(|s| {
            for group in devices.chunks_mut(per_thread) {
                let store = &store;
                let sync = &sync;
                s.spawn(move || {
                    for k in 1..=rounds {
                        for device in group.iter_mut() {
                            sync(store, device, k);
                        }
                    }
                });
            }
        });
        let syncs = rounds * DEVICES;
        let secs = started.elapsed().as_secs_f64();
        results.push(format!(
            "{threads} thread(s) {:.0} syncs/s ({:.1} ms each)",
            syncs as f64 / secs,
            secs * 1000.0 * threads as f64 / syncs as f64
        ));
    }
    println!(
        "overlap ({backend:?}): {DEVICES} devices, one note pushed and the others' received per sync: {}",
        results.join("; ")
    );
}

/// W4: the deadline scan reads only the server's projection, so the benchmark fills that table
/// directly (1,000,000 rows: 90% closed with no clock running, 10% open with due instants
/// spread over thirty days either side of now) and times the overdue and due-soon queries the
/// background check runs.
mod w4 {
    use std::time::Instant;

    use gridcase_server::store::Store;

    const DAY: i64 = 86_400_000;

    pub fn run(n: usize) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now: i64 = 1_767_225_600_000;
        let started = Instant::now();
        {
            let mut conn =
                rusqlite::Connection::open(dir.path().join(gridcase_server::store::DB_FILE))
                    .unwrap();
            let tx = conn.transaction().unwrap();
            {
                let mut insert = tx
                    .prepare(
                        "INSERT INTO cases (case_id, number, title, category, status, case_type,
                            urgency, priority, area_code, assignee, responsible_unit, stage,
                            stage_started_at, due_at, calendar_version, last_seq, updated_at)
                         VALUES (?1, ?1, '路灯不亮', '路灯', ?2, 'complaint', 'general', 0,
                            '330604101201', '', '', ?3, ?4, ?5, 'bench', ?6, ?7)",
                    )
                    .unwrap();
                let mut x: u64 = 7;
                for i in 0..n {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let open = (x >> 33).is_multiple_of(10);
                    let id = format!("case-{i:07}");
                    if open {
                        let due = now + ((x >> 20) % (60 * DAY as u64)) as i64 - 30 * DAY;
                        let start = due - 15 * DAY;
                        insert
                            .execute(rusqlite::params![
                                id,
                                "in_progress",
                                "handle",
                                start,
                                due,
                                i as i64,
                                start
                            ])
                            .unwrap();
                    } else {
                        insert
                            .execute(rusqlite::params![
                                id,
                                "closed",
                                None::<String>,
                                None::<i64>,
                                None::<i64>,
                                i as i64,
                                now
                            ])
                            .unwrap();
                    }
                }
            }
            tx.commit().unwrap();
        }
        let filled = started.elapsed();
        let mut best = [f64::MAX; 3];
        let mut counts = [0usize; 3];
        let mut time = |i: usize, f: &dyn Fn() -> usize| {
            let t = Instant::now();
            counts[i] = f();
            best[i] = best[i].min(t.elapsed().as_secs_f64() * 1000.0);
        };
        for _ in 0..5 {
            time(0, &|| store.overdue_stages(now).unwrap().len());
            time(1, &|| store.overdue(now, u32::MAX).unwrap().len());
            time(2, &|| store.due_soon(now, u32::MAX).unwrap().len());
        }
        println!(
            "W4 deadline scan: {n} cases (filled in {:.1} s); overdue scan {:.1} ms -> {} overdue stages (target < 100 ms); full overdue list with every column {:.1} ms; due-soon list {:.1} ms -> {} cases (best of 5)",
            filled.as_secs_f64(),
            best[0],
            counts[0],
            best[1],
            best[2],
            counts[2]
        );
    }
}
