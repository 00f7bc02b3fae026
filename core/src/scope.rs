//! Scope: which documents a device may see, write, hold and be sent. The one definition of the
//! rule, in Rust ([`Scope::covers`]) and as SQL ([`Scope::sql`]) beside it: the judge of a push
//! (`crate::validate`), the server's change feed, restore pages, catch-up, evictions and every
//! place that records "this device holds this document" use one of the two, and a server test
//! runs both over the same cases on both backends.
//!
//! The rule: a case is in scope when its area lies inside the user's jurisdiction or the case is
//! assigned to the user; its personal-data document (`<case id>#pii`) only when, in addition, the
//! role may see personal data. An area that is not a valid 12-digit code lies nowhere (as in
//! `gridcase_core::area::Jurisdiction::contains_str`, which core's validation uses): the
//! projection stores such a case's `scope_area` as NULL, so SQL never has to parse codes.

use crate::area::{AreaCode, Jurisdiction};
use crate::doc::split_doc_id;
use crate::model::{Case, Role};

/// What the rule reads of a case: its area (only if it is a valid code) and its assignee. The
/// projection keeps both as the columns `cases.scope_area` and `cases.assignee`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaseScope {
    pub area: Option<String>,
    pub assignee: String,
}

impl CaseScope {
    /// From an area code as written in a case (validated here) and its assignee.
    pub fn new(area_code: &str, assignee: &str) -> CaseScope {
        CaseScope {
            area: scope_area(area_code),
            assignee: assignee.to_owned(),
        }
    }

    pub fn of(case: &Case) -> CaseScope {
        CaseScope::new(&case.location.area_code, &case.assignee)
    }
}

/// The value stored in `cases.scope_area`: the area code if it is a valid one.
pub fn scope_area(area_code: &str) -> Option<String> {
    AreaCode::parse(area_code)
        .ok()
        .map(|code| code.as_str().to_owned())
}

/// The scope of one device: its user's jurisdiction prefix, the user, and whether the role may
/// see personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Digits only (a `Jurisdiction`), so it holds no LIKE wildcard; "" is everywhere.
    prefix: String,
    user: String,
    personal_data: bool,
}

/// Placeholder names of [`Scope::sql`]'s parameters, in the order [`Scope::params`] gives them.
#[derive(Debug, Clone, Copy)]
pub struct Placeholders<'a> {
    pub prefix: &'a str,
    pub user: &'a str,
    pub personal_data: &'a str,
}

impl Scope {
    /// The scope of `user`, acting in `role` over `jurisdiction`.
    pub fn new(jurisdiction: &Jurisdiction, user: &str, role: Role) -> Scope {
        Scope {
            prefix: jurisdiction.as_prefix().to_owned(),
            user: user.to_owned(),
            personal_data: role.may_see_personal_data(),
        }
    }

    /// The rule, for a document of a case whose scope columns are `case`.
    pub fn covers(&self, case: &CaseScope, is_pii: bool) -> bool {
        let in_area = case
            .area
            .as_deref()
            .is_some_and(|area| area.starts_with(&self.prefix));
        let assigned = !case.assignee.is_empty() && case.assignee == self.user;
        (in_area || assigned) && (!is_pii || self.personal_data)
    }

    /// [`Scope::covers`] for a document id.
    pub fn covers_doc(&self, doc_id: &str, case: &CaseScope) -> bool {
        self.covers(case, split_doc_id(doc_id).1)
    }

    /// The rule as a boolean SQL expression over a document row `d` (`is_pii`) joined with its
    /// case's projection row `k` (`scope_area`, `assignee`). Never NULL. The prefix holds digits
    /// only, so `LIKE prefix || '%'` is a plain prefix test in both dialects.
    pub fn sql(p: Placeholders<'_>) -> String {
        format!(
            "(((k.scope_area IS NOT NULL AND k.scope_area LIKE {prefix} || '%') \
              OR (k.assignee <> '' AND k.assignee = {user})) \
             AND (NOT d.is_pii OR {pii}))",
            prefix = p.prefix,
            user = p.user,
            pii = p.personal_data
        )
    }

    /// The values for [`Scope::sql`]'s placeholders.
    pub fn params(&self) -> (&str, &str, bool) {
        (&self.prefix, &self.user, self.personal_data)
    }

    /// What a device was last served is remembered as this key: a change (another role or
    /// jurisdiction) makes the device restore its new scope.
    pub fn key(jurisdiction: &Jurisdiction, role: Role) -> String {
        format!("{role}|{}", jurisdiction.as_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(role: Role, prefix: &str) -> Scope {
        Scope::new(&Jurisdiction::parse(prefix).unwrap(), "u1", role)
    }

    #[test]
    fn jurisdiction_or_assignment_and_personal_data_by_role() {
        let worker = scope(Role::GridWorker, "330604101");
        assert!(worker.covers(&CaseScope::new("330604101201", ""), false));
        assert!(!worker.covers(&CaseScope::new("330604102201", ""), false));
        assert!(worker.covers(&CaseScope::new("330604102201", "u1"), false));
        assert!(worker.covers(&CaseScope::new("330604101201", ""), true));
        let unit = scope(Role::HandlingUnit, "330604");
        assert!(unit.covers(&CaseScope::new("330604101201", ""), false));
        assert!(!unit.covers(&CaseScope::new("330604101201", ""), true));
    }

    #[test]
    fn malformed_areas_lie_nowhere_even_for_everywhere() {
        let everywhere = scope(Role::HotlineCentre, "");
        for bad in [
            "",
            "3306041012",
            "33060410120x",
            "000604101201",
            "330604101201 ",
        ] {
            assert!(
                !everywhere.covers(&CaseScope::new(bad, ""), false),
                "{bad:?}"
            );
        }
        assert!(everywhere.covers(&CaseScope::new("330604101201", ""), false));
        // An empty assignee never matches.
        assert!(!everywhere.covers(&CaseScope::new("x", ""), false));
    }
}
