//! The replica's SQLite file: documents (snapshot + incremental changes), the outbox, and
//! the read model. This module is the only place that writes SQL.
//!
//! Writes take a `&Transaction`, reads a `&Connection`. A document and its read-model
//! rows are always written in the same transaction (docs/storage.md).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, Transaction};

use crate::{Error, Result};

pub mod documents;
pub mod read_model;
pub mod schema;

/// Owns the replica's SQLite connection.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Creates a new replica file; refuses to overwrite an existing one.
    pub fn create(path: &Path) -> Result<Self> {
        if path.exists()
            && std::fs::metadata(path)
                .map(|m| m.len() > 0)
                .unwrap_or(false)
        {
            return Err(Error::Storage(format!(
                "{} already exists; refusing to overwrite a replica",
                path.display()
            )));
        }
        Self::open_with(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            true,
        )
    }

    /// Opens an existing replica file.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::Storage(format!(
                "{} does not exist; create it with `fieldsync init`",
                path.display()
            )));
        }
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE, false)
    }

    fn open_with(path: &Path, flags: OpenFlags, create: bool) -> Result<Self> {
        if !create
            && std::fs::metadata(path)
                .map(|m| m.len() == 0)
                .unwrap_or(false)
        {
            return Err(Error::Storage(format!(
                "{} is empty, not a FieldSync replica; create one with `fieldsync init`",
                path.display()
            )));
        }
        let not_a_replica = |e: rusqlite::Error| {
            Error::Storage(format!(
                "{} is not a FieldSync replica: {e}",
                path.display()
            ))
        };
        let mut conn = Connection::open_with_flags(path, flags).map_err(not_a_replica)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(not_a_replica)?;
        // Read-only checks first: never write to a file that is not ours. The first read of
        // a corrupt file fails here.
        let (version, tables, has_meta): (i64, i64, bool) = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version),
                        (SELECT count(*) FROM sqlite_master),
                        EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(not_a_replica)?;
        if tables > 0 && (version == 0 || !has_meta) {
            return Err(Error::Storage(format!(
                "{} is an SQLite file but not a FieldSync replica",
                path.display()
            )));
        }
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(not_a_replica)?;
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(not_a_replica)?;
        schema::migrate(&mut conn, create).map_err(|e| match e {
            Error::Storage(msg) => Error::Storage(format!("{}: {msg}", path.display())),
            other => other,
        })?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Deletes a replica file and its WAL side files (used when creating one failed
    /// half-way, so that no half-made replica is left behind).
    pub fn remove_files(path: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(std::path::PathBuf::from(p));
        }
    }

    /// Like [`Store::write`], for filling a new file in one transaction (a join): the
    /// transaction runs with a rollback journal, so every page is written once into the
    /// file instead of into the write-ahead log and then again by its checkpoint; the
    /// file is back in WAL mode afterwards, whether the write succeeded or not.
    pub fn bulk_load<T>(&mut self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        self.conn
            .query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
        let out = self.write(f);
        self.conn
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        out
    }

    /// Makes every commit durable before it returns (`synchronous = FULL`: the WAL is
    /// synced on each commit). Replicas default to `NORMAL`, which survives a crash of
    /// the app but may lose the last commits on a power cut; a sync server, whose answer
    /// tells a device that its changes are safe, needs `FULL`.
    pub fn sync_every_commit(&self) -> Result<()> {
        self.conn.execute_batch("PRAGMA synchronous = FULL;")?;
        Ok(())
    }

    /// Read access.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one transaction; commits only if it succeeds, so a failed operation
    /// changes nothing.
    pub fn write<T>(&mut self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let tx = self.conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Reads a value from the `meta` table.
pub fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Writes a value into the `meta` table.
pub fn meta_set(tx: &Transaction, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}
