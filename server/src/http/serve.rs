//! Serving the router on a socket, with a header read timeout (issue 8.4). `axum::serve` sets
//! no hyper timer, so a client that sends its request line and headers a byte at a time holds
//! a connection (and a task) for as long as it likes. Here each connection's HTTP/1 headers
//! must arrive within `header_timeout`, or hyper closes it; the body's own deadline is the
//! `/v1/sync` handler's ([`super::AppState::body_timeout`]) and, for every route, the request
//! timeout layer.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Serves `router` on `listener` until `shutdown` completes, then lets open connections finish
/// their requests (at most `drain`).
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    // Shutdown: `stop` tells every connection to finish its request and close; each connection
    // task holds a `done` sender, so `all_done` ends when the last one has. (hyper-util's
    // `GracefulShutdown` does not take connections with upgrades, which WebSockets need.)
    let (stop, stopping) = watch::channel(false);
    let (done, mut all_done) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let mut builder = Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        // With upgrades: the automerge-repo endpoint is a WebSocket (`super::automerge_repo`).
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let (mut stopping, done) = (stopping.clone(), done.clone());
        tokio::spawn(async move {
            let _done = done;
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => Some(ended),
                _ = stopping.wait_for(|stop| *stop) => None,
            };
            let ended = match ended {
                Some(ended) => ended,
                None => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%remote, error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(done);
    if tokio::time::timeout(drain, all_done.recv()).await.is_err() {
        tracing::warn!("connections still open after the drain time; closing them");
    }
    Ok(())
}
