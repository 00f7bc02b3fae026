//! [`BlobStore`] in the local data directory: `<root>/<first two hex digits>/<sha256>` for
//! stored blobs, `<root>/uploads/<sha256>.<device in hex>.part` for uploads in progress with a
//! `.len` file beside it. A chunk is written and synced before the `.len` file (replaced by
//! rename) says it counts, so a crash never counts torn bytes: the next chunk cuts them off. A
//! finished upload is hashed and renamed into place, so a blob's file is complete or absent.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use gridcase_core::model::Millis;
use sha2::Digest;

use super::sniff::SNIFF_BYTES;
use super::store::{
    BlobError, BlobInfo, BlobStore, ByteStream, Received, Sha256, Upload, UploadInfo, device_key,
    device_of_key,
};
use crate::store::to_hex;

/// How much of a blob file one piece of a download holds.
const READ_PIECE: usize = 64 * 1024;

/// Blobs in a directory of the server's file system.
#[derive(Debug)]
pub struct LocalBlobs {
    root: PathBuf,
    /// One lock per upload in progress: two requests for the same upload take turns.
    uploads: Mutex<HashMap<Upload, Arc<Mutex<()>>>>,
}

impl LocalBlobs {
    /// Blobs under `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> io::Result<LocalBlobs> {
        let root = root.into();
        fs::create_dir_all(root.join("uploads"))?;
        Ok(LocalBlobs {
            root,
            uploads: Mutex::default(),
        })
    }

    fn blob_path(&self, sha256: &Sha256) -> PathBuf {
        self.root.join(&sha256.as_str()[..2]).join(sha256.as_str())
    }

    fn upload_path(&self, upload: &Upload, ext: &str) -> PathBuf {
        let device = device_key(&upload.device);
        self.root
            .join("uploads")
            .join(format!("{}.{device}.{ext}", upload.sha256))
    }

    fn turn(&self, upload: &Upload) -> Arc<Mutex<()>> {
        let mut map = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(upload.clone()).or_default().clone()
    }

    fn forget_turn(&self, upload: &Upload) {
        let mut map = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(upload);
    }

    fn counted_len(&self, upload: &Upload) -> Result<u64, BlobError> {
        match fs::read_to_string(self.upload_path(upload, "len")) {
            Ok(text) => Ok(text.trim().parse().unwrap_or(0)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    fn remove_upload(&self, upload: &Upload) -> Result<(), BlobError> {
        for ext in ["part", "len", "len.tmp"] {
            match fs::remove_file(self.upload_path(upload, ext)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// The SHA-256 and first bytes of the upload's first `len` bytes.
    fn hash_upload(&self, upload: &Upload, len: u64) -> Result<(Sha256, Vec<u8>), BlobError> {
        let file = match File::open(self.upload_path(upload, "part")) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Sha256::of(b""), vec![])),
            Err(e) => return Err(e.into()),
        };
        let mut file = file.take(len);
        let mut hasher = sha2::Sha256::new();
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let want = SNIFF_BYTES.saturating_sub(head.len()).min(n);
            head.extend_from_slice(&buf[..want]);
            hasher.update(&buf[..n]);
        }
        let sha = Sha256::parse(&to_hex(&hasher.finalize())).expect("a digest is 64 hex digits");
        Ok((sha, head))
    }

    fn commit_locked(
        &self,
        upload: &Upload,
        accept: &dyn Fn(&Received<'_>) -> Result<(), BlobError>,
    ) -> Result<u64, BlobError> {
        let size = self.counted_len(upload)?;
        let (sha, head) = self.hash_upload(upload, size)?;
        if sha != upload.sha256 {
            return Err(BlobError::HashMismatch);
        }
        accept(&Received { size, head: &head })?;
        let part = self.upload_path(upload, "part");
        OpenOptions::new().write(true).open(&part)?.set_len(size)?;
        let target = self.blob_path(&upload.sha256);
        fs::create_dir_all(target.parent().expect("a blob path has a directory"))?;
        if !target.exists() {
            fs::rename(&part, &target)?;
            sync_dir(target.parent().expect("a blob path has a directory"))?;
        }
        self.remove_upload(upload)?;
        Ok(size)
    }
}

/// Makes a rename durable (POSIX: the directory entry is written when the directory is synced).
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl BlobStore for LocalBlobs {
    fn upload_len(&self, upload: &Upload) -> Result<u64, BlobError> {
        self.counted_len(upload)
    }

    fn put_chunk(&self, upload: &Upload, offset: u64, bytes: &[u8]) -> Result<u64, BlobError> {
        let turn = self.turn(upload);
        let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
        let committed = self.counted_len(upload)?;
        if offset != committed {
            return Err(BlobError::Offset { committed });
        }
        let mut part = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.upload_path(upload, "part"))?;
        part.set_len(committed)?; // bytes of a chunk cut off before it counted
        part.seek(SeekFrom::Start(committed))?;
        part.write_all(bytes)?;
        part.sync_data()?;
        let end = committed + bytes.len() as u64;
        let tmp = self.upload_path(upload, "len.tmp");
        let mut len = File::create(&tmp)?;
        len.write_all(end.to_string().as_bytes())?;
        len.sync_all()?;
        fs::rename(&tmp, self.upload_path(upload, "len"))?;
        Ok(end)
    }

    fn commit(
        &self,
        upload: &Upload,
        accept: &dyn Fn(&Received<'_>) -> Result<(), BlobError>,
    ) -> Result<u64, BlobError> {
        let turn = self.turn(upload);
        let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.commit_locked(upload, accept);
        if result.is_err() {
            self.remove_upload(upload)?;
        }
        self.forget_turn(upload);
        result
    }

    fn abort(&self, upload: &Upload) -> Result<(), BlobError> {
        let turn = self.turn(upload);
        let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
        self.remove_upload(upload)?;
        self.forget_turn(upload);
        Ok(())
    }

    fn size(&self, sha256: &Sha256) -> Result<Option<u64>, BlobError> {
        match fs::metadata(self.blob_path(sha256)) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn read_range(&self, sha256: &Sha256, start: u64, end: u64) -> Result<ByteStream, BlobError> {
        let mut file = match File::open(self.blob_path(sha256)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => return Err(e.into()),
        };
        if start > end || end > file.metadata()?.len() {
            return Err(BlobError::Range);
        }
        file.seek(SeekFrom::Start(start))?;
        let file = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), end - start);
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            file, READ_PIECE,
        )))
    }

    fn delete(&self, sha256: &Sha256) -> Result<bool, BlobError> {
        match fs::remove_file(self.blob_path(sha256)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn list(&self) -> Result<Vec<BlobInfo>, BlobError> {
        let mut found = Vec::new();
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?;
            if dir.file_name() == "uploads" || !dir.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(dir.path())? {
                let file = file?;
                let Some(sha256) = file.file_name().to_str().and_then(Sha256::parse) else {
                    continue;
                };
                let meta = file.metadata()?;
                found.push(BlobInfo {
                    sha256,
                    size: meta.len(),
                    stored_at: modified(&meta)?,
                });
            }
        }
        found.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        Ok(found)
    }

    fn uploads(&self, device: Option<&str>) -> Result<Vec<UploadInfo>, BlobError> {
        let mut found = Vec::new();
        for file in fs::read_dir(self.root.join("uploads"))? {
            let file = file?;
            let name = file.file_name();
            let Some(upload) = name.to_str().and_then(upload_of_part_name) else {
                continue;
            };
            if device.is_some_and(|d| d != upload.device) {
                continue;
            }
            // The `.len` file is replaced after every chunk: its time is the last chunk's.
            let last_chunk_at = match fs::metadata(self.upload_path(&upload, "len")) {
                Ok(meta) => modified(&meta)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => modified(&file.metadata()?)?,
                Err(e) => return Err(e.into()),
            };
            found.push(UploadInfo {
                len: self.counted_len(&upload)?,
                upload,
                last_chunk_at,
            });
        }
        Ok(found)
    }
}

/// The upload a `<sha256>.<device key>.part` file holds.
fn upload_of_part_name(name: &str) -> Option<Upload> {
    let (sha256, device) = name.strip_suffix(".part")?.split_once('.')?;
    Some(Upload {
        sha256: Sha256::parse(sha256)?,
        device: device_of_key(device)?,
    })
}

/// A file's modification time in milliseconds since the epoch.
fn modified(meta: &fs::Metadata) -> io::Result<Millis> {
    Ok(meta
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload_of(bytes: &[u8]) -> Upload {
        Upload {
            device: "dev/../1".into(), // any text: it is hex-encoded into the file name
            sha256: Sha256::of(bytes),
        }
    }

    #[test]
    fn bytes_written_before_a_crash_but_not_counted_are_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).unwrap();
        let bytes = b"%PDF-1.7 hello world".to_vec();
        let up = upload_of(&bytes);
        assert_eq!(blobs.put_chunk(&up, 0, &bytes[..8]).unwrap(), 8);
        // A crash after the next chunk's bytes reached the file, before its length counted.
        let mut part = OpenOptions::new()
            .append(true)
            .open(blobs.upload_path(&up, "part"))
            .unwrap();
        part.write_all(b"garbage").unwrap();
        assert_eq!(blobs.upload_len(&up).unwrap(), 8);
        assert!(matches!(
            blobs.put_chunk(&up, 15, &bytes[8..]),
            Err(BlobError::Offset { committed: 8 })
        ));
        assert_eq!(
            blobs.put_chunk(&up, 8, &bytes[8..]).unwrap(),
            bytes.len() as u64
        );
        assert_eq!(blobs.commit(&up, &|_| Ok(())).unwrap(), bytes.len() as u64);
        let len = bytes.len() as u64;
        assert_eq!(read(&blobs, &up.sha256, 0, len).unwrap(), bytes);
        assert_eq!(read(&blobs, &up.sha256, 5, 8).unwrap(), &bytes[5..8]);
        assert!(matches!(
            read(&blobs, &up.sha256, 0, len + 1),
            Err(BlobError::Range)
        ));
        assert_eq!(fs::read_dir(dir.path().join("uploads")).unwrap().count(), 0);
        let listed: Vec<_> = blobs
            .list()
            .unwrap()
            .into_iter()
            .map(|b| b.sha256)
            .collect();
        assert_eq!(listed, vec![up.sha256.clone()]);
        assert!(blobs.delete(&up.sha256).unwrap());
        assert!(!blobs.delete(&up.sha256).unwrap());
    }

    /// Bytes `start..end` of a stored blob, read through the stream a download sends.
    fn read(blobs: &LocalBlobs, sha: &Sha256, start: u64, end: u64) -> Result<Vec<u8>, BlobError> {
        use futures_util::TryStreamExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let pieces: Vec<_> = blobs.read_range(sha, start, end)?.try_collect().await?;
            Ok(pieces.concat())
        })
    }

    #[test]
    fn uploads_in_progress_are_listed_by_device() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).unwrap();
        let up = upload_of(b"%PDF-1.7 abandoned");
        blobs.put_chunk(&up, 0, b"%PDF").unwrap();
        let before = crate::http::now_millis() - 60_000;
        let listed = blobs.uploads(Some(&up.device)).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((&listed[0].upload, listed[0].len), (&up, 4));
        assert!(listed[0].last_chunk_at > before);
        assert_eq!(blobs.uploads(None).unwrap(), listed);
        assert!(blobs.uploads(Some("another")).unwrap().is_empty());
        std::fs::write(dir.path().join("uploads").join("stray.part"), b"x").unwrap();
        assert_eq!(blobs.uploads(None).unwrap(), listed);
    }

    #[test]
    fn a_refused_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).unwrap();
        let bytes = b"%PDF-1.7".to_vec();
        let up = upload_of(&bytes);
        blobs.put_chunk(&up, 0, &bytes).unwrap();
        let refused = blobs.commit(&up, &|_| Err(BlobError::WrongType));
        assert!(matches!(refused, Err(BlobError::WrongType)));
        let wrong = Upload {
            sha256: Sha256::of(b"other"),
            ..up.clone()
        };
        blobs.put_chunk(&wrong, 0, &bytes).unwrap();
        assert!(matches!(
            blobs.commit(&wrong, &|_| Ok(())),
            Err(BlobError::HashMismatch)
        ));
        assert_eq!(fs::read_dir(dir.path().join("uploads")).unwrap().count(), 0);
        assert!(blobs.list().unwrap().is_empty());
        assert_eq!(blobs.upload_len(&up).unwrap(), 0);
    }
}
