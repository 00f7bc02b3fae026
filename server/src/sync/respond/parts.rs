//! A restore document larger than the page budget, for a phone that accepts parts: one byte
//! range of its snapshot per page (`gridcase_core::sync::parts`). The restore token stays
//! before the document until its last part is sent, so a cut or an app restart resumes at the
//! document, and the phone's `staged` says from which byte. The device holds the document only
//! once the last part went out.

use gridcase_core::sync::parts::next_part;
use gridcase_core::sync::{DocUpdate, Payload, RestoreToken};

use super::{Page, Responder};
use crate::store::Result;

impl Responder<'_> {
    /// Whether `update` must go in parts: the phone accepts them and it alone exceeds the
    /// page's byte budget.
    pub(super) fn goes_in_parts(&self, update: &DocUpdate, budget: usize) -> bool {
        self.accept_parts && super::update_bytes(update) > budget
    }

    /// The page that carries the next part of `update` (a snapshot), and nothing else.
    pub(super) fn part_page(
        &mut self,
        token: RestoreToken,
        update: DocUpdate,
        budget: usize,
        cursor: u64,
    ) -> Result<Page> {
        let Payload::Snapshot(snapshot) = update.payload else {
            unreachable!("a restore sends snapshots only");
        };
        let part = next_part(&update.doc_id, &snapshot, self.staged.as_ref(), budget);
        let done = part.is_last();
        let after = if done {
            update.doc_id
        } else {
            self.holds.retain(|held| *held != update.doc_id);
            token.after
        };
        self.part = Some(part);
        let remaining = self.view.restore_docs_after(self.scope, &after)?;
        if done && remaining == 0 {
            return Ok(Page {
                docs: Vec::new(),
                cursor: token.upto,
                restore: None,
                remaining: 0,
            });
        }
        Ok(Page {
            docs: Vec::new(),
            cursor,
            restore: Some(RestoreToken {
                upto: token.upto,
                after,
            }),
            remaining,
        })
    }
}
