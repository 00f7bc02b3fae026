//! Users, devices and settings in PostgreSQL.

use gridcase_core::model::Millis;

use super::{PgConn, PgDb};
use crate::db::{
    Accounts, AuditEntry, DeviceInsert, DeviceRecord, NewDevice, RULES_SETTING, Result, UserRecord,
    next_rules_version,
};

pub(super) fn write_audit(conn: &mut PgConn, e: &AuditEntry) -> Result<()> {
    conn.execute(
        "INSERT INTO audit (at, user_id, device_id, kind, case_id, doc_id, detail, area)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &e.at,
            &e.user_id,
            &e.device_id,
            &e.kind,
            &e.case_id,
            &e.doc_id,
            &e.detail,
            &e.area,
        ],
    )?;
    Ok(())
}

impl Accounts for PgDb {
    fn upsert_user(&self, user: &UserRecord, now: Millis, audit: &AuditEntry) -> Result<()> {
        self.write(|tx| {
            // A user revoked before devices were revoked with them: their devices stay revoked.
            tx.execute(
                "UPDATE devices SET revoked = TRUE WHERE user_id = $1
                 AND user_id IN (SELECT id FROM users WHERE revoked)",
                &[&user.id],
            )?;
            tx.execute(
                "INSERT INTO users (id, role, jurisdiction, revoked, created_at)
                 VALUES ($1, $2, $3, FALSE, $4)
                 ON CONFLICT (id) DO UPDATE SET role = excluded.role,
                     jurisdiction = excluded.jurisdiction, revoked = FALSE",
                &[&user.id, &user.role, &user.jurisdiction, &now],
            )?;
            write_audit(tx, audit)?;
            Ok(((), true))
        })
    }

    fn insert_device(&self, device: &NewDevice, audit: &AuditEntry) -> Result<DeviceInsert> {
        self.write(|tx| {
            let revoked = tx
                .query_opt(
                    "SELECT revoked FROM users WHERE id = $1 FOR SHARE",
                    &[&device.user_id],
                )?
                .map(|r| r.get::<_, bool>(0));
            match revoked {
                None => return Ok((DeviceInsert::UnknownUser, false)),
                Some(true) => return Ok((DeviceInsert::RevokedUser, false)),
                Some(false) => {}
            }
            tx.execute(
                "INSERT INTO devices (id, user_id, secret_hash, revoked, created_at)
                 VALUES ($1, $2, $3, FALSE, $4)",
                &[
                    &device.device_id,
                    &device.user_id,
                    &device.secret_hash,
                    &device.now,
                ],
            )?;
            write_audit(tx, audit)?;
            Ok((DeviceInsert::Inserted, true))
        })
    }

    fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        let mut conn = self.conn()?;
        let row = conn.query_opt(
            "SELECT d.user_id, d.secret_hash, d.revoked, u.revoked, u.role, u.jurisdiction
             FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = $1",
            &[&device_id],
        )?;
        Ok(row.map(|r| DeviceRecord {
            device_id: device_id.to_owned(),
            user_id: r.get(0),
            secret_hash: r.get(1),
            device_revoked: r.get(2),
            user_revoked: r.get(3),
            role: r.get(4),
            jurisdiction: r.get(5),
        }))
    }

    fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        let mut conn = self.conn()?;
        let row = conn.query_opt(
            "SELECT id, role, jurisdiction FROM users WHERE id = $1",
            &[&user_id],
        )?;
        Ok(row.map(|r| UserRecord {
            id: r.get(0),
            role: r.get(1),
            jurisdiction: r.get(2),
        }))
    }

    fn revoke_device(&self, device_id: &str, audit: &dyn Fn(&str) -> AuditEntry) -> Result<bool> {
        self.write(|tx| {
            let user = tx
                .query_opt(
                    "UPDATE devices SET revoked = TRUE WHERE id = $1 RETURNING user_id",
                    &[&device_id],
                )?
                .map(|r| r.get::<_, String>(0));
            let Some(user) = user else {
                return Ok((false, false));
            };
            write_audit(tx, &audit(&user))?;
            Ok((true, true))
        })
    }

    fn revoke_user(&self, user_id: &str, audit: &AuditEntry) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute("UPDATE users SET revoked = TRUE WHERE id = $1", &[&user_id])?;
            if n == 0 {
                return Ok((false, false));
            }
            tx.execute(
                "UPDATE devices SET revoked = TRUE WHERE user_id = $1",
                &[&user_id],
            )?;
            write_audit(tx, audit)?;
            Ok((true, true))
        })
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        let mut conn = self.conn()?;
        Ok(conn
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])?
            .map(|r| r.get(0)))
    }

    fn publish_rules(&self, digest: &str) -> Result<u64> {
        self.write(|tx| {
            // The row exists before it is locked, so two instances starting at once queue on it.
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ($1, '0 ') ON CONFLICT (key) DO NOTHING",
                &[&RULES_SETTING],
            )?;
            let stored: String = tx
                .query_one(
                    "SELECT value FROM settings WHERE key = $1 FOR UPDATE",
                    &[&RULES_SETTING],
                )?
                .get(0);
            let (version, new_value) = next_rules_version(Some(&stored), digest);
            if let Some(value) = &new_value {
                tx.execute(
                    "UPDATE settings SET value = $2 WHERE key = $1",
                    &[&RULES_SETTING, value],
                )?;
            }
            Ok((version, true))
        })
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )?;
            Ok(((), true))
        })
    }
}
