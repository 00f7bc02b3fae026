//! The PostgreSQL schema, one step per row of `schema_version`. Append steps; never edit a
//! released one. Version 1 is the SQLite schema at its version 5 in PostgreSQL's types
//! (booleans, BIGINT instants, BYTEA), plus the feed counter.
//!
//! Document and case ids use the "C" collation: ordered and compared bytewise, as SQLite does,
//! so a restore's `doc_id > after` pages the same way on both backends.
//!
//! Several servers may start at once: each step runs under a transaction-scoped advisory lock
//! and re-checks the version inside it, so a step is applied exactly once.

use super::PgConn;
use crate::db::Result;
use crate::db::migrate::{self, Migrator};

/// Arbitrary, fixed: the advisory lock key of schema migrations.
const MIGRATION_LOCK: i64 = 0x6772_6964_6361_7365; // "gridcase"

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
        revoked BOOLEAN NOT NULL DEFAULT FALSE,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id),
        secret_hash TEXT NOT NULL,
        revoked BOOLEAN NOT NULL DEFAULT FALSE,
        clock_offset_ms BIGINT,
        last_seen BIGINT,
        created_at BIGINT NOT NULL,
        served_scope TEXT
    );
    CREATE INDEX devices_user ON devices(user_id);
    -- The last feed position handed out; advanced at the very end of each commit.
    CREATE TABLE feed_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL
    );
    INSERT INTO feed_head (id, seq) VALUES (1, 0);
    CREATE TABLE changes (
        seq BIGINT PRIMARY KEY,
        doc_id TEXT COLLATE "C" NOT NULL,
        hash BYTEA NOT NULL,
        bytes BYTEA NOT NULL,
        device_id TEXT,
        received_at BIGINT NOT NULL,
        UNIQUE (doc_id, hash)
    );
    CREATE INDEX changes_doc_seq ON changes(doc_id, seq);
    CREATE TABLE docs (
        doc_id TEXT COLLATE "C" PRIMARY KEY,
        case_id TEXT COLLATE "C" NOT NULL,
        is_pii BOOLEAN NOT NULL,
        snapshot BYTEA NOT NULL,
        snapshot_seq BIGINT NOT NULL,
        last_seq BIGINT NOT NULL,
        heads BYTEA NOT NULL
    );
    CREATE INDEX docs_case ON docs(case_id);
    CREATE TABLE cases (
        case_id TEXT COLLATE "C" PRIMARY KEY,
        number TEXT NOT NULL,
        title TEXT NOT NULL,
        category TEXT NOT NULL,
        status TEXT NOT NULL,
        case_type TEXT NOT NULL,
        urgency TEXT NOT NULL,
        priority BOOLEAN NOT NULL,
        area_code TEXT NOT NULL,
        scope_area TEXT,
        assignee TEXT NOT NULL,
        responsible_unit TEXT NOT NULL,
        stage TEXT,
        stage_started_at BIGINT,
        due_at BIGINT,
        due_provisional BOOLEAN NOT NULL DEFAULT FALSE,
        calendar_version TEXT NOT NULL,
        paused BOOLEAN NOT NULL DEFAULT FALSE,
        needs_review BOOLEAN NOT NULL DEFAULT FALSE,
        last_seq BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX cases_due_at ON cases(due_at);
    CREATE INDEX cases_area_code ON cases(area_code);
    CREATE INDEX cases_assignee ON cases(assignee);
    CREATE INDEX cases_last_seq ON cases(last_seq);
    CREATE INDEX cases_running_due ON cases(due_at, case_id, stage, stage_started_at)
        WHERE due_at IS NOT NULL AND NOT paused;
    CREATE TABLE event_times (
        case_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (case_id, event_id)
    );
    CREATE TABLE device_docs (
        device_id TEXT NOT NULL,
        doc_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (device_id, doc_id)
    );
    CREATE TABLE supervisions (
        id BIGSERIAL PRIMARY KEY,
        case_id TEXT NOT NULL,
        stage TEXT NOT NULL,
        stage_started_at BIGINT NOT NULL,
        level INTEGER NOT NULL,
        reason TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        UNIQUE (case_id, stage, stage_started_at)
    );
    CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
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
    // 3: the facts the assessment rates count (see `crate::rates`), written with the case's
    // projection. Cases committed before this step get their row from `backfill-facts`.
    r#"
    CREATE TABLE case_facts (
        case_id TEXT PRIMARY KEY COLLATE "C",
        registered_at BIGINT NOT NULL,
        area_code TEXT NOT NULL,
        category TEXT NOT NULL,
        unit TEXT NOT NULL,
        dispatched_at BIGINT,
        response_due_at BIGINT,
        responded_at BIGINT,
        handle_due_at BIGINT,
        replied_at BIGINT,
        closed_at BIGINT,
        returned BIGINT NOT NULL,
        duplicate BIGINT NOT NULL,
        followed_up BIGINT NOT NULL,
        solved BIGINT NOT NULL,
        satisfaction BIGINT,
        supervised BIGINT NOT NULL
    );
    CREATE INDEX case_facts_period ON case_facts(registered_at, area_code);
    "#,
    // 4: admin accounts and the monthly random audit, as SQLite's step 7 (the shared admin
    // token becomes the account `admin`).
    r#"
    CREATE TABLE admins (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        jurisdiction TEXT NOT NULL,
        password_hash TEXT,
        disabled BOOLEAN NOT NULL DEFAULT FALSE,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE admin_tokens (
        token_hash TEXT PRIMARY KEY,
        admin TEXT NOT NULL REFERENCES admins(name),
        expires_at BIGINT,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX admin_tokens_admin ON admin_tokens(admin);
    INSERT INTO admins (name, role, jurisdiction, disabled, created_at)
        SELECT 'admin', 'admin', '', FALSE, 0 FROM settings WHERE key = 'admin_token_hash';
    INSERT INTO admin_tokens (token_hash, admin, expires_at, created_at)
        SELECT value, 'admin', NULL, 0 FROM settings WHERE key = 'admin_token_hash';
    DELETE FROM settings WHERE key = 'admin_token_hash';
    ALTER TABLE audit DROP CONSTRAINT audit_kind_check;
    ALTER TABLE audit ADD CONSTRAINT audit_kind_check CHECK (kind IN ('change', 'reveal',
        'reject', 'revoke', 'enrol', 'admin', 'audit_draw', 'audit_verify'));
    ALTER TABLE audit ADD COLUMN area TEXT;
    CREATE INDEX audit_area_at ON audit(area, at);
    CREATE TABLE audit_draws (
        id BIGSERIAL PRIMARY KEY,
        month TEXT NOT NULL,
        area TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        n BIGINT NOT NULL,
        nonce TEXT NOT NULL,
        seed TEXT NOT NULL,
        candidates_hash TEXT NOT NULL,
        candidates TEXT NOT NULL,
        reason TEXT,
        by_admin TEXT NOT NULL,
        at BIGINT NOT NULL,
        UNIQUE (month, area, sequence)
    );
    CREATE TABLE audit_draw_cases (
        draw_id BIGINT NOT NULL REFERENCES audit_draws(id),
        position BIGINT NOT NULL,
        case_id TEXT COLLATE "C" NOT NULL,
        result TEXT CHECK (result IN ('confirmed', 'failed')),
        note TEXT,
        verified_by TEXT,
        verified_at BIGINT,
        PRIMARY KEY (draw_id, case_id)
    );
    "#,
    // 5: the case's type and channel in its facts row (the report's totals by type and
    // channel, `crate::report`). The rows are derived data, so they are dropped rather than
    // guessed: `backfill-facts` recomputes them from the documents after the upgrade.
    r#"
    DELETE FROM case_facts;
    ALTER TABLE case_facts ADD COLUMN case_type TEXT NOT NULL DEFAULT '';
    ALTER TABLE case_facts ADD COLUMN channel TEXT NOT NULL DEFAULT '';
    "#,
    // 6 (schema version 5: the first string above holds steps 1 and 2): the per-day rollup of
    // `case_facts` and its indexes, as SQLite's step 9 (`crate::fact_days`).
    r#"
    CREATE TABLE case_fact_days (
        day BIGINT NOT NULL,
        area_code TEXT NOT NULL,
        category TEXT NOT NULL,
        unit TEXT NOT NULL,
        case_type TEXT NOT NULL,
        channel TEXT NOT NULL,
        cases BIGINT NOT NULL,
        c0 BIGINT NOT NULL,
        c1 BIGINT NOT NULL,
        c2 BIGINT NOT NULL,
        c3 BIGINT NOT NULL,
        c4 BIGINT NOT NULL,
        c5 BIGINT NOT NULL,
        c6 BIGINT NOT NULL,
        c7 BIGINT NOT NULL,
        c8 BIGINT NOT NULL,
        c9 BIGINT NOT NULL,
        c10 BIGINT NOT NULL,
        c11 BIGINT NOT NULL,
        c12 BIGINT NOT NULL,
        c13 BIGINT NOT NULL,
        c14 BIGINT NOT NULL,
        c15 BIGINT NOT NULL,
        c16 BIGINT NOT NULL,
        c17 BIGINT NOT NULL,
        c18 BIGINT NOT NULL,
        PRIMARY KEY (day, area_code, category, unit, case_type, channel)
    );
    CREATE INDEX case_facts_running ON case_facts((CASE WHEN handle_due_at IS NOT NULL AND replied_at IS NULL
        AND (response_due_at IS NULL OR responded_at IS NOT NULL OR response_due_at <= handle_due_at)
        THEN handle_due_at WHEN response_due_at IS NOT NULL AND responded_at IS NULL
        THEN response_due_at END));
    CREATE INDEX case_facts_supervised ON case_facts(registered_at) WHERE supervised = 1;
    CREATE INDEX case_facts_late ON case_facts(registered_at, handle_due_at, replied_at,
        area_code, category, unit)
        WHERE handle_due_at IS NOT NULL AND (replied_at IS NULL OR replied_at > handle_due_at);
    "#,
    // 7 (schema version 6): attachment bytes, as SQLite's step 10 (`crate::blobs`).
    r#"
    CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        size BIGINT NOT NULL,
        mime TEXT NOT NULL,
        device_id TEXT,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX blobs_device ON blobs(device_id);
    CREATE TABLE case_blobs (
        case_id TEXT COLLATE "C" NOT NULL,
        sha256 TEXT NOT NULL,
        is_pii BOOLEAN NOT NULL,
        PRIMARY KEY (case_id, sha256, is_pii)
    );
    CREATE INDEX case_blobs_sha256 ON case_blobs(sha256);
    "#,
    // 8 (schema version 7): the stated time beside the trusted one, as SQLite's step 11.
    r#"
    ALTER TABLE event_times ADD COLUMN stated BIGINT;
    "#,
];

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
        version INTEGER PRIMARY KEY,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )";

/// The schema's version (0 for an empty database).
pub(super) fn version(conn: &mut PgConn) -> Result<u32> {
    let exists: bool = conn
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: i32 = conn
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])?
        .get(0);
    Ok(v as u32)
}

struct Postgres<'a>(&'a mut PgConn);

impl Migrator for Postgres<'_> {
    fn version(&mut self) -> Result<u32> {
        version(self.0)
    }

    fn apply(&mut self, target: u32, sql: &str) -> Result<()> {
        let conn = &mut *self.0;
        conn.batch("BEGIN")?;
        let result = (|| {
            conn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            conn.batch(VERSION_TABLE)?;
            if version(conn)? >= target {
                return Ok(()); // another server applied it meanwhile
            }
            conn.batch(sql)?;
            conn.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&(target as i32)],
            )?;
            Ok(())
        })();
        match result {
            Ok(()) => conn.batch("COMMIT"),
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// Brings the schema up to date. Returns the version reached.
pub(super) fn migrate(conn: &mut PgConn) -> Result<u32> {
    migrate::run(&mut Postgres(conn), MIGRATIONS)
}
