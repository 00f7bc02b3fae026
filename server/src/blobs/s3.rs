//! [`BlobStore`] in an S3-compatible object store (AWS S3 or a compatible server), for
//! deployments with several server instances behind one address: any instance may receive any
//! chunk of an upload, so no upload state lives in one process's memory or disk.
//!
//! Objects, under the configured prefix:
//! - `blobs/<first two hex digits>/<sha256>`: stored blobs, written by a multipart upload that
//!   is completed only after the bytes hashed to the name and passed the checks (else aborted),
//!   so a blob's object is complete or absent.
//! - `uploads/<device key>/<sha256>/<offset in 20 digits>`: one object per chunk received.
//!
//! **Where an upload stands is derived from its chunk objects**, not kept in the database:
//! from offset 0, each chunk object leads to the next at its offset plus its size, and the
//! first gap ends the chain ([`chain`]). A chunk object is written whole or not at all (a PUT is
//! atomic) before the request is answered, so the chain counts only durable chunks, whichever
//! instance wrote them, and S3's listing is strongly consistent, so the next instance sees
//! them. An offset in the database would be a second write per chunk, kept in step with the
//! object across two systems that fail apart; the objects alone cannot disagree with
//! themselves. A chunk off the chain (a retry racing another at the same offset) is ignored
//! and removed with its upload.
//!
//! S3 has no append, and a multipart upload's parts must be at least 5 MiB (except the last)
//! while a phone's chunks are smaller: so chunks stay separate objects, and commit reads them in
//! order, hashing on the way, into one multipart upload of the blob.
//!
//! `object_store` is async while [`BlobStore`] is called from blocking threads: the store runs
//! its requests on a runtime of its own (one worker thread) and waits for the answer, which works
//! from any thread without nesting runtimes. A download's stream is read by the caller's runtime
//! while its connection is driven by this one.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart,
};
use sha2::Digest;

use super::sniff::SNIFF_BYTES;
use super::store::{
    BlobError, BlobInfo, BlobStore, ByteStream, Received, Sha256, Upload, UploadInfo, device_key,
    device_of_key,
};
use crate::store::to_hex;

/// How many parts of a blob's multipart upload may be in flight at once during a commit (each
/// holds up to 5 MiB in memory).
const PARTS_IN_FLIGHT: usize = 2;

/// `[blobs] store = "s3"` in the config file.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// e.g. `https://oss-cn-hangzhou.aliyuncs.com`; `None`: AWS for `region`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Key prefix inside the bucket, so one bucket can serve several deployments.
    pub prefix: String,
    /// `None`: from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "…"),
            )
            .finish()
    }
}

impl S3Settings {
    /// Refuses settings that cannot work, or that would send credentials and attachments in
    /// clear: a plain `http://` endpoint is accepted on loopback only (a test server).
    pub fn check(&self) -> Result<(), String> {
        if self.bucket.is_empty() {
            return Err("blobs store \"s3\" needs a bucket".into());
        }
        match self.endpoint.as_deref() {
            Some(e) if e.starts_with("http://") && !is_loopback(e) => Err(format!(
                "blobs endpoint {e}: plain http only on loopback; use https"
            )),
            Some(e) if !e.starts_with("http://") && !e.starts_with("https://") => {
                Err(format!("blobs endpoint {e}: not an http(s) URL"))
            }
            _ => Ok(()),
        }
    }

    fn plain_http(&self) -> bool {
        self.endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
    }

    /// The prefix as keys use it: empty, or ending in one `/`.
    fn key_prefix(&self) -> String {
        match self.prefix.trim_matches('/') {
            "" => String::new(),
            prefix => format!("{prefix}/"),
        }
    }
}

/// Whether an `http://` URL names this machine (`localhost` or a loopback address).
fn is_loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Blobs in an S3 bucket.
pub struct S3Blobs {
    inner: Arc<Inner>,
    /// Always `Some` until dropped (taken to shut it down without blocking).
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Blobs")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for S3Blobs {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl S3Blobs {
    /// A client for the bucket (nothing is sent until the first call).
    pub fn open(settings: &S3Settings) -> Result<S3Blobs, BlobError> {
        settings.check().map_err(io::Error::other)?;
        // reqwest is built with rustls but no crypto provider; ours is ring. Installing it a
        // second time fails harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_allow_http(settings.plain_http());
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &settings.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("s3-blobs")
            .enable_all()
            .build()?;
        Ok(S3Blobs {
            inner: Arc::new(Inner {
                store: builder.build()?,
                prefix: settings.key_prefix(),
            }),
            runtime: Some(runtime),
        })
    }

    /// Completes the blob's multipart upload if the bytes hash to the name and `accept` agrees;
    /// aborts it otherwise.
    fn finish(
        &self,
        upload: &Upload,
        staged: Staged,
        accept: &dyn Fn(&Received<'_>) -> Result<(), BlobError>,
    ) -> Result<u64, BlobError> {
        let verdict = if staged.sha256 == upload.sha256 {
            accept(&Received {
                size: staged.size,
                head: &staged.head,
            })
        } else {
            Err(BlobError::HashMismatch)
        };
        let (size, writer) = (staged.size, staged.writer);
        match (verdict, writer) {
            (Ok(()), None) => Ok(size),
            (Ok(()), Some(writer)) => self.run(|_| async move {
                writer.finish().await?;
                Ok(size)
            }),
            (Err(refused), None) => Err(refused),
            (Err(refused), Some(writer)) => {
                self.run(|_| async move { Ok(writer.abort().await?) })?;
                Err(refused)
            }
        }
    }

    /// Runs `work` on the store's runtime and waits for its answer.
    fn run<T, F>(&self, work: impl FnOnce(Arc<Inner>) -> F) -> Result<T, BlobError>
    where
        F: Future<Output = Result<T, BlobError>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let work = work(self.inner.clone());
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv()
            .map_err(|_| io::Error::other("the object store's runtime stopped"))?
    }
}

#[derive(Debug)]
struct Inner {
    store: AmazonS3,
    prefix: String,
}

/// An upload read through and copied towards its blob, waiting for the checks.
struct Staged {
    sha256: Sha256,
    size: u64,
    head: Vec<u8>,
    /// `None` if the blob was stored already.
    writer: Option<WriteMultipart>,
}

impl Inner {
    fn blob_path(&self, sha256: &Sha256) -> Path {
        let sha = sha256.as_str();
        Path::from(format!("{}blobs/{}/{sha}", self.prefix, &sha[..2]))
    }

    fn uploads_path(&self, device: Option<&str>) -> Path {
        match device {
            Some(device) => Path::from(format!("{}uploads/{}", self.prefix, device_key(device))),
            None => Path::from(format!("{}uploads", self.prefix)),
        }
    }

    fn upload_path(&self, upload: &Upload) -> Path {
        self.uploads_path(Some(&upload.device))
            .join(upload.sha256.as_str())
    }

    fn chunk_path(&self, upload: &Upload, offset: u64) -> Path {
        self.upload_path(upload)
            .join(format!("{offset:020}").as_str())
    }

    async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, BlobError> {
        Ok(self.store.list(Some(prefix)).try_collect().await?)
    }

    async fn chain(&self, upload: &Upload) -> Result<Vec<ObjectMeta>, BlobError> {
        Ok(chain(self.list(&self.upload_path(upload)).await?))
    }

    async fn head(&self, path: &Path) -> Result<Option<ObjectMeta>, BlobError> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_chunk(&self, upload: Upload, offset: u64, bytes: Bytes) -> Result<u64, BlobError> {
        let committed: u64 = self.chain(&upload).await?.iter().map(|m| m.size).sum();
        if offset != committed {
            return Err(BlobError::Offset { committed });
        }
        if !bytes.is_empty() {
            let path = self.chunk_path(&upload, offset);
            self.store
                .put(&path, PutPayload::from(bytes.clone()))
                .await?;
        }
        Ok(committed + bytes.len() as u64)
    }

    /// Reads the upload's chunks in order, hashing them and (unless the blob is stored already)
    /// writing them to the blob's multipart upload, which is aborted on any error here.
    async fn stage(&self, upload: &Upload) -> Result<Staged, BlobError> {
        let chunks = self.chain(upload).await?;
        let target = self.blob_path(&upload.sha256);
        let mut writer = match self.head(&target).await? {
            Some(_) => None,
            None => Some(WriteMultipart::new(
                self.store.put_multipart(&target).await?,
            )),
        };
        match self.copy(&chunks, writer.as_mut()).await {
            Ok((sha256, size, head)) => Ok(Staged {
                sha256,
                size,
                head,
                writer,
            }),
            Err(e) => {
                if let Some(writer) = writer {
                    let _ = writer.abort().await;
                }
                Err(e)
            }
        }
    }

    async fn copy(
        &self,
        chunks: &[ObjectMeta],
        mut writer: Option<&mut WriteMultipart>,
    ) -> Result<(Sha256, u64, Vec<u8>), BlobError> {
        let (mut hasher, mut size, mut head) = (sha2::Sha256::new(), 0, Vec::new());
        for chunk in chunks {
            let bytes = self.store.get(&chunk.location).await?.bytes().await?;
            let want = SNIFF_BYTES.saturating_sub(head.len()).min(bytes.len());
            head.extend_from_slice(&bytes[..want]);
            hasher.update(&bytes);
            size += bytes.len() as u64;
            if let Some(writer) = writer.as_deref_mut() {
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.put(bytes);
            }
        }
        let sha = Sha256::parse(&to_hex(&hasher.finalize())).expect("a digest is 64 hex digits");
        Ok((sha, size, head))
    }

    async fn remove_upload(&self, upload: &Upload) -> Result<(), BlobError> {
        let paths = self.list(&self.upload_path(upload)).await?;
        let paths = futures_util::stream::iter(paths.into_iter().map(|m| Ok(m.location)));
        let _: Vec<Path> = self
            .store
            .delete_stream(paths.boxed())
            .try_collect()
            .await?;
        Ok(())
    }

    async fn read_range(
        &self,
        sha256: &Sha256,
        start: u64,
        end: u64,
    ) -> Result<ByteStream, BlobError> {
        if start > end {
            return Err(BlobError::Range);
        }
        let Some(meta) = self.head(&self.blob_path(sha256)).await? else {
            return Err(BlobError::NotFound);
        };
        if end > meta.size {
            return Err(BlobError::Range);
        }
        if start == end {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..end)),
            ..GetOptions::default()
        };
        let got = self.store.get_opts(&meta.location, options).await?;
        Ok(Box::pin(got.into_stream().map_err(io::Error::from)))
    }

    async fn uploads(&self, device: Option<&str>) -> Result<Vec<UploadInfo>, BlobError> {
        let root = format!("{}uploads/", self.prefix);
        let mut groups: BTreeMap<(String, String), Vec<ObjectMeta>> = BTreeMap::new();
        for meta in self.list(&self.uploads_path(device)).await? {
            let name = meta
                .location
                .as_ref()
                .strip_prefix(&root)
                .unwrap_or_default();
            if let [device, sha256, _offset] = name.split('/').collect::<Vec<_>>()[..] {
                let key = (device.to_owned(), sha256.to_owned());
                groups.entry(key).or_default().push(meta);
            }
        }
        let mut found = Vec::new();
        for ((device, sha256), chunks) in groups {
            let (Some(device), Some(sha256)) = (device_of_key(&device), Sha256::parse(&sha256))
            else {
                continue;
            };
            let last = chunks.iter().map(|m| m.last_modified).max();
            found.push(UploadInfo {
                upload: Upload { device, sha256 },
                last_chunk_at: last.map_or(0, |t| t.timestamp_millis()),
                len: chain(chunks).iter().map(|m| m.size).sum(),
            });
        }
        Ok(found)
    }
}

/// The chunks of an upload that count, in order: from offset 0, each chunk's end is the next
/// one's name, until a gap. Objects whose names are not offsets are ignored.
fn chain(objects: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
    let mut by_offset: BTreeMap<u64, ObjectMeta> = objects
        .into_iter()
        .filter_map(|m| Some((m.location.filename()?.parse().ok()?, m)))
        .collect();
    let (mut at, mut found) = (0, Vec::new());
    while let Some(meta) = by_offset.remove(&at) {
        at += meta.size;
        found.push(meta);
    }
    found
}

impl BlobStore for S3Blobs {
    fn upload_len(&self, upload: &Upload) -> Result<u64, BlobError> {
        let upload = upload.clone();
        self.run(|s3| async move { Ok(s3.chain(&upload).await?.iter().map(|m| m.size).sum()) })
    }

    fn put_chunk(&self, upload: &Upload, offset: u64, bytes: &[u8]) -> Result<u64, BlobError> {
        let (upload, bytes) = (upload.clone(), Bytes::copy_from_slice(bytes));
        self.run(|s3| async move { s3.put_chunk(upload, offset, bytes).await })
    }

    fn commit(
        &self,
        upload: &Upload,
        accept: &dyn Fn(&Received<'_>) -> Result<(), BlobError>,
    ) -> Result<u64, BlobError> {
        let up = upload.clone();
        let result = self
            .run(|s3| async move { s3.stage(&up).await })
            .and_then(|staged| self.finish(upload, staged, accept));
        // Stored or refused, the chunks go.
        let up = upload.clone();
        self.run(|s3| async move { s3.remove_upload(&up).await })?;
        result
    }

    fn abort(&self, upload: &Upload) -> Result<(), BlobError> {
        let upload = upload.clone();
        self.run(|s3| async move { s3.remove_upload(&upload).await })
    }

    fn size(&self, sha256: &Sha256) -> Result<Option<u64>, BlobError> {
        let sha256 = sha256.clone();
        self.run(|s3| async move { Ok(s3.head(&s3.blob_path(&sha256)).await?.map(|m| m.size)) })
    }

    fn read_range(&self, sha256: &Sha256, start: u64, end: u64) -> Result<ByteStream, BlobError> {
        let sha256 = sha256.clone();
        self.run(move |s3| async move { s3.read_range(&sha256, start, end).await })
    }

    fn delete(&self, sha256: &Sha256) -> Result<bool, BlobError> {
        let sha256 = sha256.clone();
        self.run(|s3| async move {
            let path = s3.blob_path(&sha256);
            if s3.head(&path).await?.is_none() {
                return Ok(false);
            }
            s3.store.delete(&path).await?;
            Ok(true)
        })
    }

    fn list(&self) -> Result<Vec<BlobInfo>, BlobError> {
        self.run(|s3| async move {
            let root = Path::from(format!("{}blobs", s3.prefix));
            let mut found: Vec<BlobInfo> = (s3.list(&root).await?)
                .into_iter()
                .filter_map(|m| {
                    Some(BlobInfo {
                        sha256: Sha256::parse(m.location.filename()?)?,
                        size: m.size,
                        stored_at: m.last_modified.timestamp_millis(),
                    })
                })
                .collect();
            found.sort_by(|a, b| a.sha256.cmp(&b.sha256));
            Ok(found)
        })
    }

    fn uploads(&self, device: Option<&str>) -> Result<Vec<UploadInfo>, BlobError> {
        let device = device.map(str::to_owned);
        self.run(|s3| async move { s3.uploads(device.as_deref()).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offset: &str, size: u64) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(format!("uploads/6465/{}/{offset}", "a".repeat(64))),
            last_modified: chrono::DateTime::default(),
            size,
            e_tag: None,
            version: None,
        }
    }

    fn offsets(chunks: Vec<ObjectMeta>) -> Vec<String> {
        let found = chain(chunks);
        found
            .iter()
            .map(|m| m.location.filename().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_chain_counts_chunks_from_zero_until_a_gap() {
        let at = |n: u64| format!("{n:020}");
        // Listed in any order; a chunk past a gap and a stray name do not count.
        let listed = vec![
            chunk(&at(10), 5),
            chunk(&at(0), 10),
            chunk(&at(20), 3),
            chunk("not-an-offset", 7),
        ];
        assert_eq!(offsets(listed), vec![at(0), at(10)]);
        // A retry that left a shorter chunk at 0 starts another chain; the longer one's tail is
        // off it and ignored.
        assert_eq!(
            offsets(vec![chunk(&at(0), 4), chunk(&at(10), 5)]),
            vec![at(0)]
        );
        assert!(offsets(vec![chunk(&at(4), 4)]).is_empty());
        assert!(offsets(vec![]).is_empty());
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for yes in [
            "http://127.0.0.1:9000",
            "http://127.1.2.3/",
            "http://localhost",
            "http://[::1]:5000/x",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "http://10.0.0.1:9000",
            "http://localhost.example.cn",
            "http://127.0.0.1@evil.example.cn",
            "http://user@127.0.0.1",
            "https://127.0.0.1",
            "http://[::2]",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn settings_are_debug_printed_without_the_secret() {
        let settings = S3Settings {
            bucket: "gc".into(),
            secret_access_key: Some("very-secret".into()),
            ..S3Settings::default()
        };
        assert!(!format!("{settings:?}").contains("very-secret"));
        assert_eq!(settings.key_prefix(), "");
        let prefixed = S3Settings {
            prefix: "/county/".into(),
            ..settings
        };
        assert_eq!(prefixed.key_prefix(), "county/");
    }
}
