//! Attachment bytes through the real router on both database backends and both blob stores
//! (issue 10, server side): resumable chunked uploads that never resend a committed chunk, even
//! when consecutive chunks reach different server instances; every refusal (wrong hash, wrong
//! type, oversize, over quota, counting unfinished uploads) leaving nothing stored; streamed
//! downloads only within the scope (byte-identical, ranges, audited); the admin case view; and
//! garbage collection after the grace period.
//!
//! Each behaviour is written once, as `async fn name(backend, store)`, and runs against
//! [`LocalBlobs`] and [`S3Blobs`]. The S3 half needs an S3-compatible server: set
//! `GRIDCASE_TEST_S3` to its URL on loopback (e.g. `moto_server -H 127.0.0.1 -p 5000` and
//! `GRIDCASE_TEST_S3=http://127.0.0.1:5000`; tests/run-all.sh does this); without it the S3 half
//! prints why and skips.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use gridcase_core::area::Jurisdiction;
use gridcase_core::doc::CaseDoc;
use gridcase_core::model::{Author, CaseType, Channel, Location, Millis, NewCase, Role, Urgency};
use gridcase_server::admins::AdminRole;
use gridcase_server::blobs::{
    BlobLimits, BlobStore, Blobs, LocalBlobs, S3Blobs, S3Settings, Sha256,
};
use gridcase_server::db::{AuditQuery, Location as DbLocation};
use gridcase_server::testing::{Backend, TestDb, add_admin, root_admin};
use gridcase_server::{AppState, Store, app, backend_tests};
use serde_json::Value;
use tower::ServiceExt;

/// 2025-03-03 09:00 China time.
const T0: Millis = 1_740_963_600_000;
const CHUNK: usize = 64 * 1024;
const TOWNSHIP_AREA: &str = "330604101201";
/// The S3-compatible server the S3 half runs against: its URL, on loopback.
const S3_ENV: &str = "GRIDCASE_TEST_S3";
const S3_BUCKET: &str = "gridcase-test";

/// Which blob store a behaviour runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Local,
    S3,
}

/// How to open the store again, as a second server instance would.
#[derive(Debug, Clone)]
enum Opener {
    Local(std::path::PathBuf),
    S3(S3Settings),
}

impl Opener {
    /// `None` (with the reason printed) when the store is not available here.
    fn new(kind: StoreKind, db: &TestDb) -> Option<Opener> {
        match kind {
            StoreKind::Local => Some(Opener::Local(db.dir().join("blobs"))),
            StoreKind::S3 => {
                let Ok(endpoint) = std::env::var(S3_ENV) else {
                    eprintln!("{S3_ENV} is unset: S3 variant skipped (tests/run-all.sh sets it)");
                    return None;
                };
                create_bucket(&endpoint, S3_BUCKET);
                static PREFIXES: AtomicU64 = AtomicU64::new(0);
                let n = PREFIXES.fetch_add(1, Ordering::Relaxed);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                Some(Opener::S3(S3Settings {
                    bucket: S3_BUCKET.into(),
                    endpoint: Some(endpoint),
                    region: Some("us-east-1".into()),
                    prefix: format!("t{}-{nanos}-{n}", std::process::id()),
                    access_key_id: Some("testing".into()),
                    secret_access_key: Some("testing".into()),
                }))
            }
        }
    }

    fn open(&self) -> Arc<dyn BlobStore> {
        match self {
            Opener::Local(dir) => Arc::new(LocalBlobs::open(dir).unwrap()),
            Opener::S3(settings) => Arc::new(S3Blobs::open(settings).unwrap()),
        }
    }
}

/// Creates the bucket on the test server (an unsigned request, which the test servers accept;
/// object_store has no call for it). Creating it again is harmless.
fn create_bucket(endpoint: &str, bucket: &str) {
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut tcp = std::net::TcpStream::connect(authority)
        .unwrap_or_else(|e| panic!("{S3_ENV}={endpoint}: {e}"));
    write!(
        tcp,
        "PUT /{bucket} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.contains("BucketAlreadyOwnedByYou"),
        "{answer}"
    );
}

struct Env {
    store: Arc<Store>,
    app: Router,
    blobs: Blobs,
    opener: Opener,
    db: TestDb,
}

impl Env {
    /// `None` when `kind` is not available here (the reason is printed).
    fn new(backend: Backend, kind: StoreKind, limits: BlobLimits) -> Option<Env> {
        let db = TestDb::new(backend);
        let store = Arc::new(db.open());
        let opener = Opener::new(kind, &db)?;
        let blobs = Blobs::new(opener.open(), limits);
        Some(Env {
            app: app_for(&store, &blobs),
            store,
            blobs,
            opener,
            db,
        })
    }

    /// Another server instance on the same database and blob store: its own process state
    /// (for S3, its own client and runtime), nothing shared in memory with the first.
    fn second_instance(&self) -> Router {
        let blobs = Blobs::new(self.opener.open(), self.blobs.limits());
        app_for(&self.store, &blobs)
    }

    fn limits() -> BlobLimits {
        BlobLimits {
            max_chunk_bytes: CHUNK as u64,
            ..BlobLimits::default()
        }
    }

    /// A device token of a new user `user` in `role` over `area`.
    fn device(&self, user: &str, role: Role, area: &str) -> String {
        let area = Jurisdiction::parse(area).unwrap();
        self.store.enrol_user(user, role, &area, T0).unwrap();
        self.store.enrol_device(user, T0).unwrap()
    }

    /// A case in `area` whose document references the blob `sha256`.
    fn case_with_attachment(&self, id: &str, area: &str, sha256: &str) {
        let author = Author {
            user: "worker".into(),
            device: "d0".into(),
            role: Role::GridWorker,
        };
        let new = NewCase {
            id: id.into(),
            number: format!("N-{id}"),
            channel: Channel::Grid,
            case_type: CaseType::Complaint,
            category: "环境".into(),
            urgency: Urgency::General,
            priority: false,
            title: "河道垃圾".into(),
            description: "河边堆了垃圾".into(),
            location: Location {
                address: "龙山村".into(),
                area_code: area.into(),
                gps: None,
            },
        };
        let actor = automerge::ActorId::random();
        let mut doc = CaseDoc::create(&new, &author, actor, T0).unwrap();
        doc.add_attachment(sha256, "image/jpeg", 1, "现场照片", &author, T0)
            .unwrap();
        assert!(
            self.store
                .insert_server_doc(id, doc.automerge(), T0)
                .unwrap()
        );
    }

    /// Every stored blob, and whether any upload is still in progress.
    fn stored(&self) -> (Vec<String>, bool) {
        let stored = self.blobs.store().list().unwrap();
        let uploads = self.blobs.store().uploads(None).unwrap();
        (
            stored.into_iter().map(|b| b.sha256.to_string()).collect(),
            !uploads.is_empty(),
        )
    }

    fn reveal_rows(&self) -> Vec<gridcase_server::db::AuditRow> {
        self.store
            .audit_log(&AuditQuery::default())
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == "reveal")
            .collect()
    }
}

fn app_for(store: &Arc<Store>, blobs: &Blobs) -> Router {
    let state = AppState::new(store.clone())
        .with_clock(Arc::new(|| T0))
        .with_blobs(blobs.clone());
    app(state)
}

/// A photo-like blob: JPEG magic bytes, then `len - 4` deterministic bytes.
fn jpeg(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    let mut x = seed as u32 | 1;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.push(x as u8);
    }
    bytes
}

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    token: &str,
    body: Vec<u8>,
    range: Option<&str>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(range) = range {
        req = req.header(header::RANGE, range);
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// Where the upload stands, as the phone asks after a cut.
async fn offset(app: &Router, token: &str, sha: &str) -> (u64, bool) {
    let path = format!("/v1/blobs/{sha}/upload");
    let (status, _, body) = call(app, Method::GET, &path, token, vec![], None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v = json(&body);
    (
        v["offset"].as_u64().unwrap(),
        v["complete"].as_bool().unwrap(),
    )
}

/// Sends chunks from where the server says the upload stands, at most `chunks` of them (the
/// link drops after that), recording each offset sent. Returns the last refusal, if any.
async fn send_chunks(
    app: &Router,
    token: &str,
    sha: &str,
    bytes: &[u8],
    chunks: usize,
    sent: &mut Vec<u64>,
) -> Option<(StatusCode, Value)> {
    let (mut at, _) = offset(app, token, sha).await;
    for _ in 0..chunks {
        if at as usize >= bytes.len() {
            break;
        }
        let end = (at as usize + CHUNK).min(bytes.len());
        let path = format!("/v1/blobs/{sha}/chunks/{at}");
        let chunk = bytes[at as usize..end].to_vec();
        let (status, _, body) = call(app, Method::PUT, &path, token, chunk, None).await;
        sent.push(at);
        if status != StatusCode::OK {
            return Some((status, json(&body)));
        }
        at = json(&body)["offset"].as_u64().unwrap();
    }
    None
}

async fn commit(app: &Router, token: &str, sha: &str) -> (StatusCode, Value) {
    let path = format!("/v1/blobs/{sha}/commit");
    let (status, _, body) = call(app, Method::POST, &path, token, vec![], None).await;
    (status, json(&body))
}

/// Uploads `bytes` under `sha` in one go and commits.
async fn upload(app: &Router, token: &str, sha: &str, bytes: &[u8]) -> (StatusCode, Value) {
    if let Some(refused) = send_chunks(app, token, sha, bytes, usize::MAX, &mut vec![]).await {
        return refused;
    }
    commit(app, token, sha).await
}

async fn download(
    app: &Router,
    token: &str,
    sha: &str,
    range: Option<&str>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let path = format!("/v1/blobs/{sha}");
    call(app, Method::GET, &path, token, vec![], range).await
}

async fn resumed_upload_reaches_a_second_device_byte_identical(backend: Backend, kind: StoreKind) {
    let Some(env) = Env::new(backend, kind, Env::limits()) else {
        return;
    };
    let phone = env.device("li", Role::GridWorker, "330604101");
    let second = env.device("wang", Role::GridWorker, "330604101");
    let photo = jpeg(300 * 1024 + 17, 1);
    let sha = Sha256::of(&photo).to_string();
    env.case_with_attachment("c-1", TOWNSHIP_AREA, &sha);

    // Two chunks arrive, then the link drops. The phone comes back through another server
    // instance, which knows where the upload stands.
    let mut sent = Vec::new();
    assert!(
        send_chunks(&env.app, &phone, &sha, &photo, 2, &mut sent)
            .await
            .is_none()
    );
    let instance = env.second_instance();
    assert_eq!(
        offset(&instance, &phone, &sha).await,
        (2 * CHUNK as u64, false)
    );
    // A chunk resent at an old offset is refused with where the upload stands; nothing moves.
    let path = format!("/v1/blobs/{sha}/chunks/0");
    let (status, _, body) = call(
        &instance,
        Method::PUT,
        &path,
        &phone,
        photo[..CHUNK].to_vec(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(json(&body)["error"], "offset_mismatch");
    // The phone resumes from the server's offset: every committed chunk was sent once.
    assert!(
        send_chunks(&instance, &phone, &sha, &photo, usize::MAX, &mut sent)
            .await
            .is_none()
    );
    let expected: Vec<u64> = (0..photo.len().div_ceil(CHUNK))
        .map(|i| (i * CHUNK) as u64)
        .collect();
    assert_eq!(sent, expected);
    let (status, body) = commit(&env.app, &phone, &sha).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mime"], "image/jpeg");
    assert_eq!(body["size"], photo.len() as u64);
    assert_eq!(
        offset(&env.app, &phone, &sha).await,
        (photo.len() as u64, true)
    );
    assert_eq!(env.stored(), (vec![sha.clone()], false));

    // A second device in scope gets it byte-identical, typed by the sniffed type; then a range.
    let (status, headers, bytes) = download(&env.app, &second, &sha, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/jpeg");
    assert!(bytes == photo, "downloaded bytes differ");
    let (status, headers, bytes) = download(&env.app, &second, &sha, Some("bytes=100-199")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        headers[header::CONTENT_RANGE],
        format!("bytes 100-199/{}", photo.len()).as_str()
    );
    assert_eq!(bytes, photo[100..200]);
    let (status, _, _) = download(&env.app, &second, &sha, Some("bytes=999999999-")).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    // Each download is audited like a reveal: who, which case, which blob.
    let rows = env.reveal_rows();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.user_id.as_deref() == Some("wang")
        && r.case_id.as_deref() == Some("c-1")
        && r.detail.as_deref().is_some_and(|d| d.contains(&sha))));
    // A range larger than a chunk is streamed: it arrives in pieces as the store is read.
    let (status, pieces) = download_pieces(&instance, &second, &sha, "bytes=1000-200999").await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert!(pieces.len() > 1, "one piece: the range was read whole");
    assert!(
        pieces.concat() == photo[1000..201000],
        "streamed range differs"
    );
    // Uploading it again is a no-op: the blob is there.
    let (status, _) = upload(&env.app, &second, &sha, &photo).await;
    assert_eq!(status, StatusCode::OK);
}

/// A download's body as the pieces it arrives in.
async fn download_pieces(
    app: &Router,
    token: &str,
    sha: &str,
    range: &str,
) -> (StatusCode, Vec<Vec<u8>>) {
    use futures_util::StreamExt;
    let req = Request::builder()
        .uri(format!("/v1/blobs/{sha}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::RANGE, range)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let pieces = response.into_body().into_data_stream();
    let pieces = pieces.map(|piece| piece.unwrap().to_vec()).collect().await;
    (status, pieces)
}

async fn downloads_stay_within_the_scope(backend: Backend, kind: StoreKind) {
    let Some(env) = Env::new(backend, kind, Env::limits()) else {
        return;
    };
    let phone = env.device("li", Role::GridWorker, "330604101");
    let neighbour = env.device("zhao", Role::GridWorker, "330604102");
    let unit = env.device("unit", Role::HandlingUnit, "330604");
    let photo = jpeg(5000, 2);
    let sha = Sha256::of(&photo).to_string();
    env.case_with_attachment("c-1", TOWNSHIP_AREA, &sha);
    let (status, body) = upload(&env.app, &phone, &sha, &photo).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Out of scope: the same answer as for a blob that does not exist, and no audit row.
    let (status, _, body) = download(&env.app, &neighbour, &sha, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json(&body)["error"], "not_found");
    let unknown = Sha256::of(b"nothing").to_string();
    let (status, _, _) = download(&env.app, &phone, &unknown, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(env.reveal_rows().is_empty());
    // A blob no case references goes to nobody, not even its uploader.
    let loose = jpeg(3000, 3);
    let loose_sha = Sha256::of(&loose).to_string();
    assert_eq!(
        upload(&env.app, &phone, &loose_sha, &loose).await.0,
        StatusCode::OK
    );
    assert_eq!(
        download(&env.app, &phone, &loose_sha, None).await.0,
        StatusCode::NOT_FOUND
    );
    // The case document's attachments are not personal data: the unit sees the case, so the
    // photo too.
    let (status, _, bytes) = download(&env.app, &unit, &sha, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes == photo);
    // Bad names and no token.
    let (status, _, body) = download(&env.app, &phone, "abc", None).await;
    assert_eq!(
        (status, json(&body)["error"].clone()),
        (StatusCode::BAD_REQUEST, "bad_sha256".into())
    );
    let (status, _, _) = download(&env.app, "nobody.secret", &sha, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn refused_uploads_store_nothing(backend: Backend, kind: StoreKind) {
    let limits = BlobLimits {
        max_file_bytes: 200 * 1024,
        device_quota_bytes: 250 * 1024,
        ..Env::limits()
    };
    let Some(env) = Env::new(backend, kind, limits) else {
        return;
    };
    let phone = env.device("li", Role::GridWorker, "330604101");
    let nothing = (vec![], false);

    // Wrong hash: named after other bytes.
    let photo = jpeg(100 * 1024, 4);
    let other = Sha256::of(&jpeg(10, 5)).to_string();
    let (status, body) = upload(&env.app, &phone, &other, &photo).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("hash_mismatch"))
    );
    assert_eq!(offset(&env.app, &phone, &other).await, (0, false));
    assert_eq!(env.stored(), nothing);

    // Wrong type: a GIF, an executable, HTML.
    for bytes in [
        b"GIF89a........".to_vec(),
        b"MZ\x90\0\x03\0\0\0".to_vec(),
        b"<html>".to_vec(),
    ] {
        let sha = Sha256::of(&bytes).to_string();
        let (status, body) = upload(&env.app, &phone, &sha, &bytes).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_type"))
        );
        assert_eq!(env.stored(), nothing);
    }

    // Oversize: refused at the chunk that crosses the limit, the kept chunks removed.
    let big = jpeg(300 * 1024, 6);
    let sha = Sha256::of(&big).to_string();
    let (status, body) = upload(&env.app, &phone, &sha, &big).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("blob_too_large"))
    );
    assert_eq!(offset(&env.app, &phone, &sha).await, (0, false));
    assert_eq!(env.stored(), nothing);
    // A chunk over the chunk limit.
    let path = format!("/v1/blobs/{sha}/chunks/0");
    let (status, _, body) = call(
        &env.app,
        Method::PUT,
        &path,
        &phone,
        big[..CHUNK + 1].to_vec(),
        None,
    )
    .await;
    assert_eq!(
        (status, json(&body)["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("chunk_too_large"))
    );

    // Over quota: 150 KiB fits, another 150 KiB does not.
    let first = jpeg(150 * 1024, 7);
    let first_sha = Sha256::of(&first).to_string();
    assert_eq!(
        upload(&env.app, &phone, &first_sha, &first).await.0,
        StatusCode::OK
    );
    let second = jpeg(150 * 1024, 8);
    let sha = Sha256::of(&second).to_string();
    let (status, body) = upload(&env.app, &phone, &sha, &second).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::INSUFFICIENT_STORAGE,
            Some("blob_quota_exceeded")
        )
    );
    assert_eq!(offset(&env.app, &phone, &sha).await, (0, false));
    assert_eq!(env.stored(), (vec![first_sha], false));
    // Another device has a quota of its own.
    let other_phone = env.device("wang", Role::GridWorker, "330604101");
    assert_eq!(
        upload(&env.app, &other_phone, &sha, &second).await.0,
        StatusCode::OK
    );
}

/// Bytes of unfinished uploads count against the quota: a device cannot fill the store with
/// uploads it never commits.
async fn unfinished_uploads_count_against_the_quota(backend: Backend, kind: StoreKind) {
    let limits = BlobLimits {
        device_quota_bytes: 250 * 1024,
        ..Env::limits()
    };
    let Some(env) = Env::new(backend, kind, limits) else {
        return;
    };
    let phone = env.device("li", Role::GridWorker, "330604101");
    // 150 KiB sent in full, never committed.
    let first = jpeg(150 * 1024, 13);
    let first_sha = Sha256::of(&first).to_string();
    assert!(
        send_chunks(
            &env.app,
            &phone,
            &first_sha,
            &first,
            usize::MAX,
            &mut vec![]
        )
        .await
        .is_none()
    );
    // Another 150 KiB: its first chunk fits beside it, its second would pass the quota.
    let second = jpeg(150 * 1024, 14);
    let sha = Sha256::of(&second).to_string();
    let mut sent = Vec::new();
    let refused = send_chunks(&env.app, &phone, &sha, &second, usize::MAX, &mut sent).await;
    let (status, body) = refused.expect("the second upload is refused");
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::INSUFFICIENT_STORAGE,
            Some("blob_quota_exceeded")
        )
    );
    assert_eq!(sent, vec![0, CHUNK as u64]);
    // The refused upload is gone; the first is untouched and can still be committed.
    assert_eq!(offset(&env.app, &phone, &sha).await, (0, false));
    assert_eq!(
        offset(&env.app, &phone, &first_sha).await,
        (first.len() as u64, false)
    );
    assert_eq!(commit(&env.app, &phone, &first_sha).await.0, StatusCode::OK);
    // What is left of the quota (100 KiB) is still usable.
    let small = jpeg(90 * 1024, 15);
    let small_sha = Sha256::of(&small).to_string();
    assert_eq!(
        upload(&env.app, &phone, &small_sha, &small).await.0,
        StatusCode::OK
    );
    assert!(!env.stored().1, "no upload left in progress");
}

async fn admins_see_the_attachments_of_cases_they_may_view(backend: Backend, kind: StoreKind) {
    let Some(env) = Env::new(backend, kind, Env::limits()) else {
        return;
    };
    let phone = env.device("li", Role::GridWorker, "330604101");
    let photo = b"%PDF-1.7\n a scanned letter".to_vec();
    let sha = Sha256::of(&photo).to_string();
    env.case_with_attachment("c-1", TOWNSHIP_AREA, &sha);
    assert_eq!(
        upload(&env.app, &phone, &sha, &photo).await.0,
        StatusCode::OK
    );
    let root = root_admin(&env.store);
    let path = format!("/admin/cases/c-1/attachments/{sha}");
    let (status, headers, bytes) = call(&env.app, Method::GET, &path, &root, vec![], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/pdf");
    assert!(bytes == photo);
    let rows = env.reveal_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user_id.as_deref(), Some("root"));
    // An admin of another county, a device token, a blob the case does not reference.
    let elsewhere = add_admin(&env.store, "far", AdminRole::Supervisor, "1101");
    let (status, _, _) = call(&env.app, Method::GET, &path, &elsewhere, vec![], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = call(&env.app, Method::GET, &path, &phone, vec![], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let other = Sha256::of(b"x").to_string();
    let path = format!("/admin/cases/c-1/attachments/{other}");
    let (status, _, _) = call(&env.app, Method::GET, &path, &root, vec![], None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(env.reveal_rows().len(), 1);
}

async fn unreferenced_blobs_are_collected_after_the_grace_period(
    backend: Backend,
    kind: StoreKind,
) {
    let Some(env) = Env::new(backend, kind, Env::limits()) else {
        return;
    };
    let phone = env.device("li", Role::GridWorker, "330604101");
    let kept = jpeg(2000, 9);
    let loose = jpeg(2000, 10);
    let (kept_sha, loose_sha) = (
        Sha256::of(&kept).to_string(),
        Sha256::of(&loose).to_string(),
    );
    env.case_with_attachment("c-1", TOWNSHIP_AREA, &kept_sha);
    for (sha, bytes) in [(&kept_sha, &kept), (&loose_sha, &loose)] {
        assert_eq!(upload(&env.app, &phone, sha, bytes).await.0, StatusCode::OK);
    }
    // An upload the phone abandoned after one chunk (its chunk arrives now, in real time).
    let abandoned = jpeg(2 * CHUNK, 16);
    let abandoned_sha = Sha256::of(&abandoned).to_string();
    send_chunks(&env.app, &phone, &abandoned_sha, &abandoned, 1, &mut vec![]).await;
    let grace = env.blobs.limits().grace_ms;
    let db = env.store.db();
    // Within the grace period (its case may still be on its way), nothing goes.
    let early = env.blobs.collect_garbage(db, T0 + grace).unwrap();
    assert!(early.blobs.is_empty(), "{early:?}");
    assert_eq!(env.stored().0.len(), 2);
    // After it, the blob no case references goes, row and bytes; the referenced one stays.
    let late = env.blobs.collect_garbage(db, T0 + grace + 1).unwrap();
    assert_eq!(late.blobs, vec![loose_sha.clone()]);
    assert_eq!(late.stale_uploads, 0);
    assert_eq!(env.stored(), (vec![kept_sha.clone()], true));
    // An upload with no chunk for the grace period goes too.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as Millis;
    let stale = env.blobs.collect_garbage(db, now + grace + 60_000).unwrap();
    assert_eq!(stale.stale_uploads, 1, "{stale:?}");
    assert_eq!(env.stored(), (vec![kept_sha.clone()], false));
    assert!(db.blob(&loose_sha).unwrap().is_none());
    assert!(db.blob(&kept_sha).unwrap().is_some());
    // Its quota is freed, and it can be uploaded again.
    assert_eq!(offset(&env.app, &phone, &loose_sha).await, (0, false));
    assert_eq!(
        db.blob_bytes_of(&phone_device(&phone)).unwrap(),
        kept.len() as u64
    );
}

/// A reference marked personal follows the sync's personal-data rule: a role that may see
/// personal data gets the bytes, the unit complained about never does, even with the case in its
/// scope. (Core has no way to mark an attachment personal yet, so the row is written here as the
/// projection will write it; the rule read is the one `Scope::sql` that guards `#pii`
/// documents.)
async fn personal_references_never_reach_the_unit(backend: Backend, kind: StoreKind) {
    let Some(env) = Env::new(backend, kind, Env::limits()) else {
        return;
    };
    let worker = env.device("li", Role::GridWorker, "330604101");
    let unit = env.device("unit", Role::HandlingUnit, "330604");
    let photo = jpeg(4000, 11);
    let sha = Sha256::of(&photo).to_string();
    env.case_with_attachment("c-1", TOWNSHIP_AREA, &sha);
    assert_eq!(
        upload(&env.app, &worker, &sha, &photo).await.0,
        StatusCode::OK
    );
    assert_eq!(
        download(&env.app, &unit, &sha, None).await.0,
        StatusCode::OK
    );
    let personal = match env.db.backend {
        Backend::Sqlite => "UPDATE case_blobs SET is_pii = 1",
        Backend::Postgres => "UPDATE case_blobs SET is_pii = TRUE",
    };
    execute(&env.db, personal);
    let rows_before = env.reveal_rows().len();
    let (status, _, _) = download(&env.app, &unit, &sha, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        env.reveal_rows().len(),
        rows_before,
        "a refusal is not a reveal"
    );
    let (status, _, bytes) = download(&env.app, &worker, &sha, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes == photo);
}

/// Cases committed before the blob step have no references until the backfill (or their next
/// commit) records them; the backfill only adds, and a second run adds nothing.
async fn the_backfill_records_references_of_older_cases(backend: Backend, kind: StoreKind) {
    let Some(env) = Env::new(backend, kind, Env::limits()) else {
        return;
    };
    let phone = env.device("li", Role::GridWorker, "330604101");
    let photo = jpeg(3000, 12);
    let sha = Sha256::of(&photo).to_string();
    env.case_with_attachment("c-1", TOWNSHIP_AREA, &sha);
    env.case_with_attachment("c-2", TOWNSHIP_AREA, &sha);
    assert_eq!(
        upload(&env.app, &phone, &sha, &photo).await.0,
        StatusCode::OK
    );
    execute(&env.db, "DELETE FROM case_blobs");
    assert_eq!(
        download(&env.app, &phone, &sha, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gridcase_server::blobs::backfill_references(&env.store).unwrap(),
        2
    );
    assert_eq!(
        download(&env.app, &phone, &sha, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        gridcase_server::blobs::backfill_references(&env.store).unwrap(),
        0
    );
}

fn execute(db: &TestDb, sql: &str) {
    match db.location() {
        DbLocation::Sqlite(dir) => {
            let path = dir.join(gridcase_server::db::sqlite::DB_FILE);
            rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(sql)
                .unwrap();
        }
        DbLocation::Postgres(url) => {
            let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
            client.batch_execute(sql).unwrap();
        }
    }
}

fn phone_device(token: &str) -> String {
    token.split_once('.').unwrap().0.to_owned()
}

/// Runs each behaviour against both stores, each on both database backends:
/// `local::sqlite::name`, `local::postgres::name`, `s3::sqlite::name`, `s3::postgres::name`.
macro_rules! store_tests {
    ($($name:ident),+ $(,)?) => {
        mod local {
            use super::*;
            $(
                async fn $name(backend: Backend) {
                    super::$name(backend, StoreKind::Local).await
                }
            )+
            backend_tests!(async: $($name),+);
        }
        mod s3 {
            use super::*;
            $(
                async fn $name(backend: Backend) {
                    super::$name(backend, StoreKind::S3).await
                }
            )+
            backend_tests!(async: $($name),+);
        }
    };
}

store_tests!(
    resumed_upload_reaches_a_second_device_byte_identical,
    downloads_stay_within_the_scope,
    refused_uploads_store_nothing,
    unfinished_uploads_count_against_the_quota,
    admins_see_the_attachments_of_cases_they_may_view,
    unreferenced_blobs_are_collected_after_the_grace_period,
    personal_references_never_reach_the_unit,
    the_backfill_records_references_of_older_cases,
);
