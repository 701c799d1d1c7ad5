//! The server's own records beside the team replica: devices and their token hashes,
//! download hints, and quarantined uploads. Behind a trait so that a scale-out backend
//! (PostgreSQL) can take the place of the embedded SQLite file (DESIGN.md §5).

use std::path::Path;

use automerge::ChangeHash;
use fieldsync_core::store::documents::{decode_heads, encode_heads};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Device id.
    pub id: String,
    /// The user it acts for.
    pub user: String,
    /// Its automerge actor, once it has joined.
    pub actor: Option<String>,
    /// Revoked devices are refused.
    pub revoked: bool,
    /// Issued at, ms.
    pub created_at: i64,
}

/// An upload held for review because its device's user departed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuarantinedUpload {
    /// Id.
    pub id: i64,
    /// Device that sent it.
    pub device: String,
    /// Its user.
    pub user: String,
    /// Received at, ms.
    pub received_at: i64,
    /// Size of the upload.
    pub bytes: i64,
    /// `pending`, `accepted` or `rejected`.
    pub status: String,
    /// Who decided.
    pub decided_by: Option<String>,
}

/// Storage of the server's records.
pub trait ServerStore: Send {
    /// Registers a device for `user` and returns `(device id, token)`; the token is shown
    /// once and only its hash is kept.
    fn issue_device(&mut self, user: &str, now: i64) -> AppResult<(String, String)>;
    /// The device a token belongs to.
    fn authenticate(&self, token: &str) -> AppResult<Option<Device>>;
    /// Records the actor a device joined with.
    fn set_device_actor(&mut self, device: &str, actor: &str) -> AppResult<()>;
    /// Revokes a device; false if unknown.
    fn revoke_device(&mut self, device: &str) -> AppResult<bool>;
    /// Every device.
    fn devices(&self) -> AppResult<Vec<Device>>;
    /// The heads a device is believed to have of a document.
    fn hint(&self, device: &str, doc_id: &str) -> AppResult<Vec<ChangeHash>>;
    /// Records what a device is believed to have.
    fn set_hints(&mut self, device: &str, hints: &[(String, Vec<ChangeHash>)]) -> AppResult<()>;
    /// Forgets what a device had of documents it may no longer see.
    fn drop_hints(&mut self, device: &str, doc_ids: &[String]) -> AppResult<()>;
    /// Holds an upload for review.
    fn quarantine(&mut self, device: &str, user: &str, body: &[u8], now: i64) -> AppResult<i64>;
    /// Every held upload.
    fn quarantined(&self) -> AppResult<Vec<QuarantinedUpload>>;
    /// One held upload with its bytes.
    fn quarantined_body(&self, id: i64) -> AppResult<Option<(QuarantinedUpload, Vec<u8>)>>;
    /// Records a decision.
    fn decide(&mut self, id: i64, accepted: bool, by: &str) -> AppResult<()>;
}

/// The embedded default: `server.db` in the data folder.
pub struct SqliteServerStore {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    actor TEXT UNIQUE,
    revoked INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS device_heads (
    device_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    heads BLOB NOT NULL,
    PRIMARY KEY (device_id, doc_id)
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    body BLOB NOT NULL,
    body_hash TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    decided_by TEXT,
    UNIQUE (device_id, body_hash)
);
";

fn hash_token(token: &str) -> String {
    Sha256::digest(token.trim().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_token() -> String {
    // 244 random bits from the OS generator (two v4 UUIDs).
    format!(
        "fs_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl SqliteServerStore {
    /// Opens (creating if needed) `server.db`.
    pub fn open(path: &Path) -> AppResult<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteServerStore { conn })
    }
}

fn device(r: &rusqlite::Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        id: r.get(0)?,
        user: r.get(1)?,
        actor: r.get(2)?,
        revoked: r.get(3)?,
        created_at: r.get(4)?,
    })
}

fn upload(r: &rusqlite::Row<'_>) -> rusqlite::Result<QuarantinedUpload> {
    Ok(QuarantinedUpload {
        id: r.get(0)?,
        device: r.get(1)?,
        user: r.get(2)?,
        received_at: r.get(3)?,
        bytes: r.get(4)?,
        status: r.get(5)?,
        decided_by: r.get(6)?,
    })
}

impl ServerStore for SqliteServerStore {
    fn issue_device(&mut self, user: &str, now: i64) -> AppResult<(String, String)> {
        let id = uuid::Uuid::new_v4().to_string();
        let token = random_token();
        self.conn.execute(
            "INSERT INTO devices(id, user_id, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![id, user, hash_token(&token), now],
        )?;
        Ok((id, token))
    }

    fn authenticate(&self, token: &str) -> AppResult<Option<Device>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, user_id, actor, revoked, created_at FROM devices WHERE token_hash = ?1",
                [hash_token(token)],
                device,
            )
            .optional()?)
    }

    fn set_device_actor(&mut self, device: &str, actor: &str) -> AppResult<()> {
        self.conn.execute(
            "UPDATE devices SET actor = ?2 WHERE id = ?1",
            params![device, actor],
        )?;
        Ok(())
    }

    fn revoke_device(&mut self, device: &str) -> AppResult<bool> {
        Ok(self
            .conn
            .execute("UPDATE devices SET revoked = 1 WHERE id = ?1", [device])?
            > 0)
    }

    fn devices(&self) -> AppResult<Vec<Device>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, user_id, actor, revoked, created_at FROM devices ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], device)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn hint(&self, device: &str, doc_id: &str) -> AppResult<Vec<ChangeHash>> {
        let heads: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT heads FROM device_heads WHERE device_id = ?1 AND doc_id = ?2",
                [device, doc_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(decode_heads(&heads.unwrap_or_default()))
    }

    fn set_hints(&mut self, device: &str, hints: &[(String, Vec<ChangeHash>)]) -> AppResult<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO device_heads(device_id, doc_id, heads) VALUES (?1, ?2, ?3)
                 ON CONFLICT(device_id, doc_id) DO UPDATE SET heads = excluded.heads",
            )?;
            for (doc, heads) in hints {
                stmt.execute(params![device, doc, encode_heads(heads)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn drop_hints(&mut self, device: &str, doc_ids: &[String]) -> AppResult<()> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM device_heads WHERE device_id = ?1 AND doc_id = ?2")?;
        for doc in doc_ids {
            stmt.execute([device, doc.as_str()])?;
        }
        Ok(())
    }

    fn quarantine(&mut self, device: &str, user: &str, body: &[u8], now: i64) -> AppResult<i64> {
        // A phone retrying the same upload is held once.
        let hash: String = Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.conn.execute(
            "INSERT INTO quarantine(device_id, user_id, received_at, body, body_hash)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(device_id, body_hash) DO NOTHING",
            params![device, user, now, body, hash],
        )?;
        Ok(self.conn.query_row(
            "SELECT id FROM quarantine WHERE device_id = ?1 AND body_hash = ?2",
            [device, hash.as_str()],
            |r| r.get(0),
        )?)
    }

    fn quarantined(&self) -> AppResult<Vec<QuarantinedUpload>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, device_id, user_id, received_at, length(body), status, decided_by
             FROM quarantine ORDER BY id",
        )?;
        let rows = stmt.query_map([], upload)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn quarantined_body(&self, id: i64) -> AppResult<Option<(QuarantinedUpload, Vec<u8>)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, device_id, user_id, received_at, length(body), status, decided_by, body
                 FROM quarantine WHERE id = ?1",
                [id],
                |r| Ok((upload(r)?, r.get(7)?)),
            )
            .optional()?)
    }

    fn decide(&mut self, id: i64, accepted: bool, by: &str) -> AppResult<()> {
        let status = if accepted { "accepted" } else { "rejected" };
        let n = self.conn.execute(
            "UPDATE quarantine SET status = ?2, decided_by = ?3 WHERE id = ?1 AND status = 'pending'",
            params![id, status, by],
        )?;
        if n == 0 {
            return Err(AppError::Conflict(format!(
                "upload {id} is unknown or already decided"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_only_as_hashes_and_authenticate_their_device() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteServerStore::open(&dir.path().join("server.db")).unwrap();
        let (id, token) = store.issue_device("u1", 1).unwrap();
        assert_eq!(store.authenticate(&token).unwrap().unwrap().id, id);
        assert!(store.authenticate("fs_wrong").unwrap().is_none());
        let stored: String = store
            .conn
            .query_row("SELECT token_hash FROM devices", [], |r| r.get(0))
            .unwrap();
        assert!(!stored.contains(&token) && stored.len() == 64);
    }
}
