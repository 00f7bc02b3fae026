//! Reads: a whole case (from its documents), its countdown, and the lists (from the projection,
//! a page at a time).

use serde::{Deserialize, Serialize};

use super::{Phone, PhoneError, meta};
use crate::deadline::{self, DeadlineStatus};
use crate::doc::{CaseDoc, PersonalDoc, mask_phone, personal_doc_id};
use crate::model::{Case, Complainant, Millis, Status};
use crate::store::meta as store_meta;
use crate::store::{CaseFilter, CasePage, CaseSummary, Page, docs, queries, times};
use crate::sync::times::with_trusted_times;

/// A case with its complainant, when this phone holds the personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseDetail {
    pub case: Case,
    pub complainant: Option<Complainant>,
    /// The complainant's phone as lists and exports show it (138****1234).
    pub masked_phone: Option<String>,
}

/// The lists a screen shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaseList {
    /// Every case on this phone, by area code.
    All,
    /// Assigned to or registered by this phone's user, most recently changed first.
    Mine,
    /// Most of the stage's time used (预警), by this phone's rules; soonest first.
    DueSoon,
    /// Past the deadline (超期); most overdue first.
    Overdue,
    /// In one state, most recently changed first.
    Status(Status),
    /// In an area: a prefix of the 12-digit code (a jurisdiction).
    Area(String),
    /// Title or number contains the text.
    Search(String),
}

impl Phone {
    /// The whole case, read from its document, with the complainant when this phone holds it.
    /// Its times are those the server vouched for (`crate::store::times`).
    pub fn get_case(&self, case_id: &str) -> Result<CaseDetail, PhoneError> {
        self.check()?;
        let actor = self.actor();
        let (case, pii, trusted, offset) = {
            let mut store = self.app();
            let tx = store.read()?;
            let loaded = docs::load_doc(&tx, case_id, &actor)?
                .ok_or_else(|| PhoneError::NotFound(case_id.into()))?;
            let pii = docs::load_doc(&tx, &personal_doc_id(case_id), &actor)?;
            let trusted = times::load(&tx, case_id)?;
            (loaded.doc, pii, trusted, store_meta::clock_offset(&tx)?)
        };
        let case = CaseDoc::from_automerge(case)?.read()?;
        let case = with_trusted_times(&case, &trusted, offset);
        let complainant = pii.map(|l| PersonalDoc::from_automerge(l.doc).read());
        let masked_phone = complainant.as_ref().map(|c| mask_phone(&c.phone));
        Ok(CaseDetail {
            case,
            complainant,
            masked_phone,
        })
    }

    /// Where the case stands against its current stage's deadline, by the phone's rules, the
    /// server's times and `now` (the phone's clock) corrected by the last measured offset.
    pub fn deadline(
        &self,
        case_id: &str,
        now: Millis,
    ) -> Result<Option<DeadlineStatus>, PhoneError> {
        let case = self.get_case(case_id)?.case;
        let now = times::server_now(self.app().conn(), now)?;
        let rules = self.rules();
        Ok(deadline::evaluate(
            &case,
            &rules.policy,
            &rules.calendar,
            now,
        ))
    }

    /// The list row of one case.
    pub fn summary(&self, case_id: &str) -> Result<Option<CaseSummary>, PhoneError> {
        self.check()?;
        Ok(queries::get(self.app().conn(), case_id)?)
    }

    /// One page of a list; `now` (the phone's clock, corrected by the last measured offset)
    /// places the deadline lists.
    pub fn list(&self, list: &CaseList, page: Page, now: Millis) -> Result<CasePage, PhoneError> {
        self.check()?;
        let store = self.app();
        let filter = self.filter(store.conn(), list, now)?;
        Ok(queries::list(store.conn(), &filter, page)?)
    }

    /// How many cases a list holds.
    pub fn count(&self, list: &CaseList, now: Millis) -> Result<u64, PhoneError> {
        self.check()?;
        let store = self.app();
        let filter = self.filter(store.conn(), list, now)?;
        Ok(queries::count(store.conn(), &filter)?)
    }

    fn filter(
        &self,
        conn: &rusqlite::Connection,
        list: &CaseList,
        now: Millis,
    ) -> Result<CaseFilter, PhoneError> {
        Ok(match list {
            CaseList::All => CaseFilter::All,
            CaseList::Mine => CaseFilter::Mine {
                user: meta::author(conn, &self.device)?.user,
            },
            CaseList::DueSoon => {
                CaseFilter::due_soon(times::server_now(conn, now)?, &self.rules().policy)
            }
            CaseList::Overdue => CaseFilter::Overdue {
                now: times::server_now(conn, now)?,
            },
            CaseList::Status(status) => CaseFilter::Status(*status),
            CaseList::Area(prefix) => CaseFilter::Area(prefix.clone()),
            CaseList::Search(text) => CaseFilter::Search(text.clone()),
        })
    }
}
