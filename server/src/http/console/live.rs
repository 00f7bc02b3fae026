//! `GET /console/api/events`: server-sent events (`event: cases`) telling an open console page
//! that cases changed, so its overview and lists redraw without a reload. The stream looks at
//! the change feed's head every [`AppState::live_poll`] (one indexed read; it works the same
//! when several server processes share a database, where an in-process signal would miss the
//! others' commits). It carries no case data: the page fetches what it shows through the usual
//! routes, under its role and jurisdiction. The stream ends when the admin's token or session
//! stops working (signed out, expired, disabled).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use gridcase_core::model::Millis;

use super::super::auth::{Admin, request_token};
use super::super::{AppError, AppState, Clock};
use crate::store::{Store, StoreError};

/// How often a stream looks for changes by default.
pub const LIVE_POLL: Duration = Duration::from_secs(2);

/// What one stream needs between looks.
struct Watch {
    store: Arc<Store>,
    clock: Clock,
    token: String,
    every: Duration,
    head: Option<i64>,
}

/// The feed head, if the token still authenticates an admin at `now`; `None` ends the stream.
fn look(store: &Store, token: &str, now: Millis) -> Option<Option<i64>> {
    match store.authenticate_admin(token, now) {
        Ok(Some(_)) => Some(store.db().read().and_then(|mut v| v.feed_head()).ok()),
        Ok(None) => None,
        // A database hiccup is not a sign-out: try again at the next look.
        Err(_) => Some(None),
    }
}

impl Watch {
    /// Waits until the feed moves (`Some`) or the admin is gone (`None`).
    async fn next_change(mut self) -> Option<(Result<Event, Infallible>, Watch)> {
        loop {
            tokio::time::sleep(self.every).await;
            let (store, token, now) = (self.store.clone(), self.token.clone(), (self.clock)());
            let looked = tokio::task::spawn_blocking(move || look(&store, &token, now))
                .await
                .ok()?;
            match looked? {
                Some(head) if self.head != Some(head) => {
                    self.head = Some(head);
                    let event = Event::default().event("cases").data("changed");
                    return Some((Ok(event), self));
                }
                _ => {}
            }
        }
    }
}

pub(super) async fn events(
    Admin(_): Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let token = request_token(&headers).ok_or(AppError::Unauthorized)?;
    let store = state.store.clone();
    let head = tokio::task::spawn_blocking(move || store.db().read()?.feed_head())
        .await?
        .map_err(StoreError::from)?;
    let watch = Watch {
        store: state.store.clone(),
        clock: state.clock.clone(),
        token,
        every: state.live_poll,
        head: Some(head),
    };
    let stream = futures_util::stream::unfold(watch, Watch::next_change);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
