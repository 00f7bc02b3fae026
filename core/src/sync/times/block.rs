//! Trusted times in few bytes (protocol 5): [`TimesBlock`].
//!
//! [`CaseTimes`] names each event by its Automerge object id (`"<counter>@<actor hex>"`, about
//! 40 bytes) and gives its time in absolute milliseconds (six bytes of varint, their low digits
//! incompressible): at 1,000 demo cases, a quarter of a restore's bytes. Yet the phone already
//! holds the time each event states (`TimelineEvent::at`, `Case::created_at`, the device
//! clock's), and the server's trusted time is that time corrected by the device's measured
//! offset and clamped ([`super::trusted_time`]): for a phone with a right clock, the same
//! value. So the block sends each time as its difference from the stated one (almost always
//! 0, one byte), and each event id as its counter and an index into the response's table of
//! actors (a few devices per page). The server keeps the stated time beside the trusted one
//! when it first vouches for an event, so it never loads a document to build the block; a
//! time stored before it kept the stated one goes as an exact instant.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{CREATED_KEY, CaseTimes, EventTime};
use crate::model::{Case, Millis};

/// The trusted times of a response's cases, compactly (`SyncResponse::compact_times`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimesBlock {
    /// The actors (hex) of the object ids named in `cases`.
    pub actors: Vec<String>,
    pub cases: Vec<BlockCase>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCase {
    pub case_id: String,
    pub times: Vec<BlockTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockTime {
    pub event: EventKey,
    pub at: At,
}

/// Which event a time belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKey {
    /// The case's creation ([`CREATED_KEY`]).
    Created,
    /// A timeline event whose id is the object id `"<counter>@<actors[actor]>"`.
    Object { actor: u32, counter: u64 },
    /// Any other id, spelled out.
    Other(String),
}

/// A trusted time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum At {
    /// The event's stated time plus this (wrapping, so any pair of times round-trips).
    Stated(Millis),
    /// This instant (the server does not know the stated time).
    Exact(Millis),
}

/// A trusted time the server holds, with the time the event stated when it was vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTime {
    pub event: String,
    pub at: Millis,
    /// `None` for a time stored before the server kept stated times.
    pub stated: Option<Millis>,
}

/// A block naming something it does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the trusted times of case {case_id} are damaged: {message}")]
pub struct DamagedTimes {
    pub case_id: String,
    pub message: String,
}

/// Builds a response's block, one case at a time.
#[derive(Debug, Default)]
pub struct BlockBuilder {
    block: TimesBlock,
    actor_index: HashMap<String, u32>,
}

impl BlockBuilder {
    /// Adds a case's times (in a stable order: by event id, as [`CaseTimes::from_map`]).
    pub fn add(&mut self, case_id: &str, mut times: Vec<StoredTime>) {
        times.sort_by(|a, b| a.event.cmp(&b.event));
        let times = times
            .into_iter()
            .map(|t| BlockTime {
                event: self.key(&t.event),
                at: match t.stated {
                    Some(stated) => At::Stated(t.at.wrapping_sub(stated)),
                    None => At::Exact(t.at),
                },
            })
            .collect();
        self.block.cases.push(BlockCase {
            case_id: case_id.to_owned(),
            times,
        });
    }

    pub fn finish(self) -> TimesBlock {
        self.block
    }

    fn key(&mut self, event: &str) -> EventKey {
        if event == CREATED_KEY {
            return EventKey::Created;
        }
        let Some((counter, actor)) = split_object_id(event) else {
            return EventKey::Other(event.to_owned());
        };
        let next = self.block.actors.len() as u32;
        let actor = *self.actor_index.entry(actor.to_owned()).or_insert_with(|| {
            self.block.actors.push(actor.to_owned());
            next
        });
        EventKey::Object { actor, counter }
    }
}

/// `"<counter>@<actor>"` as its parts, when spelled exactly so (the counter's canonical
/// decimal, so that joining the parts again gives back the same id).
fn split_object_id(id: &str) -> Option<(u64, &str)> {
    let (counter, actor) = id.split_once('@')?;
    let parsed: u64 = counter.parse().ok()?;
    (parsed.to_string() == counter && !actor.is_empty()).then_some((parsed, actor))
}

/// A case's times as received, event ids spelled out, waiting for the case they are relative
/// to ([`PendingTimes::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTimes {
    pub case_id: String,
    pub times: Vec<(String, At)>,
}

impl TimesBlock {
    /// Spells out every event id; an actor index outside the table is an error.
    pub fn into_pending(self) -> Result<Vec<PendingTimes>, DamagedTimes> {
        let actors = self.actors;
        self.cases
            .into_iter()
            .map(|case| {
                let times = case
                    .times
                    .into_iter()
                    .map(|t| Ok((event_id(&actors, t.event, &case.case_id)?, t.at)))
                    .collect::<Result<_, DamagedTimes>>()?;
                Ok(PendingTimes {
                    case_id: case.case_id,
                    times,
                })
            })
            .collect()
    }
}

fn event_id(actors: &[String], key: EventKey, case_id: &str) -> Result<String, DamagedTimes> {
    Ok(match key {
        EventKey::Created => CREATED_KEY.to_owned(),
        EventKey::Other(id) => id,
        EventKey::Object { actor, counter } => {
            let actor = actors.get(actor as usize).ok_or_else(|| DamagedTimes {
                case_id: case_id.to_owned(),
                message: format!("actor {actor} of {} named", actors.len()),
            })?;
            format!("{counter}@{actor}")
        }
    })
}

impl PendingTimes {
    /// The trusted times, with each relative one added to the time `case` states for its
    /// event. A relative time whose event the case does not hold (it cannot be placed) is
    /// left out: the phone shows its own time for that event, corrected by its offset.
    pub fn resolve(&self, case: &Case) -> CaseTimes {
        let stated: HashMap<&str, Millis> = std::iter::once((CREATED_KEY, case.created_at))
            .chain(case.timeline.iter().map(|e| (e.id.as_str(), e.at)))
            .collect();
        let times = self
            .times
            .iter()
            .filter_map(|(event, at)| {
                let at = match *at {
                    At::Exact(at) => at,
                    At::Stated(delta) => stated.get(event.as_str())?.wrapping_add(delta),
                };
                Some(EventTime {
                    event: event.clone(),
                    at,
                })
            })
            .collect();
        CaseTimes {
            case_id: self.case_id.clone(),
            times,
        }
    }
}

#[cfg(test)]
mod tests;
