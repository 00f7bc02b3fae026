//! One document's push, in named steps: *decode* the changes, *read* what the server holds,
//! *check* them (`check::judge`), *commit* them. Only the commit is a write transaction; the
//! Automerge work (load, apply, judge, save) happens before it, holding only the case's turn:
//! this process's lock on the case (`crate::case_locks`) and the database's turn among server
//! processes (`Documents::case_turn`, an advisory lock on PostgreSQL). The commit still checks
//! that the document is at the version judged against; if it is not (another writer without the
//! turn, e.g. a second process on one SQLite file), the steps run again on the new version. A
//! change is acknowledged only after its commit.

use std::collections::HashMap;

use automerge::{Change, ChangeHash};
use gridcase_core::doc::split_doc_id;
use gridcase_core::model::Millis;
use gridcase_core::sync::{DeviceClock, DocPush, PushResult, RejectCode, Rejection};

use super::check::{
    JudgeContext, Judged, check_actors, check_doc_id, decode_push, judge, new_changes,
    pushed_heads, rejection,
};
use crate::audit;
use crate::db::Commit;
use crate::documents::{Loaded, NewState, Writer, hashes, load, plan_commit};
use crate::store::{DeviceCtx, Result, Store, StoreError};
use gridcase_core::scope::{CaseScope, Scope};

/// How often a push is judged again after losing a race to another server's commit.
const MAX_ATTEMPTS: usize = 8;

/// What one push came to.
#[derive(Debug)]
pub(crate) struct Pushed {
    pub result: PushResult,
    /// When accepted: the heads of what the device sent.
    pub sent_heads: Option<Vec<ChangeHash>>,
    /// A document the device holds as of this push, to record with the sync (a repeated push
    /// of changes the server has, for a document in the device's scope).
    pub holds: Option<String>,
}

/// What the server holds for a push, read in one snapshot.
struct Base {
    loaded: Loaded,
    case_scope: Option<CaseScope>,
    trusted: HashMap<String, Millis>,
    holds: bool,
}

/// The outcome of judging one attempt.
enum Verdict {
    Rejected(Rejection),
    /// Everything was stored already (a repeated request).
    AlreadyStored {
        heads: Vec<ChangeHash>,
        in_scope: bool,
    },
    Committed {
        heads: Vec<ChangeHash>,
    },
    /// Another commit came first: judge again.
    Raced,
}

impl Store {
    /// Decodes, checks and commits one document's push; records a refusal in the audit log.
    pub(crate) fn push_doc(
        &self,
        device: &DeviceCtx,
        push: &DocPush,
        clock: DeviceClock,
        now: Millis,
    ) -> Result<Pushed> {
        let doc_id = push.doc_id.as_str();
        let changes = match check_doc_id(doc_id).and_then(|()| decode_push(push)) {
            Ok(changes) => changes,
            Err(reason) => return self.refuse(device, push, reason, now),
        };
        let case_id = split_doc_id(doc_id).0;
        let _local = self.locks.lock(case_id);
        let _turn = self.db().case_turn(case_id)?;
        for _ in 0..MAX_ATTEMPTS {
            let base = self.read_base(device, doc_id)?;
            let verdict = self.attempt(device, doc_id, &changes, base, clock, now)?;
            let (heads, holds) = match verdict {
                Verdict::Rejected(reason) => return self.refuse(device, push, reason, now),
                Verdict::Raced => continue,
                Verdict::AlreadyStored { heads, in_scope } => {
                    (heads, in_scope.then(|| doc_id.to_owned()))
                }
                Verdict::Committed { heads } => (heads, None),
            };
            return Ok(Pushed {
                result: PushResult::Accepted {
                    doc_id: doc_id.to_owned(),
                    heads: hashes(&heads),
                },
                sent_heads: Some(pushed_heads(&changes)),
                holds,
            });
        }
        Err(StoreError::Busy(doc_id.to_owned()))
    }

    /// The *read* step: the stored document, its case's scope, trusted times and whether the
    /// device holds it, in one snapshot; the Automerge load happens after the snapshot ends.
    fn read_base(&self, device: &DeviceCtx, doc_id: &str) -> Result<Base> {
        let case_id = split_doc_id(doc_id).0;
        let mut view = self.db().read()?;
        let stored = view.doc(doc_id)?;
        let case_scope = view.case_scope(case_id)?;
        let trusted = view.trusted_times(case_id)?;
        let holds = view.holds(&device.device_id, doc_id)?;
        drop(view);
        let loaded = match stored {
            Some(stored) => load(doc_id, stored)?,
            None => Loaded::absent(),
        };
        Ok(Base {
            loaded,
            case_scope,
            trusted,
            holds,
        })
    }

    /// The *check* and *commit* steps for one attempt.
    fn attempt(
        &self,
        device: &DeviceCtx,
        doc_id: &str,
        pushed: &[Change],
        mut base: Base,
        clock: DeviceClock,
        now: Millis,
    ) -> Result<Verdict> {
        let new = new_changes(&mut base.loaded.doc, pushed);
        if let Err(reason) = check_actors(&new, &device.device_id) {
            return Ok(Verdict::Rejected(reason));
        }
        let scope = device.scope();
        if new.is_empty() {
            return Ok(nothing_new(doc_id, &mut base, &scope));
        }
        let stored = base.loaded.is_stored().then_some(&base.loaded.doc);
        let ctx = JudgeContext {
            case_before: base.case_scope.as_ref(),
            holds: base.holds,
        };
        let Judged {
            mut doc,
            case,
            reveals,
        } = match judge(doc_id, stored, &new, device, ctx) {
            Ok(judged) => judged,
            Err(reason) => return Ok(Verdict::Rejected(reason)),
        };
        // The device holds the document afterwards if its new state is in the device's scope.
        let after = case.as_ref().map(CaseScope::of).or(base.case_scope.take());
        let holder = after
            .is_some_and(|a| scope.covers_doc(doc_id, &a))
            .then_some(device.device_id.as_str());
        let heads = doc.get_heads();
        let mut write = plan_commit(
            self,
            NewState {
                doc_id,
                base: &base.loaded,
                doc: &mut doc,
                new_changes: &new,
                case: case.as_ref(),
                trusted: &base.trusted,
                writer: Writer {
                    device: Some(&device.device_id),
                    user: &device.user_id,
                    clock,
                },
                holder,
                now,
            },
        );
        // Phone numbers revealed on a phone, offline or not, join the audit log with the
        // change that recorded them.
        write.audit.extend(
            reveals
                .iter()
                .map(|(by, at)| audit::reveal_on_phone(by, *at, doc_id, clock, now)),
        );
        match self.db().commit_doc(&write)? {
            Commit::Committed { .. } => Ok(Verdict::Committed { heads }),
            Commit::Conflict => Ok(Verdict::Raced),
            Commit::Duplicate => Err(StoreError::Invalid(format!(
                "commit of {doc_id} reported a duplicate supervision"
            ))),
        }
    }

    /// A refused push: logged, recorded in the audit log, answered per document.
    fn refuse(
        &self,
        device: &DeviceCtx,
        push: &DocPush,
        reason: Rejection,
        now: Millis,
    ) -> Result<Pushed> {
        let doc_id = push.doc_id.as_str();
        tracing::info!(doc_id, device = %device.device_id, code = reason.code.as_str(), "push rejected");
        self.db().write_audit(&audit::rejection(
            &device.user_id,
            &device.device_id,
            doc_id,
            check_doc_id(doc_id).is_ok(),
            &reason,
            push.changes.len(),
            now,
        ))?;
        Ok(Pushed {
            result: PushResult::Rejected {
                doc_id: doc_id.to_owned(),
                reason,
            },
            sent_heads: None,
            holds: None,
        })
    }
}

/// The verdict on a push that brings nothing the server lacks: a repeated request, answered
/// as before (a new document without changes is malformed). The device holds the document
/// only if it may: old changes must not reopen a case that left its scope.
fn nothing_new(doc_id: &str, base: &mut Base, scope: &Scope) -> Verdict {
    if !base.loaded.is_stored() {
        return Verdict::Rejected(rejection(
            RejectCode::Malformed,
            "a new document needs changes",
        ));
    }
    let in_scope = base
        .case_scope
        .as_ref()
        .is_some_and(|case| scope.covers_doc(doc_id, case));
    Verdict::AlreadyStored {
        heads: base.loaded.doc.get_heads(),
        in_scope,
    }
}
