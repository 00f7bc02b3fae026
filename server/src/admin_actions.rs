//! What an authenticated admin does: each action passes the permission table
//! ([`AdminCtx::may`]) and the jurisdiction rule ([`AdminCtx::covers_area`],
//! [`AdminCtx::covers`]) here, once, before the store does it; the HTTP routes and the CLI
//! call these, never the unchecked store methods.

use gridcase_core::area::Jurisdiction;
use gridcase_core::model::{Complainant, Millis, Role};

use crate::admins::{Action, AdminCtx};
use crate::audit::{self, AuditQuery, AuditRow};
use crate::db;
use crate::store::{CaseSummary, Result, Store, StoreError};

impl Store {
    /// A case's summary, if the admin may view it: [`StoreError::NotFound`] for an unknown
    /// case, [`StoreError::Forbidden`] for one outside the jurisdiction.
    pub fn case_for_admin(&self, admin: &AdminCtx, case_id: &str) -> Result<CaseSummary> {
        admin.require(Action::View)?;
        let summary = self
            .case_summary(case_id)?
            .ok_or_else(|| StoreError::NotFound(format!("case {}", audit::bounded(case_id))))?;
        if !admin.covers_area(&summary.area_code) {
            return Err(StoreError::Forbidden(format!(
                "case {} lies outside the jurisdiction `{}`",
                audit::bounded(case_id),
                admin.jurisdiction.as_given()
            )));
        }
        Ok(summary)
    }

    /// [`Store::reveal`] by the admin, for a case inside the jurisdiction.
    pub fn reveal_as(
        &self,
        admin: &AdminCtx,
        case_id: &str,
        reason: &str,
        now: Millis,
    ) -> Result<Option<Complainant>> {
        admin.require(Action::Reveal)?;
        self.case_for_admin(admin, case_id)?;
        self.reveal(case_id, &admin.name, reason, now)
    }

    /// Revokes a device of a user inside the jurisdiction; `false` for an unknown device.
    pub fn revoke_device_as(&self, admin: &AdminCtx, device: &str, now: Millis) -> Result<bool> {
        admin.require(Action::ManagePeople)?;
        let device = device.to_ascii_lowercase();
        if !db::is_storable(&device) {
            return Ok(false);
        }
        let Some(record) = self.db().device(&device)? else {
            return Ok(false);
        };
        admin.require_covers(&record.jurisdiction)?;
        self.revoke_device_by(&device, Some(&admin.name), now)
    }

    /// Revokes a user inside the jurisdiction; `false` for an unknown user.
    pub fn revoke_user_as(&self, admin: &AdminCtx, user: &str, now: Millis) -> Result<bool> {
        admin.require(Action::ManagePeople)?;
        let Some(record) = self.user(user)? else {
            return Ok(false);
        };
        admin.require_covers(&record.jurisdiction)?;
        self.revoke_user_by(user, Some(&admin.name), now)
    }

    /// Enrols (or changes) a user inside the jurisdiction. An existing user outside it is not
    /// taken over.
    pub fn enrol_user_as(
        &self,
        admin: &AdminCtx,
        user: &str,
        role: Role,
        jurisdiction: &Jurisdiction,
        now: Millis,
    ) -> Result<()> {
        admin.require(Action::ManagePeople)?;
        admin.require_covers(jurisdiction.as_prefix())?;
        if let Some(existing) = self.user(user)? {
            admin.require_covers(&existing.jurisdiction)?;
        }
        self.enrol_user(user, role, jurisdiction, now)
    }

    /// Enrols a device for a user inside the jurisdiction; returns its token (shown once).
    pub fn enrol_device_as(&self, admin: &AdminCtx, user: &str, now: Millis) -> Result<String> {
        admin.require(Action::ManagePeople)?;
        let record = self
            .user(user)?
            .ok_or_else(|| StoreError::NotFound(format!("user `{}`", audit::bounded(user))))?;
        admin.require_covers(&record.jurisdiction)?;
        self.enrol_device(user, now)
    }

    /// The audit rows the admin may read: those of its jurisdiction.
    pub fn audit_log_as(&self, admin: &AdminCtx, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        admin.require(Action::View)?;
        let query = AuditQuery {
            within: Some(admin.jurisdiction.as_prefix().to_owned()),
            ..query.clone()
        };
        self.audit_log(&query)
    }

    /// The area a report of the admin covers: the one asked for if inside the jurisdiction,
    /// the whole jurisdiction when none is asked for.
    pub fn report_area_for(&self, admin: &AdminCtx, asked: &str) -> Result<String> {
        admin.require(Action::View)?;
        if asked.is_empty() {
            return Ok(admin.jurisdiction.as_prefix().to_owned());
        }
        admin.require_covers(asked)?;
        Ok(asked.to_owned())
    }
}
