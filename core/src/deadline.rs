//! The deadline engine: given a case's current stage, when it started, the policy and the holiday
//! calendar, when is the stage due and how far along is it. Pure functions of their arguments
//! (`now` included), so the server's checks and a phone's offline countdown agree.
//!
//! The server should build a [`DeadlineInput`] from its own projection with server-trusted times
//! (a phone's clock can be off by days); [`DeadlineInput::from_case`] reads the times recorded in
//! the case, which is what a phone has offline. [`due_at`] gives the instant alone, for storing in
//! a projection and scanning by index; [`evaluate_input`] adds the progress against `now`.
//!
//! Decisions:
//! - Granted extension days (延期) lengthen the `handle` stage only: as working days for
//!   working-day rules, as calendar days for `calendar_days`, and as 24 hours per day for
//!   `hours`/`minutes` rules. `Case::extension_days` is the total of all grants on the case.
//! - With `pause_during_extension`, the clock stops from the request until the decision: the due
//!   instant moves later by the time stopped in this stage, and while a request is still pending
//!   progress is reported as at the request instant (never turning overdue meanwhile), with
//!   `paused` set. Once the request is decided the stored due instant must be recomputed.
//! - Equally specific rules tie and the earliest due instant wins (see `policy`).

use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, Reckoned, to_china_time, to_millis};
use crate::lifecycle::Action;
use crate::model::{Case, CaseType, Millis, Status, Urgency};
use crate::policy::{Limit, PolicySet, Stage, Subject, Unit};

/// A bound on granted extension days the engine will count, so corrupt data cannot make the day
/// arithmetic run for ages. Far above anything the lifecycle allows in practice.
pub const MAX_COUNTED_EXTENSION_DAYS: u32 = 3660;

const HOUR_MS: i64 = 3_600_000;

/// Everything the engine needs to know about a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineInput {
    pub case_type: CaseType,
    pub urgency: Urgency,
    /// The epidemic/safety priority flag.
    pub priority: bool,
    pub area_code: String,
    pub status: Status,
    /// When the case entered its current stage (not merely its current status: signing and
    /// starting work are both in the `handle` stage, which runs from the signing).
    pub stage_started_at: Millis,
    /// Total extension days granted.
    pub extension_days: u32,
    pub extension_pending: bool,
    /// When the pending extension was requested (or the stage started, if later). Only used when
    /// the policy pauses clocks during extension requests.
    pub extension_requested_at: Option<Millis>,
    /// Time this stage's clock already stood still for extension requests decided since it
    /// started. Only used when the policy pauses clocks.
    pub paused_ms: i64,
}

impl DeadlineInput {
    /// Reads the input from a case, with the times its authors' devices recorded.
    pub fn from_case(case: &Case) -> DeadlineInput {
        let stage_started_at = stage_since(case);
        let mut paused_ms = 0i64;
        let mut pending_since: Option<Millis> = None;
        for event in case.timeline.iter().filter(|e| !e.conflicted) {
            match event.action {
                Action::RequestExtension { .. } => {
                    pending_since = Some(event.at.max(stage_started_at));
                }
                Action::GrantExtension { .. } | Action::DenyExtension { .. } => {
                    if let Some(since) = pending_since.take() {
                        paused_ms += (event.at - since).max(0);
                    }
                }
                _ => {}
            }
        }
        let extension_requested_at = if case.extension_pending {
            Some(pending_since.unwrap_or(stage_started_at))
        } else {
            None
        };
        DeadlineInput {
            case_type: case.case_type,
            urgency: case.urgency,
            priority: case.priority,
            area_code: case.location.area_code.clone(),
            status: case.status,
            stage_started_at,
            extension_days: case.extension_days,
            extension_pending: case.extension_pending,
            extension_requested_at,
            paused_ms,
        }
    }

    fn subject(&self) -> Subject<'_> {
        Subject {
            case_type: self.case_type,
            urgency: self.urgency,
            priority: self.priority,
            area_code: &self.area_code,
        }
    }
}

/// When the case entered its current stage: walking the timeline back from the end, the earliest
/// of the trailing state changes that all lead into the current stage. Falls back to
/// [`Case::status_since`].
fn stage_since(case: &Case) -> Millis {
    let mut since = case.status_since();
    let Some(stage) = Stage::for_status(case.status) else {
        return since;
    };
    let changes = case
        .timeline
        .iter()
        .rev()
        .filter(|e| !e.conflicted)
        .filter_map(|e| e.action.target_status(e.from).map(|to| (to, e.at)));
    for (to, at) in changes {
        if Stage::for_status(to) != Some(stage) {
            break;
        }
        since = at;
    }
    since
}

/// A stage's due instant, without reference to `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    pub stage: Stage,
    pub started_at: Millis,
    pub due_at: Millis,
    /// The computation relied on a year without holiday data.
    pub provisional: bool,
    /// The limit of the rule that set the due instant, before extensions.
    pub limit: Limit,
    /// The line of that rule in the policy file.
    pub rule_line: usize,
}

/// The due instant of the case's current stage, or `None` when no clock runs (draft, final
/// states, no matching rule, or an instant outside chrono's range).
pub fn due_at(input: &DeadlineInput, policy: &PolicySet, calendar: &Calendar) -> Option<Due> {
    let stage = Stage::for_status(input.status)?;
    let extension = if stage == Stage::Handle {
        input.extension_days.min(MAX_COUNTED_EXTENSION_DAYS)
    } else {
        0
    };
    let start = input.stage_started_at;
    let mut best: Option<Due> = None;
    for rule in policy.most_specific(stage, &input.subject()) {
        let Some(due) = apply(rule.limit, extension, start, policy, calendar) else {
            continue;
        };
        if best.as_ref().is_none_or(|b| due.value < b.due_at) {
            best = Some(Due {
                stage,
                started_at: start,
                due_at: due.value,
                provisional: due.provisional,
                limit: rule.limit,
                rule_line: rule.line,
            });
        }
    }
    let mut due = best?;
    if policy.pause_during_extension {
        due.due_at = due.due_at.saturating_add(input.paused_ms.max(0));
    }
    Some(due)
}

/// `start` plus `limit` and `extension_days`, in UTC milliseconds.
fn apply(
    limit: Limit,
    extension_days: u32,
    start: Millis,
    policy: &PolicySet,
    calendar: &Calendar,
) -> Option<Reckoned<Millis>> {
    let china = to_china_time(start)?;
    let exact = |ms: i64| Reckoned {
        value: start.saturating_add(ms),
        provisional: false,
    };
    let extension_ms = i64::from(extension_days) * 24 * HOUR_MS;
    let days = limit.amount + extension_days;
    Some(match limit.unit {
        Unit::Minutes => exact(i64::from(limit.amount) * 60_000 + extension_ms),
        Unit::Hours => exact(i64::from(limit.amount) * HOUR_MS + extension_ms),
        Unit::CalendarDays => Reckoned {
            value: to_millis(Calendar::add_calendar_days(china, days)),
            provisional: false,
        },
        Unit::WorkingDays => {
            let r = calendar.add_working_days(china, days);
            Reckoned {
                value: to_millis(r.value),
                provisional: r.provisional,
            }
        }
        Unit::WorkingDayClose => {
            let r = calendar.working_day_close(china, days, policy.working_day_close);
            Reckoned {
                value: to_millis(r.value),
                provisional: r.provisional,
            }
        }
    })
}

/// Green, yellow (预警) or red (超期).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineState {
    OnTime,
    DueSoon,
    Overdue,
}

/// Where a case stands against its current stage's deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadlineStatus {
    pub stage: Stage,
    pub started_at: Millis,
    pub due_at: Millis,
    /// Negative when overdue.
    pub remaining_ms: i64,
    /// Share of the stage's time used; above 1 when overdue, 0 if `now` is before the start.
    pub fraction_used: f64,
    pub state: DeadlineState,
    /// A year without holiday data was crossed; the due date may move when it is loaded.
    pub provisional: bool,
    /// The clock stands still for a pending extension request (policy `pause_during_extension`).
    pub paused: bool,
    /// [`Calendar::version`] of the calendar used, to store with the due date.
    pub calendar_version: String,
    pub limit: Limit,
}

/// Evaluates a case as its replica records it. `None` when no clock runs.
pub fn evaluate(
    case: &Case,
    policy: &PolicySet,
    calendar: &Calendar,
    now: Millis,
) -> Option<DeadlineStatus> {
    evaluate_input(&DeadlineInput::from_case(case), policy, calendar, now)
}

/// Whether the stage's clock stands still: a pending extension request under a policy that
/// pauses for it. The one rule the phone's and the server's projections and
/// [`evaluate_input`] share.
pub fn clock_paused(input: &DeadlineInput, policy: &PolicySet) -> bool {
    policy.pause_during_extension && input.extension_pending
}

/// Evaluates an input (e.g. built by the server with trusted times) at `now`.
pub fn evaluate_input(
    input: &DeadlineInput,
    policy: &PolicySet,
    calendar: &Calendar,
    now: Millis,
) -> Option<DeadlineStatus> {
    let due = due_at(input, policy, calendar)?;
    let paused = clock_paused(input, policy);
    let at = match (paused, input.extension_requested_at) {
        (true, Some(since)) => now.min(since.max(due.started_at)),
        _ => now,
    };
    let remaining_ms = due.due_at.saturating_sub(at);
    let total = due.due_at.saturating_sub(due.started_at);
    let elapsed = at.saturating_sub(due.started_at).max(0);
    let fraction_used = if total > 0 {
        elapsed as f64 / total as f64
    } else if remaining_ms < 0 {
        1.0
    } else {
        0.0
    };
    let state = if remaining_ms < 0 {
        DeadlineState::Overdue
    } else if fraction_used >= policy.due_soon_fraction {
        DeadlineState::DueSoon
    } else {
        DeadlineState::OnTime
    };
    Some(DeadlineStatus {
        stage: due.stage,
        started_at: due.started_at,
        due_at: due.due_at,
        remaining_ms,
        fraction_used,
        state,
        provisional: due.provisional,
        paused,
        calendar_version: calendar.version(),
        limit: due.limit,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lifecycle::Action;
    use crate::model::{Author, Channel, Location, Role, TimelineEvent};
    use chrono::DateTime;
    use proptest::prelude::*;

    /// A China-time instant as UTC millis.
    fn cst(text: &str) -> Millis {
        DateTime::parse_from_rfc3339(&format!("{text}+08:00"))
            .unwrap()
            .timestamp_millis()
    }

    fn input(case_type: CaseType, status: Status, started: &str) -> DeadlineInput {
        DeadlineInput {
            case_type,
            urgency: Urgency::General,
            priority: false,
            area_code: "330604101201".into(),
            status,
            stage_started_at: cst(started),
            extension_days: 0,
            extension_pending: false,
            extension_requested_at: None,
            paused_ms: 0,
        }
    }

    fn due(input: &DeadlineInput) -> Due {
        due_at(input, &PolicySet::default(), &Calendar::embedded()).unwrap()
    }

    fn eval(input: &DeadlineInput, now: Millis) -> DeadlineStatus {
        evaluate_input(input, &PolicySet::default(), &Calendar::embedded(), now).unwrap()
    }

    #[test]
    fn complaint_registered_friday_skips_weekends() {
        // Friday 2025-03-07: 15 working days are 03-10..14, 17..21, 24..28.
        let i = input(
            CaseType::Complaint,
            Status::InProgress,
            "2025-03-07T16:00:00",
        );
        let d = due(&i);
        assert_eq!(d.due_at, cst("2025-03-29T00:00:00"));
        assert_eq!(d.stage, Stage::Handle);
        assert!(!d.provisional);
        // An inquiry (2 working days) from the same Friday: Monday and Tuesday.
        let i = input(CaseType::Inquiry, Status::Signed, "2025-03-07T16:00:00");
        assert_eq!(due(&i).due_at, cst("2025-03-12T00:00:00"));
    }

    #[test]
    fn national_day_2025_is_skipped_and_saturday_1011_worked() {
        // From Tuesday 09-30: 10-01..=10-08 off, so Thursday 10-09 and Friday 10-10.
        let mut i = input(CaseType::Inquiry, Status::InProgress, "2025-09-30T10:00:00");
        assert_eq!(due(&i).due_at, cst("2025-10-11T00:00:00"));
        // One extension day counts as a working day: the worked Saturday 10-11.
        i.extension_days = 1;
        assert_eq!(due(&i).due_at, cst("2025-10-12T00:00:00"));
    }

    #[test]
    fn adjusted_working_sunday_counts() {
        // Routing (1 working day) from Saturday 2025-01-25: Sunday 01-26 is worked (调休).
        let i = input(
            CaseType::Complaint,
            Status::Registered,
            "2025-01-25T09:00:00",
        );
        let d = due(&i);
        assert_eq!(d.stage, Stage::Route);
        assert_eq!(d.due_at, cst("2025-01-27T00:00:00"));
    }

    #[test]
    fn due_soon_at_80_percent_then_overdue() {
        let mut i = input(
            CaseType::Complaint,
            Status::InProgress,
            "2025-03-10T09:00:00",
        );
        i.urgency = Urgency::Urgent; // 2 hours
        let start = i.stage_started_at;
        let minute = 60_000;
        let s = eval(&i, start + 95 * minute);
        assert_eq!(s.state, DeadlineState::OnTime);
        let s = eval(&i, start + 96 * minute);
        assert_eq!(s.state, DeadlineState::DueSoon);
        assert!((s.fraction_used - 0.8).abs() < 1e-9);
        assert_eq!(s.remaining_ms, 24 * minute);
        let s = eval(&i, start + 120 * minute);
        assert_eq!(s.state, DeadlineState::DueSoon);
        assert_eq!(s.remaining_ms, 0);
        let s = eval(&i, start + 121 * minute);
        assert_eq!(s.state, DeadlineState::Overdue);
        assert_eq!(s.remaining_ms, -minute);
        assert!(s.fraction_used > 1.0);
        // A phone whose clock reads before the start shows no progress.
        assert_eq!(eval(&i, start - minute).fraction_used, 0.0);
    }

    #[test]
    fn due_date_in_2027_is_provisional() {
        let i = input(
            CaseType::Complaint,
            Status::InProgress,
            "2026-12-20T10:00:00",
        );
        let s = eval(&i, i.stage_started_at);
        assert!(s.provisional);
        assert!(s.calendar_version.starts_with("holiday-cn:2020-2026:"));
        let i = input(
            CaseType::Complaint,
            Status::InProgress,
            "2026-03-02T10:00:00",
        );
        assert!(!eval(&i, i.stage_started_at).provisional);
    }

    #[test]
    fn sign_same_working_day() {
        // Dispatched Monday 16:00: sign by 17:30 the same day.
        let i = input(
            CaseType::Complaint,
            Status::Dispatched,
            "2025-03-10T16:00:00",
        );
        assert_eq!(due(&i).due_at, cst("2025-03-10T17:30:00"));
        // After hours: by the next working day's close.
        let i = input(
            CaseType::Complaint,
            Status::Dispatched,
            "2025-03-10T19:00:00",
        );
        assert_eq!(due(&i).due_at, cst("2025-03-11T17:30:00"));
        // During the National Day holiday: the first working day after it.
        let i = input(
            CaseType::Complaint,
            Status::Dispatched,
            "2025-10-03T09:00:00",
        );
        assert_eq!(due(&i).due_at, cst("2025-10-09T17:30:00"));
        // Urgent: one hour, day or night.
        let mut i = input(
            CaseType::Complaint,
            Status::Dispatched,
            "2025-03-10T19:00:00",
        );
        i.urgency = Urgency::Urgent;
        assert_eq!(due(&i).due_at, cst("2025-03-10T20:00:00"));
    }

    #[test]
    fn most_specific_rule_wins_and_ties_take_the_earliest() {
        // Priority complaint: "priority: 24 hours" ties with "complaint: 15 working days".
        let mut i = input(
            CaseType::Complaint,
            Status::InProgress,
            "2025-03-10T09:00:00",
        );
        i.priority = true;
        assert_eq!(due(&i).due_at, cst("2025-03-11T09:00:00"));
        // Priority routing: 30 minutes beats the 1-working-day fallback.
        i.status = Status::Registered;
        assert_eq!(due(&i).due_at, cst("2025-03-10T09:30:00"));
        // A township rule with two conditions beats the one-condition type rule.
        let text = format!(
            "{}\n[[rule]]\nstage = \"handle\"\narea = \"330604101\"\ncase_type = \"complaint\"\n\
             amount = 5\nunit = \"working_days\"\n",
            include_str!("../data/default-policy.toml")
        );
        let policy = PolicySet::from_toml(&text).unwrap();
        let i = input(
            CaseType::Complaint,
            Status::InProgress,
            "2025-03-10T09:00:00",
        );
        let d = due_at(&i, &policy, &Calendar::embedded()).unwrap();
        assert_eq!(d.due_at, cst("2025-03-18T00:00:00"));
        assert_eq!(d.limit.amount, 5);
        let mut elsewhere = i.clone();
        elsewhere.area_code = "110101001001".into();
        let d = due_at(&elsewhere, &policy, &Calendar::embedded()).unwrap();
        assert_eq!(d.limit.amount, 15);
    }

    #[test]
    fn petition_runs_calendar_days_and_extensions_add_calendar_days() {
        let mut i = input(
            CaseType::Petition,
            Status::InProgress,
            "2025-09-30T10:00:00",
        );
        assert_eq!(due(&i).due_at, cst("2025-11-30T00:00:00"));
        i.extension_days = 30;
        assert_eq!(due(&i).due_at, cst("2025-12-30T00:00:00"));
        // Extensions only lengthen the handle stage.
        i.status = Status::Registered;
        assert_eq!(due(&i).due_at, cst("2025-10-16T00:00:00"));
    }

    #[test]
    fn no_clock_for_draft_or_final_states() {
        for status in [
            Status::Draft,
            Status::Closed,
            Status::NotAccepted,
            Status::Merged,
        ] {
            let i = input(CaseType::Complaint, status, "2025-03-10T09:00:00");
            assert!(due_at(&i, &PolicySet::default(), &Calendar::embedded()).is_none());
        }
        // Returned orders route again.
        let i = input(CaseType::Complaint, Status::Returned, "2025-03-10T09:00:00");
        assert_eq!(due(&i).stage, Stage::Route);
    }

    #[test]
    fn pending_extension_pauses_only_when_the_policy_says_so() {
        let mut i = input(
            CaseType::Complaint,
            Status::InProgress,
            "2025-03-10T09:00:00",
        );
        i.urgency = Urgency::Urgent; // 2 hours: due 11:00
        i.extension_pending = true;
        i.extension_requested_at = Some(cst("2025-03-10T10:00:00"));
        let late = cst("2025-03-10T15:00:00");
        assert_eq!(eval(&i, late).state, DeadlineState::Overdue);

        let policy = PolicySet {
            pause_during_extension: true,
            ..PolicySet::default()
        };
        let cal = Calendar::embedded();
        let s = evaluate_input(&i, &policy, &cal, late).unwrap();
        assert!(s.paused);
        assert_eq!(s.state, DeadlineState::OnTime);
        assert_eq!(s.remaining_ms, HOUR_MS);
        assert!((s.fraction_used - 0.5).abs() < 1e-9);
        // Decided after 3 hours stopped: the due instant moves by 3 hours.
        i.extension_pending = false;
        i.extension_requested_at = None;
        i.paused_ms = 3 * HOUR_MS;
        let s = evaluate_input(&i, &policy, &cal, late).unwrap();
        assert_eq!(s.due_at, cst("2025-03-10T14:00:00"));
        assert_eq!(s.state, DeadlineState::Overdue);
        assert!(!s.paused);
    }

    fn event(action: Action, from: Status, at: Millis) -> TimelineEvent {
        TimelineEvent {
            id: format!("{}-{at}", action.name()),
            action,
            from,
            author: author(),
            at,
            conflicted: false,
        }
    }

    fn author() -> Author {
        Author {
            user: "u".into(),
            device: "d".into(),
            role: Role::TownshipStaff,
        }
    }

    /// A case in `status` with `timeline` (also the fixture of other modules' tests).
    pub(crate) fn case(status: Status, timeline: Vec<TimelineEvent>) -> Case {
        Case {
            id: "c1".into(),
            schema_version: 1,
            number: "1".into(),
            channel: Channel::Hotline,
            case_type: CaseType::Inquiry,
            category: "water".into(),
            urgency: Urgency::General,
            priority: false,
            title: "t".into(),
            description: String::new(),
            location: Location {
                address: String::new(),
                area_code: "330604101201".into(),
                gps: None,
            },
            responsible_unit: String::new(),
            assignee: String::new(),
            status,
            needs_review: false,
            extension_pending: false,
            extension_days: 0,
            merged_into: None,
            related: Vec::new(),
            follow_up: None,
            supervisions: Vec::new(),
            timeline,
            notes: Vec::new(),
            attachments: Vec::new(),
            created_by: author(),
            created_at: cst("2025-03-06T08:00:00"),
        }
    }

    #[test]
    fn from_case_starts_handle_at_signing_and_measures_pauses() {
        let timeline = vec![
            event(Action::Register, Status::Draft, cst("2025-03-06T09:00:00")),
            event(
                Action::Dispatch {
                    unit: "water".into(),
                    assignee: String::new(),
                },
                Status::Registered,
                cst("2025-03-06T10:00:00"),
            ),
            event(Action::Sign, Status::Dispatched, cst("2025-03-07T09:00:00")),
            event(
                Action::RequestExtension {
                    days: 2,
                    reason: "parts".into(),
                },
                Status::Signed,
                cst("2025-03-07T10:00:00"),
            ),
            event(
                Action::GrantExtension { days: 2 },
                Status::Signed,
                cst("2025-03-07T12:00:00"),
            ),
            event(Action::Start, Status::Signed, cst("2025-03-10T09:00:00")),
        ];
        let mut c = case(Status::InProgress, timeline);
        c.extension_days = 2;
        let i = DeadlineInput::from_case(&c);
        assert_eq!(c.status_since(), cst("2025-03-10T09:00:00"));
        assert_eq!(i.stage_started_at, cst("2025-03-07T09:00:00"));
        assert_eq!(i.paused_ms, 2 * HOUR_MS);
        assert_eq!(i.extension_requested_at, None);
        // Inquiry 2 + 2 extension working days from Friday 03-07: due end of Thursday 03-13.
        let s = evaluate(
            &c,
            &PolicySet::default(),
            &Calendar::embedded(),
            cst("2025-03-10T09:00:00"),
        )
        .unwrap();
        assert_eq!(s.due_at, cst("2025-03-14T00:00:00"));
        assert_eq!(s.state, DeadlineState::OnTime);

        // A reply rejected in review reopens the case: the handle clock restarts at the reopening.
        let mut timeline = c.timeline.clone();
        timeline.push(event(
            Action::Reply {
                text: "done".into(),
            },
            Status::InProgress,
            cst("2025-03-11T09:00:00"),
        ));
        timeline.push(event(
            Action::Reject {
                reason: "no".into(),
            },
            Status::Replied,
            cst("2025-03-12T09:00:00"),
        ));
        let reopened = case(Status::Reopened, timeline);
        assert_eq!(
            DeadlineInput::from_case(&reopened).stage_started_at,
            cst("2025-03-12T09:00:00")
        );
        // A fresh draft runs no clock.
        let draft = case(Status::Draft, Vec::new());
        assert!(evaluate(&draft, &PolicySet::default(), &Calendar::embedded(), 0).is_none());
    }

    proptest! {
        #[test]
        fn due_at_is_monotonic_and_after_start(
            a in cst("2019-06-01T00:00:00")..cst("2027-06-01T00:00:00"),
            gap in 0i64..(40 * 24 * HOUR_MS),
            type_index in 0usize..CaseType::ALL.len(),
            status_index in 0usize..Status::ALL.len(),
            urgent in any::<bool>(),
            priority in any::<bool>(),
            extension_days in 0u32..40,
        ) {
            let policy = PolicySet::default();
            let cal = Calendar::embedded();
            let mut i = input(CaseType::ALL[type_index], Status::ALL[status_index], "2025-01-01T00:00:00");
            i.urgency = if urgent { Urgency::Urgent } else { Urgency::General };
            i.priority = priority;
            i.extension_days = extension_days;
            i.stage_started_at = a;
            let first = due_at(&i, &policy, &cal);
            i.stage_started_at = a + gap;
            let second = due_at(&i, &policy, &cal);
            prop_assert_eq!(first.is_some(), second.is_some());
            if let (Some(first), Some(second)) = (first, second) {
                prop_assert!(first.due_at > a);
                prop_assert!(second.due_at > a + gap);
                prop_assert!(first.due_at <= second.due_at);
            }
        }
    }
}
