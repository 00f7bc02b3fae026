//! The SQLite schema, one step per `PRAGMA user_version`. Append steps; never edit a released
//! one (a database at any earlier version, e.g. a township's file at version 4, upgrades).

use rusqlite::{Connection, TransactionBehavior};

use crate::db::Result;
use crate::db::migrate::{self, Migrator};

pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        jurisdiction TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id),
        secret_hash TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        clock_offset_ms INTEGER,
        last_seen INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX devices_user ON devices(user_id);
    CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        doc_id TEXT NOT NULL,
        hash BLOB NOT NULL,
        bytes BLOB NOT NULL,
        device_id TEXT,
        received_at INTEGER NOT NULL,
        UNIQUE (doc_id, hash)
    );
    CREATE INDEX changes_doc_seq ON changes(doc_id, seq);
    CREATE TABLE docs (
        doc_id TEXT PRIMARY KEY,
        case_id TEXT NOT NULL,
        is_pii INTEGER NOT NULL,
        snapshot BLOB NOT NULL,
        snapshot_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        heads BLOB NOT NULL
    );
    CREATE INDEX docs_case ON docs(case_id);
    CREATE TABLE cases (
        case_id TEXT PRIMARY KEY,
        number TEXT NOT NULL,
        title TEXT NOT NULL,
        category TEXT NOT NULL,
        status TEXT NOT NULL,
        case_type TEXT NOT NULL,
        urgency TEXT NOT NULL,
        priority INTEGER NOT NULL,
        area_code TEXT NOT NULL,
        assignee TEXT NOT NULL,
        responsible_unit TEXT NOT NULL,
        stage TEXT,
        stage_started_at INTEGER,
        due_at INTEGER,
        due_provisional INTEGER NOT NULL DEFAULT 0,
        calendar_version TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        needs_review INTEGER NOT NULL DEFAULT 0,
        last_seq INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX cases_due_at ON cases(due_at);
    CREATE INDEX cases_area_code ON cases(area_code);
    CREATE INDEX cases_assignee ON cases(assignee);
    CREATE INDEX cases_last_seq ON cases(last_seq);
    CREATE TABLE event_times (
        case_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (case_id, event_id)
    ) WITHOUT ROWID;
    CREATE TABLE device_docs (
        device_id TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        PRIMARY KEY (device_id, doc_id)
    ) WITHOUT ROWID;
    CREATE TABLE supervisions (
        id INTEGER PRIMARY KEY,
        case_id TEXT NOT NULL,
        stage TEXT NOT NULL,
        stage_started_at INTEGER NOT NULL,
        level INTEGER NOT NULL,
        reason TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (case_id, stage, stage_started_at)
    );
    "#,
    // 2: the audit log (see `crate::audit`).
    r#"
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        user_id TEXT,
        device_id TEXT,
        kind TEXT NOT NULL CHECK (kind IN ('change', 'reveal', 'reject', 'revoke', 'enrol')),
        case_id TEXT,
        doc_id TEXT,
        detail TEXT
    );
    CREATE INDEX audit_case_at ON audit(case_id, at);
    CREATE INDEX audit_user_at ON audit(user_id, at);
    CREATE INDEX audit_at ON audit(at);
    "#,
    // 3: the overdue scan reads only this covering index (running clocks by due instant with
    // what a supervision needs), never the table rows.
    r#"
    CREATE INDEX cases_running_due ON cases(due_at, case_id, stage, stage_started_at)
        WHERE due_at IS NOT NULL AND paused = 0;
    "#,
    // 4: the scope (role and jurisdiction) each device was last served, so that a changed
    // scope sends the device the cases it now covers (see `sync::Store::sync`).
    r#"
    ALTER TABLE devices ADD COLUMN served_scope TEXT;
    "#,
    // 5: the scope rule's area column (see `crate::scope`): the area code when it is a valid
    // 12-digit code, else NULL, so that SQL never parses codes.
    r#"
    ALTER TABLE cases ADD COLUMN scope_area TEXT;
    UPDATE cases SET scope_area = area_code
        WHERE length(area_code) = 12 AND area_code NOT GLOB '*[^0-9]*'
          AND substr(area_code, 1, 2) <> '00';
    "#,
    // 6: the facts the assessment rates count (see `crate::rates`), written with the case's
    // projection. Cases committed before this step get their row from `backfill-facts`.
    // Clustered by registration time, so a period's rows are read in sequence (a secondary
    // index would cost a lookup per case); `case_id` stays unique (`INSERT OR REPLACE`).
    r#"
    CREATE TABLE case_facts (
        case_id TEXT NOT NULL,
        registered_at INTEGER NOT NULL,
        area_code TEXT NOT NULL,
        category TEXT NOT NULL,
        unit TEXT NOT NULL,
        dispatched_at INTEGER,
        response_due_at INTEGER,
        responded_at INTEGER,
        handle_due_at INTEGER,
        replied_at INTEGER,
        closed_at INTEGER,
        returned INTEGER NOT NULL,
        duplicate INTEGER NOT NULL,
        followed_up INTEGER NOT NULL,
        solved INTEGER NOT NULL,
        satisfaction INTEGER,
        supervised INTEGER NOT NULL,
        PRIMARY KEY (registered_at, case_id)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX case_facts_case ON case_facts(case_id);
    "#,
    // 7: admin accounts (see `crate::admins`) and the monthly random audit (see
    // `crate::audit_draw`). The shared admin token of earlier versions becomes the account
    // `admin` (role admin, everywhere), so a deployment keeps working until it creates named
    // admins and disables that one. The audit log gets the new kinds and an `area` column (the
    // jurisdiction a row without a case belongs to); SQLite cannot change a CHECK, so the table
    // is copied.
    r#"
    CREATE TABLE admins (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        jurisdiction TEXT NOT NULL,
        password_hash TEXT,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE admin_tokens (
        token_hash TEXT PRIMARY KEY,
        admin TEXT NOT NULL REFERENCES admins(name),
        expires_at INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX admin_tokens_admin ON admin_tokens(admin);
    INSERT INTO admins (name, role, jurisdiction, disabled, created_at)
        SELECT 'admin', 'admin', '', 0, 0 FROM settings WHERE key = 'admin_token_hash';
    INSERT INTO admin_tokens (token_hash, admin, expires_at, created_at)
        SELECT value, 'admin', NULL, 0 FROM settings WHERE key = 'admin_token_hash';
    DELETE FROM settings WHERE key = 'admin_token_hash';
    CREATE TABLE audit_v7 (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        user_id TEXT,
        device_id TEXT,
        kind TEXT NOT NULL CHECK (kind IN ('change', 'reveal', 'reject', 'revoke', 'enrol',
            'admin', 'audit_draw', 'audit_verify')),
        case_id TEXT,
        doc_id TEXT,
        detail TEXT,
        area TEXT
    );
    INSERT INTO audit_v7 (id, at, user_id, device_id, kind, case_id, doc_id, detail)
        SELECT id, at, user_id, device_id, kind, case_id, doc_id, detail FROM audit;
    DROP TABLE audit;
    ALTER TABLE audit_v7 RENAME TO audit;
    CREATE INDEX audit_case_at ON audit(case_id, at);
    CREATE INDEX audit_user_at ON audit(user_id, at);
    CREATE INDEX audit_at ON audit(at);
    CREATE INDEX audit_area_at ON audit(area, at);
    CREATE TABLE audit_draws (
        id INTEGER PRIMARY KEY,
        month TEXT NOT NULL,
        area TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        n INTEGER NOT NULL,
        nonce TEXT NOT NULL,
        seed TEXT NOT NULL,
        candidates_hash TEXT NOT NULL,
        candidates TEXT NOT NULL,
        reason TEXT,
        by_admin TEXT NOT NULL,
        at INTEGER NOT NULL,
        UNIQUE (month, area, sequence)
    );
    CREATE TABLE audit_draw_cases (
        draw_id INTEGER NOT NULL REFERENCES audit_draws(id),
        position INTEGER NOT NULL,
        case_id TEXT NOT NULL,
        result TEXT CHECK (result IN ('confirmed', 'failed')),
        note TEXT,
        verified_by TEXT,
        verified_at INTEGER,
        PRIMARY KEY (draw_id, case_id)
    );
    "#,
    // 8: the case's type and channel in its facts row (the report's totals by type and
    // channel, `crate::report`). The rows are derived data, so they are dropped rather than
    // guessed: `backfill-facts` recomputes them from the documents after the upgrade.
    r#"
    DELETE FROM case_facts;
    ALTER TABLE case_facts ADD COLUMN case_type TEXT NOT NULL DEFAULT '';
    ALTER TABLE case_facts ADD COLUMN channel TEXT NOT NULL DEFAULT '';
    "#,
    // 9: the per-day rollup of `case_facts` a report reads instead of every case
    // (`crate::fact_days`): one row per China-time day, place, category, unit, type and channel,
    // with the cases and, per counted condition, how many meet it once every clock has run out.
    // The server fills it from `case_facts` when it opens the database (the fingerprint in
    // `settings` is missing), then keeps it in each facts write's transaction. The expression
    // index finds the cases whose stages still run (the only ones `now` changes); the partial
    // ones, the supervised cases and the cases late in handling (the overdue list) of a
    // period.
    r#"
    CREATE TABLE case_fact_days (
        day INTEGER NOT NULL,
        area_code TEXT NOT NULL,
        category TEXT NOT NULL,
        unit TEXT NOT NULL,
        case_type TEXT NOT NULL,
        channel TEXT NOT NULL,
        cases INTEGER NOT NULL,
        c0 INTEGER NOT NULL,
        c1 INTEGER NOT NULL,
        c2 INTEGER NOT NULL,
        c3 INTEGER NOT NULL,
        c4 INTEGER NOT NULL,
        c5 INTEGER NOT NULL,
        c6 INTEGER NOT NULL,
        c7 INTEGER NOT NULL,
        c8 INTEGER NOT NULL,
        c9 INTEGER NOT NULL,
        c10 INTEGER NOT NULL,
        c11 INTEGER NOT NULL,
        c12 INTEGER NOT NULL,
        c13 INTEGER NOT NULL,
        c14 INTEGER NOT NULL,
        c15 INTEGER NOT NULL,
        c16 INTEGER NOT NULL,
        c17 INTEGER NOT NULL,
        c18 INTEGER NOT NULL,
        PRIMARY KEY (day, area_code, category, unit, case_type, channel)
    ) WITHOUT ROWID;
    CREATE INDEX case_facts_running ON case_facts((CASE WHEN handle_due_at IS NOT NULL AND replied_at IS NULL
        AND (response_due_at IS NULL OR responded_at IS NOT NULL OR response_due_at <= handle_due_at)
        THEN handle_due_at WHEN response_due_at IS NOT NULL AND responded_at IS NULL
        THEN response_due_at END));
    CREATE INDEX case_facts_supervised ON case_facts(registered_at) WHERE supervised = 1;
    CREATE INDEX case_facts_late ON case_facts(registered_at, handle_due_at, replied_at,
        area_code, category, unit)
        WHERE handle_due_at IS NOT NULL AND (replied_at IS NULL OR replied_at > handle_due_at);
    "#,
    // 10: attachment bytes (`crate::blobs`). `blobs`: one row per stored blob (its SHA-256, the
    // sniffed type, who uploaded it, counted against that device's quota). `case_blobs`: which
    // case references which blob, rewritten with the case's projection; `is_pii` says the
    // reference is personal data, so the scope rule's personal-data clause applies to it.
    // Cases committed before this step get their references from `backfill-blob-refs` or at
    // their next commit.
    r#"
    CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mime TEXT NOT NULL,
        device_id TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX blobs_device ON blobs(device_id);
    CREATE TABLE case_blobs (
        case_id TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        is_pii INTEGER NOT NULL,
        PRIMARY KEY (case_id, sha256, is_pii)
    ) WITHOUT ROWID;
    CREATE INDEX case_blobs_sha256 ON case_blobs(sha256);
    "#,
    // 11: the time each event stated when the server first vouched for it, beside the trusted
    // time, so a sync sends the trusted time as a difference from it without loading the
    // document (`gridcase_core::sync::times::block`). NULL for times vouched for before this
    // step: those go as exact instants.
    r#"
    ALTER TABLE event_times ADD COLUMN stated INTEGER;
    "#,
];

struct Sqlite<'a>(&'a mut Connection);

impl Migrator for Sqlite<'_> {
    fn version(&mut self) -> Result<u32> {
        Ok(self
            .0
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Under the write lock, re-checking the version: servers starting together on one file
    /// apply each step once.
    fn apply(&mut self, version: u32, sql: &str) -> Result<()> {
        let tx = self
            .0
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found >= version {
            return Ok(());
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        Ok(())
    }
}

/// Brings the schema up to date. Returns the version reached.
pub fn migrate(conn: &mut Connection) -> Result<u32> {
    migrate::run(&mut Sqlite(conn), MIGRATIONS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbError;

    #[test]
    fn migrating_from_an_empty_database_and_refusing_a_newer_one() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len() as u32);
        // Idempotent.
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len() as u32);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN
                 ('users','devices','changes','docs','cases','device_docs','supervisions',
                  'audit','event_times','settings')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 10);
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(DbError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn version_5_fills_the_scope_area_of_valid_codes_only() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (i, step) in MIGRATIONS[..4].iter().enumerate() {
            conn.execute_batch(step).unwrap();
            conn.pragma_update(None, "user_version", i as u32 + 1)
                .unwrap();
        }
        for (id, area) in [
            ("a", "330604101201"),
            ("b", "33060410120x"),
            ("c", "000604101201"),
            ("d", "3306"),
        ] {
            conn.execute(
                "INSERT INTO cases (case_id, number, title, category, status, case_type, urgency,
                     priority, area_code, assignee, responsible_unit, calendar_version, last_seq,
                     updated_at)
                 VALUES (?1, ?1, '', '', 'registered', 'complaint', 'general', 0, ?2, '', '', '',
                     1, 0)",
                [id, area],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let areas: Vec<Option<String>> = conn
            .prepare("SELECT scope_area FROM cases ORDER BY case_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(areas, [Some("330604101201".to_string()), None, None, None]);
        for (_, area) in [
            ("", "330604101201"),
            ("", "33060410120x"),
            ("", "000604101201"),
            ("", "3306"),
        ] {
            let rust = gridcase_core::scope::scope_area(area);
            let sql: Option<String> = conn
                .query_row(
                    "SELECT scope_area FROM cases WHERE area_code = ?1",
                    [area],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(rust, sql, "{area}");
        }
    }
}
