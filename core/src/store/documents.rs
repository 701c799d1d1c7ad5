//! Automerge documents on disk: a compact snapshot plus the incremental changes saved
//! since, folded back into a new snapshot inside the same transaction once they pile up.

use automerge::{AutoCommit, ChangeHash};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::{Error, Result};

/// Incremental chunks kept before a document is compacted into a fresh snapshot.
pub const COMPACT_AFTER: i64 = 32;

/// What a stored document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    /// The team document.
    Team,
    /// A client document.
    Client,
}

impl DocKind {
    /// The spelling stored in the `documents` table and in bundles.
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Team => "team",
            DocKind::Client => "client",
        }
    }
    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "team" => Ok(DocKind::Team),
            "client" => Ok(DocKind::Client),
            other => Err(Error::Storage(format!("unknown document kind {other:?}"))),
        }
    }
}

/// Loads a document, or `None` if it is not stored.
pub fn load(conn: &Connection, doc_id: &str) -> Result<Option<AutoCommit>> {
    let snapshot: Option<Vec<u8>> = conn
        .query_row(
            "SELECT snapshot FROM documents WHERE doc_id = ?1",
            [doc_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(snapshot) = snapshot else {
        return Ok(None);
    };
    let corrupt = |e: automerge::AutomergeError| Error::CorruptDocument {
        doc: doc_id.to_string(),
        reason: e.to_string(),
    };
    let mut doc = AutoCommit::load(&snapshot).map_err(corrupt)?;
    let mut stmt =
        conn.prepare_cached("SELECT data FROM doc_changes WHERE doc_id = ?1 ORDER BY seq")?;
    let chunks = stmt.query_map([doc_id], |r| r.get::<_, Vec<u8>>(0))?;
    for chunk in chunks {
        doc.load_incremental(&chunk?).map_err(corrupt)?;
    }
    Ok(Some(doc))
}

/// Ids of every stored document of a kind.
pub fn ids(conn: &Connection, kind: DocKind) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT doc_id FROM documents WHERE kind = ?1 ORDER BY doc_id")?;
    let rows = stmt.query_map([kind.as_str()], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Stores a new document from its saved bytes as they arrived (a provisioning bundle's
/// entry), with its heads and the actors that wrote it: nothing is decoded or re-encoded.
pub fn insert_snapshot(
    tx: &Transaction,
    doc_id: &str,
    kind: DocKind,
    snapshot: &[u8],
    heads: &[ChangeHash],
    actors: &[String],
    now: i64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO documents(doc_id, kind, snapshot, heads, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        doc_id,
        kind.as_str(),
        snapshot,
        encode_heads(heads),
        now
    ])?;
    insert_actors(tx, doc_id, actors)?;
    log_change(tx, doc_id)
}

/// Saves what changed in `doc` since `before` (the heads it had when it was loaded, or
/// `None` for a new document). Returns whether anything changed.
pub fn save(
    tx: &Transaction,
    doc_id: &str,
    kind: DocKind,
    doc: &mut AutoCommit,
    before: Option<&[ChangeHash]>,
    now: i64,
) -> Result<bool> {
    let heads = encode_heads(&doc.get_heads());
    let Some(before) = before else {
        tx.execute(
            "INSERT INTO documents(doc_id, kind, snapshot, heads, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![doc_id, kind.as_str(), doc.save(), heads, now],
        )?;
        record_actors(tx, doc_id, &doc.get_changes(&[]))?;
        log_change(tx, doc_id)?;
        return Ok(true);
    };
    if doc.get_heads() == before {
        return Ok(false);
    }
    record_actors(tx, doc_id, &doc.get_changes(before))?;
    let chunk = doc.save_after(before);
    let (count, next): (i64, i64) = tx
        .prepare_cached(
            "SELECT count(*), coalesce(max(seq), 0) + 1 FROM doc_changes WHERE doc_id = ?1",
        )?
        .query_row([doc_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if count + 1 >= COMPACT_AFTER {
        tx.execute(
            "UPDATE documents SET snapshot = ?2, heads = ?3, updated_at = ?4 WHERE doc_id = ?1",
            params![doc_id, doc.save(), heads, now],
        )?;
        tx.execute("DELETE FROM doc_changes WHERE doc_id = ?1", [doc_id])?;
    } else {
        tx.prepare_cached(
            "INSERT INTO doc_changes(doc_id, seq, data, base) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![doc_id, next, chunk, encode_heads(before)])?;
        tx.prepare_cached("UPDATE documents SET heads = ?2, updated_at = ?3 WHERE doc_id = ?1")?
            .execute(params![doc_id, heads, now])?;
    }
    log_change(tx, doc_id)?;
    Ok(true)
}

/// A document as stored, read without loading it (see [`stored`]).
#[derive(Debug)]
pub struct StoredDoc {
    /// The snapshot followed by the incremental chunks saved since (automerge loads the
    /// concatenation as one document).
    pub bytes: Vec<u8>,
    /// Its heads, when the row has them (rows written before schema 4 do not).
    pub heads: Option<Vec<ChangeHash>>,
}

/// A document's bytes and heads as stored, or `None` if it is not stored.
pub fn stored(conn: &Connection, doc_id: &str) -> Result<Option<StoredDoc>> {
    let row: Option<(Vec<u8>, Option<Vec<u8>>)> = conn
        .prepare_cached("SELECT snapshot, heads FROM documents WHERE doc_id = ?1")?
        .query_row([doc_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((mut bytes, heads)) = row else {
        return Ok(None);
    };
    let mut stmt =
        conn.prepare_cached("SELECT data FROM doc_changes WHERE doc_id = ?1 ORDER BY seq")?;
    for chunk in stmt.query_map([doc_id], |r| r.get::<_, Vec<u8>>(0))? {
        bytes.extend_from_slice(&chunk?);
    }
    Ok(Some(StoredDoc {
        bytes,
        heads: heads.map(|h| decode_heads(&h)),
    }))
}

/// The changes a document gained since `heads`, read from its stored incremental chunks
/// without loading it: when a chunk was saved on exactly those heads, that chunk and every
/// later one. `None` when no chunk starts there (the document was compacted since, or
/// `heads` are not a state it was saved in): load the document instead.
pub fn changes_since(
    conn: &Connection,
    doc_id: &str,
    heads: &[ChangeHash],
) -> Result<Option<Vec<u8>>> {
    if heads.is_empty() {
        return Ok(None);
    }
    let mut wanted = heads.to_vec();
    wanted.sort();
    let mut stmt =
        conn.prepare_cached("SELECT base, data FROM doc_changes WHERE doc_id = ?1 ORDER BY seq")?;
    let mut rows = stmt.query([doc_id])?;
    let mut out: Option<Vec<u8>> = None;
    while let Some(row) = rows.next()? {
        if out.is_none() {
            let base: Option<Vec<u8>> = row.get(0)?;
            let mut base = decode_heads(&base.unwrap_or_default());
            base.sort();
            if base != wanted {
                continue;
            }
            out = Some(Vec::new());
        }
        if let Some(out) = out.as_mut() {
            out.extend_from_slice(&row.get::<_, Vec<u8>>(1)?);
        }
    }
    Ok(out)
}

/// The heads stored with a document, if the row has them (see [`stored`]).
pub fn stored_heads(conn: &Connection, doc_id: &str) -> Result<Option<Vec<ChangeHash>>> {
    let heads: Option<Option<Vec<u8>>> = conn
        .prepare_cached("SELECT heads FROM documents WHERE doc_id = ?1")?
        .query_row([doc_id], |r| r.get(0))
        .optional()?;
    Ok(heads.flatten().map(|h| decode_heads(&h)))
}

/// The actors (hex) that wrote a document, as recorded when it was stored.
pub fn actors(conn: &Connection, doc_id: &str) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT actor FROM doc_actors WHERE doc_id = ?1 ORDER BY actor")?;
    let rows = stmt.query_map([doc_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records which actors wrote `changes` of a document.
pub fn record_actors(tx: &Transaction, doc_id: &str, changes: &[automerge::Change]) -> Result<()> {
    let actors: std::collections::BTreeSet<String> = changes
        .iter()
        .map(|c| c.actor_id().to_hex_string())
        .collect();
    insert_actors(tx, doc_id, actors)
}

/// Records that `actors` (hex) wrote a document.
fn insert_actors(
    tx: &Transaction,
    doc_id: &str,
    actors: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO doc_actors(doc_id, actor) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )?;
    for actor in actors {
        stmt.execute(params![doc_id, actor.as_ref()])?;
    }
    Ok(())
}

/// Documents that contain changes by any of `actors`.
pub fn docs_by_actors(conn: &Connection, actors: &[String]) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT DISTINCT doc_id FROM doc_actors WHERE actor = ?1")?;
    let mut out = std::collections::BTreeSet::new();
    for actor in actors {
        for id in stmt.query_map([actor], |r| r.get::<_, String>(0))? {
            out.insert(id?);
        }
    }
    Ok(out.into_iter().collect())
}

/// Moves a document to the end of the change log.
fn log_change(tx: &Transaction, doc_id: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO change_log(doc_id, seq)
             VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM change_log))
         ON CONFLICT(doc_id) DO UPDATE SET seq = excluded.seq",
    )?
    .execute([doc_id])?;
    Ok(())
}

/// The latest change sequence number (0 for an empty replica).
pub fn current_seq(conn: &Connection) -> Result<u64> {
    Ok(
        conn.query_row("SELECT coalesce(max(seq), 0) FROM change_log", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

/// Documents changed after `cursor`, oldest change first, at most `limit`:
/// `(doc_id, kind, seq)`.
pub fn changed_since(
    conn: &Connection,
    cursor: u64,
    limit: usize,
) -> Result<Vec<(String, DocKind, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.doc_id, d.kind, l.seq FROM change_log l JOIN documents d USING (doc_id)
         WHERE l.seq > ?1 ORDER BY l.seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![cursor as i64, limit as i64], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    rows.map(|row| {
        let (id, kind, seq) = row?;
        Ok((id, DocKind::parse(&kind)?, seq as u64))
    })
    .collect()
}

/// The heads a sync server acknowledged for a document (empty: never synced).
pub fn peer_heads(conn: &Connection, doc_id: &str) -> Result<Vec<ChangeHash>> {
    let heads: Option<Vec<u8>> = conn
        .query_row(
            "SELECT heads FROM peer_heads WHERE doc_id = ?1",
            [doc_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(decode_heads(&heads.unwrap_or_default()))
}

/// Records the heads a sync server acknowledged for a document.
pub fn set_peer_heads(tx: &Transaction, doc_id: &str, heads: &[ChangeHash]) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO peer_heads(doc_id, heads) VALUES (?1, ?2)
         ON CONFLICT(doc_id) DO UPDATE SET heads = excluded.heads",
    )?
    .execute(params![doc_id, encode_heads(heads)])?;
    Ok(())
}

/// Deletes a document with its changes, log entry, outbox entry and acknowledged heads.
pub fn delete(tx: &Transaction, doc_id: &str) -> Result<()> {
    tx.execute("DELETE FROM outbox WHERE doc_id = ?1", [doc_id])?;
    tx.execute("DELETE FROM peer_heads WHERE doc_id = ?1", [doc_id])?;
    tx.execute("DELETE FROM documents WHERE doc_id = ?1", [doc_id])?;
    Ok(())
}

/// Removes a document from the outbox.
pub fn outbox_remove(tx: &Transaction, doc_id: &str) -> Result<()> {
    tx.execute("DELETE FROM outbox WHERE doc_id = ?1", [doc_id])?;
    Ok(())
}

/// Concatenated 32-byte change hashes.
pub fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

/// The inverse of [`encode_heads`]; a trailing partial hash is ignored.
pub fn decode_heads(bytes: &[u8]) -> Vec<ChangeHash> {
    bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            ChangeHash(h)
        })
        .collect()
}

/// Number of incremental chunks stored for a document (for compaction tests).
pub fn change_chunks(conn: &Connection, doc_id: &str) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM doc_changes WHERE doc_id = ?1",
        [doc_id],
        |r| r.get(0),
    )?)
}

/// Marks a document as changed locally, for the next sync.
pub fn outbox_add(tx: &Transaction, doc_id: &str, now: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO outbox(doc_id, changed_at) VALUES (?1, ?2)
         ON CONFLICT(doc_id) DO UPDATE SET changed_at = excluded.changed_at",
        params![doc_id, now],
    )?;
    Ok(())
}

/// Documents changed locally and not yet acknowledged by a server.
pub fn outbox(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT doc_id FROM outbox ORDER BY changed_at, doc_id")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
