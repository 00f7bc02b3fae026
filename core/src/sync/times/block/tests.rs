use proptest::prelude::*;

use super::*;
use crate::lifecycle::Action;
use crate::model::*;

/// A case holding `events` (id and stated time), created at `created`.
fn case_with(created: Millis, events: &[(String, Millis)]) -> Case {
    let author = Author {
        user: "u".into(),
        device: "d".into(),
        role: Role::GridWorker,
    };
    let timeline = events
        .iter()
        .map(|(id, at)| TimelineEvent {
            id: id.clone(),
            action: Action::Register,
            from: Status::Draft,
            author: author.clone(),
            at: *at,
            conflicted: false,
        })
        .collect();
    Case {
        created_at: created,
        ..crate::deadline::tests::case(Status::Registered, timeline)
    }
}

/// What a phone makes of `block` for `case` after it crossed the wire.
fn received(block: TimesBlock, case: &Case) -> Vec<CaseTimes> {
    let bytes = postcard::to_allocvec(&block).unwrap();
    let block: TimesBlock = postcard::from_bytes(&bytes).unwrap();
    block
        .into_pending()
        .unwrap()
        .iter()
        .map(|p| p.resolve(case))
        .collect()
}

/// An event id: mostly object ids of a few actors, sometimes another spelling.
fn event_id() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (0u64..100_000, 0usize..3).prop_map(|(counter, actor)| {
            format!("{counter}@{}", ["a1b2c3d4e5f60718", "ffee", "0123456789abcdef"][actor])
        }),
        1 => "[a-z0-9@-]{1,12}",
        1 => (0u64..100).prop_map(|n| format!("0{n}@ab")),
    ]
}

/// A stored time: any trusted time, stated far from it or close (or the same), or unknown.
fn stored(event: String) -> impl Strategy<Value = StoredTime> {
    (
        any::<Millis>(),
        prop_oneof![Just(0i64), -5_000i64..5_000, any::<i64>()],
        proptest::bool::weighted(0.8),
    )
        .prop_map(move |(at, shift, known)| StoredTime {
            event: event.clone(),
            at,
            stated: known.then(|| at.wrapping_sub(shift)),
        })
}

fn case_times() -> impl Strategy<Value = (Vec<StoredTime>, Vec<bool>)> {
    proptest::collection::btree_set(event_id(), 0..12).prop_flat_map(|events| {
        let times: Vec<_> = std::iter::once(CREATED_KEY.to_owned())
            .chain(events.into_iter().filter(|e| e != CREATED_KEY))
            .map(stored)
            .collect();
        let n = times.len();
        (
            times,
            proptest::collection::vec(proptest::bool::weighted(0.85), n),
        )
    })
}

proptest! {
    /// Whatever the times (any instants, clamped far from what the events state, unknown
    /// stated times), in any order, and whichever events the phone's case lacks: the phone
    /// gets exactly the times `CaseTimes` would have carried, less the relative ones it cannot
    /// place.
    #[test]
    fn the_block_round_trips(
        (times, held) in case_times(),
        order in any::<proptest::sample::Index>(),
    ) {
        let stated = |t: &StoredTime| t.stated.unwrap_or(7);
        let created = times.iter().find(|t| t.event == CREATED_KEY).map(stated).unwrap();
        let events: Vec<(String, Millis)> = times
            .iter()
            .zip(&held)
            .filter(|(t, held)| **held && t.event != CREATED_KEY)
            .map(|(t, _)| (t.event.clone(), stated(t)))
            .collect();
        let case = case_with(created, &events);
        let placed = |t: &StoredTime| {
            t.stated.is_none() || t.event == CREATED_KEY || events.iter().any(|(e, _)| *e == t.event)
        };
        let expected: HashMap<String, Millis> =
            times.iter().filter(|t| placed(t)).map(|t| (t.event.clone(), t.at)).collect();

        let mut shuffled = times.clone();
        shuffled.rotate_left(order.index(times.len()));
        let mut builder = BlockBuilder::default();
        builder.add("c1", shuffled);
        let got = received(builder.finish(), &case);
        prop_assert_eq!(got, vec![CaseTimes::from_map("c1", &expected)]);
    }

    /// Whatever bytes arrive as a block, decoding and spelling it out return a value or an
    /// error; they never panic.
    #[test]
    fn arbitrary_blocks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(block) = postcard::from_bytes::<TimesBlock>(&bytes)
            && let Ok(pending) = block.into_pending()
        {
            let case = case_with(0, &[]);
            for p in &pending {
                let _ = p.resolve(&case);
            }
        }
    }
}

/// `n` events of one device whose clock is right, a day apart.
fn honest_times(n: i64) -> Vec<StoredTime> {
    let actor = "6f1d2c3b4a5968778695a4b3c2d1e0f1";
    (0..n)
        .map(|i| StoredTime {
            event: format!("{}@{actor}", 40 + i * 17),
            at: 1_790_000_000_000 + i * 86_400_123,
            stated: Some(1_790_000_000_000 + i * 86_400_123),
        })
        .collect()
}

#[test]
fn an_honest_clock_costs_five_bytes_per_event() {
    let size = |n: i64| {
        let mut builder = BlockBuilder::default();
        builder.add("3306041012010001", honest_times(n));
        postcard::to_allocvec(&builder.finish()).unwrap().len()
    };
    // Per event: key tag, actor index, counter, time tag and a zero difference.
    assert_eq!(size(6) - size(1), 5 * 5);
    let listed = |n: i64| {
        let times = honest_times(n);
        let map = times.iter().map(|t| (t.event.clone(), t.at)).collect();
        postcard::to_allocvec(&CaseTimes::from_map("3306041012010001", &map))
            .unwrap()
            .len()
    };
    // The list spelled out the id (about 36 bytes) and the instant (6 bytes) of each.
    assert_eq!(listed(6) - listed(1), 212);
}

#[test]
fn a_damaged_actor_index_is_a_clear_error() {
    let block = TimesBlock {
        actors: vec!["ab".into()],
        cases: vec![BlockCase {
            case_id: "c9".into(),
            times: vec![BlockTime {
                event: EventKey::Object {
                    actor: 3,
                    counter: 1,
                },
                at: At::Stated(0),
            }],
        }],
    };
    let err = block.into_pending().unwrap_err();
    assert_eq!(err.case_id, "c9");
    assert!(
        err.to_string()
            .contains("trusted times of case c9 are damaged"),
        "{err}"
    );
}

#[test]
fn ids_that_do_not_rejoin_are_spelled_out() {
    let mut builder = BlockBuilder::default();
    let time = |event: &str| StoredTime {
        event: event.into(),
        at: 1,
        stated: None,
    };
    builder.add(
        "c",
        vec![time("007@ab"), time("5@"), time("x"), time("5@ab")],
    );
    let block = builder.finish();
    assert_eq!(block.actors, ["ab"]);
    let keys: Vec<&EventKey> = block.cases[0].times.iter().map(|t| &t.event).collect();
    assert_eq!(
        keys,
        [
            &EventKey::Other("007@ab".into()),
            &EventKey::Other("5@".into()),
            &EventKey::Object {
                actor: 0,
                counter: 5
            },
            &EventKey::Other("x".into()),
        ]
    );
}
