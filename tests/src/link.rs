//! A village link on loopback: a TCP proxy in front of the test server that adds latency, caps
//! the bandwidth and cuts every connection after a number of bytes each way, as a 2G/EDGE
//! link does. Threads, not async: each connection is two pumps.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// What the link does to traffic.
#[derive(Debug, Clone, Copy)]
pub struct LinkShape {
    /// Round-trip time added (half each way, once per burst of traffic).
    pub rtt: Duration,
    /// Bits per second each way.
    pub bits_per_second: u64,
    /// Bytes in either direction after which a connection is dropped (`None`: never).
    pub cut_after: Option<u64>,
}

/// A running proxy; stops accepting when dropped.
pub struct VillageLink {
    pub url: String,
    stop: Arc<AtomicBool>,
    /// Connections cut so far.
    pub cuts: Arc<AtomicU64>,
    /// Bytes the server sent through the link, cut responses included.
    pub bytes_down: Arc<AtomicU64>,
    /// Bytes the phone sent through the link (request lines and headers included).
    pub bytes_up: Arc<AtomicU64>,
    /// Connections accepted (each costs the phone a TCP handshake, one more round trip).
    pub connections: Arc<AtomicU64>,
}

impl VillageLink {
    /// Proxies to `server_url` (`http://127.0.0.1:port`).
    pub fn start(server_url: &str, shape: LinkShape) -> VillageLink {
        let upstream = server_url.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicU64::new(0));
        let bytes_down = Arc::new(AtomicU64::new(0));
        let bytes_up = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), connections.clone());
        let counters = Counters {
            cuts: cuts.clone(),
            up: bytes_up.clone(),
            down: bytes_down.clone(),
        };
        thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(&upstream) else {
                            continue;
                        };
                        n.fetch_add(1, Ordering::Relaxed);
                        connect(client, server, shape, counters.clone());
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        VillageLink {
            url,
            stop,
            cuts,
            bytes_down,
            bytes_up,
            connections,
        }
    }
}

/// The link's counters, shared by every connection's pumps.
#[derive(Clone)]
struct Counters {
    cuts: Arc<AtomicU64>,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl Drop for VillageLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn connect(client: TcpStream, server: TcpStream, shape: LinkShape, counters: Counters) {
    let _ = client.set_nonblocking(false);
    let (c2, s2) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    let (cuts, up) = (counters.cuts.clone(), counters.up);
    thread::spawn(move || pump(c2, s2, shape, cuts, up));
    thread::spawn(move || pump(server, client, shape, counters.cuts, counters.down));
}

/// Copies `from` to `to` in small chunks at the link's pace; closes both ends at the cut.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    shape: LinkShape,
    cuts: Arc<AtomicU64>,
    counted: Arc<AtomicU64>,
) {
    let mut buf = [0u8; 1024];
    let mut sent: u64 = 0;
    let mut last = Instant::now() - shape.rtt;
    let limit = shape.cut_after;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = match limit {
            Some(limit) if sent + n as u64 >= limit => (limit - sent) as usize,
            _ => n,
        };
        // Latency once per burst (the first chunk after a pause), bandwidth per chunk.
        if last.elapsed() > shape.rtt / 2 {
            thread::sleep(shape.rtt / 2);
        }
        thread::sleep(transfer_time(n, shape.bits_per_second));
        last = Instant::now();
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        counted.fetch_add(n as u64, Ordering::Relaxed);
        if limit.is_some_and(|l| sent >= l) {
            cuts.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

fn transfer_time(bytes: usize, bits_per_second: u64) -> Duration {
    Duration::from_micros(bytes as u64 * 8 * 1_000_000 / bits_per_second.max(1))
}
