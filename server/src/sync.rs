//! The server side of the sync protocol (`gridcase_core::sync`).
//!
//! Decisions are small pure functions ([`decode_push`], [`validate`], [`in_scope`],
//! [`page_size`], [`pushed_heads`]); [`Store::sync`] runs them against the database. A document's
//! changes are acknowledged only after the transaction that stores them (rows, snapshot,
//! projection, what the device holds) has committed.
//!
//! Scope: a device receives a case when the case's area lies in its user's jurisdiction or the
//! case is assigned to the user; the `#pii` document of such a case only when the role may see
//! personal data.

use std::collections::{HashMap, HashSet};

use automerge::sync::{ChunkList, Message, State, SyncDoc};
use automerge::{AutoCommit, Change, ChangeHash};
use gridcase_core::doc::{CaseDoc, PersonalDoc, personal_doc_id, split_doc_id};
use gridcase_core::identity::actor_belongs_to;
use gridcase_core::model::{Case, Millis};
use gridcase_core::sync::{
    CatchUp, DocPush, DocUpdate, Hash, Payload, PushResult, RejectCode, Rejection, RestoreToken,
    SyncRequest, SyncResponse, clock_offset,
};
use gridcase_core::validate::{Pusher, validate_case_change_seen};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, named_params};

use crate::audit;
use crate::store::{
    Commit, DeviceCtx, Result, Store, blob_to_heads, case_scope_row, commit_doc, hashes, load_doc,
};

/// Documents per response page when the phone does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 200;
/// The most documents per response page, whatever the phone asks for.
pub const MAX_PAGE_SIZE: u32 = 500;
/// The most change rows one incremental page walks.
pub const FEED_ROW_CAP: usize = 5_000;
/// The most changes accepted in one document push.
pub const MAX_CHANGES_PER_PUSH: usize = 10_000;
/// Longest case id accepted, in characters (a document id may add `#pii`).
pub const MAX_DOC_ID_LEN: usize = 128;
/// The most document pushes in one request. A phone sends every document with unacknowledged
/// changes in one request; back from weeks offline that is hundreds, not thousands. Beyond it
/// the whole request is refused (413 `too_many_pushes`) before anything is stored, so the phone
/// keeps its changes rather than having them marked rejected.
pub const MAX_PUSHES_PER_REQUEST: usize = 5_000;
/// The most catch-up messages in one request (each costs a document load).
pub const MAX_CATCH_UPS_PER_REQUEST: usize = 5_000;

/// Refuses a request with more pushes or catch-ups than the server handles at once: the error
/// code and a sentence.
pub fn check_request_size(request: &SyncRequest) -> Result<(), (&'static str, String)> {
    if request.pushes.len() > MAX_PUSHES_PER_REQUEST {
        return Err((
            "too_many_pushes",
            format!(
                "{} document pushes in one request; at most {MAX_PUSHES_PER_REQUEST}",
                request.pushes.len()
            ),
        ));
    }
    if request.catch_up.len() > MAX_CATCH_UPS_PER_REQUEST {
        return Err((
            "too_many_catch_ups",
            format!(
                "{} catch-up messages in one request; at most {MAX_CATCH_UPS_PER_REQUEST}",
                request.catch_up.len()
            ),
        ));
    }
    Ok(())
}

/// The page size the server uses for a request.
pub fn page_size(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

fn rejection(code: RejectCode, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

/// A document id must be a case id or `<case id>#pii`, printable and bounded.
pub fn check_doc_id(doc_id: &str) -> Result<(), Rejection> {
    let (case_id, _) = split_doc_id(doc_id);
    let ok = !case_id.is_empty()
        && case_id.chars().count() <= MAX_DOC_ID_LEN
        && !case_id.contains('#')
        && doc_id
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(rejection(
            RejectCode::Malformed,
            format!(
                "document id must be a case id or `<case id>#pii`, the case id 1 to \
                 {MAX_DOC_ID_LEN} characters without spaces or control characters"
            ),
        ))
    }
}

/// Decodes a push's changes.
pub fn decode_push(push: &DocPush) -> Result<Vec<Change>, Rejection> {
    if push.changes.len() > MAX_CHANGES_PER_PUSH {
        return Err(rejection(
            RejectCode::TooLarge,
            format!("at most {MAX_CHANGES_PER_PUSH} changes per document and push"),
        ));
    }
    push.changes
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            Change::from_bytes(bytes.clone()).map_err(|e| {
                rejection(
                    RejectCode::Malformed,
                    format!("change {i} is not an Automerge change: {e}"),
                )
            })
        })
        .collect()
}

/// Checks that every change new to the server was made under one of the sending device's actor
/// ids. (Changes the server already holds may come back from any device: they change nothing.)
pub fn check_actors(new_changes: &[Change], device: &str) -> Result<(), Rejection> {
    match new_changes
        .iter()
        .find(|c| !actor_belongs_to(c.actor_id(), device))
    {
        Some(c) => Err(rejection(
            RejectCode::ForeignActor,
            format!(
                "change {} was made under an actor id of another device",
                c.hash()
            ),
        )),
        None => Ok(()),
    }
}

/// The heads of a set of changes: those no other change in the set depends on.
pub fn pushed_heads(changes: &[Change]) -> Vec<ChangeHash> {
    let deps: HashSet<ChangeHash> = changes
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .collect();
    let mut heads: Vec<ChangeHash> = changes
        .iter()
        .map(Change::hash)
        .filter(|h| !deps.contains(h))
        .collect();
    heads.sort();
    heads.dedup();
    heads
}

/// Whether a case (by its projected area and assignee) is in the device's scope.
pub fn in_scope(ctx: &DeviceCtx, area_code: &str, assignee: &str) -> bool {
    ctx.jurisdiction.contains_str(area_code) || (!assignee.is_empty() && assignee == ctx.user_id)
}

/// What a push would store, as read after merging it into the server's copy.
#[derive(Debug)]
pub enum Target<'a> {
    /// A case document: the case as the server read it before the push (`None` for a case the
    /// server has never seen), as the pusher last saw it (at the dependencies of the pushed
    /// changes; `None` when unknown or when the device no longer holds the case), and after it.
    Case {
        before: Option<&'a Case>,
        seen: Option<&'a Case>,
        after: &'a Case,
    },
    /// The complainant document of a case.
    Personal,
}

/// The pusher as `gridcase_core::validate` sees it.
pub fn pusher(ctx: &DeviceCtx) -> Pusher {
    Pusher {
        user: ctx.user_id.clone(),
        device: ctx.device_id.clone(),
        role: ctx.role,
        jurisdiction: ctx.jurisdiction.clone(),
    }
}

/// The server's rules for accepting a document's new state; the one place a push is judged.
/// `scope_before` is the case's projected `(area_code, assignee)` before the push, if the server
/// knows the case.
///
/// - A case document goes through `gridcase_core::validate::validate_case_change_seen`: new
///   timeline events in the pusher's own name, allowed for the role and from the state they
///   record; fields the role may edit; nothing changed on a closed case but an explicit reopen;
///   the case in (and staying in) the pusher's jurisdiction or assigned to them, either now or
///   as the pusher last saw it (work done offline before the case moved away).
/// - A personal-data document may only be written by a role that may see personal data, for a
///   case in the pusher's scope.
pub fn validate(
    ctx: &DeviceCtx,
    target: &Target<'_>,
    scope_before: Option<&(String, String)>,
) -> Result<(), Rejection> {
    match target {
        Target::Personal => {
            if !ctx.role.may_see_personal_data() {
                return Err(rejection(
                    RejectCode::PersonalData,
                    format!("a {} may not write personal data", ctx.role),
                ));
            }
            if let Some((area, assignee)) = scope_before
                && !in_scope(ctx, area, assignee)
            {
                return Err(rejection(
                    RejectCode::OutOfJurisdiction,
                    "the case is outside your jurisdiction",
                ));
            }
            Ok(())
        }
        Target::Case {
            before,
            seen,
            after,
        } => validate_case_change_seen(*before, *seen, after, &pusher(ctx)),
    }
}

/// SQL for "document `d` of case `k` is in scope" with parameters `:prefix`, `:user`, `:pii`.
const SCOPE_SQL: &str =
    "((k.area_code LIKE :prefix || '%' OR (k.assignee <> '' AND k.assignee = :user))
      AND (d.is_pii = 0 OR :pii))";

struct Scope<'a> {
    prefix: &'a str,
    user: &'a str,
    pii: bool,
}

impl<'a> Scope<'a> {
    fn of(ctx: &'a DeviceCtx) -> Self {
        Scope {
            prefix: ctx.jurisdiction.as_prefix(),
            user: &ctx.user_id,
            pii: ctx.role.may_see_personal_data(),
        }
    }
}

fn doc_in_scope(conn: &Connection, scope: &Scope<'_>, doc_id: &str) -> Result<bool> {
    let sql = format!(
        "SELECT 1 FROM docs d JOIN cases k ON k.case_id = d.case_id
         WHERE d.doc_id = :doc AND {SCOPE_SQL}"
    );
    Ok(conn
        .query_row(
            &sql,
            named_params! {":doc": doc_id, ":prefix": scope.prefix, ":user": scope.user, ":pii": scope.pii},
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn doc_heads(conn: &Connection, doc_id: &str) -> Result<Vec<Hash>> {
    let blob: Vec<u8> =
        conn.query_row("SELECT heads FROM docs WHERE doc_id = ?1", [doc_id], |r| {
            r.get(0)
        })?;
    Ok(blob_to_heads(&blob))
}

fn snapshot_update(tx: &Transaction<'_>, device: &str, doc_id: &str) -> Result<Option<DocUpdate>> {
    let stored: Option<(Vec<u8>, i64, i64)> = tx
        .prepare_cached("SELECT snapshot, snapshot_seq, last_seq FROM docs WHERE doc_id = ?1")?
        .query_row([doc_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((snapshot, snapshot_seq, last_seq)) = stored else {
        return Ok(None);
    };
    // The stored snapshot is the whole document when no change came after it: send it as it
    // is, without loading and saving the document again (most of a restore's server time).
    let bytes = if snapshot_seq == last_seq && !snapshot.is_empty() {
        snapshot
    } else {
        match load_doc(tx, doc_id)? {
            Some(mut doc) => doc.save_nocompress(),
            None => return Ok(None),
        }
    };
    tx.execute(
        "INSERT OR IGNORE INTO device_docs (device_id, doc_id) VALUES (?1, ?2)",
        [device, doc_id],
    )?;
    // No separate heads: a snapshot carries its own, and 32 incompressible bytes per document
    // are a third of a restore's size. Saved uncompressed: the response is compressed as a
    // whole, which finds what documents have in common (actors, authors, field names); a
    // per-document DEFLATE would hide it.
    Ok(Some(DocUpdate {
        doc_id: doc_id.to_owned(),
        payload: Payload::Snapshot(bytes),
        heads: Vec::new(),
    }))
}

fn holds(conn: &Connection, device: &str, doc_id: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM device_docs WHERE device_id = ?1 AND doc_id = ?2",
            [device, doc_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// One page of the response's documents, with the cursor and restore state that go with it.
struct Page {
    docs: Vec<DocUpdate>,
    cursor: u64,
    restore: Option<RestoreToken>,
    remaining: u64,
}

impl Store {
    /// Handles one sync request from an authenticated device at server time `now`.
    pub fn sync(
        &self,
        ctx: &DeviceCtx,
        request: &SyncRequest,
        now: Millis,
    ) -> Result<SyncResponse> {
        let mut conn = self.conn();
        let offset = clock_offset(request.device_time, now);
        conn.execute(
            "UPDATE devices SET clock_offset_ms = ?2, last_seen = ?3 WHERE id = ?1",
            rusqlite::params![ctx.device_id, offset, now],
        )?;

        // Case documents first, so a case and its personal data pushed together find the case.
        let mut order: Vec<usize> = (0..request.pushes.len()).collect();
        order.sort_by_key(|&i| split_doc_id(&request.pushes[i].doc_id).1);
        let mut results: Vec<Option<PushResult>> = vec![None; request.pushes.len()];
        let mut accepted: Vec<(String, Vec<ChangeHash>)> = Vec::new();
        for i in order {
            let push = &request.pushes[i];
            let (result, heads) = self.push_doc(&mut conn, ctx, push, offset, now)?;
            if let Some(heads) = heads {
                accepted.push((push.doc_id.clone(), heads));
            }
            results[i] = Some(result);
        }
        let results = results.into_iter().flatten().collect();

        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let scope = Scope::of(ctx);
        let max_seq: i64 = tx.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| {
            r.get(0)
        })?;
        let max_seq = max_seq as u64;
        let size = page_size(request.page_size);
        // A device whose user got another role or jurisdiction has cases in its new scope whose
        // changes all lie before its cursor: it restores again (held documents merge; those
        // that left the scope are evicted below).
        let scope_key = format!("{}|{}", ctx.role, ctx.jurisdiction.as_prefix());
        let served: Option<String> = tx.query_row(
            "SELECT served_scope FROM devices WHERE id = ?1",
            [&ctx.device_id],
            |r| r.get(0),
        )?;
        let scope_changed = served.as_ref().is_some_and(|s| *s != scope_key);
        tx.execute(
            "UPDATE devices SET served_scope = ?2 WHERE id = ?1",
            [&ctx.device_id, &scope_key],
        )?;
        let cursor = if scope_changed && request.restore.is_none() {
            0
        } else {
            request.cursor
        };
        let mut page = match (&request.restore, cursor) {
            (Some(token), _) => {
                restore_page(&tx, ctx, &scope, token.clone(), size, request.cursor)?
            }
            (None, 0) => {
                let token = RestoreToken {
                    upto: max_seq,
                    after: String::new(),
                };
                restore_page(&tx, ctx, &scope, token, size, 0)?
            }
            (None, cursor) => feed_page(&tx, ctx, &scope, cursor, size, max_seq)?,
        };

        // The pushed documents' updates are always included: whatever the server holds beyond
        // what the device just sent.
        let listed: HashSet<String> = page.docs.iter().map(|d| d.doc_id.clone()).collect();
        for (doc_id, heads) in &accepted {
            if listed.contains(doc_id) || !doc_in_scope(&tx, &scope, doc_id)? {
                continue;
            }
            let Some(mut doc) = load_doc(&tx, doc_id)? else {
                continue;
            };
            let missing: Vec<Vec<u8>> = doc
                .get_changes(heads)
                .iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect();
            if !missing.is_empty() {
                page.docs.push(DocUpdate {
                    doc_id: doc_id.clone(),
                    payload: Payload::Changes(missing),
                    heads: hashes(&doc.get_heads()),
                });
            }
        }

        let catch_up = answer_catch_up(&tx, ctx, &scope, &request.catch_up)?;
        let evict = evictions(&tx, ctx, &scope)?;
        tx.commit()?;

        Ok(SyncResponse {
            server_time: now,
            identity: ctx.identity(),
            results,
            docs: page.docs,
            catch_up,
            evict,
            cursor: page.cursor,
            restore: page.restore,
            remaining: page.remaining,
        })
    }

    /// Validates and commits one document's push; records a refusal in the audit log. Returns
    /// the result for the phone and, when accepted, the heads of what the device sent.
    fn push_doc(
        &self,
        conn: &mut Connection,
        ctx: &DeviceCtx,
        push: &DocPush,
        offset: Millis,
        now: Millis,
    ) -> Result<(PushResult, Option<Vec<ChangeHash>>)> {
        let (result, heads) = self.judge_push(conn, ctx, push, offset, now)?;
        if let PushResult::Rejected { doc_id, reason } = &result {
            let valid_id = check_doc_id(doc_id).is_ok();
            let stored_id = audit::bounded(doc_id);
            audit::write(
                conn,
                &audit::Entry {
                    at: now,
                    user_id: Some(&ctx.user_id),
                    device_id: Some(&ctx.device_id),
                    kind: audit::REJECT,
                    case_id: valid_id.then(|| split_doc_id(doc_id).0),
                    doc_id: Some(&stored_id),
                    detail: Some(serde_json::json!({
                        "code": reason.code.as_str(),
                        "message": audit::bounded(&reason.message),
                        "changes": push.changes.len(),
                    })),
                },
            )?;
        }
        Ok((result, heads))
    }

    /// Validates and commits one document's push (the accepted changes and their `change` audit
    /// row in one transaction). Returns the result for the phone and, when accepted, the heads
    /// of what the device sent.
    fn judge_push(
        &self,
        conn: &mut Connection,
        ctx: &DeviceCtx,
        push: &DocPush,
        offset: Millis,
        now: Millis,
    ) -> Result<(PushResult, Option<Vec<ChangeHash>>)> {
        let doc_id = push.doc_id.as_str();
        let reject = |reason: Rejection| {
            tracing::info!(doc_id, device = %ctx.device_id, code = reason.code.as_str(), "push rejected");
            Ok((
                PushResult::Rejected {
                    doc_id: doc_id.to_owned(),
                    reason,
                },
                None,
            ))
        };
        if let Err(r) = check_doc_id(doc_id) {
            return reject(r);
        }
        let changes = match decode_push(push) {
            Ok(c) => c,
            Err(r) => return reject(r),
        };
        let sent_heads = pushed_heads(&changes);
        let (case_id, is_pii) = split_doc_id(doc_id);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing = load_doc(&tx, doc_id)?;
        let known = existing.is_some();
        let mut doc = existing.unwrap_or_else(AutoCommit::new);
        let mut seen = HashSet::new();
        let new: Vec<Change> = changes
            .into_iter()
            .filter(|c| seen.insert(c.hash()) && doc.get_change_by_hash(&c.hash()).is_none())
            .collect();
        if let Err(r) = check_actors(&new, &ctx.device_id) {
            return reject(r);
        }
        if new.is_empty() {
            if !known {
                return reject(rejection(
                    RejectCode::Malformed,
                    "a new document needs changes",
                ));
            }
            // Everything was already stored: a repeated request. Acknowledge again.
            tx.execute(
                "INSERT OR IGNORE INTO device_docs (device_id, doc_id) VALUES (?1, ?2)",
                [&ctx.device_id, doc_id],
            )?;
            let heads = hashes(&doc.get_heads());
            tx.commit()?;
            return Ok((
                PushResult::Accepted {
                    doc_id: doc_id.to_owned(),
                    heads,
                },
                Some(sent_heads),
            ));
        }
        let stored = known.then(|| doc.clone());
        if let Err(e) = doc.apply_changes(new.iter().cloned()) {
            return reject(rejection(
                RejectCode::Malformed,
                format!("the changes do not apply: {e}"),
            ));
        }
        if !doc.get_missing_deps(&[]).is_empty() {
            // Either the phone skipped something or the server lost history it had
            // acknowledged (restored from a backup): the phone answers by resending the
            // document's whole history.
            return reject(rejection(
                RejectCode::MissingHistory,
                "the changes depend on changes the server does not have; send those first",
            ));
        }
        let scope_before = case_scope_row(&tx, case_id)?;
        let (before, seen, after);
        let mut new_reveals = Vec::new();
        let target = if is_pii {
            let _ = PersonalDoc::from_automerge(doc.clone()).read();
            let before = stored
                .as_ref()
                .map(|d| PersonalDoc::from_automerge(d.clone()).reveals())
                .unwrap_or_default();
            new_reveals = PersonalDoc::from_automerge(doc.clone())
                .reveals()
                .into_iter()
                .filter(|r| !before.contains(r))
                .collect();
            Target::Personal
        } else {
            before = match &stored {
                None => None,
                Some(stored) => {
                    match CaseDoc::from_automerge(stored.clone()).and_then(|d| d.read()) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::error!(doc_id, error = %e, "the stored case does not read");
                            return reject(rejection(
                                RejectCode::Malformed,
                                "the server's copy of this case does not read",
                            ));
                        }
                    }
                }
            };
            match CaseDoc::from_automerge(doc.clone()).and_then(|d| d.read()) {
                Ok(c) => after = c,
                Err(e) => {
                    return reject(rejection(
                        RejectCode::Malformed,
                        format!("the case does not read: {e}"),
                    ));
                }
            }
            if after.id != case_id {
                return reject(rejection(
                    RejectCode::Malformed,
                    format!("document {doc_id} holds case {}", after.id),
                ));
            }
            seen = match &stored {
                Some(stored) if holds(&tx, &ctx.device_id, doc_id)? => seen_case(stored, &new),
                _ => None,
            };
            Target::Case {
                before: before.as_ref(),
                seen: seen.as_ref(),
                after: &after,
            }
        };
        if let Err(r) = validate(ctx, &target, scope_before.as_ref()) {
            return reject(r);
        }
        let heads = commit_doc(
            &tx,
            Commit {
                doc_id,
                doc: &mut doc,
                new_changes: &new,
                device: Some(&ctx.device_id),
                user: Some(&ctx.user_id),
                offset,
                now,
            },
            self.policy(),
            self.calendar(),
        )?;
        // Phone numbers revealed on a phone, offline or not, join the audit log with the
        // change that recorded them.
        for (by, at) in &new_reveals {
            audit::write(
                &tx,
                &audit::Entry {
                    at: now,
                    user_id: Some(&by.user),
                    device_id: Some(&by.device),
                    kind: audit::REVEAL,
                    case_id: Some(case_id),
                    doc_id: Some(doc_id),
                    detail: Some(serde_json::json!({
                        "on": "phone",
                        "device_time": at,
                        "corrected_time": gridcase_core::sync::corrected_time(*at, offset, now),
                    })),
                },
            )?;
        }
        tx.commit()?;
        Ok((
            PushResult::Accepted {
                doc_id: doc_id.to_owned(),
                heads,
            },
            Some(sent_heads),
        ))
    }
}

/// The case as the author of `new` last saw it: the server's copy at the changes they depend on
/// (outside `new` itself). Only asked for while the device still holds the document: once it
/// was told to evict it, old dependencies no longer open a case that left its scope.
fn seen_case(stored: &AutoCommit, new: &[Change]) -> Option<Case> {
    let new_hashes: HashSet<ChangeHash> = new.iter().map(Change::hash).collect();
    let mut deps: Vec<ChangeHash> = new
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .filter(|h| !new_hashes.contains(h))
        .collect();
    deps.sort();
    deps.dedup();
    if deps.is_empty() {
        return None;
    }
    let forked = stored.clone().fork_at(&deps).ok()?;
    CaseDoc::from_automerge(forked).and_then(|d| d.read()).ok()
}

/// A restore page: whole snapshots of the documents in scope, in id order after `token.after`.
fn restore_page(
    tx: &Transaction<'_>,
    ctx: &DeviceCtx,
    scope: &Scope<'_>,
    token: RestoreToken,
    size: u32,
    cursor: u64,
) -> Result<Page> {
    let sql = format!(
        "SELECT d.doc_id FROM docs d JOIN cases k ON k.case_id = d.case_id
         WHERE d.doc_id > :after AND {SCOPE_SQL} ORDER BY d.doc_id LIMIT :limit"
    );
    let mut ids: Vec<String> = tx
        .prepare(&sql)?
        .query_map(
            named_params! {":after": token.after, ":prefix": scope.prefix, ":user": scope.user,
            ":pii": scope.pii, ":limit": i64::from(size) + 1},
            |r| r.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let more = ids.len() > size as usize;
    ids.truncate(size as usize);
    let mut docs = Vec::with_capacity(ids.len());
    for id in &ids {
        if let Some(update) = snapshot_update(tx, &ctx.device_id, id)? {
            docs.push(update);
        }
    }
    match (more, ids.last()) {
        (true, Some(last)) => {
            let count_sql = format!(
                "SELECT count(*) FROM docs d JOIN cases k ON k.case_id = d.case_id
                 WHERE d.doc_id > :after AND {SCOPE_SQL}"
            );
            let remaining: i64 = tx.query_row(
                &count_sql,
                named_params! {":after": last, ":prefix": scope.prefix, ":user": scope.user,
                ":pii": scope.pii},
                |r| r.get(0),
            )?;
            Ok(Page {
                docs,
                cursor,
                restore: Some(RestoreToken {
                    upto: token.upto,
                    after: last.clone(),
                }),
                remaining: remaining as u64,
            })
        }
        _ => Ok(Page {
            docs,
            cursor: token.upto,
            restore: None,
            remaining: 0,
        }),
    }
}

/// An incremental page: the change rows after `cursor` for documents in scope, less the rows the
/// device sent itself; a snapshot instead for documents the device does not hold yet.
fn feed_page(
    tx: &Transaction<'_>,
    ctx: &DeviceCtx,
    scope: &Scope<'_>,
    cursor: u64,
    size: u32,
    max_seq: u64,
) -> Result<Page> {
    let sql = format!(
        "SELECT c.seq, c.doc_id, CASE WHEN c.device_id IS :device THEN NULL ELSE c.bytes END
         FROM changes c JOIN docs d ON d.doc_id = c.doc_id JOIN cases k ON k.case_id = d.case_id
         WHERE c.seq > :cursor AND {SCOPE_SQL} ORDER BY c.seq LIMIT :limit"
    );
    let mut stmt = tx.prepare(&sql)?;
    let rows = stmt.query_map(
        named_params! {":device": ctx.device_id, ":cursor": cursor as i64, ":prefix": scope.prefix,
        ":user": scope.user, ":pii": scope.pii, ":limit": FEED_ROW_CAP as i64 + 1},
        |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, String>(1)?,
                r.get::<_, Option<Vec<u8>>>(2)?,
            ))
        },
    )?;
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let mut covered = cursor;
    let mut more = false;
    for (n, row) in rows.enumerate() {
        let (seq, doc_id, bytes) = row?;
        let new_doc = !groups.contains_key(&doc_id);
        if n >= FEED_ROW_CAP || (new_doc && order.len() >= size as usize) {
            more = true;
            break;
        }
        if new_doc {
            order.push(doc_id.clone());
        }
        let group = groups.entry(doc_id).or_default();
        if let Some(bytes) = bytes {
            group.push(bytes);
        }
        covered = seq;
    }
    drop(stmt);
    if !more {
        covered = covered.max(max_seq);
    }
    let mut docs = Vec::new();
    for doc_id in order {
        let held = holds(tx, &ctx.device_id, &doc_id)?;
        if !held {
            if let Some(update) = snapshot_update(tx, &ctx.device_id, &doc_id)? {
                docs.push(update);
            }
            // A case that just entered the scope brings its personal data along, whose own
            // rows may all be older than the cursor.
            let (case_id, is_pii) = split_doc_id(&doc_id);
            let pii = personal_doc_id(case_id);
            if !is_pii
                && scope.pii
                && !groups.contains_key(&pii)
                && !holds(tx, &ctx.device_id, &pii)?
                && let Some(update) = snapshot_update(tx, &ctx.device_id, &pii)?
            {
                docs.push(update);
            }
            continue;
        }
        let changes = groups.remove(&doc_id).unwrap_or_default();
        if changes.is_empty() {
            continue; // only the device's own changes
        }
        docs.push(DocUpdate {
            heads: doc_heads(tx, &doc_id)?,
            doc_id,
            payload: Payload::Changes(changes),
        });
    }
    let remaining = if more {
        let count_sql = format!(
            "SELECT count(DISTINCT c.doc_id) FROM changes c JOIN docs d ON d.doc_id = c.doc_id
             JOIN cases k ON k.case_id = d.case_id WHERE c.seq > :cursor AND {SCOPE_SQL}"
        );
        let n: i64 = tx.query_row(
            &count_sql,
            named_params! {":cursor": covered as i64, ":prefix": scope.prefix, ":user": scope.user,
            ":pii": scope.pii},
            |r| r.get(0),
        )?;
        n as u64
    } else {
        0
    };
    Ok(Page {
        docs,
        cursor: covered,
        restore: None,
        remaining,
    })
}

/// Answers Automerge sync messages for documents in scope. The phone's changes inside such a
/// message are dropped, not stored: changes reach the server only through validated pushes.
fn answer_catch_up(
    tx: &Transaction<'_>,
    ctx: &DeviceCtx,
    scope: &Scope<'_>,
    asks: &[CatchUp],
) -> Result<Vec<CatchUp>> {
    let mut answers = Vec::new();
    for ask in asks {
        if !doc_in_scope(tx, scope, &ask.doc_id)? {
            continue;
        }
        let Ok(mut message) = Message::decode(&ask.message) else {
            tracing::info!(doc_id = ask.doc_id, "undecodable catch-up message");
            continue;
        };
        message.changes = ChunkList::empty();
        let Some(mut doc) = load_doc(tx, &ask.doc_id)? else {
            continue;
        };
        let mut state = State::new();
        if let Err(e) = doc.sync().receive_sync_message(&mut state, message) {
            tracing::info!(doc_id = ask.doc_id, error = %e, "catch-up message refused");
            continue;
        }
        if let Some(reply) = doc.sync().generate_sync_message(&mut state) {
            answers.push(CatchUp {
                doc_id: ask.doc_id.clone(),
                message: reply.encode(),
            });
        }
        tx.execute(
            "INSERT OR IGNORE INTO device_docs (device_id, doc_id) VALUES (?1, ?2)",
            [&ctx.device_id, &ask.doc_id],
        )?;
    }
    Ok(answers)
}

/// Documents the device holds that left its scope; forgotten here once listed.
fn evictions(tx: &Transaction<'_>, ctx: &DeviceCtx, scope: &Scope<'_>) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT dd.doc_id FROM device_docs dd JOIN docs d ON d.doc_id = dd.doc_id
         JOIN cases k ON k.case_id = d.case_id
         WHERE dd.device_id = :device AND NOT {SCOPE_SQL} ORDER BY dd.doc_id"
    );
    let evict: Vec<String> = tx
        .prepare(&sql)?
        .query_map(
            named_params! {":device": ctx.device_id, ":prefix": scope.prefix, ":user": scope.user,
            ":pii": scope.pii},
            |r| r.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    for doc_id in &evict {
        tx.execute(
            "DELETE FROM device_docs WHERE device_id = ?1 AND doc_id = ?2",
            [&ctx.device_id, doc_id],
        )?;
    }
    Ok(evict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridcase_core::area::Jurisdiction;
    use gridcase_core::model::Role;

    fn ctx(role: Role, prefix: &str) -> DeviceCtx {
        DeviceCtx {
            device_id: "0123456789abcdef0123456789abcdef".into(),
            user_id: "u1".into(),
            role,
            jurisdiction: Jurisdiction::parse(prefix).unwrap(),
        }
    }

    #[test]
    fn page_sizes_are_capped() {
        assert_eq!(page_size(0), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(10), 10);
        assert_eq!(page_size(100_000), MAX_PAGE_SIZE);
    }

    #[test]
    fn doc_ids() {
        assert!(check_doc_id("abc").is_ok());
        assert!(check_doc_id("abc#pii").is_ok());
        assert!(check_doc_id("").is_err());
        assert!(check_doc_id("#pii").is_err());
        assert!(check_doc_id("a#b#pii").is_err());
        assert!(check_doc_id("a b").is_err());
        assert!(check_doc_id(&"x".repeat(500)).is_err());
    }

    #[test]
    fn garbage_changes_are_malformed() {
        let push = DocPush {
            doc_id: "c".into(),
            changes: vec![vec![1, 2, 3]],
        };
        let err = decode_push(&push).unwrap_err();
        assert_eq!(err.code, RejectCode::Malformed);
    }

    #[test]
    fn scope_is_jurisdiction_or_assignment() {
        let c = ctx(Role::GridWorker, "330604101");
        assert!(in_scope(&c, "330604101201", ""));
        assert!(!in_scope(&c, "330604102201", ""));
        assert!(in_scope(&c, "330604102201", "u1"));
        assert!(!in_scope(&c, "330604102201", ""));
    }

    #[test]
    fn personal_data_needs_the_role() {
        let unit = ctx(Role::HandlingUnit, "330604");
        let err = validate(&unit, &Target::Personal, None).unwrap_err();
        assert_eq!(err.code, RejectCode::PersonalData);
        let worker = ctx(Role::GridWorker, "330604101");
        assert!(validate(&worker, &Target::Personal, None).is_ok());
        let elsewhere = ("330604102001".to_owned(), String::new());
        assert_eq!(
            validate(&worker, &Target::Personal, Some(&elsewhere))
                .unwrap_err()
                .code,
            RejectCode::OutOfJurisdiction
        );
    }
}
