//! BENCHMARKS.md "Photos over the 50 kbit/s profile" (issue 10): a grid worker attaches 50
//! photos of ~300 KB offline (5 to each of 10 cases) and syncs once. The phone talks to a real
//! server through the loopback village link (`gridcase_tests::link`), unthrottled, which counts
//! the bytes each way and the connections; a wrapper counts the requests. The time at 50 kbit/s
//! and 600 ms RTT is then computed, not waited for (that is ~40 min per run):
//!
//! `time = (bytes up + bytes down) × 8 / 50,000 + (requests + connections) × 0.6 s`
//!
//! Requests go one after another, so the two directions add; each request costs one round
//! trip and each new connection one more (its TCP handshake). TCP/IP headers (about 3 % on full
//! segments) are not in the byte counts.
//!
//! The photos are deterministic noisy JPEGs made here (2048 × 1536, noise tuned so that each
//! is ~300 KB: noise does not compress, as a real photo's detail does not). Each run is once
//! with the photos kept as given (no photo policy, the phone's default) and once per
//! downscaling photo policy (which also uploads each photo's 320 px thumbnail).
//!
//! Run: `cargo bench -p gridcase-tests --bench photos`. `cargo test` runs it with 2 photos as a
//! smoke check; those figures mean nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gridcase_bindings::http::HttpTransport;
use gridcase_core::lifecycle::Action;
use gridcase_core::media::PhotoPolicy;
use gridcase_core::model::Role;
use gridcase_core::phone::blobs::upload::UploadStatus;
use gridcase_core::phone::{BlobTransport, RangeBytes, Transport, TransportError};
use gridcase_tests::link::{LinkShape, VillageLink};
use gridcase_tests::{Backend, T0, TestPhone, TestServer, new_case};
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, RgbImage};

const AREA: &str = "330604101";
const VILLAGE: &str = "330604101201";
const PHOTOS_PER_CASE: usize = 5;
/// The profile the time is computed for.
const PROFILE_BITS_PER_SECOND: f64 = 50_000.0;
const PROFILE_RTT_SECONDS: f64 = 0.6;
/// The photos' size, and the size each is tuned to.
const WIDTH: u32 = 2048;
const HEIGHT: u32 = 1536;
const TARGET_BYTES: usize = 300_000;
const CAMERA_QUALITY: u8 = 85;

/// Counts the requests a phone's transport makes (a sync exchange or a blob request each).
struct Counted {
    inner: HttpTransport,
    requests: u64,
}

impl Transport for Counted {
    fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.requests += 1;
        self.inner.exchange(request)
    }
}

impl BlobTransport for Counted {
    fn upload_status(&mut self, sha256: &str) -> Result<UploadStatus, TransportError> {
        self.requests += 1;
        self.inner.upload_status(sha256)
    }

    fn put_chunk(
        &mut self,
        sha256: &str,
        offset: u64,
        bytes: &[u8],
    ) -> Result<UploadStatus, TransportError> {
        self.requests += 1;
        self.inner.put_chunk(sha256, offset, bytes)
    }

    fn commit(&mut self, sha256: &str) -> Result<(), TransportError> {
        self.requests += 1;
        self.inner.commit(sha256)
    }

    fn download(
        &mut self,
        sha256: &str,
        start: u64,
        len: u64,
    ) -> Result<RangeBytes, TransportError> {
        self.requests += 1;
        self.inner.download(sha256, start, len)
    }
}

/// A deterministic 32-bit xorshift.
struct Noise(u32);

impl Noise {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// Photo `seed` as a camera would save it: a smooth scene (gradients, a few bands) with
/// per-pixel noise of `amplitude`, encoded as JPEG.
fn photo(seed: u32, amplitude: u32) -> Vec<u8> {
    let mut noise = Noise(seed.wrapping_mul(2_654_435_761) | 1);
    let image = RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let band = ((y / 96 + seed) % 5) * 30;
        let base = [
            (x * 200 / WIDTH + band) % 256,
            (y * 180 / HEIGHT + 40) % 256,
            ((x + y) * 120 / (WIDTH + HEIGHT) + band / 2) % 256,
        ];
        image::Rgb(base.map(|c| {
            let jitter = (noise.next() % (2 * amplitude + 1)) as i32 - amplitude as i32;
            (c as i32 + jitter).clamp(0, 255) as u8
        }))
    });
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, CAMERA_QUALITY)
        .encode(image.as_raw(), WIDTH, HEIGHT, ExtendedColorType::Rgb8)
        .expect("encode a JPEG");
    bytes
}

/// The noise amplitude that makes photo 0 closest to [`TARGET_BYTES`] (bisection: the size
/// grows with the noise).
fn tuned_amplitude() -> u32 {
    let (mut low, mut high) = (0u32, 64u32);
    while high - low > 1 {
        let mid = (low + high) / 2;
        if photo(0, mid).len() < TARGET_BYTES {
            low = mid;
        } else {
            high = mid;
        }
    }
    let miss = |a: u32| photo(0, a).len().abs_diff(TARGET_BYTES);
    if miss(low) <= miss(high) { low } else { high }
}

/// What one run sent and received.
struct Run {
    /// The files the phone uploaded: the photos as prepared, with their thumbnails.
    files: usize,
    prepared_bytes: u64,
    up: u64,
    down: u64,
    requests: u64,
    connections: u64,
    loopback: Duration,
}

impl Run {
    /// Seconds at the profile, from bytes and round trips.
    fn profile_seconds(&self) -> f64 {
        let bytes = (self.up + self.down) as f64;
        let trips = (self.requests + self.connections) as f64;
        bytes * 8.0 / PROFILE_BITS_PER_SECOND + trips * PROFILE_RTT_SECONDS
    }
}

/// Attaches `photos` offline on a fresh phone with `policy`, then syncs cases and attachments
/// once through the counting link.
fn run(photos: &[Vec<u8>], policy: Option<PhotoPolicy>) -> Run {
    let server = TestServer::start(Backend::Sqlite);
    let li = TestPhone::enrolled(&server, "li", Role::GridWorker, AREA, 1);
    li.phone.set_photo_policy(policy);
    let (mut prepared_bytes, mut files) = (0, 0);
    for (i, chunk) in photos.chunks(PHOTOS_PER_CASE).enumerate() {
        let id = format!("photo-case-{i:02}");
        li.phone
            .create_case(&new_case(&id, "河道垃圾", VILLAGE), None, T0)
            .unwrap();
        li.phone.act(&id, &Action::Register, T0).unwrap();
        for bytes in chunk {
            li.phone
                .attach(&id, bytes, "image/jpeg", "现场照片", false, T0)
                .unwrap();
        }
        let listed = li.phone.attachments(&id).unwrap();
        prepared_bytes += listed.iter().map(|a| a.attachment.size).sum::<u64>();
        files += listed.len();
    }
    let link = VillageLink::start(
        &server.url,
        LinkShape {
            rtt: Duration::ZERO,
            bits_per_second: 10_000_000_000,
            cut_after: None,
        },
    );
    let token = li.phone.token().unwrap();
    let mut transport = Counted {
        inner: HttpTransport::new(&link.url, &token),
        requests: 0,
    };
    let started = Instant::now();
    let cancel = AtomicBool::new(false);
    let summary = li
        .phone
        .sync_with_attachments(&mut transport, T0, &mut |_| {}, &cancel, 200)
        .unwrap();
    let loopback = started.elapsed();
    assert_eq!(summary.uploads.uploaded.len(), files, "{summary:?}");
    assert!(summary.uploads.deferred.is_none(), "{summary:?}");
    // The pumps count a chunk after writing it on: let the last answer's count land.
    std::thread::sleep(Duration::from_millis(200));
    Run {
        files,
        prepared_bytes,
        up: link.bytes_up.load(Ordering::SeqCst),
        down: link.bytes_down.load(Ordering::SeqCst),
        requests: transport.requests,
        connections: link.connections.load(Ordering::SeqCst),
        loopback,
    }
}

fn report(label: &str, files: u64, run: &Run) {
    let seconds = run.profile_seconds();
    println!(
        "{label}: photos {files} B; uploaded {} files, {} B; on the wire up {} B + down {} B = {:.3}x the \
         files ({:.3}x the uploaded bytes); {} requests, {} connections; at 50 kbit/s, 600 ms \
         RTT: {:.0} s ({:.1} min); loopback {:.2} s",
        run.files,
        run.prepared_bytes,
        run.up,
        run.down,
        (run.up + run.down) as f64 / files as f64,
        (run.up + run.down) as f64 / run.prepared_bytes as f64,
        run.requests,
        run.connections,
        seconds,
        seconds / 60.0,
        run.loopback.as_secs_f64(),
    );
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let count = if smoke { 2 } else { 50 };
    if smoke {
        println!("smoke run (use `cargo bench -p gridcase-tests --bench photos` for figures)");
    }
    let amplitude = tuned_amplitude();
    let photos: Vec<Vec<u8>> = (0..count).map(|i| photo(i, amplitude)).collect();
    let files: u64 = photos.iter().map(|p| p.len() as u64).sum();
    println!(
        "{count} photos {WIDTH}x{HEIGHT}, JPEG quality {CAMERA_QUALITY}, noise ±{amplitude}: \
         {files} B, {} B on average",
        files / count as u64
    );
    let policies = [
        ("no photo policy (kept as given)", None),
        ("policy 1600 px, quality 80", Some(PhotoPolicy::default())),
        (
            "policy 1024 px, quality 70",
            Some(PhotoPolicy {
                max_side_px: 1024,
                jpeg_quality: 70,
                ..PhotoPolicy::default()
            }),
        ),
    ];
    for (label, policy) in policies {
        let run = run(&photos, policy);
        assert!(run.up >= run.prepared_bytes, "the link counted every byte");
        report(label, files, &run);
    }
}
