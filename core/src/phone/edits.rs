//! Local edits: each is one write transaction on the app's connection (the document's new
//! changes, its list row, its sync bookkeeping), committed before the call returns, then
//! announced to the change listeners.

use automerge::ActorId;
use rusqlite::Transaction;

use super::error::bad;
use super::{CaseChanges, ChangeSource, Phone, PhoneError, meta};
use crate::doc::{CaseDoc, DocError, FieldEdit, PersonalDoc, personal_doc_id, split_doc_id};
use crate::identity::{self, IdentityError};
use crate::lifecycle::Action;
use crate::model::{Author, Case, Complainant, Millis, NewCase};
use crate::store::docs::{self, Loaded};
use crate::store::{meta as store_meta, projection};

impl Phone {
    /// Registers a new case (a draft) on this phone, with its complainant's personal data in
    /// the separate `#pii` document.
    pub fn create_case(
        &self,
        new: &NewCase,
        complainant: Option<&Complainant>,
        now: Millis,
    ) -> Result<Case, PhoneError> {
        self.check()?;
        let (actor, rules) = (self.actor(), self.rules());
        let case = {
            let mut store = self.app();
            let tx = store.write()?;
            let author = meta::author(&tx, &self.device)?;
            if docs::doc_state(&tx, &new.id)?.is_some() {
                return Err(PhoneError::Doc(DocError::Malformed {
                    field: format!("id {} already exists", new.id),
                }));
            }
            let mut doc = CaseDoc::create(new, &author, actor.clone(), now)?;
            let case = doc.read()?;
            docs::persist(&tx, &new.id, doc.automerge(), None, &[], now)?;
            projection::upsert(&tx, &case, &rules, now)?;
            if let Some(c) = complainant {
                let pii_id = personal_doc_id(&new.id);
                let mut pii = PersonalDoc::create(c, &author, actor, now)?;
                docs::persist(&tx, &pii_id, pii.automerge(), None, &[], now)?;
                projection::refresh_has_pending(&tx, &pii_id)?;
            }
            tx.commit()?;
            case
        };
        self.listeners.notify(CaseChanges::local(&case.id));
        Ok(case)
    }

    pub fn edit(&self, case_id: &str, edit: &FieldEdit, now: Millis) -> Result<(), PhoneError> {
        self.mutate_case(case_id, now, |doc, author| doc.edit(edit, author, now))
    }

    pub fn set_description(
        &self,
        case_id: &str,
        text: &str,
        now: Millis,
    ) -> Result<(), PhoneError> {
        self.mutate_case(case_id, now, |doc, author| {
            doc.set_description(text, author, now)
        })
    }

    pub fn splice_description(
        &self,
        case_id: &str,
        pos: usize,
        delete: usize,
        insert: &str,
        now: Millis,
    ) -> Result<(), PhoneError> {
        self.mutate_case(case_id, now, |doc, author| {
            doc.splice_description(pos, delete, insert, author, now)
        })
    }

    /// Performs a lifecycle action; returns the case as it reads afterwards.
    pub fn act(&self, case_id: &str, action: &Action, now: Millis) -> Result<Case, PhoneError> {
        self.mutate_case(case_id, now, |doc, author| doc.act(action, author, now))
    }

    /// Returns the note's id.
    pub fn add_note(&self, case_id: &str, text: &str, now: Millis) -> Result<String, PhoneError> {
        self.mutate_case(case_id, now, |doc, author| doc.add_note(text, author, now))
    }

    /// Returns the attachment's id.
    pub fn add_attachment(
        &self,
        case_id: &str,
        sha256: &str,
        mime: &str,
        size: u64,
        caption: &str,
        now: Millis,
    ) -> Result<String, PhoneError> {
        self.mutate_case(case_id, now, |doc, author| {
            doc.add_attachment(sha256, mime, size, caption, author, now)
        })
    }

    /// The complainant's unmasked phone number, for a role that may see it. Every reveal is
    /// recorded in the personal-data document (committed before the number is returned), so
    /// it reaches the server's audit log with the next sync.
    pub fn reveal_complainant_phone(
        &self,
        case_id: &str,
        now: Millis,
    ) -> Result<String, PhoneError> {
        let phone = self.mutate_personal(case_id, now, None, |pii, author| {
            pii.record_reveal(author, now)?;
            Ok(pii.read().phone)
        })?;
        phone.ok_or_else(|| PhoneError::NotFound(personal_doc_id(case_id)))
    }

    /// Sets the complainant of a case held on this phone (creating its `#pii` document).
    pub fn set_complainant(
        &self,
        case_id: &str,
        complainant: &Complainant,
        now: Millis,
    ) -> Result<(), PhoneError> {
        self.mutate_personal(case_id, now, Some(complainant), |pii, author| {
            pii.set(complainant, author, now)
        })?;
        Ok(())
    }

    /// Loads a case document, lets `f` change it, and stores the new changes with the updated
    /// projection in one transaction. An edit clears a rejection (the user edited again).
    fn mutate_case<T>(
        &self,
        case_id: &str,
        now: Millis,
        f: impl FnOnce(&mut CaseDoc, &Author) -> Result<T, DocError>,
    ) -> Result<T, PhoneError> {
        self.mutate_case_with(case_id, now, f, |_| Ok(()))
    }

    /// [`Self::mutate_case`], with `also` run in the same transaction after the change (e.g.
    /// storing an attachment's bytes with its reference).
    pub(super) fn mutate_case_with<T>(
        &self,
        case_id: &str,
        now: Millis,
        f: impl FnOnce(&mut CaseDoc, &Author) -> Result<T, DocError>,
        also: impl FnOnce(&Transaction<'_>) -> Result<(), PhoneError>,
    ) -> Result<T, PhoneError> {
        self.check()?;
        let (actor, rules) = (self.actor(), self.rules());
        let out = {
            let mut store = self.app();
            let tx = store.write()?;
            let author = meta::author(&tx, &self.device)?;
            let Loaded {
                doc,
                persisted,
                state,
            } = docs::load_doc(&tx, case_id, &actor)?
                .ok_or_else(|| PhoneError::NotFound(case_id.into()))?;
            let mut case_doc = CaseDoc::from_automerge(doc)?;
            let out = f(&mut case_doc, &author)?;
            let case = case_doc.read()?;
            let written = docs::persist(
                &tx,
                case_id,
                case_doc.automerge(),
                Some(&persisted),
                &state.server_heads,
                now,
            )?;
            if written {
                docs::set_rejected(&tx, case_id, None)?;
                projection::upsert(&tx, &case, &rules, now)?;
            }
            also(&tx)?;
            tx.commit()?;
            out
        };
        self.listeners.notify(CaseChanges::local(case_id));
        Ok(out)
    }

    /// Like [`Self::mutate_case`] for a case's personal-data document. When the case has none,
    /// `create` makes one (and `f` is not called: `None` is returned); without it that is
    /// `NotFound`.
    fn mutate_personal<T>(
        &self,
        case_id: &str,
        now: Millis,
        create: Option<&Complainant>,
        f: impl FnOnce(&mut PersonalDoc, &Author) -> Result<T, DocError>,
    ) -> Result<Option<T>, PhoneError> {
        self.check()?;
        let actor = self.actor();
        let pii_id = personal_doc_id(case_id);
        let out = {
            let mut store = self.app();
            let tx = store.write()?;
            let author = meta::author(&tx, &self.device)?;
            if docs::doc_state(&tx, case_id)?.is_none() {
                return Err(PhoneError::NotFound(case_id.into()));
            }
            let out = match (docs::load_doc(&tx, &pii_id, &actor)?, create) {
                (Some(loaded), _) => Some(update_personal(&tx, &pii_id, loaded, &author, now, f)?),
                (None, Some(complainant)) => {
                    let mut pii = PersonalDoc::create(complainant, &author, actor, now)?;
                    docs::persist(&tx, &pii_id, pii.automerge(), None, &[], now)?;
                    None
                }
                (None, None) => return Err(PhoneError::NotFound(pii_id)),
            };
            projection::refresh_has_pending(&tx, &pii_id)?;
            tx.commit()?;
            out
        };
        self.listeners.notify(CaseChanges::local(case_id));
        Ok(out)
    }

    /// Drops this phone's unacknowledged changes to a document: the document goes back to what
    /// the server is known to hold and is marked for a catch-up in the next sync (which brings
    /// anything else the server has). A document the server never had is deleted (with its list
    /// row, for a case). `fresh_nonce` (4 random bytes) becomes this store's actor nonce, so the
    /// sequence numbers of the dropped changes are never reused.
    pub fn discard_local_changes(
        &self,
        doc_id: &str,
        fresh_nonce: [u8; 4],
        now: Millis,
    ) -> Result<(), PhoneError> {
        self.check()?;
        let new_actor =
            identity::actor_for(&self.device, fresh_nonce).ok_or(IdentityError::MalformedToken)?;
        let (case_id, _) = split_doc_id(doc_id);
        let removed = {
            let mut store = self.app();
            let tx = store.write()?;
            let removed = rewind(&tx, doc_id, &self.actor(), &new_actor, &self.rules(), now)?;
            store_meta::set_actor_nonce(&tx, fresh_nonce)?;
            tx.commit()?;
            *self.actor.write().unwrap_or_else(|p| p.into_inner()) = new_actor;
            removed
        };
        let mut changes = CaseChanges::new(ChangeSource::Local);
        if removed {
            changes.removed.push(case_id.to_string());
        } else {
            changes.updated.push(case_id.to_string());
        }
        self.listeners.notify(changes);
        Ok(())
    }
}

/// Applies `f` to a stored personal-data document and stores its new changes.
fn update_personal<T>(
    tx: &Transaction<'_>,
    pii_id: &str,
    loaded: Loaded,
    author: &Author,
    now: Millis,
    f: impl FnOnce(&mut PersonalDoc, &Author) -> Result<T, DocError>,
) -> Result<T, PhoneError> {
    let Loaded {
        doc,
        persisted,
        state,
    } = loaded;
    let mut pii = PersonalDoc::from_automerge(doc);
    let out = f(&mut pii, author)?;
    let written = docs::persist(
        tx,
        pii_id,
        pii.automerge(),
        Some(&persisted),
        &state.server_heads,
        now,
    )?;
    if written {
        docs::set_rejected(tx, pii_id, None)?;
    }
    Ok(out)
}

/// Rewinds (or deletes) one document for [`Phone::discard_local_changes`]; returns whether the
/// case left the lists.
fn rewind(
    tx: &Transaction<'_>,
    doc_id: &str,
    actor: &ActorId,
    new_actor: &ActorId,
    rules: &projection::Rules,
    now: Millis,
) -> Result<bool, PhoneError> {
    let Loaded { mut doc, state, .. } =
        docs::load_doc(tx, doc_id, actor)?.ok_or_else(|| PhoneError::NotFound(doc_id.into()))?;
    let (case_id, is_pii) = split_doc_id(doc_id);
    if state.server_heads.is_empty() {
        docs::delete_doc(tx, doc_id)?;
        if is_pii {
            projection::refresh_has_pending(tx, doc_id)?;
        } else {
            projection::delete(tx, case_id)?;
        }
        return Ok(!is_pii);
    }
    let mut rewound = doc
        .fork_at(&state.server_heads)
        .map_err(|e| bad(doc_id, e))?
        .with_actor(new_actor.clone());
    docs::persist(tx, doc_id, &mut rewound, None, &state.server_heads, now)?;
    docs::set_rejected(tx, doc_id, None)?;
    docs::mark_refetch(tx, doc_id)?;
    if !is_pii {
        match CaseDoc::from_automerge(rewound).and_then(|d| d.read()) {
            Ok(case) => projection::upsert(tx, &case, rules, now)?,
            Err(_) => projection::delete(tx, case_id)?,
        }
    }
    projection::refresh_has_pending(tx, doc_id)?;
    Ok(false)
}
