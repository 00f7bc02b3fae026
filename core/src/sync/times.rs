//! Times the server can vouch for, and how a phone shows them.
//!
//! A phone stamps every event with its own clock, which can be wrong by days or set on purpose.
//! The server replaces each new event's time, once, by a *trusted time* ([`trusted_time`]):
//! the device time corrected by the clock offset measured from the same request, then kept
//! within a causal window `[floor, received]`. The sync response carries those times
//! ([`CaseTimes`]); a phone shows them, and computes due instants from them, in place of its
//! own ([`with_trusted_times`]). For its own events the server has not vouched for yet, a phone
//! adds the offset it measured at its last sync, so its countdowns are already nearly the
//! server's while offline. Since protocol 5 the times travel as a [`block::TimesBlock`]:
//! relative to the times the phone's documents state, in a few bytes per event.

pub mod block;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::model::{Case, Millis};

/// The key under which a case's trusted creation time is kept beside its events' times.
pub const CREATED_KEY: &str = "created";

/// What the server knows about a device's clock when a request from it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceClock {
    /// Server time minus device time, measured from this request (`clock_offset`).
    pub offset: Millis,
    /// The causal lower bound of anything new in the request ([`causal_floor`]).
    pub floor: Millis,
}

/// The earliest instant an event first pushed in a request from a device can have happened,
/// as far as the server can vouch: the later of the device's enrolment and the moment the
/// server answered its previous sync.
///
/// Why this is sound: a device authors changes under its own actor only once enrolled, so
/// nothing it writes predates enrolment. Every sync carries all of the device's unacknowledged
/// changes; whatever the device had written when it built its previous request reached the
/// server then (and was vouched for then), unless that push was refused. What is new now was
/// therefore written after the previous sync — give or take that request's transit time and
/// changes the server refused before, which come out later than they were made, never
/// earlier. It also covers the state a change builds on: a device receives other people's
/// events only in sync responses, whose trusted times are at most that sync's time, so the
/// latest trusted time among a change's dependencies is never later than this floor (on a
/// device's first sync it has received nothing, so its changes build only on its own).
/// A device offline for a month can still date its events anywhere in that month; the server
/// cannot tell, and a tighter floor would misdate honest offline work.
pub fn causal_floor(enrolled_at: Millis, previous_sync: Option<Millis>) -> Millis {
    previous_sync.map_or(enrolled_at, |at| at.max(enrolled_at))
}

/// The time the server trusts for an event a device stamped `device_time`, pushed in a
/// request received at `received_at`: the device time corrected by the measured offset, no
/// earlier than the causal floor and no later than its arrival (an event cannot have happened
/// after the server received it). Where the floor lies after the arrival (a server clock
/// stepped back), the arrival wins. The one rule for every trusted time on the server.
pub fn trusted_time(device_time: Millis, clock: DeviceClock, received_at: Millis) -> Millis {
    device_time
        .saturating_add(clock.offset)
        .max(clock.floor)
        .min(received_at)
}

/// The trusted times the server holds for one case: its events' and its creation's
/// ([`CREATED_KEY`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseTimes {
    pub case_id: String,
    pub times: Vec<EventTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTime {
    /// A timeline event id, or [`CREATED_KEY`].
    pub event: String,
    pub at: Millis,
}

impl CaseTimes {
    /// The times of `case_id` from a map of them, in a stable order.
    pub fn from_map(case_id: &str, times: &HashMap<String, Millis>) -> CaseTimes {
        let mut times: Vec<EventTime> = times
            .iter()
            .map(|(event, at)| EventTime {
                event: event.clone(),
                at: *at,
            })
            .collect();
        times.sort_by(|a, b| a.event.cmp(&b.event));
        CaseTimes {
            case_id: case_id.to_owned(),
            times,
        }
    }
}

/// The case with every recorded device time replaced by the time the server vouched for
/// (`trusted` maps timeline event ids and [`CREATED_KEY`] to trusted instants); a time the
/// server has not vouched for yet is corrected by `offset` (a phone's last measured offset;
/// 0 on the server, which vouches for every event it stores). Used by the server's projection
/// and by the phone's lists, countdowns and case screen, so both compute from the same times.
pub fn with_trusted_times(case: &Case, trusted: &HashMap<String, Millis>, offset: Millis) -> Case {
    let vouched = |key: &str, at: Millis| {
        trusted
            .get(key)
            .copied()
            .unwrap_or_else(|| at.saturating_add(offset))
    };
    let mut case = case.clone();
    case.created_at = vouched(CREATED_KEY, case.created_at);
    for event in &mut case.timeline {
        event.at = vouched(&event.id, event.at);
    }
    case
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Millis = 86_400_000;
    const NOW: Millis = 1_790_000_000_000;

    /// The device last synced a week ago and its clock is right.
    fn honest() -> DeviceClock {
        DeviceClock {
            offset: 0,
            floor: NOW - 7 * DAY,
        }
    }

    #[test]
    fn normal_events_keep_their_corrected_time() {
        assert_eq!(trusted_time(NOW - DAY, honest(), NOW), NOW - DAY);
        // A clock two days behind, measured: corrected back to the real instant.
        let behind = DeviceClock {
            offset: 2 * DAY,
            ..honest()
        };
        assert_eq!(trusted_time(NOW - 3 * DAY, behind, NOW), NOW - DAY);
    }

    #[test]
    fn events_backdated_by_30_days_start_at_the_floor() {
        assert_eq!(trusted_time(NOW - 30 * DAY, honest(), NOW), NOW - 7 * DAY);
        // The same through a request whose device time claims a clock 30 days ahead.
        let ahead = DeviceClock {
            offset: -30 * DAY,
            ..honest()
        };
        assert_eq!(trusted_time(NOW - DAY, ahead, NOW), NOW - 7 * DAY);
        assert_eq!(trusted_time(Millis::MIN, ahead, NOW), NOW - 7 * DAY);
    }

    #[test]
    fn events_30_days_in_the_future_end_at_the_arrival() {
        assert_eq!(trusted_time(NOW + 30 * DAY, honest(), NOW), NOW);
        let behind = DeviceClock {
            offset: 30 * DAY,
            ..honest()
        };
        assert_eq!(trusted_time(NOW, behind, NOW), NOW);
        assert_eq!(trusted_time(Millis::MAX, behind, NOW), NOW);
    }

    #[test]
    fn a_floor_after_the_arrival_yields_the_arrival() {
        let clock = DeviceClock {
            offset: 0,
            floor: NOW + DAY,
        };
        assert_eq!(trusted_time(NOW - DAY, clock, NOW), NOW);
    }

    #[test]
    fn the_floor_is_the_previous_sync_or_the_enrolment() {
        assert_eq!(causal_floor(NOW - 9 * DAY, None), NOW - 9 * DAY);
        assert_eq!(causal_floor(NOW - 9 * DAY, Some(NOW - DAY)), NOW - DAY);
        // A last-seen before the enrolment (a re-enrolled id): the enrolment.
        assert_eq!(causal_floor(NOW - DAY, Some(NOW - 9 * DAY)), NOW - DAY);
    }

    #[test]
    fn unvouched_times_take_the_offset() {
        let case = sample_case(&["e1", "e2"]);
        let trusted = HashMap::from([(CREATED_KEY.to_owned(), 5), ("e1".to_owned(), 7)]);
        let shown = with_trusted_times(&case, &trusted, 1_000);
        assert_eq!(shown.created_at, 5);
        assert_eq!(shown.timeline[0].at, 7);
        // Not vouched for yet: its device time plus the last measured offset.
        assert_eq!(shown.timeline[1].at, 100 + 1_000);
        // Nothing else changes.
        assert_eq!(shown.timeline[1].id, "e2");
        assert_eq!(shown.title, case.title);
    }

    #[test]
    fn case_times_are_listed_in_a_stable_order() {
        let map = HashMap::from([("b".to_owned(), 2), ("a".to_owned(), 1)]);
        let times = CaseTimes::from_map("c", &map);
        assert_eq!(times.case_id, "c");
        let events: Vec<&str> = times.times.iter().map(|t| t.event.as_str()).collect();
        assert_eq!(events, ["a", "b"]);
    }

    fn sample_case(events: &[&str]) -> Case {
        use crate::lifecycle::Action;
        use crate::model::*;
        let author = Author {
            user: "u".into(),
            device: "d".into(),
            role: Role::GridWorker,
        };
        let timeline = events
            .iter()
            .map(|id| TimelineEvent {
                id: (*id).into(),
                action: Action::Register,
                from: Status::Draft,
                author: author.clone(),
                at: 100,
                conflicted: false,
            })
            .collect();
        Case {
            created_by: author,
            created_at: 50,
            ..crate::deadline::tests::case(Status::Registered, timeline)
        }
    }
}
