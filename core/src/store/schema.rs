//! The phone database's schema, as a list of migrations applied in order. `PRAGMA user_version`
//! holds how many have been applied. To change the schema, append one entry to [`MIGRATIONS`];
//! never edit an entry that has shipped.

use rusqlite::Connection;

use super::StoreError;

/// One step of the schema.
pub struct Migration {
    /// What the step does, for errors and logs.
    pub name: &'static str,
    pub sql: &'static str,
    /// The step changes how the `cases` projection is computed: the phone recomputes every row
    /// from the documents when it next opens (see [`super::REPROJECT_KEY`]).
    pub reproject: bool,
}

/// Every migration, oldest first. The schema version is the number applied.
pub const MIGRATIONS: &[Migration] = &[
    // v1: documents (snapshot + incremental changes), meta, and the list projection.
    Migration {
        name: "documents, meta and case projection",
        sql: "
            CREATE TABLE meta (
                key   TEXT PRIMARY KEY NOT NULL,
                value TEXT NOT NULL
            );
            CREATE TABLE docs (
                doc_id           TEXT PRIMARY KEY NOT NULL,
                -- AutoCommit::save() of the document up to the last compaction
                snapshot         BLOB NOT NULL,
                -- rows in doc_changes for this document
                change_count     INTEGER NOT NULL DEFAULT 0,
                -- concatenated 32-byte change hashes known to be on the server
                server_heads     BLOB NOT NULL DEFAULT x'',
                -- the document holds changes beyond server_heads
                pending          INTEGER NOT NULL DEFAULT 0,
                -- the server refused the pending changes; not pushed again until an edit
                rejected_code    TEXT,
                rejected_message TEXT,
                updated_at       INTEGER NOT NULL
            );
            CREATE TABLE doc_changes (
                doc_id TEXT NOT NULL,
                seq    INTEGER NOT NULL,
                -- raw Automerge change bytes
                bytes  BLOB NOT NULL,
                PRIMARY KEY (doc_id, seq)
            );
            CREATE TABLE cases (
                case_id          TEXT PRIMARY KEY NOT NULL,
                number           TEXT NOT NULL,
                title            TEXT NOT NULL,
                status           TEXT NOT NULL,
                case_type        TEXT NOT NULL,
                urgency          TEXT NOT NULL,
                priority         INTEGER NOT NULL,
                area_code        TEXT NOT NULL,
                assignee         TEXT NOT NULL,
                responsible_unit TEXT NOT NULL,
                created_by       TEXT NOT NULL,
                stage            TEXT,
                due_at           INTEGER,
                needs_review     INTEGER NOT NULL,
                updated_at       INTEGER NOT NULL,
                has_pending      INTEGER NOT NULL DEFAULT 0
            );
        ",
        reproject: false,
    },
    // v2: what the due-soon list needs (stage start, paused clocks), the calendar version stored
    // with each due date, documents to fetch again after a discard, and the list indexes.
    Migration {
        name: "deadline details, re-fetch list, list indexes",
        sql: "
            ALTER TABLE cases ADD COLUMN stage_started_at INTEGER;
            ALTER TABLE cases ADD COLUMN deadline_paused INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE cases ADD COLUMN due_provisional INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE cases ADD COLUMN calendar_version TEXT;
            CREATE TABLE refetch (doc_id TEXT PRIMARY KEY NOT NULL);
            CREATE INDEX cases_assignee   ON cases (assignee);
            CREATE INDEX cases_created_by ON cases (created_by);
            CREATE INDEX cases_due_at     ON cases (due_at);
            CREATE INDEX cases_status     ON cases (status, updated_at);
            CREATE INDEX cases_area_code  ON cases (area_code);
            CREATE INDEX docs_pending     ON docs (pending);
        ",
        reproject: true,
    },
    // v3: lists page (LIMIT/OFFSET), so each ordering gets an index that ends in the tie-break
    // (`case_id`) and a page reads only its rows; refused documents get a partial index, so the
    // sync status does not scan every document's row (and the snapshot blobs in between).
    Migration {
        name: "paging indexes, refused documents",
        sql: "
            DROP INDEX cases_area_code;
            DROP INDEX cases_status;
            DROP INDEX cases_due_at;
            CREATE INDEX cases_area   ON cases (area_code, case_id);
            CREATE INDEX cases_status ON cases (status, updated_at DESC, case_id);
            CREATE INDEX cases_due    ON cases (due_at, case_id);
            CREATE INDEX cases_recent ON cases (updated_at DESC, case_id);
            CREATE INDEX docs_rejected ON docs (doc_id) WHERE rejected_code IS NOT NULL;
        ",
        reproject: false,
    },
    // v4: the trusted times the server vouched for (protocol 2); the lists' due instants are
    // computed from them. An upgraded phone forgets its cursor, so its next sync is a restore
    // that brings every case in scope again with its times (held documents merge, pending
    // changes are pushed as usual); the rows of the cases it names are then recomputed.
    Migration {
        name: "server-vouched event times",
        sql: "
            CREATE TABLE event_times (
                case_id  TEXT NOT NULL,
                -- a timeline event id, or 'created' for the case's creation
                event_id TEXT NOT NULL,
                at       INTEGER NOT NULL,
                PRIMARY KEY (case_id, event_id)
            ) WITHOUT ROWID;
            DELETE FROM meta WHERE key = 'cursor';
        ",
        reproject: false,
    },
    // v5: the parts received so far of a restore document too large for one page (protocol 3),
    // so a cut or a restart resumes after the last part stored.
    Migration {
        name: "staged snapshot parts",
        sql: "
            CREATE TABLE staged_parts (
                doc_id TEXT NOT NULL,
                -- SHA-256 of the whole snapshot, as the server announced it
                hash   BLOB NOT NULL,
                -- the whole snapshot's length
                total  INTEGER NOT NULL,
                -- where this part starts in the snapshot
                offset INTEGER NOT NULL,
                bytes  BLOB NOT NULL,
                PRIMARY KEY (doc_id, offset)
            ) WITHOUT ROWID;
        ",
        reproject: false,
    },
    // v6: attachment bytes (`super::blobs`): one row per blob with its upload state, the bytes
    // in chunk rows, and which case references which blob (filled by recomputing the rows).
    Migration {
        name: "attachment bytes",
        sql: "
            CREATE TABLE blobs (
                sha256    TEXT PRIMARY KEY NOT NULL,
                mime      TEXT NOT NULL,
                size      INTEGER NOT NULL,
                -- 'queued' (attached here, to upload), 'uploaded', 'failed' (refused for
                -- good: failure says why), 'remote' (attached elsewhere)
                upload    TEXT NOT NULL,
                -- bytes the server said it holds of an upload in progress
                sent      INTEGER NOT NULL DEFAULT 0,
                failure   TEXT,
                queued_at INTEGER NOT NULL
            );
            CREATE INDEX blobs_upload ON blobs (upload, queued_at);
            CREATE TABLE blob_chunks (
                sha256 TEXT NOT NULL,
                offset INTEGER NOT NULL,
                bytes  BLOB NOT NULL,
                PRIMARY KEY (sha256, offset)
            ) WITHOUT ROWID;
            CREATE TABLE blob_refs (
                case_id TEXT NOT NULL,
                sha256  TEXT NOT NULL,
                PRIMARY KEY (case_id, sha256)
            ) WITHOUT ROWID;
            CREATE INDEX blob_refs_sha256 ON blob_refs (sha256);
        ",
        reproject: true,
    },
    // v7: which references are photos' thumbnails, which a phone may prefetch (filled by
    // recomputing the rows).
    Migration {
        name: "thumbnail references",
        sql: "ALTER TABLE blob_refs ADD COLUMN thumbnail INTEGER NOT NULL DEFAULT 0;",
        reproject: true,
    },
];

/// The schema version this code writes.
pub fn latest_version() -> u32 {
    MIGRATIONS.len() as u32
}

pub fn version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Applies the migrations not yet applied, each in its own transaction together with the new
/// `user_version`, so a kill between two steps leaves a database at a known version.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current = version(conn)?;
    let latest = latest_version();
    if current > latest {
        return Err(StoreError::TooNew {
            found: current,
            supported: latest,
        });
    }
    for (index, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(step.sql)
            .map_err(|e| StoreError::Migration {
                version: index as u32 + 1,
                name: step.name,
                message: e.to_string(),
            })?;
        if step.reproject {
            // A fresh database has no rows to recompute; only an upgraded one needs it.
            let had_rows: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM cases)", [], |r| r.get(0))?;
            if had_rows {
                super::meta::set(&tx, super::REPROJECT_KEY, "1")?;
            }
        }
        tx.pragma_update(None, "user_version", index as u32 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
