//! Attachments on the phone: attach offline, upload after the cases (resuming after cuts,
//! refusals for good), lazy download, eviction and wipe, against an in-memory server.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use super::upload::{CHUNK_BYTES, UploadStatus};
use super::*;
use crate::doc::CaseDoc;
use crate::lifecycle::Action;
use crate::model::{Author, Role};
use crate::store::tests::{T0, TOKEN, identity, new_case};
use crate::sync::wire;
use crate::sync::{DocUpdate, Payload, SyncResponse};

/// An in-memory server: cases answer with an empty page, blobs are kept per hash. `cut_puts`
/// cuts those chunk PUTs (counted from 0) before the server keeps them; `refuse` answers every
/// commit with that (status, code).
#[derive(Default)]
struct Server {
    uploads: HashMap<String, Vec<u8>>,
    stored: HashMap<String, Vec<u8>>,
    puts: u32,
    /// Bytes of chunks the server kept, over all PUTs.
    kept_bytes: u64,
    cut_puts: Vec<u32>,
    refuse: Option<(u16, &'static str)>,
    /// Download requests to cut (counted from 0), and how many were made.
    cut_downloads: Vec<u32>,
    downloads: u32,
    /// Bytes of the ranges that arrived.
    fetched: u64,
    blob_calls: u32,
}

impl Transport for Server {
    fn exchange(&mut self, _request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let response = SyncResponse {
            server_time: T0,
            identity: identity(),
            cursor: 1,
            ..Default::default()
        };
        Ok(wire::encode_response(&response))
    }
}

impl BlobTransport for Server {
    fn upload_status(&mut self, sha256: &str) -> Result<UploadStatus, TransportError> {
        self.blob_calls += 1;
        if let Some(stored) = self.stored.get(sha256) {
            return Ok(UploadStatus {
                offset: stored.len() as u64,
                complete: true,
            });
        }
        let held = self.uploads.get(sha256).map_or(0, Vec::len) as u64;
        Ok(UploadStatus {
            offset: held,
            complete: false,
        })
    }

    fn put_chunk(
        &mut self,
        sha256: &str,
        offset: u64,
        bytes: &[u8],
    ) -> Result<UploadStatus, TransportError> {
        self.blob_calls += 1;
        let n = self.puts;
        self.puts += 1;
        if self.cut_puts.contains(&n) {
            return Err(TransportError::Network("cut".into()));
        }
        let upload = self.uploads.entry(sha256.into()).or_default();
        if offset != upload.len() as u64 {
            return Err(TransportError::Server {
                status: 409,
                code: "offset_mismatch".into(),
                message: format!("offset {}", upload.len()),
            });
        }
        upload.extend_from_slice(bytes);
        self.kept_bytes += bytes.len() as u64;
        Ok(UploadStatus {
            offset: upload.len() as u64,
            complete: false,
        })
    }

    fn commit(&mut self, sha256: &str) -> Result<(), TransportError> {
        self.blob_calls += 1;
        let bytes = self.uploads.remove(sha256).unwrap_or_default();
        if let Some((status, code)) = self.refuse {
            return Err(TransportError::Server {
                status,
                code: code.into(),
                message: "no".into(),
            });
        }
        assert_eq!(sha256_hex(&bytes), sha256);
        self.stored.insert(sha256.into(), bytes);
        Ok(())
    }

    fn download(
        &mut self,
        sha256: &str,
        start: u64,
        len: u64,
    ) -> Result<RangeBytes, TransportError> {
        let n = self.downloads;
        self.downloads += 1;
        if self.cut_downloads.contains(&n) {
            return Err(TransportError::Network("cut".into()));
        }
        let stored = self.stored.get(sha256).ok_or(TransportError::Server {
            status: 404,
            code: "not_found".into(),
            message: "no blob".into(),
        })?;
        let end = (start + len).min(stored.len() as u64);
        self.fetched += end - start;
        Ok(RangeBytes {
            bytes: stored[start as usize..end as usize].to_vec(),
            size: stored.len() as u64,
            mime: "image/jpeg".into(),
        })
    }
}

/// A photo-like blob: JPEG magic, then deterministic noise.
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

fn open() -> (tempfile::TempDir, std::path::PathBuf, Phone) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let phone = Phone::open(&path, TOKEN, [1, 2, 3, 4], None).unwrap();
    phone.set_identity_for_tests(&identity()).unwrap();
    phone
        .create_case(&new_case("c1", "河道垃圾", "330604101201"), None, T0)
        .unwrap();
    (dir, path, phone)
}

fn sync(phone: &Phone, server: &mut Server) -> (SyncSummary, Vec<SyncProgress>) {
    let mut seen = Vec::new();
    let summary = phone
        .sync_with_attachments(
            server,
            T0 + 10,
            &mut |p| seen.push(p),
            &AtomicBool::new(false),
            50,
        )
        .unwrap();
    (summary, seen)
}

fn state(phone: &Phone, case_id: &str) -> AttachmentState {
    phone.attachments(case_id).unwrap()[0].state.clone()
}

/// A case from the server whose attachment references `bytes` (attached on another phone).
fn receive_case_with(phone: &Phone, id: &str, bytes: &[u8]) {
    let file = NewAttachment {
        sha256: sha256_hex(bytes),
        mime: "image/jpeg".into(),
        size: bytes.len() as u64,
        caption: "现场".into(),
        personal: false,
        variant: None,
    };
    receive_case_with_files(phone, id, &[file]);
}

/// A case from the server with `files` attached (on another phone).
fn receive_case_with_files(phone: &Phone, id: &str, files: &[NewAttachment]) {
    let author = Author {
        user: "wang".into(),
        device: "other".into(),
        role: Role::TownshipStaff,
    };
    let actor = automerge::ActorId::from(vec![7u8; 20]);
    let mut doc = CaseDoc::create(&new_case(id, id, "330604101201"), &author, actor, T0).unwrap();
    doc.act(&Action::Register, &author, T0 + 1).unwrap();
    for file in files {
        doc.attach(file, &author, T0 + 2).unwrap();
    }
    let request = phone.build_request(T0, 50).unwrap();
    let response = SyncResponse {
        server_time: T0,
        identity: identity(),
        cursor: 1,
        docs: vec![DocUpdate {
            doc_id: id.into(),
            payload: Payload::Snapshot(doc.save()),
            heads: doc.heads().iter().map(|h| h.0.to_vec()).collect(),
        }],
        ..Default::default()
    };
    phone.apply_response(&response, &request, T0 + 3).unwrap();
}

#[test]
fn an_attachment_is_kept_listed_and_opened_offline() {
    let (_dir, _path, phone) = open();
    let bytes = photo(100_000, 1);
    phone
        .attach("c1", &bytes, "image/jpeg", "现场照片", true, T0 + 1)
        .unwrap();
    let listed = phone.attachments("c1").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].attachment.sha256, sha256_hex(&bytes));
    assert_eq!(listed[0].attachment.size, 100_000);
    assert!(listed[0].attachment.personal);
    assert_eq!(listed[0].state, AttachmentState::Local);
    let sha = sha256_hex(&bytes);
    assert_eq!(phone.open_attachment("c1", &sha, T0, None).unwrap(), bytes);
    // Stored in rows of at most one chunk.
    let rows: i64 = phone
        .app()
        .conn()
        .query_row("SELECT count(*) FROM blob_chunks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        rows as usize,
        100_000_usize.div_ceil(crate::store::blobs::CHUNK_BYTES)
    );
}

#[test]
fn the_same_bytes_attached_twice_are_kept_once() {
    let (_dir, _path, phone) = open();
    phone
        .create_case(&new_case("c2", "路灯", "330604101201"), None, T0)
        .unwrap();
    let bytes = photo(5_000, 2);
    phone
        .attach("c1", &bytes, "image/jpeg", "", false, T0)
        .unwrap();
    phone
        .attach("c2", &bytes, "image/jpeg", "", false, T0)
        .unwrap();
    let conn = phone.app();
    let count = |table: &str| -> i64 {
        conn.conn()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count("blobs"), 1);
    assert_eq!(count("blob_chunks"), 1);
}

#[test]
fn bad_attachments_are_refused_and_store_nothing() {
    let (_dir, _path, phone) = open();
    let bytes = photo(100, 3);
    for (case, bytes, mime) in [
        ("c1", &bytes[..], "jpeg"),
        ("c1", &bytes[..], "image/jp eg"),
        ("c1", &bytes[..], ""),
        ("c1", &[][..], "image/jpeg"),
        ("nope", &bytes[..], "image/jpeg"),
    ] {
        let err = phone.attach(case, bytes, mime, "", false, T0).unwrap_err();
        assert!(
            ["bad_input", "not_found"].contains(&err.code()),
            "{mime}: {err}"
        );
    }
    let blobs: i64 = phone
        .app()
        .conn()
        .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(blobs, 0);
    assert!(phone.attachments("c1").unwrap().is_empty());
}

#[test]
fn a_sync_uploads_after_the_cases_with_progress_in_bytes() {
    let (_dir, _path, phone) = open();
    let bytes = photo(3 * CHUNK_BYTES as usize + 10, 4);
    let sha = sha256_hex(&bytes);
    phone
        .attach("c1", &bytes, "image/jpeg", "", false, T0)
        .unwrap();
    let mut server = Server::default();
    let (summary, seen) = sync(&phone, &mut server);
    assert_eq!(summary.uploads.uploaded, std::slice::from_ref(&sha));
    assert_eq!(server.stored[&sha], bytes);
    assert_eq!(state(&phone, "c1"), AttachmentState::Uploaded);
    let uploading: Vec<_> = seen
        .iter()
        .filter(|p| p.phase == SyncPhase::Uploading)
        .collect();
    assert_eq!(uploading.first().unwrap().blob_bytes_sent, 0);
    assert_eq!(
        uploading.last().unwrap().blob_bytes_sent,
        bytes.len() as u64
    );
    assert!(
        uploading
            .iter()
            .all(|p| p.blob_bytes_total == bytes.len() as u64)
    );
    assert_eq!(seen.last().unwrap().phase, SyncPhase::Done);
    // Uploaded: the next sync sends nothing.
    let calls = server.blob_calls;
    sync(&phone, &mut server);
    assert_eq!(server.blob_calls, calls);
}

#[test]
fn a_cut_upload_waits_for_the_next_sync_and_resumes_without_resending() {
    let (_dir, _path, phone) = open();
    let bytes = photo(4 * CHUNK_BYTES as usize, 5);
    let sha = sha256_hex(&bytes);
    phone
        .attach("c1", &bytes, "image/jpeg", "", false, T0)
        .unwrap();
    // From the third PUT on, the link is gone for longer than the upload waits.
    let mut server = Server {
        cut_puts: (2..2 + upload::MAX_CUTS + 1).collect(),
        ..Default::default()
    };
    let (summary, _) = sync(&phone, &mut server);
    assert!(summary.uploads.uploaded.is_empty());
    assert!(summary.uploads.deferred.unwrap().contains("network"));
    assert_eq!(
        state(&phone, "c1"),
        AttachmentState::Uploading {
            sent: 2 * CHUNK_BYTES
        }
    );
    let (summary, _) = sync(&phone, &mut server);
    assert_eq!(summary.uploads.uploaded, std::slice::from_ref(&sha));
    assert_eq!(server.stored[&sha], bytes);
    // Every byte the server kept, it kept once.
    assert_eq!(server.kept_bytes, bytes.len() as u64);
}

#[test]
fn a_refused_blob_is_marked_failed_and_not_sent_again() {
    let (_dir, _path, phone) = open();
    let bytes = photo(1000, 6);
    phone
        .attach("c1", &bytes, "text/plain", "", false, T0)
        .unwrap();
    let mut server = Server {
        refuse: Some((415, "unsupported_type")),
        ..Default::default()
    };
    let (summary, _) = sync(&phone, &mut server);
    assert_eq!(summary.uploads.refused.len(), 1);
    let AttachmentState::Failed { reason } = state(&phone, "c1") else {
        panic!("{:?}", state(&phone, "c1"));
    };
    assert!(reason.starts_with("unsupported_type"), "{reason}");
    let calls = server.blob_calls;
    sync(&phone, &mut server);
    assert_eq!(server.blob_calls, calls);
    // The bytes are still on the phone.
    let sha = sha256_hex(&bytes);
    assert_eq!(phone.open_attachment("c1", &sha, T0, None).unwrap(), bytes);
}

#[test]
fn a_remote_attachment_is_fetched_when_opened_resuming_after_cuts() {
    let (_dir, _path, phone) = open();
    let bytes = photo(3 * DOWNLOAD_BYTES as usize + 5, 7);
    let sha = sha256_hex(&bytes);
    receive_case_with(&phone, "s1", &bytes);
    assert_eq!(state(&phone, "s1"), AttachmentState::RemoteOnly);
    let err = phone.open_attachment("s1", &sha, T0, None).unwrap_err();
    assert_eq!(err.code(), "not_downloaded");
    let mut server = Server {
        cut_downloads: vec![1, 2],
        ..Default::default()
    };
    server.stored.insert(sha.clone(), bytes.clone());
    let got = phone
        .open_attachment("s1", &sha, T0, Some(&mut server))
        .unwrap();
    assert_eq!(got, bytes);
    // The first range arrived whole; after two cuts the ranges shrank to a quarter and grew
    // back: 64 + 16 + 32 + 64 + 64 KB (the last one short), no byte fetched twice.
    assert_eq!(server.downloads, 7);
    assert_eq!(server.fetched, bytes.len() as u64);
    assert_eq!(state(&phone, "s1"), AttachmentState::Downloaded);
    // Kept: opened again offline.
    assert_eq!(phone.open_attachment("s1", &sha, T0, None).unwrap(), bytes);
    // Not an attachment of that case: not found, whatever the server holds.
    let err = phone
        .open_attachment("c1", &sha, T0, Some(&mut server))
        .unwrap_err();
    assert_eq!(err.code(), "not_found");
}

#[test]
fn bytes_that_do_not_hash_to_their_name_are_not_kept() {
    let (_dir, _path, phone) = open();
    let bytes = photo(1000, 8);
    let sha = sha256_hex(&bytes);
    receive_case_with(&phone, "s1", &bytes);
    let mut server = Server::default();
    server.stored.insert(sha.clone(), photo(1000, 9));
    let err = phone
        .open_attachment("s1", &sha, T0, Some(&mut server))
        .unwrap_err();
    assert_eq!(err.code(), "bad_data");
    assert_eq!(state(&phone, "s1"), AttachmentState::RemoteOnly);
}

#[test]
fn an_evicted_case_takes_its_blobs_unless_another_case_holds_them() {
    let (_dir, _path, phone) = open();
    let shared = photo(500, 10);
    let own = photo(600, 11);
    receive_case_with(&phone, "s1", &own);
    receive_case_with(&phone, "s2", &shared);
    receive_case_with(&phone, "s3", &shared);
    let mut server = Server::default();
    for (case, bytes) in [("s1", &own), ("s2", &shared)] {
        server.stored.insert(sha256_hex(bytes), bytes.clone());
        phone
            .open_attachment(case, &sha256_hex(bytes), T0, Some(&mut server))
            .unwrap();
    }
    let request = phone.build_request(T0, 50).unwrap();
    let response = SyncResponse {
        server_time: T0,
        identity: identity(),
        cursor: 2,
        evict: vec!["s1".into(), "s2".into()],
        ..Default::default()
    };
    phone.apply_response(&response, &request, T0 + 5).unwrap();
    let conn = phone.app();
    let held: Vec<String> = conn
        .conn()
        .prepare("SELECT sha256 FROM blobs")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(held, [sha256_hex(&shared)]);
    let chunks: i64 = conn
        .conn()
        .query_row("SELECT count(*) FROM blob_chunks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(chunks, 1);
    drop(conn);
    assert_eq!(state(&phone, "s3"), AttachmentState::Downloaded);
}

#[test]
fn wipe_removes_the_bytes_from_the_file() {
    let (_dir, path, phone) = open();
    // A pattern that occurs nowhere but in the attachment (the store is unencrypted here, so
    // the bytes are readable in the file until the wipe).
    let mut bytes = photo(70_000, 12);
    let needle = b"GRIDCASE-PHOTO-NEEDLE-0123456789";
    bytes[40_000..40_000 + needle.len()].copy_from_slice(needle);
    phone
        .attach("c1", &bytes, "image/jpeg", "", false, T0)
        .unwrap();
    let found = |path: &std::path::Path| {
        let mut hay = std::fs::read(path).unwrap_or_default();
        hay.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
        hay.windows(needle.len()).any(|w| w == needle)
    };
    assert!(
        found(&path),
        "the test's needle must be visible before the wipe"
    );
    phone.wipe().unwrap();
    drop(phone);
    assert!(!found(&path));
}

/// A camera-like JPEG, `w` × `h`.
fn real_jpeg(w: u32, h: u32) -> Vec<u8> {
    use image::ImageEncoder;
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) / 8 % 256) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(&img, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

#[test]
fn a_large_photo_is_kept_and_named_as_the_policy_prepares_it() {
    let (_dir, _path, phone) = open();
    let taken = real_jpeg(3000, 2000);
    phone.set_photo_policy(Some(PhotoPolicy {
        thumbnail_side_px: 0,
        ..PhotoPolicy::default()
    }));
    phone
        .attach("c1", &taken, "image/jpeg", "现场", false, T0)
        .unwrap();
    let listed = phone.attachments("c1").unwrap();
    let kept = phone
        .open_attachment("c1", &listed[0].attachment.sha256, T0, None)
        .unwrap();
    assert_eq!(listed[0].attachment.sha256, sha256_hex(&kept));
    assert_eq!(listed[0].attachment.size, kept.len() as u64);
    let (w, h) = image::load_from_memory(&kept)
        .unwrap()
        .to_rgb8()
        .dimensions();
    assert_eq!(w.max(h), 1600, "downscaled to the policy's longest side");
    // An unreadable "photo" is refused while a policy is set, and nothing is kept.
    let refused = phone.attach("c1", &photo(5_000, 3), "image/jpeg", "", false, T0);
    assert!(matches!(refused, Err(PhoneError::BadInput(_))));
    assert_eq!(phone.attachments("c1").unwrap().len(), 1);
    // Without a policy, bytes are kept as given.
    phone.set_photo_policy(None);
    let small = photo(5_000, 4);
    phone
        .attach("c1", &small, "image/jpeg", "", false, T0)
        .unwrap();
    assert_eq!(
        phone.attachments("c1").unwrap()[1].attachment.sha256,
        sha256_hex(&small)
    );
}

/// The attachment of `listed` that is the `kind` variant of another.
fn variant_of(listed: &[AttachmentView], kind: VariantKind) -> &Attachment {
    let is = |a: &&AttachmentView| {
        a.attachment
            .variant
            .as_ref()
            .is_some_and(|v| v.kind == kind)
    };
    &listed.iter().find(is).expect("the variant").attachment
}

#[test]
fn the_policy_keeps_the_original_and_a_thumbnail_beside_the_photo_and_uploads_all() {
    let (_dir, _path, phone) = open();
    let taken = real_jpeg(3000, 2000);
    phone.set_photo_policy(Some(PhotoPolicy {
        keep_original: true,
        ..PhotoPolicy::default()
    }));
    let id = phone
        .attach("c1", &taken, "image/jpeg", "现场", true, T0)
        .unwrap();
    let listed = phone.attachments("c1").unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let photo = &listed[0].attachment;
    assert_eq!((&photo.id, &photo.variant), (&id, &None));
    let original = variant_of(&listed, VariantKind::Original);
    let thumbnail = variant_of(&listed, VariantKind::Thumbnail);
    for file in [original, thumbnail] {
        assert_eq!(file.variant.as_ref().unwrap().of, photo.sha256);
        assert!(file.personal, "a variant of a personal photo is personal");
    }
    let open = |sha: &str| phone.open_attachment("c1", sha, T0, None).unwrap();
    assert_eq!(open(&original.sha256), taken, "the original, byte for byte");
    assert_eq!(original.mime, "image/jpeg");
    let side = |bytes: &[u8]| {
        let (w, h) = image::load_from_memory(bytes)
            .unwrap()
            .to_rgb8()
            .dimensions();
        w.max(h)
    };
    assert_eq!(side(&open(&photo.sha256)), 1600);
    assert_eq!(side(&open(&thumbnail.sha256)), 320);
    assert!(listed.iter().all(|a| a.state == AttachmentState::Local));

    let mut server = Server::default();
    let (summary, _) = sync(&phone, &mut server);
    assert_eq!(summary.uploads.uploaded.len(), 3, "{summary:?}");
    assert_eq!(server.stored[&original.sha256], taken);
    let listed = phone.attachments("c1").unwrap();
    assert!(listed.iter().all(|a| a.state == AttachmentState::Uploaded));
}

#[test]
fn thumbnails_are_prefetched_after_a_sync_and_photos_stay_lazy() {
    let photo_bytes = photo(200_000, 21);
    let thumb_bytes = photo(9_000, 22);
    let file = |bytes: &[u8], variant| NewAttachment {
        sha256: sha256_hex(bytes),
        mime: "image/jpeg".into(),
        size: bytes.len() as u64,
        caption: "现场".into(),
        personal: false,
        variant,
    };
    let thumb = Variant {
        kind: VariantKind::Thumbnail,
        of: sha256_hex(&photo_bytes),
    };
    let files = [file(&photo_bytes, None), file(&thumb_bytes, Some(thumb))];
    let mut server = Server::default();
    server.stored.insert(files[0].sha256.clone(), photo_bytes);
    server
        .stored
        .insert(files[1].sha256.clone(), thumb_bytes.clone());

    // Without a prefetch policy nothing is fetched.
    let (_dir, _path, phone) = open();
    receive_case_with_files(&phone, "s1", &files);
    let (summary, _) = sync(&phone, &mut server);
    assert!(summary.uploads.thumbnails_fetched.is_empty());
    assert_eq!(server.downloads, 0);

    phone.set_photo_policy(Some(PhotoPolicy::default()));
    let (summary, _) = sync(&phone, &mut server);
    assert_eq!(
        summary.uploads.thumbnails_fetched,
        [files[1].sha256.clone()]
    );
    assert_eq!(
        server.fetched,
        thumb_bytes.len() as u64,
        "the photo stays lazy"
    );
    let listed = phone.attachments("s1").unwrap();
    assert_eq!(listed[0].state, AttachmentState::RemoteOnly);
    assert_eq!(listed[1].state, AttachmentState::Downloaded);
    let offline = phone.open_attachment("s1", &files[1].sha256, T0, None);
    assert_eq!(offline.unwrap(), thumb_bytes);
    // Held now: the next sync fetches nothing again.
    let (summary, _) = sync(&phone, &mut server);
    assert!(summary.uploads.thumbnails_fetched.is_empty());
    assert_eq!(server.fetched, thumb_bytes.len() as u64);
}
