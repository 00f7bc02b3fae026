//! Every path of one blob's upload, driven by a simulated server that holds what it committed.

use super::*;

fn net() -> TransportError {
    TransportError::Network("connection reset".into())
}

fn server(status: u16, code: &str) -> TransportError {
    TransportError::Server {
        status,
        code: code.into(),
        message: "refused".into(),
    }
}

fn held(offset: u64) -> Result<UploadStatus, TransportError> {
    Ok(UploadStatus {
        offset,
        complete: false,
    })
}

/// A server holding `committed` bytes of one upload, whose link cuts the chunk PUTs named in
/// `cut_puts` (counted from 0), either before the server commits the chunk (`true`) or after
/// (`false`: only the answer is lost). `accepted`: every chunk it committed, (offset, len).
struct Server {
    committed: u64,
    puts: u32,
    cut_puts: Vec<(u32, bool)>,
    accepted: Vec<(u64, u64)>,
}

impl Server {
    fn new(cuts: &[(u32, bool)]) -> Server {
        Server {
            committed: 0,
            puts: 0,
            cut_puts: cuts.to_vec(),
            accepted: Vec::new(),
        }
    }

    fn put(&mut self, offset: u64, len: u64) -> Result<UploadStatus, TransportError> {
        let n = self.puts;
        self.puts += 1;
        let cut = self
            .cut_puts
            .iter()
            .find(|(i, _)| *i == n)
            .map(|(_, before)| *before);
        if cut == Some(true) {
            return Err(net());
        }
        if offset != self.committed {
            return Err(server(409, "offset_mismatch"));
        }
        self.committed += len;
        self.accepted.push((offset, len));
        if cut == Some(false) {
            return Err(net());
        }
        held(self.committed)
    }
}

/// Runs an upload of `size` bytes against `server` to its end.
fn run(size: u64, server: &mut Server) -> UploadEnd {
    let mut upload = BlobUpload::new(size, 0);
    let mut step = upload.start();
    for _ in 0..1000 {
        step = match step {
            UploadStep::AskStatus => upload.status(held(server.committed)),
            UploadStep::Send { offset, len } => upload.chunk_sent(server.put(offset, len)),
            UploadStep::Commit => upload.committed(Ok(())),
            UploadStep::Done(end) => return end,
        };
    }
    panic!("the upload never ended");
}

#[test]
fn a_blob_goes_in_chunks_then_is_committed() {
    let mut server = Server::new(&[]);
    let size = 2 * CHUNK_BYTES + 100;
    assert_eq!(run(size, &mut server), UploadEnd::Uploaded);
    assert_eq!(
        server.accepted,
        vec![
            (0, CHUNK_BYTES),
            (CHUNK_BYTES, CHUNK_BYTES),
            (2 * CHUNK_BYTES, 100)
        ]
    );
}

#[test]
fn a_cut_resumes_from_the_servers_offset_and_no_committed_chunk_is_sent_twice() {
    // PUT 1 is cut after the server committed it (the answer is lost), PUT 3 before.
    let mut server = Server::new(&[(1, false), (3, true)]);
    let size = 4 * CHUNK_BYTES;
    assert_eq!(run(size, &mut server), UploadEnd::Uploaded);
    assert_eq!(server.committed, size);
    // The committed chunks follow each other: none was sent twice (a resend would be refused
    // as an offset mismatch and not be counted).
    let mut end = 0;
    for (offset, len) in &server.accepted {
        assert_eq!(*offset, end, "{:?}", server.accepted);
        end += len;
    }
    // Only the PUT cut before the server kept it carried bytes sent again.
    let sent_again = server.puts as usize - server.accepted.len();
    assert_eq!(sent_again, 1, "{:?}", server.accepted);
}

#[test]
fn a_link_that_cuts_large_chunks_carries_smaller_ones() {
    // Every PUT of more than 5 KB is cut before the server keeps it.
    let mut upload = BlobUpload::new(20 * 1024, 0);
    let mut committed = 0;
    let mut step = upload.start();
    let mut puts = 0;
    let end = loop {
        step = match step {
            UploadStep::AskStatus => upload.status(held(committed)),
            UploadStep::Send { offset, len } => {
                puts += 1;
                assert_eq!(offset, committed);
                if len > 5 * 1024 {
                    upload.chunk_sent(Err(net()))
                } else {
                    committed += len;
                    upload.chunk_sent(held(committed))
                }
            }
            UploadStep::Commit => upload.committed(Ok(())),
            UploadStep::Done(end) => break end,
        };
        assert!(puts < 100, "the upload never ends");
    };
    assert_eq!(end, UploadEnd::Uploaded);
    assert_eq!(committed, 20 * 1024);
}

#[test]
fn an_upload_resumes_where_an_earlier_sync_left_it() {
    let mut upload = BlobUpload::new(3 * CHUNK_BYTES, CHUNK_BYTES);
    assert_eq!(upload.start(), UploadStep::AskStatus);
    assert_eq!(
        upload.status(held(2 * CHUNK_BYTES)),
        UploadStep::Send {
            offset: 2 * CHUNK_BYTES,
            len: CHUNK_BYTES
        }
    );
    assert_eq!(upload.offset(), 2 * CHUNK_BYTES);
}

#[test]
fn an_offset_mismatch_asks_where_the_server_stands() {
    let mut upload = BlobUpload::new(100, 0);
    upload.status(held(0));
    assert_eq!(
        upload.chunk_sent(Err(server(409, "offset_mismatch"))),
        UploadStep::AskStatus
    );
    assert_eq!(
        upload.status(held(60)),
        UploadStep::Send {
            offset: 60,
            len: 40
        }
    );
}

#[test]
fn a_blob_the_server_holds_already_is_uploaded_without_a_byte() {
    let mut upload = BlobUpload::new(100, 0);
    let answer = Ok(UploadStatus {
        offset: 100,
        complete: true,
    });
    assert_eq!(upload.status(answer), UploadStep::Done(UploadEnd::Uploaded));
}

#[test]
fn refusals_for_good_end_the_blob_as_refused() {
    for (status, code) in [
        (413, "blob_too_large"),
        (415, "unsupported_type"),
        (422, "hash_mismatch"),
        (507, "blob_quota_exceeded"),
    ] {
        let mut upload = BlobUpload::new(100, 0);
        upload.status(held(100));
        let end = upload.committed(Err(server(status, code)));
        let UploadStep::Done(UploadEnd::Refused(why)) = end else {
            panic!("{code}: {end:?}");
        };
        assert!(why.starts_with(code), "{why}");
    }
}

#[test]
fn a_refused_chunk_size_halves_the_chunks() {
    let mut upload = BlobUpload::new(3 * CHUNK_BYTES, 0);
    upload.status(held(0));
    assert_eq!(
        upload.chunk_sent(Err(server(413, "chunk_too_large"))),
        UploadStep::AskStatus
    );
    assert_eq!(
        upload.status(held(0)),
        UploadStep::Send {
            offset: 0,
            len: CHUNK_BYTES / 2
        }
    );
    // Down to the smallest; below it the blob is refused.
    let mut upload = BlobUpload::new(3 * CHUNK_BYTES, 0);
    let mut step = upload.status(held(0));
    while let UploadStep::Send { .. } | UploadStep::AskStatus = step {
        step = match step {
            UploadStep::Send { len, .. } => {
                assert!(len >= MIN_CHUNK_BYTES);
                upload.chunk_sent(Err(server(413, "chunk_too_large")))
            }
            _ => upload.status(held(0)),
        };
    }
    assert!(
        matches!(step, UploadStep::Done(UploadEnd::Refused(_))),
        "{step:?}"
    );
}

#[test]
fn too_many_cuts_without_progress_wait_for_the_next_sync() {
    let mut upload = BlobUpload::new(100, 0);
    for _ in 0..MAX_CUTS {
        assert_eq!(upload.status(Err(net())), UploadStep::AskStatus);
    }
    assert_eq!(
        upload.status(Err(net())),
        UploadStep::Done(UploadEnd::Later(net()))
    );
}

#[test]
fn progress_resets_the_cut_count() {
    let mut upload = BlobUpload::new(100 * CHUNK_BYTES, 0);
    for i in 1..=3 * MAX_CUTS as u64 {
        assert_eq!(upload.status(Err(net())), UploadStep::AskStatus);
        assert!(matches!(
            upload.status(held(i * CHUNK_BYTES)),
            UploadStep::Send { .. }
        ));
    }
}

#[test]
fn a_throttled_or_unauthorized_device_or_an_unwell_server_stops_at_once() {
    for e in [
        TransportError::RetryAfter {
            seconds: 30,
            message: "slow down".into(),
        },
        TransportError::Unauthorized {
            wipe: false,
            message: "no".into(),
            proof: None,
        },
        server(503, "blobs_unavailable"),
        server(500, "internal"),
    ] {
        let mut upload = BlobUpload::new(100, 0);
        assert_eq!(
            upload.status(Err(e.clone())),
            UploadStep::Done(UploadEnd::Later(e))
        );
    }
}

#[test]
fn a_cut_commit_asks_again_and_a_stored_blob_counts_as_uploaded() {
    let mut upload = BlobUpload::new(100, 0);
    assert_eq!(upload.status(held(100)), UploadStep::Commit);
    assert_eq!(upload.committed(Err(net())), UploadStep::AskStatus);
    let stored = Ok(UploadStatus {
        offset: 100,
        complete: true,
    });
    assert_eq!(upload.status(stored), UploadStep::Done(UploadEnd::Uploaded));
}
