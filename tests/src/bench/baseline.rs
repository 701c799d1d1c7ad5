//! What FieldSync is compared with, served by one small axum server in the same process
//! from the same documents:
//!
//! - **naive**: every document synced on its own with plain automerge sync messages
//!   (`generate_sync_message` / `receive_sync_message`), one HTTP request per message: no
//!   batching, no cursor (the device lists its documents and syncs each), no read model
//!   (the board loads and folds every document). The device keeps each document's bytes
//!   and its sync state in SQLite.
//! - **floor**: the same clients as plain JSON rows in SQLite, last writer wins: one GET of
//!   the rows changed since a version, one POST of the rows changed here, inserted in one
//!   transaction; the board is a GROUP BY over a plain table.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use automerge::sync::{Message, State, SyncDoc};
use automerge::AutoCommit;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use fieldsync_core::client::ClientDoc;
use fieldsync_core::fold::{fold, ClientView};
use fieldsync_core::team::TeamDoc;
use rusqlite::{params, Connection};
use serde::Deserialize;
use serde_json::{json, Value};

/// Server-side state of both baselines.
#[derive(Default)]
pub struct Inner {
    /// Documents by id (clients and the team document).
    pub docs: HashMap<String, AutoCommit>,
    /// Which documents each device syncs.
    pub visible: HashMap<String, Vec<String>>,
    /// Automerge sync state per (device, document).
    states: HashMap<(String, String), State>,
    /// Floor rows: id → (owner, version, JSON).
    pub rows: BTreeMap<String, (String, u64, String)>,
    /// Latest floor version.
    pub version: u64,
}

/// Shared state of the baseline server.
pub type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    /// Sets (or replaces) a floor row with a new version.
    pub fn put_row(&mut self, row: &Value) {
        self.version += 1;
        let id = row["id"].as_str().unwrap_or_default().to_string();
        let owner = row["owner"].as_str().unwrap_or_default().to_string();
        self.rows.insert(id, (owner, self.version, row.to_string()));
    }
}

/// A client as a plain JSON row: the fold's current state and the events, no history.
pub fn row_of(view: &ClientView) -> Value {
    json!({
        "id": view.id,
        "owner": view.owner,
        "stage": view.stage,
        "stage_entered_at": view.stage_entered_at,
        "due_at": view.due_at,
        "created_at": view.created_at,
        "profile": view.profile,
        "tags": view.tags,
        "notes": view.notes,
        "transitions": view.transitions.iter().map(|t| json!({
            "id": t.event.id, "from": t.event.from, "to": t.event.to, "at": t.event.at,
            "loss_reason": t.event.loss_reason,
        })).collect::<Vec<_>>(),
        "handovers": view.handovers.iter().map(|h| json!({
            "from": h.event.from, "to": h.event.to, "at": h.event.at,
        })).collect::<Vec<_>>(),
    })
}

async fn list(AxState(s): AxState<Shared>, UrlPath(device): UrlPath<String>) -> Response {
    let mut inner = lock(&s);
    let ids = inner.visible.get(&device).cloned().unwrap_or_default();
    // A new session: keep only what automerge persists between sessions.
    for ((d, _), state) in inner.states.iter_mut() {
        if *d == device {
            *state = State::decode(&state.encode()).unwrap_or_default();
        }
    }
    axum::Json(ids).into_response()
}

async fn sync_doc(
    AxState(s): AxState<Shared>,
    UrlPath((device, doc_id)): UrlPath<(String, String)>,
    body: Bytes,
) -> Response {
    let message = match Message::decode(&body) {
        Ok(m) => m,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut guard = lock(&s);
    let inner = &mut *guard;
    let Some(doc) = inner.docs.get_mut(&doc_id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let state = inner.states.entry((device, doc_id)).or_default();
    if let Err(e) = doc.sync().receive_sync_message(state, message) {
        return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
    }
    let reply = doc.sync().generate_sync_message(state);
    drop(guard);
    match reply {
        Some(reply) => reply.encode().into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

#[derive(Deserialize)]
struct RowsQuery {
    since: Option<u64>,
    owner: Option<String>,
}

async fn get_rows(AxState(s): AxState<Shared>, Query(q): Query<RowsQuery>) -> Response {
    let inner = lock(&s);
    let since = q.since.unwrap_or(0);
    let mut out = String::from("{\"version\":");
    out.push_str(&inner.version.to_string());
    out.push_str(",\"rows\":[");
    let mut first = true;
    for (owner, version, json) in inner.rows.values() {
        if *version <= since || q.owner.as_ref().is_some_and(|o| o != owner) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(json);
    }
    out.push_str("]}");
    ([("content-type", "application/json")], out).into_response()
}

async fn post_rows(AxState(s): AxState<Shared>, body: Bytes) -> Response {
    let rows: Vec<Value> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut inner = lock(&s);
    for r in &rows {
        inner.put_row(r);
    }
    axum::Json(json!({ "version": inner.version })).into_response()
}

/// The baseline server's routes.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/naive/docs/{device}", get(list))
        .route("/naive/sync/{device}/{doc}", post(sync_doc))
        .route("/floor/rows", get(get_rows).post(post_rows))
        .layer(axum::extract::DefaultBodyLimit::max(1 << 30))
        .with_state(state)
}

fn sql(e: rusqlite::Error) -> String {
    format!("sqlite: {e}")
}

fn open_db(path: &Path, schema: &str) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(sql)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .map_err(sql)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL;")
        .map_err(sql)?;
    conn.execute_batch(schema).map_err(sql)?;
    Ok(conn)
}

/// Stage → (clients, overdue).
pub type BoardCounts = BTreeMap<String, (i64, i64)>;

/// What a baseline sync did.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// HTTP requests.
    pub requests: u64,
    /// Documents (or rows) that changed here.
    pub changed: u64,
}

/// A device of the naive baseline.
pub struct NaiveDevice {
    conn: Connection,
    url: String,
    device: String,
    agent: ureq::Agent,
}

impl NaiveDevice {
    /// Opens (or creates) the device's SQLite file.
    pub fn open(path: &Path, url: &str, device: &str) -> Result<Self, String> {
        let conn = open_db(
            path,
            "CREATE TABLE IF NOT EXISTS docs (doc_id TEXT PRIMARY KEY, data BLOB NOT NULL,
                 sync_state BLOB NOT NULL);",
        )?;
        Ok(NaiveDevice {
            conn,
            url: url.to_string(),
            device: device.to_string(),
            agent: super::net::agent(),
        })
    }

    /// A stored document.
    pub fn load(&self, doc_id: &str) -> Result<Option<(AutoCommit, State)>, String> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT data, sync_state FROM docs WHERE doc_id = ?1",
                [doc_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        match row {
            None => Ok(None),
            Some((data, state)) => Ok(Some((
                AutoCommit::load(&data).map_err(|e| format!("load {doc_id}: {e}"))?,
                State::decode(&state).unwrap_or_default(),
            ))),
        }
    }

    /// Stores a document and its sync state (one transaction per document).
    pub fn store(&self, doc_id: &str, doc: &mut AutoCommit, state: &State) -> Result<(), String> {
        self.conn
            .execute(
                "INSERT INTO docs(doc_id, data, sync_state) VALUES (?1, ?2, ?3)
                 ON CONFLICT(doc_id) DO UPDATE SET data = excluded.data,
                     sync_state = excluded.sync_state",
                params![doc_id, doc.save(), state.encode()],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// Merges a local edit (the changes of `edited` this device lacks).
    pub fn merge_local(&self, doc_id: &str, edited: &mut AutoCommit) -> Result<(), String> {
        let (mut doc, state) = self
            .load(doc_id)?
            .ok_or_else(|| format!("naive device lacks {doc_id}"))?;
        doc.merge(edited).map_err(|e| format!("merge: {e}"))?;
        self.store(doc_id, &mut doc, &state)
    }

    /// Number of stored documents.
    pub fn count(&self) -> Result<i64, String> {
        self.conn
            .query_row("SELECT count(*) FROM docs", [], |r| r.get(0))
            .map_err(sql)
    }

    /// Syncs every document the server lists for this device, one at a time.
    pub fn sync_all(&mut self) -> Result<Stats, String> {
        let url = format!("{}/naive/docs/{}", self.url, self.device);
        let mut response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| format!("{url}: {e}"))?;
        let ids: Vec<String> = serde_json::from_slice(
            &response
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_vec()
                .map_err(|e| format!("{url}: {e}"))?,
        )
        .map_err(|e| format!("{url}: {e}"))?;
        let mut stats = Stats {
            requests: 1,
            changed: 0,
        };
        for id in ids {
            self.sync_doc(&id, &mut stats)?;
        }
        Ok(stats)
    }

    fn sync_doc(&mut self, doc_id: &str, stats: &mut Stats) -> Result<(), String> {
        let (mut doc, mut state, known) = match self.load(doc_id)? {
            Some((d, s)) => (d, s, true),
            None => (AutoCommit::new(), State::new(), false),
        };
        let before = doc.get_heads();
        let url = format!("{}/naive/sync/{}/{}", self.url, self.device, doc_id);
        for _ in 0..16 {
            let Some(message) = doc.sync().generate_sync_message(&mut state) else {
                break;
            };
            let mut response = self
                .agent
                .post(&url)
                .header("Content-Type", "application/octet-stream")
                .send(&message.encode()[..])
                .map_err(|e| format!("{url}: {e}"))?;
            stats.requests += 1;
            let status = response.status().as_u16();
            let body = response
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_vec()
                .map_err(|e| format!("{url}: {e}"))?;
            if status == 204 {
                continue;
            }
            if status >= 400 {
                return Err(format!("{url}: {status}"));
            }
            let reply = Message::decode(&body).map_err(|e| format!("{url}: {e}"))?;
            doc.sync()
                .receive_sync_message(&mut state, reply)
                .map_err(|e| format!("{url}: {e}"))?;
        }
        if !known || doc.get_heads() != before {
            stats.changed += 1;
        }
        // Persisted like automerge recommends: the document and the shared heads.
        self.store(doc_id, &mut doc, &state)
    }

    /// The board, computed by loading and folding every document.
    pub fn board(&self, team_doc_id: &str, founder: &str, now: i64) -> Result<BoardCounts, String> {
        let (team, _) = self
            .load(team_doc_id)?
            .ok_or_else(|| "naive device has no team document".to_string())?;
        let team = TeamDoc::from_doc(team, founder).map_err(|e| e.to_string())?;
        let mut stmt = self
            .conn
            .prepare("SELECT doc_id, data FROM docs WHERE doc_id <> ?1")
            .map_err(sql)?;
        let mut rows = stmt.query([team_doc_id]).map_err(sql)?;
        let mut board = BoardCounts::new();
        while let Some(row) = rows.next().map_err(sql)? {
            let data: Vec<u8> = row.get(1).map_err(sql)?;
            let doc = AutoCommit::load(&data).map_err(|e| e.to_string())?;
            let client = ClientDoc::from_doc(doc, None).map_err(|e| e.to_string())?;
            let view = fold(&client, &team, now).map_err(|e| e.to_string())?;
            let e = board.entry(view.stage.clone()).or_default();
            e.0 += 1;
            if view.due_at.is_some_and(|d| d <= now) {
                e.1 += 1;
            }
        }
        Ok(board)
    }
}

/// A device of the floor baseline: plain rows in SQLite.
pub struct FloorDevice {
    conn: Connection,
    url: String,
    agent: ureq::Agent,
    owner: Option<String>,
    /// The server version this device has every row up to.
    pub version: u64,
}

const FLOOR_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rows (id TEXT PRIMARY KEY, owner TEXT NOT NULL, stage TEXT NOT NULL,
    stage_entered_at INTEGER NOT NULL, due_at INTEGER, body TEXT NOT NULL,
    dirty INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS rows_stage ON rows(stage);
CREATE TABLE IF NOT EXISTS transitions (client_id TEXT NOT NULL, id TEXT NOT NULL,
    from_stage TEXT NOT NULL, to_stage TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (client_id, id));
";

impl FloorDevice {
    /// Opens (or creates) the device's SQLite file; `owner`: only that owner's rows.
    pub fn open(path: &Path, url: &str, owner: Option<&str>) -> Result<Self, String> {
        Ok(FloorDevice {
            conn: open_db(path, FLOOR_SCHEMA)?,
            url: url.to_string(),
            agent: super::net::agent(),
            owner: owner.map(str::to_string),
            version: 0,
        })
    }

    fn upsert(tx: &Connection, row: &Value, dirty: bool) -> Result<(), String> {
        let id = row["id"].as_str().unwrap_or_default();
        tx.execute(
            "INSERT INTO rows(id, owner, stage, stage_entered_at, due_at, body, dirty)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(id) DO UPDATE SET owner = excluded.owner, stage = excluded.stage,
                 stage_entered_at = excluded.stage_entered_at, due_at = excluded.due_at,
                 body = excluded.body, dirty = excluded.dirty",
            params![
                id,
                row["owner"].as_str().unwrap_or_default(),
                row["stage"].as_str().unwrap_or_default(),
                row["stage_entered_at"].as_i64().unwrap_or_default(),
                row["due_at"].as_i64(),
                row.to_string(),
                dirty
            ],
        )
        .map_err(sql)?;
        tx.execute("DELETE FROM transitions WHERE client_id = ?1", [id])
            .map_err(sql)?;
        let mut ins = tx
            .prepare_cached(
                "INSERT INTO transitions(client_id, id, from_stage, to_stage, at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(sql)?;
        for t in row["transitions"].as_array().into_iter().flatten() {
            ins.execute(params![
                id,
                t["id"].as_str().unwrap_or_default(),
                t["from"].as_str().unwrap_or_default(),
                t["to"].as_str().unwrap_or_default(),
                t["at"].as_i64().unwrap_or_default()
            ])
            .map_err(sql)?;
        }
        Ok(())
    }

    /// A local edit: the row changes here and is sent with the next sync.
    pub fn edit(&mut self, row: &Value) -> Result<(), String> {
        Self::upsert(&self.conn, row, true)
    }

    /// A stored row's JSON.
    pub fn row_body(&self, id: &str) -> Result<String, String> {
        self.conn
            .query_row("SELECT body FROM rows WHERE id = ?1", [id], |r| r.get(0))
            .map_err(sql)
    }

    /// Rows stored.
    pub fn count(&self) -> Result<i64, String> {
        self.conn
            .query_row("SELECT count(*) FROM rows", [], |r| r.get(0))
            .map_err(sql)
    }

    /// Sends the rows changed here (if any), then fetches the rows changed since the
    /// last sync and writes them in one transaction.
    pub fn sync(&mut self) -> Result<Stats, String> {
        let mut stats = Stats::default();
        let dirty: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("SELECT body FROM rows WHERE dirty = 1")
                .map_err(sql)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(sql)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sql)?
        };
        let base = format!("{}/floor/rows", self.url);
        if !dirty.is_empty() {
            let body = format!("[{}]", dirty.join(","));
            let mut r = self
                .agent
                .post(&base)
                .header("Content-Type", "application/json")
                .send(body.as_bytes())
                .map_err(|e| format!("{base}: {e}"))?;
            let _ = r.body_mut().read_to_vec();
            stats.requests += 1;
            self.conn
                .execute("UPDATE rows SET dirty = 0", [])
                .map_err(sql)?;
        }
        let mut url = format!("{base}?since={}", self.version);
        if let Some(o) = &self.owner {
            url.push_str(&format!("&owner={o}"));
        }
        let mut r = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| format!("{url}: {e}"))?;
        let bytes = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| format!("{url}: {e}"))?;
        stats.requests += 1;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))?;
        let rows = v["rows"].as_array().cloned().unwrap_or_default();
        let tx = self.conn.transaction().map_err(sql)?;
        for row in &rows {
            Self::upsert(&tx, row, false)?;
        }
        tx.commit().map_err(sql)?;
        self.version = v["version"].as_u64().unwrap_or(self.version);
        stats.changed = rows.len() as u64;
        Ok(stats)
    }

    /// The board and a flow report from plain GROUP BYs.
    pub fn board_and_report(&self, now: i64) -> Result<(BoardCounts, usize), String> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT stage, count(*), coalesce(sum(due_at IS NOT NULL AND due_at <= ?1), 0)
                 FROM rows GROUP BY stage",
            )
            .map_err(sql)?;
        let board = stmt
            .query_map([now], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
            .map_err(sql)?
            .collect::<rusqlite::Result<BoardCounts>>()
            .map_err(sql)?;
        let mut edges = self
            .conn
            .prepare_cached("SELECT from_stage, to_stage, count(*) FROM transitions GROUP BY 1, 2")
            .map_err(sql)?;
        let n = edges
            .query_map([], |r| r.get::<_, i64>(2))
            .map_err(sql)?
            .count();
        let mut entered = self
            .conn
            .prepare_cached(
                "SELECT to_stage, count(DISTINCT client_id), avg(at) FROM transitions GROUP BY 1",
            )
            .map_err(sql)?;
        let m = entered
            .query_map([], |r| r.get::<_, i64>(1))
            .map_err(sql)?
            .count();
        Ok((board, n + m))
    }
}
