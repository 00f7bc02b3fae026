//! Attachment bytes end to end (issue 10, the phone side), on both backends: a photo attached
//! offline on one phone reaches another phone byte-identical through the real server; an upload
//! over a village link that cuts connections resumes from the server's offset and never sends a
//! committed chunk again; wipe removes the bytes. Bounded: a few hundred KB on loopback.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gridcase_bindings::http::HttpTransport;
use gridcase_core::lifecycle::Action;
use gridcase_core::media::PhotoPolicy;
use gridcase_core::model::{Role, VariantKind};
use gridcase_core::phone::blobs::sha256_hex;
use gridcase_core::phone::blobs::upload::UploadStatus;
use gridcase_core::phone::{
    AttachmentState, AttachmentView, BlobTransport, Phone, RangeBytes, SyncSummary, Transport,
    TransportError,
};
use gridcase_tests::link::{LinkShape, VillageLink};
use gridcase_tests::{Backend, TestPhone, TestServer, new_case};

const AREA: &str = "330604101";
const VILLAGE: &str = "330604101201";

/// A photo-like blob: JPEG magic bytes (the server sniffs the type), then seeded noise.
fn photo(len: usize, seed: u32) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    let mut x = seed * 2 + 1;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.push(x as u8);
    }
    bytes
}

/// A registered case with `bytes` attached offline; returns the attachment's SHA-256.
fn case_with_photo(phone: &TestPhone, id: &str, bytes: &[u8]) -> String {
    let p = &phone.phone;
    p.create_case(&new_case(id, "河道垃圾", VILLAGE), None, phone.now)
        .unwrap();
    p.act(id, &Action::Register, phone.now).unwrap();
    p.attach(id, bytes, "image/jpeg", "现场照片", false, phone.now)
        .unwrap();
    sha256_hex(bytes)
}

/// Syncs cases and attachments through `transport`.
fn sync_all<T: Transport + BlobTransport>(phone: &Phone, transport: &mut T) -> SyncSummary {
    let cancel = AtomicBool::new(false);
    phone
        .sync_with_attachments(transport, T0, &mut |_| {}, &cancel, 200)
        .unwrap()
}

fn state(phone: &TestPhone, case_id: &str) -> AttachmentState {
    phone.phone.attachments(case_id).unwrap()[0].state.clone()
}

fn a_photo_attached_offline_reaches_another_phone_byte_identical(backend: Backend) {
    let server = TestServer::start(backend);
    let mut li = TestPhone::enrolled(&server, "li", Role::GridWorker, AREA, 1);
    let mut wang = TestPhone::enrolled(&server, "wang", Role::TownshipStaff, AREA, 2);
    let bytes = photo(300_000, 1);
    let sha = case_with_photo(&li, "c1", &bytes);
    assert_eq!(state(&li, "c1"), AttachmentState::Local);

    let summary = sync_all(&li.phone, &mut li.transport);
    assert_eq!(summary.uploads.uploaded, std::slice::from_ref(&sha));
    assert_eq!(state(&li, "c1"), AttachmentState::Uploaded);

    wang.sync().unwrap();
    assert_eq!(state(&wang, "c1"), AttachmentState::RemoteOnly);
    let offline = wang.phone.open_attachment("c1", &sha, T0, None);
    assert_eq!(offline.unwrap_err().code(), "not_downloaded");
    let t: &mut dyn BlobTransport = &mut wang.transport;
    let got = wang.phone.open_attachment("c1", &sha, T0, Some(t)).unwrap();
    assert_eq!(got, bytes);
    assert_eq!(state(&wang, "c1"), AttachmentState::Downloaded);

    // Wipe removes the bytes from the phone's files.
    let path = wang.dir.path().join("phone.db");
    wang.phone.wipe().unwrap();
    let needle = &bytes[100_000..100_064];
    for file in [path.clone(), path.with_extension("db-wal")] {
        let hay = std::fs::read(&file).unwrap_or_default();
        assert!(!hay.windows(needle.len()).any(|w| w == needle), "{file:?}");
    }
    li.sync().unwrap();
}

const T0: i64 = gridcase_tests::T0;

/// Records what the blob half of a transport sent and what the server answered.
struct Recording {
    inner: HttpTransport,
    /// Every chunk PUT: (offset, length, whether the server's answer arrived).
    puts: Vec<(u64, u64, bool)>,
    /// The offset the server last named (a status or a PUT's answer).
    last_offset: Option<u64>,
    /// PUTs sent from another offset than the server last named.
    off_offset: u32,
    conflicts: u32,
}

impl Recording {
    fn new(inner: HttpTransport) -> Recording {
        Recording {
            inner,
            puts: Vec::new(),
            last_offset: None,
            off_offset: 0,
            conflicts: 0,
        }
    }
}

impl Transport for Recording {
    fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.inner.exchange(request)
    }
}

impl BlobTransport for Recording {
    fn upload_status(&mut self, sha256: &str) -> Result<UploadStatus, TransportError> {
        let status = self.inner.upload_status(sha256)?;
        self.last_offset = Some(status.offset);
        Ok(status)
    }

    fn put_chunk(
        &mut self,
        sha256: &str,
        offset: u64,
        bytes: &[u8],
    ) -> Result<UploadStatus, TransportError> {
        if self.last_offset != Some(offset) {
            self.off_offset += 1;
        }
        self.last_offset = None;
        let answer = self.inner.put_chunk(sha256, offset, bytes);
        if let Err(TransportError::Server { status: 409, .. }) = &answer {
            self.conflicts += 1;
        }
        if let Ok(status) = &answer {
            self.last_offset = Some(status.offset);
        }
        self.puts.push((offset, bytes.len() as u64, answer.is_ok()));
        answer
    }

    fn commit(&mut self, sha256: &str) -> Result<(), TransportError> {
        self.inner.commit(sha256)
    }

    fn download(
        &mut self,
        sha256: &str,
        start: u64,
        len: u64,
    ) -> Result<RangeBytes, TransportError> {
        self.inner.download(sha256, start, len)
    }
}

fn a_cut_upload_resumes_and_commits_each_chunk_once(backend: Backend) {
    let server = TestServer::start(backend);
    let li = TestPhone::enrolled(&server, "li", Role::GridWorker, AREA, 1);
    let mut wang = TestPhone::enrolled(&server, "wang", Role::TownshipStaff, AREA, 2);
    let bytes = photo(400_000, 2);
    let sha = case_with_photo(&li, "c1", &bytes);
    // Every connection is cut after ~100 KB: three chunks and a part of the fourth.
    let link = VillageLink::start(
        &server.url,
        LinkShape {
            rtt: Duration::from_millis(5),
            bits_per_second: 20_000_000,
            cut_after: Some(100_000),
        },
    );
    let token = li.phone.token().unwrap();
    let mut transport = Recording::new(HttpTransport::new(&link.url, &token));
    let mut summary = sync_all(&li.phone, &mut transport);
    for _ in 0..5 {
        if !summary.uploads.uploaded.is_empty() {
            break;
        }
        summary = sync_all(&li.phone, &mut transport);
    }
    assert_eq!(
        summary.uploads.uploaded,
        std::slice::from_ref(&sha),
        "{summary:?}"
    );
    assert!(link.cuts.load(Ordering::SeqCst) > 0, "the link cut nothing");
    assert!(
        transport.puts.iter().any(|(_, _, arrived)| !arrived),
        "no PUT was cut: {:?}",
        transport.puts
    );
    // Every PUT went from the offset the server had just named, none was refused as a
    // duplicate, and the chunks the server acknowledged add up to the file exactly once.
    assert_eq!(transport.off_offset, 0, "{:?}", transport.puts);
    assert_eq!(transport.conflicts, 0);
    let acknowledged: u64 = transport
        .puts
        .iter()
        .filter(|(_, _, arrived)| *arrived)
        .map(|(_, len, _)| len)
        .sum();
    assert!(acknowledged <= bytes.len() as u64);
    // The server's own count: the chunks it accepted add up to the file exactly, so no cut
    // made the phone send again a chunk the server had kept, and one commit stored it.
    assert_eq!(
        server_counter(&server, "gridcase_blob_chunk_bytes_total"),
        bytes.len() as u64
    );
    assert_eq!(server_counter(&server, "gridcase_blobs_committed_total"), 1);

    // The download goes through the same link: a cut range is asked for again, smaller, from
    // where the bytes the phone kept end, until the whole photo arrives and hashes to its name.
    wang.sync().unwrap();
    let cuts_before = link.cuts.load(Ordering::SeqCst);
    let wang_token = wang.phone.token().unwrap();
    let mut through_link = HttpTransport::new(&link.url, &wang_token);
    let t: &mut dyn BlobTransport = &mut through_link;
    let got = wang.phone.open_attachment("c1", &sha, T0, Some(t)).unwrap();
    assert_eq!(got, bytes);
    assert!(
        link.cuts.load(Ordering::SeqCst) > cuts_before,
        "the link never cut the download"
    );
}

/// A counter of the server's `GET /metrics`, read directly (not through the link).
fn server_counter(server: &TestServer, name: &str) -> u64 {
    let mut response = ureq::get(format!("{}/metrics", server.url)).call().unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{name} ")));
    let value = line.and_then(|l| l.rsplit(' ').next());
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in:\n{text}"))
}

fn a_personal_photo_never_reaches_the_handling_unit(backend: Backend) {
    let server = TestServer::start(backend);
    let li = TestPhone::enrolled(&server, "li", Role::GridWorker, AREA, 1);
    let mut unit = TestPhone::enrolled(&server, "shuiwu", Role::HandlingUnit, AREA, 3);
    let open = photo(2_000, 3);
    let face = photo(3_000, 4);
    let sha_open = case_with_photo(&li, "c1", &open);
    let p = &li.phone;
    p.attach("c1", &face, "image/jpeg", "投诉人", true, li.now)
        .unwrap();
    let sha_face = sha256_hex(&face);
    let mut transport = HttpTransport::new(&server.url, &p.token().unwrap());
    let summary = sync_all(p, &mut transport);
    assert_eq!(summary.uploads.uploaded.len(), 2, "{summary:?}");
    unit.sync().unwrap();
    let listed = unit.phone.attachments("c1").unwrap();
    assert_eq!(listed.len(), 2);
    let t: &mut dyn BlobTransport = &mut unit.transport;
    assert_eq!(
        unit.phone
            .open_attachment("c1", &sha_open, T0, Some(t))
            .unwrap(),
        open
    );
    let t: &mut dyn BlobTransport = &mut unit.transport;
    let err = unit
        .phone
        .open_attachment("c1", &sha_face, T0, Some(t))
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}

/// A camera-like JPEG, `w` × `h` (gradients: it decodes and downscales as a photo does).
fn camera_jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) / 8 % 256) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn originals_go_up_and_thumbnails_are_prefetched_by_another_phone(backend: Backend) {
    let server = TestServer::start(backend);
    let mut li = TestPhone::enrolled(&server, "li", Role::GridWorker, AREA, 1);
    let mut wang = TestPhone::enrolled(&server, "wang", Role::TownshipStaff, AREA, 2);
    li.phone.set_photo_policy(Some(PhotoPolicy {
        keep_original: true,
        ..PhotoPolicy::default()
    }));
    let taken = camera_jpeg(2400, 1800);
    let original = case_with_photo(&li, "c1", &taken);
    let listed = li.phone.attachments("c1").unwrap();
    let sha_of = |kind: Option<VariantKind>| {
        let is = |a: &&AttachmentView| a.attachment.variant.as_ref().map(|v| v.kind) == kind;
        listed.iter().find(is).unwrap().attachment.sha256.clone()
    };
    let (photo, thumbnail) = (sha_of(None), sha_of(Some(VariantKind::Thumbnail)));
    assert_eq!(sha_of(Some(VariantKind::Original)), original);
    let summary = sync_all(&li.phone, &mut li.transport);
    assert_eq!(summary.uploads.uploaded.len(), 3, "{summary:?}");

    // Wang's phone prefetches by policy: the thumbnail arrives with the sync, the photo and
    // the original wait until opened.
    wang.phone.set_photo_policy(Some(PhotoPolicy::default()));
    let summary = sync_all(&wang.phone, &mut wang.transport);
    assert_eq!(
        summary.uploads.thumbnails_fetched,
        std::slice::from_ref(&thumbnail)
    );
    let state_of = |sha: &str| {
        let listed = wang.phone.attachments("c1").unwrap();
        let view = listed.into_iter().find(|a| a.attachment.sha256 == sha);
        view.unwrap().state
    };
    assert_eq!(state_of(&thumbnail), AttachmentState::Downloaded);
    assert_eq!(state_of(&photo), AttachmentState::RemoteOnly);
    assert_eq!(state_of(&original), AttachmentState::RemoteOnly);
    let t: &mut dyn BlobTransport = &mut wang.transport;
    let got = wang.phone.open_attachment("c1", &original, T0, Some(t));
    assert_eq!(got.unwrap(), taken, "the original, byte for byte");
}

gridcase_server::backend_tests!(
    originals_go_up_and_thumbnails_are_prefetched_by_another_phone,
    a_personal_photo_never_reaches_the_handling_unit,
    a_photo_attached_offline_reaches_another_phone_byte_identical,
    a_cut_upload_resumes_and_commits_each_chunk_once,
);
