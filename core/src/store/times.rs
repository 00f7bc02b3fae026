//! `event_times`: the trusted times the server vouched for, per case and event (and the case's
//! creation, `CREATED_KEY`), as the last sync response carried them. The lists' due instants,
//! the countdowns and the case screen read a case through [`vouched`], so after a sync a phone
//! shows the server's times whatever its own clock says; events the server has not vouched for
//! yet (made offline) take the offset measured at the last sync.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::{StoreError, meta};
use crate::model::{Case, Millis};
use crate::sync::CaseTimes;
use crate::sync::times::with_trusted_times;

/// Records what a response vouched for. The server never changes a time once set, so a time
/// already stored is replaced by the same value.
pub fn store(conn: &Connection, cases: &[CaseTimes]) -> Result<(), StoreError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO event_times (case_id, event_id, at) VALUES (?1, ?2, ?3)
         ON CONFLICT (case_id, event_id) DO UPDATE SET at = excluded.at",
    )?;
    for case in cases {
        for time in &case.times {
            insert.execute(params![case.case_id, time.event, time.at])?;
        }
    }
    Ok(())
}

/// The trusted times stored for a case.
pub fn load(conn: &Connection, case_id: &str) -> Result<HashMap<String, Millis>, StoreError> {
    let mut select =
        conn.prepare_cached("SELECT event_id, at FROM event_times WHERE case_id = ?1")?;
    let rows = select.query_map([case_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Forgets a case's times (the case left the phone).
pub fn delete(conn: &Connection, case_id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM event_times WHERE case_id = ?1")?
        .execute([case_id])?;
    Ok(())
}

/// The case with the server's times where it vouched for them, else the phone's own times
/// corrected by the last measured offset: what the phone shows and computes deadlines from.
pub fn vouched(conn: &Connection, case: &Case) -> Result<Case, StoreError> {
    let trusted = load(conn, &case.id)?;
    Ok(with_trusted_times(
        case,
        &trusted,
        meta::clock_offset(conn)?,
    ))
}

/// The phone's clock corrected by the last measured offset: "now" as the server would say it,
/// for countdowns and the overdue and due-soon lists.
pub fn server_now(conn: &Connection, device_now: Millis) -> Result<Millis, StoreError> {
    Ok(device_now.saturating_add(meta::clock_offset(conn)?))
}
