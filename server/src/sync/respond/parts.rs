//! A document larger than the page budget, for a phone that accepts parts: one byte range of
//! its snapshot per page (`gridcase_core::sync::parts`). In a restore, the token stays before
//! the document until its last part is sent; in the change feed (a document new to the device,
//! say a large case just moved into its area), the cursor stays before the document's first
//! row. Either way a cut or an app restart resumes at the document, and the phone's `staged`
//! says from which byte. The device holds the document only once the last part went out.

use std::collections::HashSet;

use gridcase_core::sync::parts::next_part;
use gridcase_core::sync::{DocUpdate, Payload, RestoreToken};

use super::{FEED_ROW_CAP, Page, Responder};
use crate::db::{FeedRow, Seq};
use crate::store::{Result, StoreError};

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
        let ends = done && self.view.restore_ids(self.scope, &after, 1)?.is_empty();
        if ends {
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
            remaining: self.restore_left(&after, usize::from(done))?,
            restore: Some(RestoreToken {
                upto: token.upto,
                after,
            }),
        })
    }

    /// Whether the document of a feed row goes in parts (as its snapshot): the device does
    /// not hold it (`new_doc`: first seen in this page) and its snapshot alone exceeds the
    /// page's budget, or the row is a single change larger than the budget, which no page of
    /// this budget can carry (whether or not the device holds the document: the server notes
    /// a document as held when it sends it, and that response may have been cut). The
    /// snapshot read to weigh a new document is kept for sending.
    pub(super) fn feed_in_parts(
        &mut self,
        row: &FeedRow,
        new_doc: bool,
        budget: usize,
    ) -> Result<bool> {
        if !self.accept_parts {
            return Ok(false);
        }
        if row.bytes.iter().map(Vec::len).sum::<usize>() > budget {
            return Ok(true);
        }
        if !new_doc || self.holds(&row.doc_id)? {
            return Ok(false);
        }
        let Some(update) = self.whole(&row.doc_id)? else {
            return Ok(false);
        };
        let big = self.goes_in_parts(&update, budget);
        self.wholes.insert(row.doc_id.clone(), update);
        Ok(big)
    }

    /// A feed page carrying the next part of the document of the first row (`rows` are the
    /// feed after `cursor`). Before the last part the cursor stays put; with it, the device
    /// holds the document (and gets its personal data, as a whole document would bring) and
    /// the cursor moves past the document's leading rows, which the snapshot contains.
    pub(super) fn feed_part_page(
        &mut self,
        rows: &[FeedRow],
        cursor: u64,
        budget: usize,
        head: Seq,
    ) -> Result<Page> {
        let doc_id = rows[0].doc_id.clone();
        let whole = match self.wholes.remove(&doc_id) {
            Some(whole) => Some(whole),
            None => self.whole(&doc_id)?,
        };
        let Some(DocUpdate {
            payload: Payload::Snapshot(snapshot),
            ..
        }) = whole
        else {
            // A feed row's document is in the same read view: only a broken database lacks it.
            return Err(StoreError::NotFound(format!(
                "document {doc_id} of the feed"
            )));
        };
        let part = next_part(&doc_id, &snapshot, self.staged.as_ref(), budget);
        let done = part.is_last();
        self.part = Some(part);
        if !done {
            let remaining = self.view.feed_docs_after(self.scope, cursor as Seq)?;
            return Ok(Page {
                docs: Vec::new(),
                cursor,
                restore: None,
                remaining: remaining.max(1),
            });
        }
        self.holds.push(doc_id.clone());
        let mut docs = Vec::new();
        self.personal_data_with(&doc_id, &HashSet::new(), &mut docs)?;
        let seen = &rows[..rows.len().min(FEED_ROW_CAP)];
        let run = seen.iter().take_while(|r| r.doc_id == doc_id).count();
        let covered = if run == rows.len() {
            head.max(rows[run - 1].seq)
        } else {
            rows[run - 1].seq
        };
        let remaining = if covered >= head {
            0
        } else {
            self.view.feed_docs_after(self.scope, covered)?
        };
        Ok(Page {
            docs,
            cursor: covered as u64,
            restore: None,
            remaining,
        })
    }
}
