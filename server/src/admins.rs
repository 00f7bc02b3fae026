//! Admin accounts (issue 11.5): named people at the desk, each with a role and a jurisdiction,
//! in place of one shared admin token.
//!
//! Roles (from shared/domain.md's people, by what their work needs):
//! - `admin`: the server admin, enrols and revokes users and devices, and may do everything
//!   below. A county or township admin is an `admin` whose jurisdiction is the county's or
//!   township's prefix.
//! - `supervisor`: the hotline centre's or township's supervision desk (督办): lists, cases,
//!   reveals a complainant's phone for a call back (audited), supervises and escalates cases,
//!   reports, and draws the monthly random audit.
//! - `auditor`: re-verifies the drawn cases (回访核查) and records the results; reads lists,
//!   cases (phones masked), reports and the audit log. Never reveals, revokes or draws: the
//!   one who checks is not the one who picked what is checked.
//!
//! [`AdminCtx::may`] is the one table of who may do what; [`AdminCtx::covers_area`] and
//! [`AdminCtx::covers`] the one jurisdiction rule. Every admin route and command goes through
//! them.
//!
//! Credentials: each admin has bearer tokens (`admin.<48 letters and digits>`, ~285 bits),
//! stored as SHA-256 only: a KDF adds nothing to a random secret that long, and a hash lookup
//! keeps each request cheap. A password (for the console's sign-in) is stored as an Argon2id
//! PHC string (the argon2 crate's defaults, OWASP's minimum: 19 MiB, 2 passes, 1 lane); a
//! sign-in gives a session token that expires after [`SESSION_MS`].

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use gridcase_core::area::Jurisdiction;
use gridcase_core::model::Millis;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;
use serde_json::json;

use crate::audit;
use crate::db::{AdminRecord, AuditEntry};
use crate::store::{Result, Store, StoreError, sha256_hex};

/// What an admin account may do (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    Admin,
    Supervisor,
    Auditor,
}

impl AdminRole {
    pub const ALL: [AdminRole; 3] = [AdminRole::Admin, AdminRole::Supervisor, AdminRole::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Admin => "admin",
            AdminRole::Supervisor => "supervisor",
            AdminRole::Auditor => "auditor",
        }
    }

    pub fn parse(text: &str) -> Option<AdminRole> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// The things an admin route does, as the permission table names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Lists, a case (phone masked), reports, the audit log, audit draws.
    View,
    /// Show a complainant unmasked (with a reason, audited).
    Reveal,
    /// Enrol or revoke users and devices.
    ManagePeople,
    /// Draw the monthly random audit.
    Draw,
    /// Record a drawn case's re-verification.
    Verify,
    /// Issue a supervision (督办) or escalate one on a case.
    Supervise,
}

/// An authenticated admin: who acts, in which role, over which areas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminCtx {
    pub name: String,
    pub role: AdminRole,
    pub jurisdiction: Jurisdiction,
}

impl AdminCtx {
    /// The permission table.
    pub fn may(&self, action: Action) -> bool {
        use Action::*;
        match self.role {
            AdminRole::Admin => true,
            AdminRole::Supervisor => matches!(action, View | Reveal | Draw | Supervise),
            AdminRole::Auditor => matches!(action, View | Verify),
        }
    }

    /// [`AdminCtx::may`] as a refusal.
    pub fn require(&self, action: Action) -> Result<()> {
        if self.may(action) {
            Ok(())
        } else {
            Err(StoreError::Forbidden(format!(
                "a {} may not do this",
                self.role.as_str()
            )))
        }
    }

    /// Whether a case or user in area `code` lies inside the jurisdiction. Only an admin of
    /// everywhere covers a malformed code.
    pub fn covers_area(&self, code: &str) -> bool {
        self.jurisdiction.is_everywhere() || self.jurisdiction.contains_str(code)
    }

    /// Whether a whole jurisdiction (a prefix: a user's, a report's, a draw's) lies inside.
    pub fn covers(&self, prefix: &str) -> bool {
        prefix.starts_with(self.jurisdiction.as_prefix())
    }

    /// [`AdminCtx::covers`] as a refusal.
    pub fn require_covers(&self, prefix: &str) -> Result<()> {
        if self.covers(prefix) {
            Ok(())
        } else {
            Err(StoreError::Forbidden(format!(
                "outside the jurisdiction `{}`",
                self.jurisdiction.as_given()
            )))
        }
    }
}

/// How long a signed-in session lasts (a working day).
pub const SESSION_MS: Millis = 12 * 3_600_000;
/// Password length bounds (characters).
pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 256;

/// An admin as listed (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminInfo {
    pub name: String,
    pub role: String,
    pub jurisdiction: String,
    pub password: bool,
    pub disabled: bool,
    pub created_at: Millis,
}

fn random_secret(rng: &mut impl Rng) -> String {
    (0..48)
        .map(|_| char::from(rng.sample(Alphanumeric)))
        .collect()
}

/// An Argon2id PHC string of `password` with a fresh salt from `rng`.
pub fn hash_password(password: &str, rng: &mut impl Rng) -> Result<String> {
    check_password(password)?;
    let salt: [u8; 16] = rng.random();
    let salt = SaltString::encode_b64(&salt).map_err(|e| StoreError::Invalid(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Invalid(format!("password hashing: {e}")))
}

/// Whether `password` matches a stored PHC string; a malformed one matches nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash to verify against when the name is unknown or has no password, so that a sign-in
/// takes as long either way and does not tell which names exist.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password("decoy password, never matches", &mut rand::rng()).unwrap_or_default()
    })
}

fn check_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        return Err(StoreError::Invalid(format!(
            "a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= audit::MAX_BY_CHARS
        && name.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "an admin name has 1 to {} characters without spaces",
            audit::MAX_BY_CHARS
        )))
    }
}

/// The audit row of a change to an admin account (`action`: add, disable, reset).
fn account_entry(name: &str, action: &str, jurisdiction: &str, now: Millis) -> AuditEntry {
    AuditEntry {
        at: now,
        kind: audit::ADMIN,
        user_id: Some(name.to_owned()),
        area: Some(jurisdiction.to_owned()),
        detail: Some(json!({"action": action}).to_string()),
        ..Default::default()
    }
}

fn ctx_of(record: AdminRecord) -> Result<AdminCtx> {
    let role = AdminRole::parse(&record.role)
        .ok_or_else(|| StoreError::Invalid(format!("admin `{}` has unknown role", record.name)))?;
    let jurisdiction = Jurisdiction::parse(&record.jurisdiction)
        .map_err(|e| StoreError::Invalid(format!("admin `{}`: {e}", record.name)))?;
    Ok(AdminCtx {
        name: record.name,
        role,
        jurisdiction,
    })
}

impl Store {
    /// Adds an admin and returns its first bearer token (shown once; only its hash is kept).
    pub fn add_admin(
        &self,
        name: &str,
        role: AdminRole,
        jurisdiction: &Jurisdiction,
        password: Option<&str>,
        rng: &mut impl Rng,
        now: Millis,
    ) -> Result<String> {
        check_name(name)?;
        let password_hash = password.map(|p| hash_password(p, rng)).transpose()?;
        let token = format!("admin.{}", random_secret(rng));
        let record = AdminRecord {
            name: name.to_owned(),
            role: role.as_str().to_owned(),
            jurisdiction: jurisdiction.as_prefix().to_owned(),
            password_hash,
            disabled: false,
            created_at: now,
        };
        let mut entry = account_entry(name, "add", jurisdiction.as_prefix(), now);
        entry.detail = Some(
            json!({"action": "add", "role": role.as_str(),
                   "jurisdiction": jurisdiction.as_prefix()})
            .to_string(),
        );
        if !self
            .db()
            .insert_admin(&record, &sha256_hex(token.as_bytes()), &entry)?
        {
            return Err(StoreError::Invalid(format!(
                "admin `{name}` exists already"
            )));
        }
        Ok(token)
    }

    /// Every admin account, by name.
    pub fn admins(&self) -> Result<Vec<AdminInfo>> {
        Ok(self
            .db()
            .admins()?
            .into_iter()
            .map(|a| AdminInfo {
                name: a.name,
                role: a.role,
                jurisdiction: a.jurisdiction,
                password: a.password_hash.is_some(),
                disabled: a.disabled,
                created_at: a.created_at,
            })
            .collect())
    }

    /// Disables an admin: its tokens and sessions stop working at once.
    pub fn disable_admin(&self, name: &str, now: Millis) -> Result<()> {
        let admin = self.known_admin(name)?;
        let entry = account_entry(name, "disable", &admin.jurisdiction, now);
        self.db().disable_admin(name, &entry)?;
        Ok(())
    }

    /// Gives an admin a new bearer token (every older token and session stops working) and,
    /// when given, a new password; enables a disabled admin. Returns the token.
    pub fn reset_admin(
        &self,
        name: &str,
        password: Option<&str>,
        rng: &mut impl Rng,
        now: Millis,
    ) -> Result<String> {
        let admin = self.known_admin(name)?;
        let password_hash = password.map(|p| hash_password(p, rng)).transpose()?;
        let token = format!("admin.{}", random_secret(rng));
        let entry = account_entry(name, "reset", &admin.jurisdiction, now);
        let hash = sha256_hex(token.as_bytes());
        self.db()
            .reset_admin(name, &hash, password_hash.as_deref(), &entry)?;
        Ok(token)
    }

    fn known_admin(&self, name: &str) -> Result<AdminRecord> {
        let found = if crate::db::is_storable(name) {
            self.db().admin(name)?
        } else {
            None
        };
        found.ok_or_else(|| StoreError::NotFound(format!("admin `{}`", audit::bounded(name))))
    }

    /// The enabled admin holding `token` (a bearer token or an unexpired session) at `now`.
    pub fn authenticate_admin(&self, token: &str, now: Millis) -> Result<Option<AdminCtx>> {
        let hash = sha256_hex(token.as_bytes());
        match self.db().admin_by_token(&hash, now)? {
            Some(record) if !record.disabled => Ok(Some(ctx_of(record)?)),
            _ => Ok(None),
        }
    }

    /// The enabled admin `name` if `password` is theirs: the stored Argon2id hash is checked
    /// (a decoy when there is none, so unknown names take as long). `None` otherwise.
    pub fn check_admin_password(&self, name: &str, password: &str) -> Result<Option<AdminCtx>> {
        let record = if crate::db::is_storable(name) && check_name(name).is_ok() {
            self.db().admin(name)?
        } else {
            None
        };
        let matches = match record.as_ref().and_then(|r| r.password_hash.as_deref()) {
            Some(phc) => verify_password(password, phc),
            None => verify_password(password, decoy_hash()),
        };
        match record {
            Some(r) if matches && !r.disabled && r.password_hash.is_some() => Ok(Some(ctx_of(r)?)),
            _ => Ok(None),
        }
    }

    /// Opens a session for `admin` (after [`Store::check_admin_password`]): a token that
    /// expires after [`SESSION_MS`]. Returns it with its expiry.
    pub fn open_session(
        &self,
        admin: &AdminCtx,
        rng: &mut impl Rng,
        now: Millis,
    ) -> Result<(String, Millis)> {
        let token = format!("session.{}", random_secret(rng));
        let expires = now + SESSION_MS;
        self.db()
            .add_session(&admin.name, &sha256_hex(token.as_bytes()), expires, now)?;
        Ok((token, expires))
    }

    /// Ends a signed-in session (signing out); bearer tokens are not ended this way.
    pub fn end_session(&self, token: &str) -> Result<bool> {
        Ok(self.db().end_session(&sha256_hex(token.as_bytes()))?)
    }

    /// The admin named `name`, for the CLI (which acts for a named, enabled admin).
    pub fn admin_ctx(&self, name: &str) -> Result<AdminCtx> {
        let record = self.known_admin(name)?;
        if record.disabled {
            return Err(StoreError::Forbidden(format!("admin `{name}` is disabled")));
        }
        ctx_of(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(role: AdminRole, prefix: &str) -> AdminCtx {
        AdminCtx {
            name: "a".into(),
            role,
            jurisdiction: Jurisdiction::parse(prefix).unwrap(),
        }
    }

    #[test]
    fn the_permission_table() {
        use Action::*;
        let all = [View, Reveal, ManagePeople, Draw, Verify, Supervise];
        let may = |role| {
            all.into_iter()
                .filter(|a| ctx(role, "").may(*a))
                .collect::<Vec<_>>()
        };
        assert_eq!(may(AdminRole::Admin), all);
        assert_eq!(may(AdminRole::Supervisor), [View, Reveal, Draw, Supervise]);
        assert_eq!(may(AdminRole::Auditor), [View, Verify]);
        assert!(matches!(
            ctx(AdminRole::Auditor, "").require(Reveal),
            Err(StoreError::Forbidden(_))
        ));
    }

    #[test]
    fn a_county_admin_covers_its_county_only() {
        let county = ctx(AdminRole::Admin, "330604");
        assert!(county.covers_area("330604101201"));
        assert!(!county.covers_area("330602101201"));
        assert!(
            !county.covers_area("3306041012xx"),
            "malformed codes lie nowhere"
        );
        assert!(county.covers("330604101") && county.covers("330604"));
        assert!(!county.covers("3306") && !county.covers(""));
        let everywhere = ctx(AdminRole::Admin, "");
        assert!(everywhere.covers_area("garbage") && everywhere.covers(""));
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let mut rng = rand::rng();
        let phc = hash_password("correct horse battery", &mut rng).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("correct horse batterx", &phc));
        assert!(!verify_password("correct horse battery", "not a hash"));
        assert!(hash_password("short", &mut rng).is_err());
        let again = hash_password("correct horse battery", &mut rng).unwrap();
        assert_ne!(phc, again, "a fresh salt each time");
    }

    #[test]
    fn roles_round_trip() {
        for role in AdminRole::ALL {
            assert_eq!(AdminRole::parse(role.as_str()), Some(role));
        }
        assert_eq!(AdminRole::parse("king"), None);
    }
}
