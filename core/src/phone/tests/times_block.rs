//! Trusted times arriving as a protocol-5 block (`crate::sync::times::block`): placed against
//! the times the phone's document states, shown on the case screen; a damaged block refuses
//! the page and stores nothing.

use super::*;
use crate::sync::times::block::{At, BlockCase, BlockTime, EventKey, TimesBlock};

/// A page sending the server's case `s1` whole, with `block`.
fn page_with(server: &mut CaseDoc, block: TimesBlock) -> SyncResponse {
    SyncResponse {
        docs: vec![DocUpdate {
            doc_id: "s1".into(),
            payload: Payload::Snapshot(server.save()),
            heads: raw(&server.heads()),
        }],
        compact_times: Some(block),
        ..response()
    }
}

/// The event id `id` as the block names it.
fn key(block: &mut TimesBlock, id: &str) -> EventKey {
    let (counter, actor) = id.split_once('@').unwrap();
    block.actors.push(actor.to_owned());
    EventKey::Object {
        actor: (block.actors.len() - 1) as u32,
        counter: counter.parse().unwrap(),
    }
}

#[test]
fn a_times_block_shows_the_servers_times() {
    let (_dir, _path, phone) = open();
    let mut server = server_case("s1", "路灯不亮");
    let stated = server.read().unwrap();
    let register = stated.timeline[0].id.clone();
    let mut block = TimesBlock::default();
    let event = key(&mut block, &register);
    block.cases.push(BlockCase {
        case_id: "s1".into(),
        times: vec![
            BlockTime {
                event: EventKey::Created,
                at: At::Stated(-99),
            },
            BlockTime {
                event,
                at: At::Exact(T0 + 7_000),
            },
            // An event this document does not hold: nothing to place it against.
            BlockTime {
                event: EventKey::Other("9@ff".into()),
                at: At::Stated(5),
            },
        ],
    });
    let request = phone.build_request(T0, 50).unwrap();
    assert!(request.compact_times);
    phone
        .apply_response(&page_with(&mut server, block), &request, T0 + 1)
        .unwrap();
    let shown = phone.get_case("s1").unwrap().case;
    assert_eq!(shown.created_at, stated.created_at - 99);
    assert_eq!(shown.timeline[0].at, T0 + 7_000);
    let stored = crate::store::times::load(phone.app().conn(), "s1").unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
}

#[test]
fn a_damaged_times_block_stores_nothing() {
    let (_dir, _path, phone) = open();
    let mut server = server_case("s1", "路灯不亮");
    let request = phone.build_request(T0, 50).unwrap();
    let before = dump(phone.app().conn(), &[]);
    let block = TimesBlock {
        actors: vec![],
        cases: vec![BlockCase {
            case_id: "s1".into(),
            times: vec![BlockTime {
                event: EventKey::Object {
                    actor: 0,
                    counter: 3,
                },
                at: At::Stated(0),
            }],
        }],
    };
    let err = phone
        .apply_response(&page_with(&mut server, block), &request, T0 + 1)
        .unwrap_err();
    assert_eq!(err.code(), "bad_data");
    assert!(
        err.to_string().contains("trusted times of case s1"),
        "{err}"
    );
    assert_eq!(dump(phone.app().conn(), &[LAST_ERROR_KEY]), before);
    assert!(phone.summary("s1").unwrap().is_none());
}
