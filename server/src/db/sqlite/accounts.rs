//! Users, devices and settings in SQLite.

use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteDb;
use crate::db::{
    Accounts, AuditEntry, DeviceInsert, DeviceRecord, NewDevice, RULES_SETTING, Result, UserRecord,
    next_rules_version,
};
use gridcase_core::model::Millis;

pub(super) fn write_audit(conn: &Connection, e: &AuditEntry) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, user_id, device_id, kind, case_id, doc_id, detail, area)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        e.at,
        e.user_id,
        e.device_id,
        e.kind,
        e.case_id,
        e.doc_id,
        e.detail,
        e.area
    ])?;
    Ok(())
}

impl Accounts for SqliteDb {
    fn upsert_user(&self, user: &UserRecord, now: Millis, audit: &AuditEntry) -> Result<()> {
        self.write(|tx| {
            // A user revoked before devices were revoked with them: their devices stay revoked.
            tx.execute(
                "UPDATE devices SET revoked = 1 WHERE user_id = ?1
                 AND user_id IN (SELECT id FROM users WHERE revoked = 1)",
                [&user.id],
            )?;
            tx.execute(
                "INSERT INTO users (id, role, jurisdiction, revoked, created_at)
                 VALUES (?1, ?2, ?3, 0, ?4)
                 ON CONFLICT(id) DO UPDATE SET role = excluded.role,
                     jurisdiction = excluded.jurisdiction, revoked = 0",
                params![user.id, user.role, user.jurisdiction, now],
            )?;
            write_audit(tx, audit)?;
            Ok(((), true))
        })
    }

    fn insert_device(&self, device: &NewDevice, audit: &AuditEntry) -> Result<DeviceInsert> {
        self.write(|tx| {
            let revoked: Option<bool> = tx
                .query_row(
                    "SELECT revoked FROM users WHERE id = ?1",
                    [&device.user_id],
                    |r| r.get(0),
                )
                .optional()?;
            match revoked {
                None => return Ok((DeviceInsert::UnknownUser, false)),
                Some(true) => return Ok((DeviceInsert::RevokedUser, false)),
                Some(false) => {}
            }
            tx.execute(
                "INSERT INTO devices (id, user_id, secret_hash, revoked, created_at)
                 VALUES (?1, ?2, ?3, 0, ?4)",
                params![
                    device.device_id,
                    device.user_id,
                    device.secret_hash,
                    device.now
                ],
            )?;
            write_audit(tx, audit)?;
            Ok((DeviceInsert::Inserted, true))
        })
    }

    fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT d.user_id, d.secret_hash, d.revoked, u.revoked, u.role, u.jurisdiction
             FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = ?1",
        )?;
        Ok(stmt
            .query_row([device_id], |r| {
                Ok(DeviceRecord {
                    device_id: device_id.to_owned(),
                    user_id: r.get(0)?,
                    secret_hash: r.get(1)?,
                    device_revoked: r.get(2)?,
                    user_revoked: r.get(3)?,
                    role: r.get(4)?,
                    jurisdiction: r.get(5)?,
                })
            })
            .optional()?)
    }

    fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT id, role, jurisdiction FROM users WHERE id = ?1",
                [user_id],
                |r| {
                    Ok(UserRecord {
                        id: r.get(0)?,
                        role: r.get(1)?,
                        jurisdiction: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn revoke_device(&self, device_id: &str, audit: &dyn Fn(&str) -> AuditEntry) -> Result<bool> {
        self.write(|tx| {
            let user: Option<String> = tx
                .query_row(
                    "SELECT user_id FROM devices WHERE id = ?1",
                    [device_id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(user) = user else {
                return Ok((false, false));
            };
            tx.execute("UPDATE devices SET revoked = 1 WHERE id = ?1", [device_id])?;
            write_audit(tx, &audit(&user))?;
            Ok((true, true))
        })
    }

    fn revoke_user(&self, user_id: &str, audit: &AuditEntry) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute("UPDATE users SET revoked = 1 WHERE id = ?1", [user_id])?;
            if n == 0 {
                return Ok((false, false));
            }
            tx.execute(
                "UPDATE devices SET revoked = 1 WHERE user_id = ?1",
                [user_id],
            )?;
            write_audit(tx, audit)?;
            Ok((true, true))
        })
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn()?
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn publish_rules(&self, digest: &str) -> Result<u64> {
        self.write(|tx| {
            let stored: Option<String> = tx
                .query_row(
                    "SELECT value FROM settings WHERE key = ?1",
                    [RULES_SETTING],
                    |r| r.get(0),
                )
                .optional()?;
            let (version, new_value) = next_rules_version(stored.as_deref(), digest);
            if let Some(value) = &new_value {
                tx.execute(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [RULES_SETTING, value],
                )?;
            }
            Ok((version, new_value.is_some()))
        })
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )?;
            Ok(((), true))
        })
    }
}
