//! The server's deadline rules arriving in sync: newer versions replace the phone's, are kept
//! across restarts and recompute every countdown; older or unusable ones change nothing.

use super::*;
use crate::rules::{RulesText, RulesUpdate};

const HOUR: Millis = 3_600_000;

fn route_within_hours(hours: u32) -> RulesText {
    RulesText {
        policy_toml: format!(
            "due_soon_fraction = 0.8\npause_during_extension = false\n\
             working_day_close = \"17:30\"\n\n[[rule]]\nstage = \"route\"\n\
             amount = {hours}\nunit = \"hours\"\nsource = \"test\"\n"
        ),
        ..RulesText::shipped()
    }
}

fn with_rules(version: u64, text: RulesText) -> SyncResponse {
    SyncResponse {
        rules: Some(RulesUpdate { version, text }),
        ..response()
    }
}

fn apply(phone: &Phone, response: &SyncResponse) -> SyncOutcome {
    let request = phone.build_request(T0, 50).unwrap();
    phone.apply_response(response, &request, T0).unwrap()
}

/// A case in the route stage since `T0`.
fn registered(phone: &Phone, id: &str) {
    phone
        .create_case(&new_case(id, "噪音", "330604101201"), None, T0)
        .unwrap();
    phone.act(id, &Action::Register, T0).unwrap();
}

fn due(phone: &Phone) -> Millis {
    phone.summary("c1").unwrap().unwrap().due_at.unwrap()
}

#[test]
fn newer_rules_from_the_server_recompute_the_countdowns_and_survive_a_restart() {
    let (_dir, path, phone) = open();
    registered(&phone, "c1");
    let shipped_due = due(&phone);
    assert_eq!(phone.build_request(T0, 50).unwrap().rules_version, 0);

    let outcome = apply(&phone, &with_rules(2, route_within_hours(2)));
    assert_eq!(outcome.rules_version, Some(2));
    assert!(outcome.changes().everything, "every list must refresh");
    assert_eq!(due(&phone), T0 + 2 * HOUR);
    assert_ne!(due(&phone), shipped_due);
    assert_eq!(phone.build_request(T0, 50).unwrap().rules_version, 2);

    drop(phone);
    let phone = Phone::open(&path, TOKEN, NONCE, None).unwrap();
    assert_eq!(phone.build_request(T0, 50).unwrap().rules_version, 2);
    // A case created after the restart counts down by the stored rules too.
    registered(&phone, "c2");
    let c2 = phone.summary("c2").unwrap().unwrap().due_at.unwrap();
    assert_eq!(c2, T0 + 2 * HOUR);
}

#[test]
fn older_or_unusable_rules_change_nothing() {
    let (_dir, _path, phone) = open();
    registered(&phone, "c1");
    apply(&phone, &with_rules(5, route_within_hours(2)));

    // An instance still on an older version cannot roll the phone back...
    let outcome = apply(&phone, &with_rules(4, route_within_hours(7)));
    assert_eq!(outcome.rules_version, None);
    assert_eq!(due(&phone), T0 + 2 * HOUR);
    // ...nor can the same version again, and text that does not parse is not applied.
    apply(&phone, &with_rules(5, route_within_hours(7)));
    let broken = RulesText {
        policy_toml: "due_soon_fraction = [".into(),
        ..RulesText::shipped()
    };
    let outcome = apply(&phone, &with_rules(6, broken));
    assert_eq!(outcome.rules_version, None);
    assert_eq!(due(&phone), T0 + 2 * HOUR);
    assert_eq!(phone.build_request(T0, 50).unwrap().rules_version, 5);
}
