//! Case ids said once on the wire (protocol 6): [`compact`] and [`expand`].
//!
//! After the snapshots and the trusted times, most of a restore's bytes are case ids: random
//! UUIDs, about 16 incompressible bytes each. A response spelled each case's id three times:
//! as its document's id, in its personal-data document's id (`<case id>#pii`), and in the
//! trusted-times block ([`super::TimesBlock`]). zstd finds the repeats, but each still costs a
//! match reaching far back (a few bytes each: 70 KB, 3.6 %, of W1's 10,000-case restore). From
//! protocol 6 the encoded response says each id once, and the rest refers to it:
//!
//! - a personal-data document right after its case's document goes as `#pii`, the previous
//!   document's case id left out (no real document id starts with `#`: a case id holds none,
//!   `check_doc_id` on the server);
//! - a case of the times block that is the next case of the response's documents goes as `""`
//!   (no case id is empty). The cases of the documents are taken in their order, each run of
//!   documents of one case counting once; a case spelled out moves the reading on to just
//!   after it, so one case without times (left out of the block) costs one spelled id.
//!
//! Only the encoded bytes change: the server builds, and the phone reads, responses with every
//! id spelled out ([`super::wire`] compacts after building and expands before handing over),
//! so what a phone can see, and which documents it is sent, are as before.

use std::collections::HashMap;

use super::SyncResponse;
use crate::doc::split_doc_id;

/// What stands for the case id in a personal-data document's id that follows its case's.
const PII_OF_PREVIOUS: &str = "#pii";

/// A response naming a document or case it does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a reference to a case in the response is damaged: {0}")]
pub struct DamagedRef(String);

/// Leaves out of `response` the case ids [`expand`] can put back (see the module's text).
pub fn compact(response: &mut SyncResponse) {
    if let Some(block) = &mut response.compact_times {
        let mut cases = DocCases::new(response.docs.iter().map(|d| d.doc_id.as_str()));
        for case in &mut block.cases {
            if cases.upcoming() == Some(case.case_id.as_str()) {
                cases.take_upcoming();
                case.case_id.clear();
            } else {
                cases.spelled(&case.case_id);
            }
        }
    }
    let mut previous_case: Option<String> = None;
    for doc in &mut response.docs {
        let (case_id, is_pii) = split_doc_id(&doc.doc_id);
        let case_id = case_id.to_owned();
        if is_pii && previous_case.as_deref() == Some(case_id.as_str()) {
            doc.doc_id = PII_OF_PREVIOUS.to_owned();
        }
        previous_case = Some(case_id);
    }
}

/// Puts back the ids [`compact`] left out; a reference to nothing is an error.
pub fn expand(response: &mut SyncResponse) -> Result<(), DamagedRef> {
    let mut previous_case: Option<String> = None;
    for doc in &mut response.docs {
        if doc.doc_id.starts_with('#') {
            let case_id = previous_case
                .as_deref()
                .filter(|_| doc.doc_id == PII_OF_PREVIOUS)
                .ok_or_else(|| DamagedRef(format!("a document is named `{}`", doc.doc_id)))?;
            doc.doc_id.insert_str(0, case_id);
        }
        previous_case = Some(split_doc_id(&doc.doc_id).0.to_owned());
    }
    let Some(block) = &mut response.compact_times else {
        return Ok(());
    };
    let mut cases = DocCases::new(response.docs.iter().map(|d| d.doc_id.as_str()));
    for case in &mut block.cases {
        if case.case_id.is_empty() {
            let next = cases.take_upcoming().ok_or_else(|| {
                DamagedRef(format!(
                    "the times block names more cases than the {} the documents hold",
                    cases.ids.len()
                ))
            })?;
            case.case_id = next.to_owned();
        } else {
            cases.spelled(&case.case_id);
        }
    }
    Ok(())
}

/// The cases of a response's documents in their order, and how far the times block has named
/// them.
struct DocCases<'a> {
    ids: Vec<&'a str>,
    position: HashMap<&'a str, usize>,
    next: usize,
}

impl<'a> DocCases<'a> {
    fn new(doc_ids: impl Iterator<Item = &'a str>) -> Self {
        let mut ids: Vec<&str> = doc_ids.map(|id| split_doc_id(id).0).collect();
        ids.dedup();
        let mut position = HashMap::with_capacity(ids.len());
        for (at, id) in ids.iter().enumerate() {
            position.entry(*id).or_insert(at);
        }
        DocCases {
            ids,
            position,
            next: 0,
        }
    }

    /// The case an empty reference names now.
    fn upcoming(&self) -> Option<&'a str> {
        self.ids.get(self.next).copied()
    }

    /// The upcoming case, named by an empty id: references go on from the next one.
    fn take_upcoming(&mut self) -> Option<&'a str> {
        let upcoming = self.upcoming()?;
        self.next += 1;
        Some(upcoming)
    }

    /// After the block spelled `case_id`, references go on from the case after it (after its
    /// first run of documents), when it is one of the documents' cases.
    fn spelled(&mut self, case_id: &str) {
        if let Some(at) = self.position.get(case_id) {
            self.next = at + 1;
        }
    }
}

#[cfg(test)]
mod tests;
