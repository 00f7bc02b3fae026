//! `GET /v1/automerge-repo?token=<device token>`: the automerge-repo WebSocket endpoint
//! (issue 14; the protocol is `crate::amrepo`). The token rides in the query because the
//! browser's WebSocket API cannot set headers. The upgrade is always accepted: automerge-repo
//! 2.5's Node client crashes when an upgrade is refused, so a bad or revoked token gets an
//! `error` message and a clean close instead, before any document.
//!
//! The shell around [`Session`]: frames in, the session's answers out, database work on
//! blocking threads. Live updates: like the console's event stream (`console::live`), the
//! connection looks at the change feed's head every [`AppState::live_poll`] (one indexed read,
//! right for several server processes sharing a database) and, when it moved, asks the
//! session what each open document's client now lacks. Each look also authenticates the token
//! again, so a revoked device or a changed scope takes effect within one poll.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::{Method, Uri};
use axum::response::Response;
use serde::Deserialize;

use super::AppState;
use super::routes::Routes;
use crate::amrepo::Scoped;
use crate::amrepo::session::{Closing, Session, Step};
use crate::amrepo::wire::{self, Message};
use crate::store::{Auth, DeviceCtx, StoreError};

/// Largest frame accepted from a client: a sync message without changes is hashes and a Bloom
/// filter (kilobytes); `limits::decode_catch_up` bounds what it may cost beyond that.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

pub(super) fn routes(routes: Routes) -> Routes {
    routes.add(Method::GET, "/v1/automerge-repo", connect)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn connect(upgrade: WebSocketUpgrade, uri: Uri, State(state): State<AppState>) -> Response {
    // Parsed here, not by an extractor: a malformed query still gets the upgrade and a close.
    let query = Query::<TokenQuery>::try_from_uri(&uri).ok();
    let token = query.and_then(|Query(q)| q.token).unwrap_or_default();
    let me = format!("gridcase-{:016x}", rand::random::<u64>());
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| run(socket, state, token, me))
}

/// The device behind `token` now, if it is enrolled and not revoked.
async fn device_of(state: &AppState, token: &str) -> Result<Option<DeviceCtx>, StoreError> {
    let (store, token) = (state.store.clone(), token.to_owned());
    let auth = tokio::task::spawn_blocking(move || store.authenticate(&token))
        .await
        .map_err(|e| StoreError::Invalid(e.to_string()))??;
    Ok(match auth {
        Auth::Device(device) => Some(device),
        Auth::Unknown | Auth::Revoked => None,
    })
}

async fn feed_head(state: &AppState) -> Option<i64> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.db().read().and_then(|mut v| v.feed_head()).ok())
        .await
        .ok()
        .flatten()
}

/// Sends an `error` message and closes the socket.
async fn close(mut socket: WebSocket, me: &str, why: &str) {
    let error = Message::Error {
        sender: me.to_owned(),
        target: String::new(),
        message: why.to_owned(),
    };
    let _ = socket
        .send(Frame::Binary(wire::encode(&error).into()))
        .await;
    let frame = CloseFrame {
        code: close_code::POLICY,
        reason: why.into(),
    };
    let _ = socket.send(Frame::Close(Some(frame))).await;
}

async fn run(socket: WebSocket, state: AppState, token: String, me: String) {
    match device_of(&state, &token).await {
        Ok(Some(device)) => serve(socket, state, token, device, me).await,
        Ok(None) => close(socket, &me, "unauthorized").await,
        Err(e) => {
            tracing::warn!(error = %e, "automerge-repo: authentication failed");
            close(socket, &me, "the server cannot answer now").await;
        }
    }
}

/// One step of the session on a blocking thread (it reads documents).
async fn step(
    state: &AppState,
    device: &DeviceCtx,
    session: Session,
    work: impl FnOnce(&mut Session, &mut Scoped) -> crate::store::Result<Step> + Send + 'static,
) -> (Session, Step) {
    let mut docs = Scoped {
        store: state.store.clone(),
        scope: device.scope(),
    };
    let mut session = session;
    let outcome = tokio::task::spawn_blocking(move || {
        let step = work(&mut session, &mut docs);
        (session, step)
    })
    .await;
    match outcome {
        Ok((session, Ok(step))) => (session, step),
        Ok((session, Err(e))) => {
            tracing::warn!(error = %e, "automerge-repo: database error");
            (session, Err(Closing("the server cannot answer now".into())))
        }
        Err(e) => panic!("automerge-repo session task: {e}"),
    }
}

/// What the connection does next.
enum Next {
    Frame(Option<Result<Frame, axum::Error>>),
    Look,
}

async fn serve(
    mut socket: WebSocket,
    state: AppState,
    token: String,
    device: DeviceCtx,
    me: String,
) {
    let mut device = device;
    let mut session = Session::new(me.clone());
    let mut head = feed_head(&state).await;
    let mut looks = tokio::time::interval(state.live_poll.max(Duration::from_millis(50)));
    looks.tick().await;
    loop {
        let next = tokio::select! {
            frame = socket.recv() => Next::Frame(frame),
            _ = looks.tick() => Next::Look,
        };
        let outcome = match next {
            Next::Frame(Some(Ok(Frame::Binary(bytes)))) => match wire::decode(&bytes) {
                Ok(message) => {
                    let (s, step) = step(&state, &device, session, move |session, docs| {
                        session.receive(message, docs)
                    })
                    .await;
                    session = s;
                    step
                }
                Err(e) => Err(Closing(format!("malformed message: {e}"))),
            },
            Next::Frame(Some(Ok(Frame::Text(_)))) => {
                Err(Closing("messages are binary CBOR".into()))
            }
            Next::Frame(Some(Ok(Frame::Ping(_) | Frame::Pong(_)))) => Ok(Vec::new()),
            Next::Frame(_) => return,
            Next::Look => match device_of(&state, &token).await {
                Ok(Some(now)) => {
                    device = now;
                    let moved = feed_head(&state).await;
                    if moved.is_none() || moved == head {
                        continue;
                    }
                    head = moved;
                    let (s, step) = step(&state, &device, session, |session, docs| {
                        Ok(Ok(session.refresh(docs)?))
                    })
                    .await;
                    session = s;
                    step
                }
                Ok(None) => Err(Closing("unauthorized".into())),
                // A database hiccup is not a revocation: look again next time.
                Err(_) => continue,
            },
        };
        match outcome {
            Ok(messages) => {
                for message in messages {
                    if socket
                        .send(Frame::Binary(wire::encode(&message).into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Err(Closing(why)) => {
                tracing::info!(device = device.device_id, why, "automerge-repo: closing");
                return close(socket, &me, &why).await;
            }
        }
    }
}
