//! The rules of the 12345 loop (受理→派单→签收→办理→回复→审核→回访→办结) and its side paths: who may
//! do what, from which state, and where it leads. Pure functions: the document layer asks here
//! before recording an action, and replays the timeline through here to derive the state, so a
//! phone, the server and every merge agree on one answer.

use serde::{Deserialize, Serialize};

use crate::model::{CaseId, Role, Satisfaction, Status};

/// Everything a person can do to a case. Parameters travel with the action into the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// 受理: a draft becomes a registered case.
    Register,
    /// 不予受理.
    NotAccept { reason: String },
    /// 派单/交办 to a unit (and optionally a named person).
    Dispatch { unit: String, assignee: String },
    /// 签收.
    Sign,
    /// 办理: work starts (also a grid worker's 自办 straight from registration).
    Start,
    /// 答复.
    Reply { text: String },
    /// 审核通过.
    Approve,
    /// 审核不通过: back to 重办.
    Reject { reason: String },
    /// 回访 with the citizen's rating; an unsolved result reopens the case.
    FollowUp {
        solved: bool,
        satisfaction: Satisfaction,
    },
    /// 办结.
    Close,
    /// 退单 requested by the unit that got a wrongly routed order.
    RequestReturn { reason: String },
    /// 退单 approved: the order goes back to be dispatched again.
    ApproveReturn,
    /// 延期 requested.
    RequestExtension { days: u32, reason: String },
    /// 延期 granted (the days may differ from those asked for).
    GrantExtension { days: u32 },
    /// 延期 refused.
    DenyExtension { reason: String },
    /// 重复件: folded into a master case.
    MergeInto { master: CaseId },
    /// 重办 of a closed case. The only way a closed case changes.
    Reopen { reason: String },
    /// 督办: a flag with a level, not a state.
    Supervise { level: u8, reason: String },
    /// After a merge of conflicting offline actions, a person decides the state.
    ResolveConflict { status: Status },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("a {role} may not {action}")]
    RoleNotAllowed { role: Role, action: &'static str },
    #[error("cannot {action} a case that is {status}")]
    WrongState {
        action: &'static str,
        status: Status,
    },
    #[error("no extension is pending")]
    NoExtensionPending,
    #[error("an extension is already pending")]
    ExtensionAlreadyPending,
    #[error("extension days must be between 1 and {max}, got {days}")]
    BadExtensionDays { days: u32, max: u32 },
    #[error("supervision level must be 1 to 3, got {0}")]
    BadSupervisionLevel(u8),
    #[error("{0} needs a reason")]
    MissingReason(&'static str),
    #[error("no conflict to resolve")]
    NothingToResolve,
}

use Role::*;
use Status::*;

/// Longest single extension anyone may grant (信访工作条例: at most 30 days).
pub const MAX_EXTENSION_DAYS: u32 = 30;

const OPEN_STATES: &[Status] = &[
    Registered,
    Dispatched,
    Signed,
    InProgress,
    Replied,
    Reviewed,
    FollowedUp,
    ReturnRequested,
    Returned,
    Reopened,
];

/// The flags that live beside the state and that the rules need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub extension_pending: bool,
    pub needs_review: bool,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::NotAccept { .. } => "not_accept",
            Action::Dispatch { .. } => "dispatch",
            Action::Sign => "sign",
            Action::Start => "start",
            Action::Reply { .. } => "reply",
            Action::Approve => "approve",
            Action::Reject { .. } => "reject",
            Action::FollowUp { .. } => "follow_up",
            Action::Close => "close",
            Action::RequestReturn { .. } => "request_return",
            Action::ApproveReturn => "approve_return",
            Action::RequestExtension { .. } => "request_extension",
            Action::GrantExtension { .. } => "grant_extension",
            Action::DenyExtension { .. } => "deny_extension",
            Action::MergeInto { .. } => "merge_into",
            Action::Reopen { .. } => "reopen",
            Action::Supervise { .. } => "supervise",
            Action::ResolveConflict { .. } => "resolve_conflict",
        }
    }

    /// Which roles may perform this action.
    pub fn roles(&self) -> &'static [Role] {
        match self {
            Action::Register => &[GridWorker, TownshipStaff, HotlineCentre],
            Action::NotAccept { .. } | Action::Dispatch { .. } => &[TownshipStaff, HotlineCentre],
            Action::Sign | Action::Start | Action::Reply { .. } => {
                &[GridWorker, TownshipStaff, HandlingUnit]
            }
            Action::Approve | Action::Reject { .. } | Action::Close => {
                &[TownshipStaff, HotlineCentre]
            }
            Action::FollowUp { .. } => &[GridWorker, TownshipStaff, HotlineCentre],
            Action::RequestReturn { .. } => &[GridWorker, TownshipStaff, HandlingUnit],
            Action::ApproveReturn | Action::MergeInto { .. } | Action::Reopen { .. } => {
                &[TownshipStaff, HotlineCentre]
            }
            Action::RequestExtension { .. } => &[GridWorker, TownshipStaff, HandlingUnit],
            Action::GrantExtension { .. } | Action::DenyExtension { .. } => {
                &[TownshipStaff, HotlineCentre]
            }
            Action::Supervise { .. } => &[TownshipStaff, HotlineCentre, Admin, System],
            Action::ResolveConflict { .. } => &[TownshipStaff, HotlineCentre, Admin],
        }
    }

    /// The states this action may start from.
    pub fn from_states(&self) -> &'static [Status] {
        match self {
            Action::Register => &[Draft],
            Action::NotAccept { .. } => &[Registered],
            Action::Dispatch { .. } => &[Registered, Returned, Reopened],
            Action::Sign => &[Dispatched],
            Action::Start => &[Registered, Signed, Reopened],
            Action::Reply { .. } => &[InProgress],
            Action::Approve | Action::Reject { .. } => &[Replied],
            Action::FollowUp { .. } => &[Reviewed],
            Action::Close => &[FollowedUp],
            Action::RequestReturn { .. } => &[Dispatched, Signed],
            Action::ApproveReturn => &[ReturnRequested],
            Action::RequestExtension { .. }
            | Action::GrantExtension { .. }
            | Action::DenyExtension { .. } => &[Dispatched, Signed, InProgress, Reopened],
            Action::MergeInto { .. } | Action::Supervise { .. } => OPEN_STATES,
            Action::Reopen { .. } => &[Closed],
            Action::ResolveConflict { .. } => Status::ALL,
        }
    }

    /// The state this action leads to from `from`, or `None` when it leaves the state alone
    /// (flags such as supervision or extensions).
    pub fn target_status(&self, _from: Status) -> Option<Status> {
        Some(match self {
            Action::Register => Registered,
            Action::NotAccept { .. } => NotAccepted,
            Action::Dispatch { .. } => Dispatched,
            Action::Sign => Signed,
            Action::Start => InProgress,
            Action::Reply { .. } => Replied,
            Action::Approve => Reviewed,
            Action::Reject { .. } => Reopened,
            Action::FollowUp { solved, .. } => {
                if *solved {
                    FollowedUp
                } else {
                    Reopened
                }
            }
            Action::Close => Closed,
            Action::RequestReturn { .. } => ReturnRequested,
            Action::ApproveReturn => Returned,
            Action::MergeInto { .. } => Merged,
            Action::Reopen { .. } => Reopened,
            Action::ResolveConflict { status } => *status,
            Action::RequestExtension { .. }
            | Action::GrantExtension { .. }
            | Action::DenyExtension { .. }
            | Action::Supervise { .. } => return None,
        })
    }

    /// May `role` perform this action on a case in `status` with `flags`? The one gate every
    /// action passes, on the phone before it is recorded and on the server before it is stored.
    pub fn check(&self, role: Role, status: Status, flags: Flags) -> Result<(), LifecycleError> {
        if !self.roles().contains(&role) {
            return Err(LifecycleError::RoleNotAllowed {
                role,
                action: self.name(),
            });
        }
        if !self.from_states().contains(&status) {
            return Err(LifecycleError::WrongState {
                action: self.name(),
                status,
            });
        }
        match self {
            Action::NotAccept { reason }
            | Action::Reject { reason }
            | Action::RequestReturn { reason }
            | Action::Reopen { reason }
                if reason.trim().is_empty() =>
            {
                Err(LifecycleError::MissingReason(self.name()))
            }
            Action::RequestExtension { days, .. } | Action::GrantExtension { days }
                if *days == 0 || *days > MAX_EXTENSION_DAYS =>
            {
                Err(LifecycleError::BadExtensionDays {
                    days: *days,
                    max: MAX_EXTENSION_DAYS,
                })
            }
            Action::RequestExtension { .. } if flags.extension_pending => {
                Err(LifecycleError::ExtensionAlreadyPending)
            }
            Action::GrantExtension { .. } | Action::DenyExtension { .. }
                if !flags.extension_pending =>
            {
                Err(LifecycleError::NoExtensionPending)
            }
            Action::Supervise { level, .. } if !(1..=3).contains(level) => {
                Err(LifecycleError::BadSupervisionLevel(*level))
            }
            Action::ResolveConflict { .. } if !flags.needs_review => {
                Err(LifecycleError::NothingToResolve)
            }
            _ => Ok(()),
        }
    }
}

/// What recording an action writes to the case besides its timeline event. [`CaseDoc::act`]
/// writes exactly these, and the push judge accepts them, in the change that records the action,
/// from a role that could not edit those fields directly. The one definition of an action's
/// effects on the document; its effects on the derived flags are [`Action::apply_to_flags`].
///
/// [`CaseDoc::act`]: crate::doc::CaseDoc::act
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect<'a> {
    /// Sets a root field of the case.
    Set { field: &'static str, value: &'a str },
    /// Appends a value to a root list of the case.
    Append { list: &'static str, value: &'a str },
}

impl Action {
    pub fn effects(&self) -> Vec<Effect<'_>> {
        match self {
            Action::Dispatch { unit, assignee } => vec![
                Effect::Set {
                    field: "responsible_unit",
                    value: unit,
                },
                Effect::Set {
                    field: "assignee",
                    value: assignee,
                },
            ],
            Action::MergeInto { master } => vec![Effect::Append {
                list: "related",
                value: master,
            }],
            _ => Vec::new(),
        }
    }

    /// What applying this action in a replay does to the flags and the granted extension days.
    pub fn apply_to_flags(&self, flags: &mut Flags, extension_days: &mut u32) {
        match self {
            Action::RequestExtension { .. } => flags.extension_pending = true,
            Action::GrantExtension { days } => {
                flags.extension_pending = false;
                *extension_days = extension_days.saturating_add(*days);
            }
            Action::DenyExtension { .. } => flags.extension_pending = false,
            Action::ResolveConflict { .. } => flags.needs_review = false,
            _ => {}
        }
    }
}

/// The outcome of replaying a timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub status: Status,
    pub flags: Flags,
    pub extension_days: u32,
    /// Per event: was it kept without being applied because it conflicted?
    pub conflicted: Vec<bool>,
}

/// One recorded action as the replay needs it.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub action: &'a Action,
    pub from: Status,
    pub role: Role,
}

/// Replays a merged timeline, in the list order Automerge gives every replica, into a state.
///
/// An action whose author saw the state the replay is in applies as usual. One whose author saw
/// another state was concurrent with something ordered before it: if it is the same transition
/// again (two phones both signed) it is a harmless duplicate; if it still passes the rules from
/// here and changes no state (a note-like flag) it applies; otherwise it stays in the timeline,
/// marked conflicted, and the case is flagged for review. Nothing is dropped silently and every
/// replica derives the same answer.
pub fn replay<'a>(events: impl IntoIterator<Item = Recorded<'a>>) -> Replay {
    let mut status = Draft;
    let mut flags = Flags::default();
    let mut extension_days = 0u32;
    let mut conflicted = Vec::new();
    let mut last_applied: Option<(&Action, Status)> = None;
    for event in events {
        let concurrent = event.from != status;
        let duplicate = concurrent
            && last_applied
                .is_some_and(|(action, from)| action == event.action && from == event.from);
        if duplicate {
            conflicted.push(false);
            continue;
        }
        let allowed = event.action.check(event.role, status, flags).is_ok();
        let changes_state = event.action.target_status(status).is_some();
        if !allowed || (concurrent && changes_state) {
            flags.needs_review = true;
            conflicted.push(true);
            continue;
        }
        conflicted.push(false);
        event.action.apply_to_flags(&mut flags, &mut extension_days);
        if let Some(next) = event.action.target_status(status) {
            status = next;
        }
        last_applied = Some((event.action, event.from));
    }
    Replay {
        status,
        flags,
        extension_days,
        conflicted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(action: &Action, from: Status, role: Role) -> Recorded<'_> {
        Recorded { action, from, role }
    }

    #[test]
    fn happy_path_reaches_closed() {
        let actions = [
            (Action::Register, Draft, GridWorker),
            (
                Action::Dispatch {
                    unit: "water".into(),
                    assignee: "".into(),
                },
                Registered,
                TownshipStaff,
            ),
            (Action::Sign, Dispatched, HandlingUnit),
            (Action::Start, Signed, HandlingUnit),
            (
                Action::Reply {
                    text: "fixed".into(),
                },
                InProgress,
                HandlingUnit,
            ),
            (Action::Approve, Replied, TownshipStaff),
            (
                Action::FollowUp {
                    solved: true,
                    satisfaction: Satisfaction::Satisfied,
                },
                Reviewed,
                GridWorker,
            ),
            (Action::Close, FollowedUp, TownshipStaff),
        ];
        let r = replay(actions.iter().map(|(a, f, r)| rec(a, *f, *r)));
        assert_eq!(r.status, Closed);
        assert!(!r.flags.needs_review);
        assert!(r.conflicted.iter().all(|c| !c));
    }

    #[test]
    fn role_and_state_are_enforced() {
        let err = Action::Close
            .check(GridWorker, FollowedUp, Flags::default())
            .unwrap_err();
        assert!(matches!(err, LifecycleError::RoleNotAllowed { .. }));
        assert_eq!(err.to_string(), "a grid_worker may not close");
        let err = Action::Sign
            .check(HandlingUnit, Registered, Flags::default())
            .unwrap_err();
        assert_eq!(err.to_string(), "cannot sign a case that is registered");
        assert!(
            Action::Reopen { reason: " ".into() }
                .check(HotlineCentre, Closed, Flags::default())
                .is_err()
        );
    }

    #[test]
    fn closed_case_only_reopens_explicitly() {
        for action in [Action::Start, Action::Sign, Action::Close] {
            assert!(
                action
                    .check(TownshipStaff, Closed, Flags::default())
                    .is_err()
            );
        }
        assert!(
            Action::Reopen {
                reason: "unsolved".into()
            }
            .check(TownshipStaff, Closed, Flags::default())
            .is_ok()
        );
    }

    #[test]
    fn extension_needs_a_request_first() {
        let grant = Action::GrantExtension { days: 5 };
        assert_eq!(
            grant.check(TownshipStaff, InProgress, Flags::default()),
            Err(LifecycleError::NoExtensionPending)
        );
        let ask = Action::RequestExtension {
            days: 31,
            reason: "x".into(),
        };
        assert!(matches!(
            ask.check(HandlingUnit, InProgress, Flags::default()),
            Err(LifecycleError::BadExtensionDays { .. })
        ));
    }

    #[test]
    fn concurrent_reply_and_return_are_both_kept_and_flagged() {
        let reply = Action::Reply { text: "ok".into() };
        let ret = Action::RequestReturn {
            reason: "not ours".into(),
        };
        let base = [
            (Action::Register, Draft, GridWorker),
            (
                Action::Dispatch {
                    unit: "u".into(),
                    assignee: "".into(),
                },
                Registered,
                TownshipStaff,
            ),
            (Action::Sign, Dispatched, HandlingUnit),
        ];
        // Phone A started and replied; phone B, still at Signed, requested a return.
        let mut events: Vec<Recorded> = base.iter().map(|(a, f, r)| rec(a, *f, *r)).collect();
        let start = Action::Start;
        events.push(rec(&ret, Signed, HandlingUnit));
        events.push(rec(&start, Signed, HandlingUnit));
        events.push(rec(&reply, InProgress, HandlingUnit));
        let r = replay(events.iter().copied());
        assert_eq!(r.status, ReturnRequested);
        assert!(r.flags.needs_review);
        assert_eq!(r.conflicted, vec![false, false, false, false, true, true]);
    }

    #[test]
    fn identical_concurrent_sign_is_not_a_conflict() {
        let base = [
            (Action::Register, Draft, GridWorker),
            (
                Action::Dispatch {
                    unit: "u".into(),
                    assignee: "".into(),
                },
                Registered,
                TownshipStaff,
            ),
            (Action::Sign, Dispatched, HandlingUnit),
            (Action::Sign, Dispatched, TownshipStaff),
        ];
        let r = replay(base.iter().map(|(a, f, r)| rec(a, *f, *r)));
        assert_eq!(r.status, Signed);
        assert!(!r.flags.needs_review);
    }

    #[test]
    fn resolve_conflict_clears_the_flag() {
        let a = Action::Reply { text: "x".into() };
        let b = Action::RequestReturn { reason: "y".into() };
        let resolve = Action::ResolveConflict { status: InProgress };
        let events = [
            (Action::Register, Draft, GridWorker),
            (Action::Start, Registered, GridWorker),
            (a, InProgress, GridWorker),
            (b, InProgress, GridWorker),
            (resolve, Replied, TownshipStaff),
        ];
        let r = replay(events.iter().map(|(a, f, r)| rec(a, *f, *r)));
        assert_eq!(r.status, InProgress);
        assert!(!r.flags.needs_review);
    }
}
