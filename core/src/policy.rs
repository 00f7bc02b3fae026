//! The deadline policy (时限): how long each stage of a case may take, per case type, urgency,
//! priority flag and area. Deployments change these numbers, so they live in a TOML file an admin
//! edits (`core/data/default-policy.toml` is the shipped default and documents every number's
//! source); this module parses and validates it and picks the rule for a case. Computing the
//! instant is `deadline`'s job.
//!
//! # Choosing a rule
//!
//! A rule names a stage and optionally `case_type`, `urgency`, `priority` and `area` (a prefix of
//! the 12-digit area code). Among the rules whose conditions all hold, the most specific wins:
//! first the one with the most conditions, then the one with the longer area prefix. When several
//! are equally specific (an urgent complaint matches both "urgent: 2 hours" and "complaint: 15
//! working days") the stricter one wins: `deadline` computes each and keeps the earliest due
//! instant. Two rules with identical conditions are rejected as an editing mistake. A stage that
//! no rule matches runs no clock.
//!
//! Errors name the line of the file, because the person reading them is an admin with a text
//! editor, not a developer.

use std::fmt;

use chrono::NaiveTime;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::model::{CaseType, Status, Urgency};

mod reports;
pub use reports::ReportsPolicy;

/// The shipped default policy, see [`PolicySet::default`].
pub const DEFAULT_POLICY: &str = include_str!("../data/default-policy.toml");

macro_rules! keyword_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling used in policy files and on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// Hand-written so that a typo reads "unknown stage `hadle`, expected one of …".
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $name::parse(&text).ok_or_else(|| {
                    let expected: Vec<String> =
                        $name::ALL.iter().map(|v| format!("`{v}`")).collect();
                    serde::de::Error::custom(format!(
                        "unknown {} `{}`, expected one of {}",
                        $what,
                        text,
                        expected.join(", ")
                    ))
                })
            }
        }
    };
}

keyword_enum!(
    /// A stretch of the lifecycle that runs one clock.
    Stage, "stage" {
        /// Registered (受理) or returned, waiting to be dispatched (派单/交办).
        Route = "route",
        /// Dispatched, waiting to be signed for (签收).
        Sign = "sign",
        /// Signed, in progress or reopened (重办), until replied (答复).
        Handle = "handle",
        /// Replied, waiting for review (审核).
        Review = "review",
        /// Reviewed, waiting for the follow-up visit (回访).
        FollowUp = "follow_up",
        /// Followed up, waiting for closure (办结).
        Close = "close",
        /// A return (退单) was requested, waiting for the centre to decide.
        ReturnReview = "return_review",
    }
);

keyword_enum!(
    /// How a rule's `amount` is counted. See `Calendar` for the day-counting conventions.
    Unit, "unit" {
        /// Elapsed minutes, day or night.
        Minutes = "minutes",
        /// Elapsed hours, day or night.
        Hours = "hours",
        /// Calendar days: the start day is not counted; due 24:00 China time of the last day.
        CalendarDays = "calendar_days",
        /// Working days: the start day is not counted; due 24:00 China time of the last one.
        WorkingDays = "working_days",
        /// Close of business (`working_day_close`) of the working day `amount` working days after
        /// the one the stage started in; an arrival after hours or on a day off starts on the
        /// next working day. `amount = 0` is "the same working day" (当日).
        WorkingDayClose = "working_day_close",
    }
);

impl Stage {
    /// The clock that runs while a case is in `status`. No clock runs for drafts (not yet
    /// registered: the 受理 instant starts the first clock) or for final states (closed, not
    /// accepted, merged into a master case). A returned order runs `route` again: it must be
    /// dispatched anew.
    pub fn for_status(status: Status) -> Option<Stage> {
        Some(match status {
            Status::Registered | Status::Returned => Stage::Route,
            Status::Dispatched => Stage::Sign,
            Status::Signed | Status::InProgress | Status::Reopened => Stage::Handle,
            Status::Replied => Stage::Review,
            Status::Reviewed => Stage::FollowUp,
            Status::FollowedUp => Stage::Close,
            Status::ReturnRequested => Stage::ReturnReview,
            Status::Draft | Status::Closed | Status::NotAccepted | Status::Merged => return None,
        })
    }
}

/// How long a stage may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub amount: u32,
    pub unit: Unit,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.unit)
    }
}

/// One rule of the policy, as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub stage: Stage,
    pub case_type: Option<CaseType>,
    pub urgency: Option<Urgency>,
    pub priority: Option<bool>,
    /// A prefix of the 12-digit area code (a jurisdiction).
    pub area: Option<String>,
    pub limit: Limit,
    /// Where the number comes from (a seed, a regulation); shown to users who ask "why".
    pub source: Option<String>,
    /// The line of the `[[rule]]` header in the policy file, for messages.
    pub line: usize,
}

/// The facts about a case that rules match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    pub case_type: CaseType,
    pub urgency: Urgency,
    pub priority: bool,
    pub area_code: &'a str,
}

impl Rule {
    pub fn matches(&self, stage: Stage, subject: &Subject<'_>) -> bool {
        self.stage == stage
            && self.case_type.is_none_or(|t| t == subject.case_type)
            && self.urgency.is_none_or(|u| u == subject.urgency)
            && self.priority.is_none_or(|p| p == subject.priority)
            && self
                .area
                .as_deref()
                .is_none_or(|a| subject.area_code.starts_with(a))
    }

    /// Higher is more specific: number of conditions, then area prefix length.
    pub fn specificity(&self) -> (usize, usize) {
        let conditions = usize::from(self.case_type.is_some())
            + usize::from(self.urgency.is_some())
            + usize::from(self.priority.is_some())
            + usize::from(self.area.is_some());
        (conditions, self.area.as_ref().map_or(0, String::len))
    }

    fn conditions(
        &self,
    ) -> (
        Stage,
        Option<CaseType>,
        Option<Urgency>,
        Option<bool>,
        Option<&str>,
    ) {
        (
            self.stage,
            self.case_type,
            self.urgency,
            self.priority,
            self.area.as_deref(),
        )
    }
}

/// A validated deadline policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySet {
    /// A stage that has used at least this share of its time is "due soon" (预警). In (0, 1].
    pub due_soon_fraction: f64,
    /// Whether a stage's clock stops while an extension request (延期) is pending.
    pub pause_during_extension: bool,
    /// Close of business, China time, for the `working_day_close` unit.
    pub working_day_close: NaiveTime,
    pub rules: Vec<Rule>,
    /// The `[rates]` section: weights of the assessment rates (server `rates` module).
    pub rates: RatesPolicy,
    /// The `[reports]` section: list sizes and the hot-spot rule (server `report` module).
    pub reports: ReportsPolicy,
}

/// Weights of the assessment rates (domain.md, "Supervision, reporting, audit"; local
/// definitions vary, so they are policy).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatesPolicy {
    /// k in 满意率 = (satisfied + k × basically satisfied) ÷ valid follow-ups. domain.md: 1.
    #[serde(default = "default_basic_weight")]
    pub basically_satisfied_weight: f64,
}

fn default_basic_weight() -> f64 {
    1.0
}

impl Default for RatesPolicy {
    fn default() -> Self {
        RatesPolicy {
            basically_satisfied_weight: default_basic_weight(),
        }
    }
}

/// A policy file that cannot be used. `line` is 1-based; `None` when the parser gave no position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => write!(f, "policy: {}", self.message),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    due_soon_fraction: Option<Spanned<f64>>,
    pause_during_extension: Option<bool>,
    working_day_close: Option<Spanned<String>>,
    rates: Option<Spanned<RatesPolicy>>,
    reports: Option<Spanned<ReportsPolicy>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    stage: Stage,
    case_type: Option<CaseType>,
    urgency: Option<Urgency>,
    priority: Option<bool>,
    area: Option<Spanned<String>>,
    amount: Spanned<u32>,
    unit: Unit,
    source: Option<String>,
}

/// Default when the file does not say (the 80% of domain.md).
pub const DEFAULT_DUE_SOON_FRACTION: f64 = 0.8;
/// Default close of business when the file does not say.
pub const DEFAULT_WORKING_DAY_CLOSE: &str = "17:30";

/// Largest amount per unit: a year, so a typo cannot make day arithmetic run for ages.
fn max_amount(unit: Unit) -> u32 {
    match unit {
        Unit::Minutes => 366 * 24 * 60,
        Unit::Hours => 366 * 24,
        Unit::CalendarDays | Unit::WorkingDays | Unit::WorkingDayClose => 366,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl PolicySet {
    /// Parses and validates an admin-edited policy file.
    pub fn from_toml(text: &str) -> Result<PolicySet, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError {
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().trim().to_string(),
        })?;
        let at = |offset: usize, message: String| PolicyError {
            line: Some(line_of(text, offset)),
            message,
        };

        let due_soon_fraction = match raw.due_soon_fraction {
            None => DEFAULT_DUE_SOON_FRACTION,
            Some(f) => {
                let value = *f.get_ref();
                if !(value > 0.0 && value <= 1.0) {
                    return Err(at(
                        f.span().start,
                        format!("due_soon_fraction must be above 0 and at most 1, got {value}"),
                    ));
                }
                value
            }
        };
        let working_day_close = match raw.working_day_close {
            None => NaiveTime::parse_from_str(DEFAULT_WORKING_DAY_CLOSE, "%H:%M")
                .expect("default close parses"),
            Some(t) => NaiveTime::parse_from_str(t.get_ref(), "%H:%M").map_err(|_| {
                at(
                    t.span().start,
                    format!(
                        "working_day_close must be HH:MM, e.g. \"17:30\", got {:?}",
                        t.get_ref()
                    ),
                )
            })?,
        };

        let mut rules: Vec<Rule> = Vec::with_capacity(raw.rule.len());
        for spanned in raw.rule {
            let start = spanned.span().start;
            let line = line_of(text, start);
            let r = spanned.into_inner();
            let area = match r.area {
                None => None,
                Some(a) => {
                    let code = a.get_ref();
                    if code.is_empty()
                        || code.len() > 12
                        || !code.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(at(
                            a.span().start,
                            format!(
                                "area must be 1 to 12 digits (a prefix of an area code), got {code:?}"
                            ),
                        ));
                    }
                    Some(code.clone())
                }
            };
            let amount = *r.amount.get_ref();
            if amount == 0 && r.unit != Unit::WorkingDayClose {
                return Err(at(
                    r.amount.span().start,
                    format!("amount must be at least 1 {}", r.unit),
                ));
            }
            if amount > max_amount(r.unit) {
                return Err(at(
                    r.amount.span().start,
                    format!(
                        "amount {amount} is more than {} {}",
                        max_amount(r.unit),
                        r.unit
                    ),
                ));
            }
            let rule = Rule {
                stage: r.stage,
                case_type: r.case_type,
                urgency: r.urgency,
                priority: r.priority,
                area,
                limit: Limit {
                    amount,
                    unit: r.unit,
                },
                source: r.source,
                line,
            };
            if let Some(twin) = rules.iter().find(|o| o.conditions() == rule.conditions()) {
                return Err(at(
                    start,
                    format!(
                        "this rule has the same stage and conditions as the rule on line {}; \
                         remove one",
                        twin.line
                    ),
                ));
            }
            rules.push(rule);
        }
        let rates = match raw.rates {
            None => RatesPolicy::default(),
            Some(spanned) => {
                let k = spanned.get_ref().basically_satisfied_weight;
                if !(0.0..=1.0).contains(&k) {
                    return Err(at(
                        spanned.span().start,
                        format!("basically_satisfied_weight must be in 0..=1, got {k}"),
                    ));
                }
                spanned.into_inner()
            }
        };
        let reports = match raw.reports {
            None => ReportsPolicy::default(),
            Some(spanned) => {
                let start = spanned.span().start;
                let reports = spanned.into_inner();
                reports.check().map_err(|message| at(start, message))?;
                reports
            }
        };
        Ok(PolicySet {
            due_soon_fraction,
            pause_during_extension: raw.pause_during_extension.unwrap_or(false),
            working_day_close,
            rules,
            rates,
            reports,
        })
    }

    /// The matching rules of the highest specificity for `stage` (empty: no clock runs). More
    /// than one means a tie that the caller settles by taking the earliest due instant.
    pub fn most_specific(&self, stage: Stage, subject: &Subject<'_>) -> Vec<&Rule> {
        let matching: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.matches(stage, subject))
            .collect();
        let Some(best) = matching.iter().map(|r| r.specificity()).max() else {
            return Vec::new();
        };
        matching
            .into_iter()
            .filter(|r| r.specificity() == best)
            .collect()
    }
}

impl Default for PolicySet {
    /// The shipped policy (`core/data/default-policy.toml`).
    fn default() -> Self {
        PolicySet::from_toml(DEFAULT_POLICY).expect("the shipped default policy is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(case_type: CaseType, urgency: Urgency, priority: bool) -> Subject<'static> {
        Subject {
            case_type,
            urgency,
            priority,
            area_code: "330604101201",
        }
    }

    #[test]
    fn default_policy_loads_and_covers_every_stage() {
        let policy = PolicySet::default();
        assert_eq!(policy.due_soon_fraction, 0.8);
        assert!(!policy.pause_during_extension);
        assert_eq!(
            policy.working_day_close,
            NaiveTime::from_hms_opt(17, 30, 0).unwrap()
        );
        let general = subject(CaseType::Complaint, Urgency::General, false);
        for stage in Stage::ALL {
            assert!(
                !policy.most_specific(*stage, &general).is_empty(),
                "{stage}"
            );
        }
        assert!(policy.rules.iter().all(|r| r.source.is_some()));
    }

    #[test]
    fn default_handle_rules_follow_the_table() {
        let policy = PolicySet::default();
        let limit = |t, u, p| {
            let rules = policy.most_specific(Stage::Handle, &subject(t, u, p));
            rules
                .iter()
                .map(|r| r.limit.to_string())
                .collect::<Vec<_>>()
        };
        use CaseType::*;
        use Urgency::*;
        assert_eq!(limit(Inquiry, General, false), ["2 working_days"]);
        assert_eq!(limit(Help, General, false), ["10 working_days"]);
        assert_eq!(limit(Suggestion, General, false), ["10 working_days"]);
        assert_eq!(limit(Complaint, General, false), ["15 working_days"]);
        assert_eq!(limit(Report, General, false), ["15 working_days"]);
        assert_eq!(limit(Petition, General, false), ["60 calendar_days"]);
        // Equally specific rules tie; the deadline engine keeps the earliest.
        assert_eq!(
            limit(Complaint, Urgent, false),
            ["2 hours", "15 working_days"]
        );
        assert_eq!(
            limit(Complaint, General, true),
            ["24 hours", "15 working_days"]
        );
    }

    #[test]
    fn status_maps_to_stage() {
        assert_eq!(Stage::for_status(Status::Draft), None);
        assert_eq!(Stage::for_status(Status::Registered), Some(Stage::Route));
        assert_eq!(Stage::for_status(Status::Returned), Some(Stage::Route));
        assert_eq!(Stage::for_status(Status::Dispatched), Some(Stage::Sign));
        assert_eq!(Stage::for_status(Status::Reopened), Some(Stage::Handle));
        assert_eq!(Stage::for_status(Status::Reviewed), Some(Stage::FollowUp));
        assert_eq!(
            Stage::for_status(Status::ReturnRequested),
            Some(Stage::ReturnReview)
        );
        for s in [Status::Closed, Status::NotAccepted, Status::Merged] {
            assert_eq!(Stage::for_status(s), None);
        }
        assert_eq!(
            serde_json::to_string(&Stage::FollowUp).unwrap(),
            "\"follow_up\""
        );
    }

    #[test]
    fn most_specific_rule_wins() {
        let text = r#"
[[rule]]
stage = "handle"
case_type = "complaint"
amount = 15
unit = "working_days"

[[rule]]
stage = "handle"
case_type = "complaint"
area = "330604"
amount = 5
unit = "working_days"

[[rule]]
stage = "handle"
case_type = "complaint"
area = "330604101"
amount = 3
unit = "working_days"

[[rule]]
stage = "handle"
amount = 1
unit = "hours"
"#;
        let policy = PolicySet::from_toml(text).unwrap();
        let pick = |area: &str| {
            let s = Subject {
                case_type: CaseType::Complaint,
                urgency: Urgency::General,
                priority: false,
                area_code: area,
            };
            let rules = policy.most_specific(Stage::Handle, &s);
            assert_eq!(rules.len(), 1);
            (rules[0].limit.amount, rules[0].line)
        };
        assert_eq!(pick("330604101201"), (3, 15));
        assert_eq!(pick("330604999001"), (5, 8));
        assert_eq!(pick("110101001001"), (15, 2));
        let inquiry = subject(CaseType::Inquiry, Urgency::General, false);
        assert_eq!(
            policy.most_specific(Stage::Handle, &inquiry)[0].limit.unit,
            Unit::Hours
        );
        assert!(policy.most_specific(Stage::Sign, &inquiry).is_empty());
    }

    fn err(text: &str) -> String {
        PolicySet::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_names_its_line() {
        let text =
            "due_soon_fraction = 0.8\n\n[[rule]]\nstage = \"sign\"\namout = 1\nunit = \"hours\"\n";
        let message = err(text);
        assert!(message.starts_with("line 5: "), "{message}");
        assert!(message.contains("amout"), "{message}");
        let message = err("due_son_fraction = 0.8\n");
        assert!(message.starts_with("line 1: "), "{message}");
    }

    #[test]
    fn unknown_stage_and_unit_name_their_line() {
        let text = "# comment\n[[rule]]\nstage = \"sign\"\namount = 1\nunit = \"hours\"\n\n[[rule]]\nstage = \"hadle\"\namount = 2\nunit = \"working_days\"\n";
        let message = err(text);
        assert!(
            message.starts_with(
                "line 8: unknown stage `hadle`, expected one of `route`, `sign`, `handle`"
            ),
            "{message}"
        );
        let text = "[[rule]]\nstage = \"sign\"\namount = 1\nunit = \"hour\"\n";
        let message = err(text);
        assert!(
            message.starts_with("line 4: unknown unit `hour`"),
            "{message}"
        );
        let text =
            "[[rule]]\nstage = \"sign\"\ncase_type = \"complain\"\namount = 1\nunit = \"hours\"\n";
        assert!(err(text).starts_with("line 3: "), "{}", err(text));
    }

    #[test]
    fn bad_numbers_and_values_name_their_line() {
        let message = err("[[rule]]\nstage = \"sign\"\namount = -1\nunit = \"hours\"\n");
        assert!(message.starts_with("line 3: "), "{message}");
        let message = err("[[rule]]\nstage = \"sign\"\namount = \"two\"\nunit = \"hours\"\n");
        assert!(message.starts_with("line 3: "), "{message}");
        let message = err("[[rule]]\nstage = \"sign\"\namount = 0\nunit = \"hours\"\n");
        assert_eq!(message, "line 3: amount must be at least 1 hours");
        let message = err("\ndue_soon_fraction = 1.5\n");
        assert!(
            message.starts_with("line 2: due_soon_fraction"),
            "{message}"
        );
        let message = err("working_day_close = \"5pm\"\n");
        assert!(
            message.starts_with("line 1: working_day_close"),
            "{message}"
        );
        let message =
            err("[[rule]]\nstage = \"sign\"\narea = \"33-06\"\namount = 1\nunit = \"hours\"\n");
        assert!(message.starts_with("line 3: area"), "{message}");
        let message = err(
            "[[rule]]\nstage = \"sign\"\namount = 1\nunit = \"hours\"\n\n[[rule]]\nstage = \"sign\"\namount = 2\nunit = \"hours\"\n",
        );
        assert!(
            message.starts_with("line 6: ") && message.contains("line 1"),
            "{message}"
        );
        // A rule with no amount at all.
        let message = err("[[rule]]\nstage = \"sign\"\nunit = \"hours\"\n");
        assert!(message.contains("amount"), "{message}");
    }

    #[test]
    fn rates_weight_defaults_to_one_and_is_checked() {
        assert_eq!(PolicySet::default().rates.basically_satisfied_weight, 1.0);
        let p = PolicySet::from_toml("[rates]\nbasically_satisfied_weight = 0.8\n").unwrap();
        assert_eq!(p.rates.basically_satisfied_weight, 0.8);
        let e = PolicySet::from_toml("[rates]\nbasically_satisfied_weight = 2.0\n").unwrap_err();
        assert!(e.message.contains("basically_satisfied_weight"), "{e}");
        assert!(PolicySet::from_toml("[rates]\nk = 1\n").is_err());
    }

    #[test]
    fn reports_section_defaults_and_is_checked() {
        let p = PolicySet::default();
        assert_eq!(p.reports, ReportsPolicy::default());
        let p = PolicySet::from_toml("[reports]\nbaseline_periods = 3\nburst_days = 2\n").unwrap();
        assert_eq!((p.reports.baseline_periods, p.reports.burst_days), (3, 2));
        assert_eq!(p.reports.top, ReportsPolicy::default().top);
        let e = PolicySet::from_toml("\n[reports]\nbaseline_periods = 0\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("baseline_periods"), "{e}");
        assert!(PolicySet::from_toml("[reports]\nhot_threshold = -1.0\n").is_err());
        assert!(PolicySet::from_toml("[reports]\nwindow = 3\n").is_err());
    }
}
