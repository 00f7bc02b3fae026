//! One blob's upload as a state machine, free of I/O (the style of [`super::super::sync::client`]):
//! it says what to do next ([`UploadStep`]) and the shell feeds back the server's answer.
//!
//! It always sends from the offset the server last named, never from its own count: after a
//! cut it asks where the server stands and resumes there, so a committed chunk is never sent
//! twice. A refusal for good (type, size, quota, a hash the server does not get) ends the blob
//! as refused, not to be retried; anything else (network, server trouble, a 429) leaves it
//! queued for the next sync.

use crate::phone::TransportError;

/// What the server says of an upload: `offset` bytes are held; `complete` once it stores the
/// blob (an upload of a blob it holds already is complete at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct UploadStatus {
    pub offset: u64,
    pub complete: bool,
}

/// The largest chunk: small, for village links (a cut loses at most one chunk). A cut halves
/// the chunk (a link that drops connections after a few KB still carries small ones) and each
/// chunk that arrives doubles it back, up to this.
pub const CHUNK_BYTES: u64 = 32 * 1024;
/// The smallest chunk, when cuts or the server ask for smaller ones.
pub const MIN_CHUNK_BYTES: u64 = 1024;
/// Cuts in a row (no byte gained in between) after which the blob waits for the next sync.
pub const MAX_CUTS: u32 = 5;

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStep {
    /// Ask the server where the upload stands; hand the answer to [`BlobUpload::status`].
    AskStatus,
    /// Send the bytes `[offset, offset + len)`; hand the answer to [`BlobUpload::chunk_sent`].
    Send { offset: u64, len: u64 },
    /// Ask the server to check and store the blob; hand the answer to [`BlobUpload::committed`].
    Commit,
    /// The upload is over for this sync.
    Done(UploadEnd),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadEnd {
    /// The server stores the blob.
    Uploaded,
    /// Refused for good, with the server's reason: mark it failed, do not send it again.
    Refused(String),
    /// Try again at the next sync (and stop uploading for now: the link or server is unwell).
    Later(TransportError),
}

/// One blob's upload.
#[derive(Debug, Clone)]
pub struct BlobUpload {
    size: u64,
    chunk: u64,
    /// What the server last said it holds.
    offset: u64,
    cuts: u32,
}

/// How an error answer is handled.
enum Class {
    Refused(String),
    /// 409: the server holds another offset than we sent from.
    Mismatch,
    ChunkTooLarge,
    Cut,
    Later,
}

fn classify(e: &TransportError) -> Class {
    match e {
        TransportError::Network(_) => Class::Cut,
        TransportError::Server { code, .. } if code == "offset_mismatch" => Class::Mismatch,
        TransportError::Server { code, .. } if code == "chunk_too_large" => Class::ChunkTooLarge,
        // Client errors are the server's verdict on this blob (408/429 are about timing), and
        // so is a full quota (507).
        TransportError::Server {
            status,
            code,
            message,
        } if code == "blob_quota_exceeded"
            || ((400..500).contains(status) && *status != 408 && *status != 429) =>
        {
            Class::Refused(format!("{code}: {message}"))
        }
        _ => Class::Later,
    }
}

impl BlobUpload {
    /// An upload of `size` bytes that the store says the server held `sent` of (a hint for
    /// progress only: the server's answer decides where to resume).
    pub fn new(size: u64, sent: u64) -> BlobUpload {
        BlobUpload {
            size,
            chunk: CHUNK_BYTES,
            offset: sent.min(size),
            cuts: 0,
        }
    }

    pub fn start(&self) -> UploadStep {
        UploadStep::AskStatus
    }

    /// Bytes the server holds, as it last said.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The answer to [`UploadStep::AskStatus`].
    pub fn status(&mut self, answer: Result<UploadStatus, TransportError>) -> UploadStep {
        match answer {
            Ok(status) => self.at(status),
            Err(e) => self.failed(e),
        }
    }

    /// The answer to [`UploadStep::Send`].
    pub fn chunk_sent(&mut self, answer: Result<UploadStatus, TransportError>) -> UploadStep {
        self.status(answer)
    }

    /// The answer to [`UploadStep::Commit`].
    pub fn committed(&mut self, answer: Result<(), TransportError>) -> UploadStep {
        match answer {
            Ok(()) => {
                self.offset = self.size;
                UploadStep::Done(UploadEnd::Uploaded)
            }
            Err(e) => self.failed(e),
        }
    }

    fn at(&mut self, status: UploadStatus) -> UploadStep {
        if status.offset > self.offset || status.complete {
            self.cuts = 0;
            self.chunk = (self.chunk * 2).min(CHUNK_BYTES);
        }
        self.offset = status.offset;
        if status.complete {
            self.offset = self.size;
            UploadStep::Done(UploadEnd::Uploaded)
        } else if status.offset >= self.size {
            UploadStep::Commit
        } else {
            UploadStep::Send {
                offset: status.offset,
                len: self.chunk.min(self.size - status.offset),
            }
        }
    }

    fn failed(&mut self, e: TransportError) -> UploadStep {
        let class = classify(&e);
        match class {
            Class::Refused(why) => UploadStep::Done(UploadEnd::Refused(why)),
            Class::ChunkTooLarge if self.chunk > MIN_CHUNK_BYTES => {
                self.chunk = (self.chunk / 2).max(MIN_CHUNK_BYTES);
                UploadStep::AskStatus
            }
            Class::ChunkTooLarge => UploadStep::Done(UploadEnd::Refused(e.to_string())),
            Class::Cut | Class::Mismatch => {
                if matches!(class, Class::Cut) {
                    self.chunk = (self.chunk / 2).max(MIN_CHUNK_BYTES);
                }
                self.cuts += 1;
                if self.cuts > MAX_CUTS {
                    UploadStep::Done(UploadEnd::Later(e))
                } else {
                    UploadStep::AskStatus
                }
            }
            Class::Later => UploadStep::Done(UploadEnd::Later(e)),
        }
    }
}

#[cfg(test)]
mod tests;
