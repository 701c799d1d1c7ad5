//! Schema versions in `PRAGMA user_version`: `init` creates the current schema and
//! `upgrade_from` has one arm per older version.

use rusqlite::{Connection, Transaction};

use crate::{Error, Result};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 4;

/// Brings the file to [`SCHEMA_VERSION`] in one transaction. Only a new file
/// (`create`) gets a fresh schema; opening an empty or foreign file is refused untouched.
pub fn migrate(conn: &mut Connection, create: bool) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Storage(format!(
            "replica schema {version} is newer than this FieldSync ({SCHEMA_VERSION}); upgrade the app"
        )));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    if version == 0 {
        let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables > 0 {
            return Err(Error::Storage(
                "is an SQLite file but not a FieldSync replica".into(),
            ));
        }
        if !create {
            return Err(Error::Storage(
                "is empty, not a FieldSync replica; create one with `fieldsync init`".into(),
            ));
        }
        init(&tx)?;
    } else {
        let mut v = version;
        while v < SCHEMA_VERSION {
            upgrade_from(&tx, v)?;
            v += 1;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Version 1: documents, outbox and the client read model.
const V1: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (
    doc_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('team', 'client')),
    snapshot BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE doc_changes (
    doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (doc_id, seq)
);
CREATE TABLE outbox (doc_id TEXT PRIMARY KEY, changed_at INTEGER NOT NULL);
CREATE TABLE clients (
    -- An explicit rowid alias, so VACUUM keeps it: the search index is keyed by it.
    row_key INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    company TEXT NOT NULL,
    phone_norm TEXT,
    email_norm TEXT,
    company_norm TEXT,
    owner TEXT NOT NULL,
    supervisor TEXT,
    stage TEXT NOT NULL,
    stage_entered_at INTEGER NOT NULL,
    due_at INTEGER,
    created_at INTEGER NOT NULL,
    won_at INTEGER,
    lost_at INTEGER,
    loss_reason TEXT,
    concurrent_moves INTEGER NOT NULL,
    concurrent_handovers INTEGER NOT NULL,
    conflicts INTEGER NOT NULL,
    tags TEXT NOT NULL,
    collaborators TEXT NOT NULL
);
CREATE INDEX clients_stage ON clients(stage);
CREATE INDEX clients_owner ON clients(owner);
CREATE INDEX clients_due ON clients(due_at) WHERE due_at IS NOT NULL;
CREATE INDEX clients_phone ON clients(phone_norm);
CREATE INDEX clients_email ON clients(email_norm);
CREATE INDEX clients_company ON clients(company_norm);
CREATE TABLE stage_visits (
    client_id TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    stage TEXT NOT NULL,
    entered_at INTEGER NOT NULL,
    left_at INTEGER,
    PRIMARY KEY (client_id, seq)
);
CREATE TABLE transitions (
    client_id TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    from_stage TEXT NOT NULL,
    to_stage TEXT NOT NULL,
    at INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    effective INTEGER NOT NULL,
    PRIMARY KEY (client_id, id)
);
";

/// Version 2: the trigram full-text index, so that search finds Chinese substrings.
const V2: &str = "
-- Keyed by the clients table's rowid: deleting a client's entry is a rowid lookup.
CREATE VIRTUAL TABLE client_search USING fts5(body, tokenize = 'trigram');
INSERT INTO meta(key, value) VALUES ('read_model_needs_rebuild', '1')
    ON CONFLICT(key) DO UPDATE SET value = '1';
";

/// Version 3: the change log (a per-replica sequence of document changes, which a sync
/// server serves cursors from), the heads a sync server acknowledged per document, and
/// which actors wrote each document (so that a new actor registration re-folds only the
/// clients that actor wrote); refilled from the documents on the next open.
const V3: &str = "
CREATE TABLE change_log (
    doc_id TEXT PRIMARY KEY REFERENCES documents(doc_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL
);
CREATE UNIQUE INDEX change_log_seq ON change_log(seq);
INSERT INTO change_log(doc_id, seq)
    SELECT doc_id, row_number() OVER (ORDER BY updated_at, doc_id) FROM documents;
CREATE TABLE peer_heads (doc_id TEXT PRIMARY KEY, heads BLOB NOT NULL);
-- The flow report reads stays per stage: a covering index.
CREATE INDEX stage_visits_stage ON stage_visits(stage, client_id, entered_at, left_at);
CREATE TABLE doc_actors (
    doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    actor TEXT NOT NULL,
    PRIMARY KEY (doc_id, actor)
);
CREATE INDEX doc_actors_actor ON doc_actors(actor);
INSERT INTO meta(key, value) VALUES ('read_model_needs_rebuild', '1')
    ON CONFLICT(key) DO UPDATE SET value = '1';
";

/// Version 4: each document's heads next to its bytes, and the heads each incremental
/// chunk builds on, so that a provisioning bundle and a sync answer can tell what a
/// document holds, and what it gained since given heads, without loading it. Rows
/// written before have none (NULL) and are read by loading the document.
const V4: &str = "
ALTER TABLE documents ADD COLUMN heads BLOB;
ALTER TABLE doc_changes ADD COLUMN base BLOB;
";

/// Creates the current schema in an empty file.
fn init(tx: &Transaction) -> Result<()> {
    tx.execute_batch(V1)?;
    tx.execute_batch(V2)?;
    tx.execute_batch(V3)?;
    tx.execute_batch(V4)?;
    tx.execute(
        "DELETE FROM meta WHERE key = 'read_model_needs_rebuild'",
        [],
    )?;
    Ok(())
}

/// One step: from `version` to `version + 1`.
fn upgrade_from(tx: &Transaction, version: i64) -> Result<()> {
    match version {
        // The search index and the actor index are derived data: the replica refills
        // them from the documents on the next open (see Replica::open).
        1 => tx.execute_batch(V2)?,
        2 => tx.execute_batch(V3)?,
        3 => tx.execute_batch(V4)?,
        other => {
            return Err(Error::Storage(format!(
                "no upgrade path from replica schema {other}"
            )))
        }
    }
    Ok(())
}

/// The SQL text of schema version 1, for the upgrade test's fixture.
#[doc(hidden)]
pub fn v1_sql() -> &'static str {
    V1
}
