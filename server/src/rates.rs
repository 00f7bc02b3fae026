//! The assessment rates (考核指标) of domain.md ("Supervision, reporting, audit"), defined once.
//!
//! Each case gets a row of [`CaseFacts`] (table `case_facts`), computed from its document and the
//! server-trusted event times in the same transaction as the document, like the `cases`
//! projection. A rate is then a numerator and a denominator, each a [`Cond`] over those facts
//! ([`RATES`]): the same conditions become SQL ([`Cond::sql`], run by each backend over the
//! indexed table, never loading a CRDT) and are evaluated in Rust ([`Cond::holds`], for the test
//! that recomputes the rates from the documents). Only the report's `now` enters at query time:
//! a stage whose clock ran out without the step counts as missed.
//!
//! Definitions (a case belongs to the period in which it was registered, by trusted time):
//! - 响应率: signed (签收) by the `sign` stage's deadline ÷ dispatched cases whose sign deadline
//!   passed or that were signed. The window is the policy's `sign` rules.
//! - 按时办结率: replied (答复, the handling unit's 办结) by the `handle` deadline, extensions
//!   included ÷ signed cases whose handle deadline passed or that replied. 超期率 is the rest.
//! - 办结率: closed ÷ dispatched. 退单率: returned (退单 approved) ÷ dispatched.
//! - 解决率, 满意率: over cases with a follow-up result (the latest one); 满意率 counts
//!   basically satisfied with the policy's weight k (`[rates] basically_satisfied_weight`).
//! - 重复件率: merged into a master case ÷ registered. 督办: cases with a supervision.

use std::collections::HashMap;

use gridcase_core::calendar::Calendar;
use gridcase_core::deadline::{DeadlineInput, due_at};
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{Case, Millis, Satisfaction, Status};
use gridcase_core::policy::PolicySet;
use gridcase_core::sync::times::with_trusted_times;
use serde::Serialize;

/// One row of `case_facts`: what the rates need to know about a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct CaseFacts {
    pub case_id: String,
    /// Trusted 受理 instant: decides the period.
    pub registered_at: Millis,
    pub area_code: String,
    pub category: String,
    pub unit: String,
    /// `CaseType::as_str` (咨询, 投诉, …): the report's totals by type.
    pub case_type: String,
    /// `Channel::as_str` (热线, 网格采集, …): the report's totals by channel.
    pub channel: String,
    pub dispatched_at: Option<Millis>,
    pub response_due_at: Option<Millis>,
    pub responded_at: Option<Millis>,
    pub handle_due_at: Option<Millis>,
    pub replied_at: Option<Millis>,
    pub closed_at: Option<Millis>,
    pub returned: bool,
    pub duplicate: bool,
    pub followed_up: bool,
    pub solved: bool,
    /// 2 satisfied, 1 basically satisfied, 0 dissatisfied; `None` without a follow-up.
    pub satisfaction: Option<i64>,
    pub supervised: bool,
}

/// A column of `case_facts` that conditions read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    DispatchedAt,
    ResponseDueAt,
    RespondedAt,
    HandleDueAt,
    RepliedAt,
    ClosedAt,
    Returned,
    Duplicate,
    FollowedUp,
    Solved,
    Satisfaction,
    Supervised,
}

impl Col {
    fn name(self) -> &'static str {
        match self {
            Col::DispatchedAt => "dispatched_at",
            Col::ResponseDueAt => "response_due_at",
            Col::RespondedAt => "responded_at",
            Col::HandleDueAt => "handle_due_at",
            Col::RepliedAt => "replied_at",
            Col::ClosedAt => "closed_at",
            Col::Returned => "returned",
            Col::Duplicate => "duplicate",
            Col::FollowedUp => "followed_up",
            Col::Solved => "solved",
            Col::Satisfaction => "satisfaction",
            Col::Supervised => "supervised",
        }
    }

    fn value(self, f: &CaseFacts) -> Option<i64> {
        let flag = |b: bool| Some(i64::from(b));
        match self {
            Col::DispatchedAt => f.dispatched_at,
            Col::ResponseDueAt => f.response_due_at,
            Col::RespondedAt => f.responded_at,
            Col::HandleDueAt => f.handle_due_at,
            Col::RepliedAt => f.replied_at,
            Col::ClosedAt => f.closed_at,
            Col::Returned => flag(f.returned),
            Col::Duplicate => flag(f.duplicate),
            Col::FollowedUp => flag(f.followed_up),
            Col::Solved => flag(f.solved),
            Col::Satisfaction => f.satisfaction,
            Col::Supervised => flag(f.supervised),
        }
    }
}

/// A condition on one case's facts, two-valued in SQL as in Rust (NULL never leaks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Always,
    Set(Col),
    Is(Col, i64),
    /// Both set and the first at or before the second.
    NoLater(Col, Col),
    /// Set and at or before the report's `now`.
    Passed(Col),
    Not(&'static Cond),
    All(&'static [Cond]),
    Any(&'static [Cond]),
}

impl Cond {
    /// The condition as an SQL boolean over `case_facts` (`now` is an integer, inlined).
    pub fn sql(&self, now: Millis) -> String {
        match self {
            Cond::Always => "1 = 1".into(),
            Cond::Set(c) => format!("{} IS NOT NULL", c.name()),
            Cond::Is(c, v) => format!("({0} IS NOT NULL AND {0} = {v})", c.name()),
            Cond::NoLater(a, b) => format!(
                "({0} IS NOT NULL AND {1} IS NOT NULL AND {0} <= {1})",
                a.name(),
                b.name()
            ),
            Cond::Passed(c) => format!("({0} IS NOT NULL AND {0} <= {now})", c.name()),
            Cond::Not(c) => format!("NOT ({})", c.sql(now)),
            Cond::All(cs) => join(cs, " AND ", now),
            Cond::Any(cs) => join(cs, " OR ", now),
        }
    }

    /// Whether the condition holds for `f` at `now`.
    pub fn holds(&self, f: &CaseFacts, now: Millis) -> bool {
        match self {
            Cond::Always => true,
            Cond::Set(c) => c.value(f).is_some(),
            Cond::Is(c, v) => c.value(f) == Some(*v),
            Cond::NoLater(a, b) => matches!((a.value(f), b.value(f)), (Some(x), Some(y)) if x <= y),
            Cond::Passed(c) => c.value(f).is_some_and(|at| at <= now),
            Cond::Not(c) => !c.holds(f, now),
            Cond::All(cs) => cs.iter().all(|c| c.holds(f, now)),
            Cond::Any(cs) => cs.iter().any(|c| c.holds(f, now)),
        }
    }
}

fn join(conds: &[Cond], op: &str, now: Millis) -> String {
    let parts: Vec<String> = conds.iter().map(|c| c.sql(now)).collect();
    format!("({})", parts.join(op))
}

/// How much a numerator term weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    One,
    /// The policy's k for 基本满意.
    BasicallySatisfied,
}

/// One rate: key, Chinese name, numerator terms and denominator.
#[derive(Debug)]
pub struct RateDef {
    pub key: &'static str,
    pub name: &'static str,
    pub numerator: &'static [(Weight, Cond)],
    pub denominator: Cond,
}

const RESPONSE_DUE: Cond = Cond::All(&[
    Cond::Set(Col::ResponseDueAt),
    Cond::Any(&[
        Cond::Set(Col::RespondedAt),
        Cond::Passed(Col::ResponseDueAt),
    ]),
]);
const HANDLE_DUE: Cond = Cond::All(&[
    Cond::Set(Col::HandleDueAt),
    Cond::Any(&[Cond::Set(Col::RepliedAt), Cond::Passed(Col::HandleDueAt)]),
]);
const ON_TIME: Cond = Cond::NoLater(Col::RepliedAt, Col::HandleDueAt);
const DISPATCHED: Cond = Cond::Set(Col::DispatchedAt);
const FOLLOWED_UP: Cond = Cond::Is(Col::FollowedUp, 1);

/// The rates, in report order. Every numerator term implies its denominator.
pub const RATES: &[RateDef] = &[
    RateDef {
        key: "response",
        name: "响应率",
        numerator: &[(
            Weight::One,
            Cond::NoLater(Col::RespondedAt, Col::ResponseDueAt),
        )],
        denominator: RESPONSE_DUE,
    },
    RateDef {
        key: "on_time",
        name: "按时办结率",
        numerator: &[(Weight::One, ON_TIME)],
        denominator: HANDLE_DUE,
    },
    RateDef {
        key: "completion",
        name: "办结率",
        numerator: &[(
            Weight::One,
            Cond::All(&[DISPATCHED, Cond::Set(Col::ClosedAt)]),
        )],
        denominator: DISPATCHED,
    },
    RateDef {
        key: "resolution",
        name: "解决率",
        numerator: &[(
            Weight::One,
            Cond::All(&[FOLLOWED_UP, Cond::Is(Col::Solved, 1)]),
        )],
        denominator: FOLLOWED_UP,
    },
    RateDef {
        key: "satisfaction",
        name: "满意率",
        numerator: &[
            (Weight::One, Cond::Is(Col::Satisfaction, 2)),
            (Weight::BasicallySatisfied, Cond::Is(Col::Satisfaction, 1)),
        ],
        denominator: FOLLOWED_UP,
    },
    RateDef {
        key: "return",
        name: "退单率",
        numerator: &[(
            Weight::One,
            Cond::All(&[DISPATCHED, Cond::Is(Col::Returned, 1)]),
        )],
        denominator: DISPATCHED,
    },
    RateDef {
        key: "overdue",
        name: "超期率",
        numerator: &[(Weight::One, Cond::All(&[HANDLE_DUE, Cond::Not(&ON_TIME)]))],
        denominator: HANDLE_DUE,
    },
    RateDef {
        key: "duplicate",
        name: "重复件率",
        numerator: &[(Weight::One, Cond::Is(Col::Duplicate, 1))],
        denominator: Cond::Always,
    },
    RateDef {
        key: "supervised",
        name: "督办件",
        numerator: &[(Weight::One, Cond::Is(Col::Supervised, 1))],
        denominator: Cond::Always,
    },
];

/// Every condition the rates count, in a fixed order: per rate, its denominator then its
/// numerator terms. The backends return one count per entry.
pub fn counted_conditions() -> Vec<&'static Cond> {
    RATES
        .iter()
        .flat_map(|r| std::iter::once(&r.denominator).chain(r.numerator.iter().map(|(_, c)| c)))
        .collect()
}

/// Which cases a report covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactFilter {
    /// Registered at or after (trusted time).
    pub from: Millis,
    /// Registered before.
    pub to: Millis,
    /// A prefix of the 12-digit area code (digits only; empty: everywhere).
    pub area: String,
    pub unit: Option<String>,
    pub category: Option<String>,
}

impl FactFilter {
    /// Refuses what could not be an area prefix or a period.
    pub fn check(&self) -> Result<(), String> {
        if self.area.len() > 12 || !self.area.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "area prefix must be up to 12 digits, got {:?}",
                self.area
            ));
        }
        if self.from >= self.to {
            return Err("the period is empty".into());
        }
        Ok(())
    }

    /// The WHERE clause over `case_facts`, with `ph(i)` spelling the i-th (1-based) parameter,
    /// and the parameters in order.
    pub fn sql(&self, ph: fn(usize) -> String) -> (String, Vec<String>) {
        let period = format!(
            "registered_at >= {} AND registered_at < {}",
            self.from, self.to
        );
        self.sql_over(period, ph)
    }

    /// [`FactFilter::sql`] with the period spelt as `period` (the rollup's days, say).
    pub fn sql_over(&self, period: String, ph: fn(usize) -> String) -> (String, Vec<String>) {
        let mut sql = period;
        let mut params = Vec::new();
        if !self.area.is_empty() {
            params.push(self.area.clone());
            sql += &format!(
                " AND substr(area_code, 1, {}) = {}",
                self.area.len(),
                ph(params.len())
            );
        }
        for (col, value) in [("unit", &self.unit), ("category", &self.category)] {
            if let Some(v) = value {
                params.push(v.clone());
                sql += &format!(" AND {col} = {}", ph(params.len()));
            }
        }
        (sql, params)
    }

    /// Whether `f` is covered (the Rust twin of [`FactFilter::sql`]).
    pub fn covers(&self, f: &CaseFacts) -> bool {
        f.registered_at >= self.from
            && f.registered_at < self.to
            && f.area_code.starts_with(&self.area)
            && self.unit.as_ref().is_none_or(|u| *u == f.unit)
            && self.category.as_ref().is_none_or(|c| *c == f.category)
    }
}

/// The SELECT a backend runs: one count per [`counted_conditions`] entry, then the case ids'
/// count is not needed (the `Always` denominators give it).
pub fn count_sql(
    filter: &FactFilter,
    now: Millis,
    ph: fn(usize) -> String,
) -> (String, Vec<String>) {
    let (filter_sql, params) = filter.sql(ph);
    (
        format!(
            "SELECT {} FROM case_facts WHERE {filter_sql}",
            count_columns(now).join(", ")
        ),
        params,
    )
}

/// One SQL aggregate per [`counted_conditions`] entry (a 64-bit count on both backends).
pub fn count_columns(now: Millis) -> Vec<String> {
    counted_conditions()
        .iter()
        .map(|c| {
            format!(
                "COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0)",
                c.sql(now)
            )
        })
        .collect()
}

/// The condition of the rate `key`'s first numerator term (the cases it counts), for lists
/// that must agree with the rate: the overdue cases are those 超期率 counts.
pub fn numerator_condition(key: &str) -> Option<&'static Cond> {
    RATES
        .iter()
        .find(|r| r.key == key)
        .and_then(|r| r.numerator.first())
        .map(|(_, c)| c)
}

/// The counts of [`counted_conditions`] over `facts` (the recomputation's side).
pub fn count_in(facts: &[CaseFacts], filter: &FactFilter, now: Millis) -> Vec<i64> {
    let conds = counted_conditions();
    let mut counts = vec![0i64; conds.len()];
    for f in facts.iter().filter(|f| filter.covers(f)) {
        for (n, c) in counts.iter_mut().zip(&conds) {
            *n += i64::from(c.holds(f, now));
        }
    }
    counts
}

/// One rate of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rate {
    pub key: &'static str,
    pub name: &'static str,
    pub numerator: f64,
    pub denominator: i64,
    /// `None` when the denominator is 0.
    pub rate: Option<f64>,
}

/// Turns the counts of [`counted_conditions`] into rates with the policy's weights.
pub fn rates_from_counts(counts: &[i64], policy: &PolicySet) -> Vec<Rate> {
    let mut next = counts.iter().copied();
    RATES
        .iter()
        .map(|def| {
            let denominator = next.next().unwrap_or(0);
            let numerator: f64 = def
                .numerator
                .iter()
                .map(|(w, _)| {
                    let k = match w {
                        Weight::One => 1.0,
                        Weight::BasicallySatisfied => policy.rates.basically_satisfied_weight,
                    };
                    k * next.next().unwrap_or(0) as f64
                })
                .sum();
            Rate {
                key: def.key,
                name: def.name,
                numerator,
                denominator,
                rate: (denominator > 0).then(|| numerator / denominator as f64),
            }
        })
        .collect()
}

impl CaseFacts {
    /// The facts of `case` with trusted times (see the module docs for what each means).
    pub fn of(
        case: &Case,
        trusted: &HashMap<String, Millis>,
        policy: &PolicySet,
        calendar: &Calendar,
    ) -> CaseFacts {
        let case = with_trusted_times(case, trusted, 0);
        let events: Vec<_> = case.timeline.iter().filter(|e| !e.conflicted).collect();
        let first =
            |pred: fn(&Action) -> bool| events.iter().find(|e| pred(&e.action)).map(|e| e.at);
        let dispatched_at = first(|a| matches!(a, Action::Dispatch { .. }));
        let responded_at = first(|a| matches!(a, Action::Sign));
        let base = DeadlineInput::from_case(&case);
        let stage_due = |status: Status, start: Option<Millis>| {
            let start = start?;
            let input = DeadlineInput {
                status,
                stage_started_at: start,
                extension_pending: false,
                extension_requested_at: None,
                ..base.clone()
            };
            due_at(&input, policy, calendar).map(|d| d.due_at)
        };
        let follow_up = case.follow_up.as_ref();
        CaseFacts {
            case_id: case.id.clone(),
            registered_at: case.created_at,
            area_code: case.location.area_code.clone(),
            category: case.category.clone(),
            unit: case.responsible_unit.clone(),
            case_type: case.case_type.as_str().to_owned(),
            channel: case.channel.as_str().to_owned(),
            dispatched_at,
            response_due_at: stage_due(Status::Dispatched, dispatched_at),
            responded_at,
            handle_due_at: stage_due(Status::Signed, responded_at),
            replied_at: first(|a| matches!(a, Action::Reply { .. })),
            closed_at: (case.status == Status::Closed)
                .then(|| {
                    events
                        .iter()
                        .rev()
                        .find(|e| matches!(e.action, Action::Close))
                })
                .flatten()
                .map(|e| e.at),
            returned: events
                .iter()
                .any(|e| matches!(e.action, Action::ApproveReturn)),
            duplicate: case.status == Status::Merged || case.merged_into.is_some(),
            followed_up: follow_up.is_some(),
            solved: follow_up.is_some_and(|f| f.solved),
            satisfaction: follow_up.map(|f| match f.satisfaction {
                Satisfaction::Satisfied => 2,
                Satisfaction::BasicallySatisfied => 1,
                Satisfaction::Dissatisfied => 0,
            }),
            supervised: !case.supervisions.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_and_rust_agree_on_missing_values() {
        let f = CaseFacts::default();
        for c in counted_conditions() {
            // Nothing set: only `Always` and negations of unset comparisons hold.
            let sql = c.sql(0);
            assert!(!sql.contains("NULL =") && !sql.is_empty());
            let _ = c.holds(&f, 0);
        }
        assert!(!ON_TIME.holds(&f, 0));
        assert!(!RESPONSE_DUE.holds(&f, 0));
    }

    #[test]
    fn satisfaction_weighs_basically_satisfied_by_k() {
        let mut policy = PolicySet::default();
        policy.rates.basically_satisfied_weight = 0.5;
        let facts: Vec<CaseFacts> = [Some(2), Some(1), Some(0), None]
            .into_iter()
            .map(|s| CaseFacts {
                registered_at: 5,
                followed_up: s.is_some(),
                satisfaction: s,
                ..CaseFacts::default()
            })
            .collect();
        let filter = FactFilter {
            from: 0,
            to: 10,
            ..FactFilter::default()
        };
        let rates = rates_from_counts(&count_in(&facts, &filter, 0), &policy);
        let sat = rates.iter().find(|r| r.key == "satisfaction").unwrap();
        assert_eq!((sat.numerator, sat.denominator), (1.5, 3));
    }

    #[test]
    fn bad_filters_are_refused() {
        let ok = FactFilter {
            from: 0,
            to: 1,
            area: "3306".into(),
            ..FactFilter::default()
        };
        assert!(ok.check().is_ok());
        for area in ["33x6", "3306041012011", "'; DROP"] {
            let f = FactFilter {
                area: area.into(),
                ..ok.clone()
            };
            assert!(f.check().is_err(), "{area}");
        }
        assert!(FactFilter { to: 0, ..ok }.check().is_err());
    }
}
