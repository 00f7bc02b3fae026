//! What an authenticated admin does: each action passes the permission table
//! ([`AdminCtx::may`]) and the jurisdiction rule ([`AdminCtx::covers_area`],
//! [`AdminCtx::covers`]) here, once, before the store does it; the HTTP routes and the CLI
//! call these, never the unchecked store methods.

use gridcase_core::area::Jurisdiction;
use gridcase_core::lifecycle::Action as LifecycleAction;
use gridcase_core::model::{Author, Complainant, Millis, Role};

use crate::admins::{Action, AdminCtx, AdminInfo};
use crate::audit::{self, AuditQuery, AuditRow};
use crate::db::{self, Commit, NewSupervision};
use crate::deadlines::SupervisionEvent;
use crate::documents::load;
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

    /// A supervision (督办) by the admin on an open case inside the jurisdiction: a `Supervise`
    /// event (level 1 to 3; a higher level escalates) authored by the admin, in the case's
    /// timeline as the phones receive it, committed like the deadline check's. The supervisions
    /// table keeps one row per stage: this one's when the stage has none yet.
    pub fn supervise_as(
        &self,
        admin: &AdminCtx,
        case_id: &str,
        level: u8,
        reason: &str,
        now: Millis,
    ) -> Result<()> {
        admin.require(Action::Supervise)?;
        let summary = self.case_for_admin(admin, case_id)?;
        if reason.trim().is_empty() {
            return Err(StoreError::Invalid("a supervision needs a reason".into()));
        }
        audit::check_reason(reason)?;
        if !(1..=3).contains(&level) {
            return Err(StoreError::Invalid("level is 1, 2 or 3".into()));
        }
        let mut row = match (summary.stage, summary.stage_started_at) {
            (Some(stage), Some(started)) => Some(NewSupervision {
                case_id: case_id.to_owned(),
                stage,
                stage_started_at: started,
                level,
                reason: reason.to_owned(),
                created_at: now,
            }),
            _ => None,
        };
        if let Some(r) = &row {
            let held = self.supervisions(case_id)?;
            if held
                .iter()
                .any(|s| s.stage == r.stage && s.stage_started_at == r.stage_started_at)
            {
                row = None;
            }
        }
        let mut event = SupervisionEvent {
            action: LifecycleAction::Supervise {
                level,
                reason: reason.to_owned(),
            },
            author: Author {
                user: admin.name.clone(),
                device: "console".into(),
                role: Role::Admin,
            },
            writer: &admin.name,
            row,
        };
        let _local = self.locks.lock(case_id);
        let _turn = self.db().case_turn(case_id)?;
        for _ in 0..8 {
            let mut view = self.db().read()?;
            let (stored, trusted) = (view.doc(case_id)?, view.trusted_times(case_id)?);
            drop(view);
            let stored = stored
                .ok_or_else(|| StoreError::NotFound(format!("case {}", audit::bounded(case_id))))?;
            let base = load(case_id, stored)?;
            match self.supervision_commit(case_id, &base, &trusted, &event, now)? {
                Some(Commit::Committed { .. }) => return Ok(()),
                // The stage's row came meanwhile: the event alone.
                Some(Commit::Duplicate) => event.row = None,
                Some(Commit::Conflict) => {}
                None => {
                    return Err(StoreError::Invalid(
                        "this case cannot be supervised in its state".into(),
                    ));
                }
            }
        }
        Err(StoreError::Busy(case_id.to_owned()))
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

    /// The users (with their devices) inside the admin's jurisdiction and, for an admin that
    /// manages people, the admin accounts inside it too; at most `limit` user-device rows.
    pub fn people_as(&self, admin: &AdminCtx, limit: u32) -> Result<People> {
        admin.require(Action::View)?;
        let rows = self
            .db()
            .people_within(admin.jurisdiction.as_prefix(), limit)?;
        let admins = if admin.may(Action::ManagePeople) {
            let all = self.admins()?;
            Some(
                all.into_iter()
                    .filter(|a| admin.covers(&a.jurisdiction))
                    .collect(),
            )
        } else {
            None
        };
        Ok(People {
            users: group_devices(rows),
            admins,
        })
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

/// What the people page lists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct People {
    pub users: Vec<PersonView>,
    /// `None` when the admin may not manage people (the accounts are not its business).
    pub admins: Option<Vec<AdminInfo>>,
}

/// A user with its devices.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PersonView {
    pub id: String,
    pub role: String,
    pub jurisdiction: String,
    pub revoked: bool,
    pub devices: Vec<DeviceView>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceView {
    pub id: String,
    pub revoked: bool,
    pub last_seen: Option<Millis>,
}

/// The rows (ordered by user) folded into one entry per user.
fn group_devices(rows: Vec<db::PersonDeviceRow>) -> Vec<PersonView> {
    let mut users: Vec<PersonView> = Vec::new();
    for row in rows {
        if users.last().is_none_or(|u| u.id != row.user_id) {
            users.push(PersonView {
                id: row.user_id.clone(),
                role: row.role,
                jurisdiction: row.jurisdiction,
                revoked: row.user_revoked,
                devices: Vec::new(),
            });
        }
        if let (Some(id), Some(user)) = (row.device_id, users.last_mut()) {
            user.devices.push(DeviceView {
                id,
                revoked: row.device_revoked.unwrap_or(false),
                last_seen: row.last_seen,
            });
        }
    }
    users
}
