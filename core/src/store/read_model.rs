//! The read model: plain tables derived from the documents, written in the same
//! transaction as the document. Lists, the board, search and reports read only these.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use crate::duplicate::{normalize_company, normalize_email, normalize_phone, DuplicateMatch};
use crate::fold::ClientView;
use crate::pipeline::{Pipeline, StageKind};
use crate::Result;

/// One row of a client list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRow {
    /// Client id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Company.
    pub company: String,
    /// Owner (user id).
    pub owner: String,
    /// Supervisor the client escalates to.
    pub supervisor: Option<String>,
    /// Stage key.
    pub stage: String,
    /// Entered the stage at.
    pub stage_entered_at: i64,
    /// SLA deadline, if pending.
    pub due_at: Option<i64>,
    /// Tags.
    pub tags: Vec<String>,
    /// Collaborators (user ids).
    pub collaborators: Vec<String>,
    /// Concurrent stage moves or handovers, or field conflicts, need review.
    pub needs_review: bool,
}

/// Filters for [`list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientFilter {
    /// Only this stage key.
    pub stage: Option<String>,
    /// Only this owner.
    pub owner: Option<String>,
    /// Only clients overdue at this time.
    pub overdue_at: Option<i64>,
}

/// One client's rows in the read model, derived from its fold. A sync server sends these
/// with each document of a provisioning bundle, so that a new phone fills its read model
/// without loading and folding every document (docs/protocol.md, ADR 0006).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientRows {
    /// Client id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Company.
    pub company: String,
    /// Normalised phone, email and company, for duplicate detection.
    pub phone_norm: Option<String>,
    /// See `phone_norm`.
    pub email_norm: Option<String>,
    /// See `phone_norm`.
    pub company_norm: Option<String>,
    /// Owner (user id).
    pub owner: String,
    /// Supervisor.
    pub supervisor: Option<String>,
    /// Current stage key.
    pub stage: String,
    /// Entered the current stage at.
    pub stage_entered_at: i64,
    /// SLA deadline, if pending.
    pub due_at: Option<i64>,
    /// Created at.
    pub created_at: i64,
    /// First entered a won stage at.
    pub won_at: Option<i64>,
    /// Entered the current lost stage at.
    pub lost_at: Option<i64>,
    /// Why it was lost.
    pub loss_reason: Option<String>,
    /// Concurrent stage moves need review.
    pub concurrent_moves: bool,
    /// Concurrent handovers need review.
    pub concurrent_handovers: bool,
    /// Number of field conflicts.
    pub conflicts: i64,
    /// Tags.
    pub tags: Vec<String>,
    /// Collaborators (user ids).
    pub collaborators: Vec<String>,
    /// Stays along the effective path: `(stage, entered_at, left_at)`.
    pub visits: Vec<(String, i64, Option<i64>)>,
    /// Stage transitions.
    pub transitions: Vec<TransitionRow>,
    /// The text search indexes: profile, tags and the communication history.
    pub search: String,
}

/// One stage transition of [`ClientRows`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionRow {
    /// Event id.
    pub id: String,
    /// From stage.
    pub from: String,
    /// To stage.
    pub to: String,
    /// When.
    pub at: i64,
    /// Moved along no edge of the pipeline (the exception channel).
    pub skipped: bool,
    /// On the effective path (not superseded by a concurrent move).
    pub effective: bool,
}

impl ClientRows {
    /// The rows of a folded client.
    pub fn of(view: &ClientView, pipeline: &Pipeline) -> Self {
        let field = |k: &str| view.profile.get(k).map(String::as_str).unwrap_or("");
        let kind_of = |stage: &str| pipeline.find(stage).map(|s| s.kind());
        let lost = kind_of(&view.stage) == Some(StageKind::Lost);
        let mut search: Vec<&str> = view.profile.values().map(String::as_str).collect();
        search.extend(view.tags.iter().map(String::as_str));
        search.extend(view.notes.iter().map(|n| n.text.as_str()));
        ClientRows {
            id: view.id.clone(),
            name: view.name().to_string(),
            company: field("company").to_string(),
            phone_norm: normalize_phone(field("phone")),
            email_norm: normalize_email(field("email")),
            company_norm: normalize_company(field("company")),
            owner: view.owner.clone(),
            supervisor: view.supervisor.clone(),
            stage: view.stage.clone(),
            stage_entered_at: view.stage_entered_at,
            due_at: view.due_at,
            created_at: view.created_at,
            won_at: view
                .visits
                .iter()
                .find(|v| kind_of(&v.stage) == Some(StageKind::Won))
                .map(|v| v.entered_at),
            lost_at: lost.then_some(view.stage_entered_at),
            loss_reason: view
                .transitions
                .iter()
                .filter(|_| lost)
                .find(|t| Some(&t.event.id) == view.current_transition.as_ref())
                .and_then(|t| t.event.loss_reason.clone()),
            concurrent_moves: view.concurrent_moves,
            concurrent_handovers: view.concurrent_handovers,
            conflicts: view.conflicts.len() as i64,
            tags: view.tags.clone(),
            collaborators: view.collaborators.clone(),
            visits: view
                .visits
                .iter()
                .map(|v| (v.stage.clone(), v.entered_at, v.left_at))
                .collect(),
            transitions: view
                .transitions
                .iter()
                .map(|t| TransitionRow {
                    id: t.event.id.clone(),
                    from: t.event.from.clone(),
                    to: t.event.to.clone(),
                    at: t.event.at,
                    skipped: t.event.skipped,
                    effective: t.effective,
                })
                .collect(),
            search: search.join("\n"),
        }
    }
}

/// Orders client ids by their rows' position in the read model (clients not in it yet
/// last, in the order given). Writing many clients in one transaction in this order keeps
/// the search index's pending writes in ascending rowid order: FTS5 flushes its pending
/// data to a new segment (and merges segments) whenever a write goes to a lower rowid than
/// the previous one, which made a sync of 50 clients spend most of its time in the index.
pub fn in_row_order<T>(
    conn: &Connection,
    items: &mut [T],
    id: impl Fn(&T) -> String,
) -> Result<()> {
    let mut stmt = conn.prepare_cached("SELECT row_key FROM clients WHERE id = ?1")?;
    let mut keys = std::collections::HashMap::with_capacity(items.len());
    for item in items.iter() {
        let id = id(item);
        let key: Option<i64> = stmt.query_row([&id], |r| r.get(0)).optional()?;
        keys.insert(id, key.unwrap_or(i64::MAX));
    }
    // Stable: clients without a row keep their order.
    items.sort_by_key(|item| keys.get(&id(item)).copied().unwrap_or(i64::MAX));
    Ok(())
}

/// Writes a client's rows from its fold.
pub fn upsert_client(tx: &Transaction, view: &ClientView, pipeline: &Pipeline) -> Result<()> {
    write(tx, &ClientRows::of(view, pipeline))
}

/// Writes a client's rows (replacing what was there).
pub fn write(tx: &Transaction, rows: &ClientRows) -> Result<()> {
    // Only the parts that differ from what is stored are written: every row written
    // touches a page of its table and of each of its indexes (a new note changes only
    // the search text).
    let old = read(tx, &rows.id)?;
    let changed = |same: fn(&ClientRows, &ClientRows) -> bool| {
        old.as_ref().is_none_or(|old| !same(old, rows))
    };
    if changed(ClientRows::same_client_row) {
        write_client_row(tx, rows)?;
    }
    if changed(|a, b| a.visits == b.visits) {
        tx.prepare_cached("DELETE FROM stage_visits WHERE client_id = ?1")?
            .execute([&rows.id])?;
        let mut visit = tx.prepare_cached(
            "INSERT INTO stage_visits(client_id, seq, stage, entered_at, left_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (seq, (stage, entered_at, left_at)) in rows.visits.iter().enumerate() {
            visit.execute(params![rows.id, seq as i64, stage, entered_at, left_at])?;
        }
    }
    if changed(|a, b| a.transitions == b.transitions) {
        tx.prepare_cached("DELETE FROM transitions WHERE client_id = ?1")?
            .execute([&rows.id])?;
        let mut transition = tx.prepare_cached(
            "INSERT INTO transitions(client_id, id, from_stage, to_stage, at, skipped, effective)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for t in &rows.transitions {
            transition.execute(params![
                rows.id,
                t.id,
                t.from,
                t.to,
                t.at,
                t.skipped,
                t.effective
            ])?;
        }
    }
    if changed(|a, b| a.search == b.search) {
        // The search rows are keyed by the clients table's rowid (a lookup, not a scan).
        let rowid: i64 = tx
            .prepare_cached("SELECT rowid FROM clients WHERE id = ?1")?
            .query_row([&rows.id], |r| r.get(0))?;
        if old.is_some() {
            tx.prepare_cached("DELETE FROM client_search WHERE rowid = ?1")?
                .execute([rowid])?;
        }
        tx.prepare_cached("INSERT INTO client_search(rowid, body) VALUES (?1, ?2)")?
            .execute(params![rowid, rows.search])?;
    }
    Ok(())
}

impl ClientRows {
    /// Whether the `clients` table's row would be the same.
    fn same_client_row(&self, other: &ClientRows) -> bool {
        self.id == other.id
            && self.name == other.name
            && self.company == other.company
            && self.phone_norm == other.phone_norm
            && self.email_norm == other.email_norm
            && self.company_norm == other.company_norm
            && self.owner == other.owner
            && self.supervisor == other.supervisor
            && self.stage == other.stage
            && self.stage_entered_at == other.stage_entered_at
            && self.due_at == other.due_at
            && self.created_at == other.created_at
            && self.won_at == other.won_at
            && self.lost_at == other.lost_at
            && self.loss_reason == other.loss_reason
            && self.concurrent_moves == other.concurrent_moves
            && self.concurrent_handovers == other.concurrent_handovers
            && self.conflicts == other.conflicts
            && self.tags == other.tags
            && self.collaborators == other.collaborators
    }
}

fn write_client_row(tx: &Transaction, rows: &ClientRows) -> Result<()> {
    let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    tx.prepare_cached(
        "INSERT INTO clients(id, name, company, phone_norm, email_norm, company_norm, owner,
             supervisor, stage, stage_entered_at, due_at, created_at, won_at, lost_at,
             loss_reason, concurrent_moves, concurrent_handovers, conflicts, tags, collaborators)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, company = excluded.company,
             phone_norm = excluded.phone_norm, email_norm = excluded.email_norm,
             company_norm = excluded.company_norm, owner = excluded.owner,
             supervisor = excluded.supervisor, stage = excluded.stage,
             stage_entered_at = excluded.stage_entered_at, due_at = excluded.due_at,
             created_at = excluded.created_at, won_at = excluded.won_at,
             lost_at = excluded.lost_at, loss_reason = excluded.loss_reason,
             concurrent_moves = excluded.concurrent_moves,
             concurrent_handovers = excluded.concurrent_handovers,
             conflicts = excluded.conflicts, tags = excluded.tags,
             collaborators = excluded.collaborators",
    )?
    .execute(params![
        rows.id,
        rows.name,
        rows.company,
        rows.phone_norm,
        rows.email_norm,
        rows.company_norm,
        rows.owner,
        rows.supervisor,
        rows.stage,
        rows.stage_entered_at,
        rows.due_at,
        rows.created_at,
        rows.won_at,
        rows.lost_at,
        rows.loss_reason,
        rows.concurrent_moves,
        rows.concurrent_handovers,
        rows.conflicts,
        json(&rows.tags),
        json(&rows.collaborators),
    ])?;
    Ok(())
}

/// A client's rows as stored, or `None` if the client is not in the read model.
pub fn read(conn: &Connection, id: &str) -> Result<Option<ClientRows>> {
    let Some((rowid, mut rows)) = conn
        .prepare_cached(
            "SELECT rowid, id, name, company, phone_norm, email_norm, company_norm, owner,
                    supervisor, stage, stage_entered_at, due_at, created_at, won_at, lost_at,
                    loss_reason, concurrent_moves, concurrent_handovers, conflicts, tags,
                    collaborators
             FROM clients WHERE id = ?1",
        )?
        .query_row([id], |r| {
            let list = |i: usize| -> rusqlite::Result<Vec<String>> {
                Ok(serde_json::from_str(&r.get::<_, String>(i)?).unwrap_or_default())
            };
            Ok((
                r.get::<_, i64>(0)?,
                ClientRows {
                    id: r.get(1)?,
                    name: r.get(2)?,
                    company: r.get(3)?,
                    phone_norm: r.get(4)?,
                    email_norm: r.get(5)?,
                    company_norm: r.get(6)?,
                    owner: r.get(7)?,
                    supervisor: r.get(8)?,
                    stage: r.get(9)?,
                    stage_entered_at: r.get(10)?,
                    due_at: r.get(11)?,
                    created_at: r.get(12)?,
                    won_at: r.get(13)?,
                    lost_at: r.get(14)?,
                    loss_reason: r.get(15)?,
                    concurrent_moves: r.get(16)?,
                    concurrent_handovers: r.get(17)?,
                    conflicts: r.get(18)?,
                    tags: list(19)?,
                    collaborators: list(20)?,
                    visits: Vec::new(),
                    transitions: Vec::new(),
                    search: String::new(),
                },
            ))
        })
        .optional()?
    else {
        return Ok(None);
    };
    rows.visits = conn
        .prepare_cached(
            "SELECT stage, entered_at, left_at FROM stage_visits WHERE client_id = ?1 ORDER BY seq",
        )?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    rows.transitions = conn
        .prepare_cached(
            "SELECT id, from_stage, to_stage, at, skipped, effective FROM transitions
             WHERE client_id = ?1 ORDER BY rowid",
        )?
        .query_map([id], |r| {
            Ok(TransitionRow {
                id: r.get(0)?,
                from: r.get(1)?,
                to: r.get(2)?,
                at: r.get(3)?,
                skipped: r.get(4)?,
                effective: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    rows.search = conn
        .prepare_cached("SELECT body FROM client_search WHERE rowid = ?1")?
        .query_row([rowid], |r| r.get(0))
        .optional()?
        .unwrap_or_default();
    Ok(Some(rows))
}

/// Removes a client's rows (its document is gone from this replica).
pub fn delete_client(tx: &Transaction, id: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM client_search WHERE rowid = (SELECT rowid FROM clients WHERE id = ?1)",
        [id],
    )?;
    tx.execute("DELETE FROM clients WHERE id = ?1", [id])?;
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRow> {
    let tags: String = r.get("tags")?;
    let collaborators: String = r.get("collaborators")?;
    Ok(ClientRow {
        id: r.get("id")?,
        name: r.get("name")?,
        company: r.get("company")?,
        owner: r.get("owner")?,
        supervisor: r.get("supervisor")?,
        stage: r.get("stage")?,
        stage_entered_at: r.get("stage_entered_at")?,
        due_at: r.get("due_at")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        collaborators: serde_json::from_str(&collaborators).unwrap_or_default(),
        needs_review: r.get::<_, bool>("concurrent_moves")?
            || r.get::<_, bool>("concurrent_handovers")?
            || r.get::<_, i64>("conflicts")? > 0,
    })
}

const COLUMNS: &str = "id, name, company, owner, supervisor, stage, stage_entered_at, due_at, tags,
    collaborators, concurrent_moves, concurrent_handovers, conflicts";

/// Lists clients, newest first within a stage.
pub fn list(conn: &Connection, filter: &ClientFilter) -> Result<Vec<ClientRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM clients
         WHERE (?1 IS NULL OR stage = ?1) AND (?2 IS NULL OR owner = ?2)
           AND (?3 IS NULL OR (due_at IS NOT NULL AND due_at <= ?3))
         ORDER BY created_at DESC, id"
    ))?;
    let rows = stmt.query_map(params![filter.stage, filter.owner, filter.overdue_at], row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One client's row.
pub fn get(conn: &Connection, id: &str) -> Result<Option<ClientRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM clients WHERE id = ?1"),
            [id],
            row,
        )
        .optional()?)
}

/// Full-text search. The trigram index answers queries of three or more characters;
/// shorter ones (a two-character Chinese name such as `华强`) fall back to a substring
/// scan of the same table, so every query finds substrings.
pub fn search(conn: &Connection, query: &str) -> Result<Vec<ClientRow>> {
    let query = query.trim();
    if query.is_empty() {
        return Ok(vec![]);
    }
    let (condition, pattern) = if query.chars().count() >= 3 {
        // A quoted FTS5 string: the query's own quotes are doubled.
        (
            "client_search MATCH ?1",
            format!("\"{}\"", query.replace('"', "\"\"")),
        )
    } else {
        let escaped = query
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        ("body LIKE ?1 ESCAPE '\\'", format!("%{escaped}%"))
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM clients WHERE rowid IN
             (SELECT rowid FROM client_search WHERE {condition})
         ORDER BY created_at DESC, id"
    ))?;
    let rows = stmt.query_map([pattern], row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether derived tables must be refilled from the documents (after an upgrade that
/// created them).
pub fn needs_rebuild(conn: &Connection) -> Result<bool> {
    Ok(crate::store::meta_get(conn, "read_model_needs_rebuild")?.is_some())
}

/// Marks the derived tables as complete.
pub fn rebuilt(tx: &Transaction) -> Result<()> {
    tx.execute(
        "DELETE FROM meta WHERE key = 'read_model_needs_rebuild'",
        [],
    )?;
    Ok(())
}

/// Existing clients with the same normalised phone, email or company.
pub fn duplicates_of(
    conn: &Connection,
    phone: Option<&str>,
    email: Option<&str>,
    company: Option<&str>,
    except: Option<&str>,
) -> Result<Vec<DuplicateMatch>> {
    let phone = phone.and_then(normalize_phone);
    let email = email.and_then(normalize_email);
    let company = company.and_then(normalize_company);
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, owner,
                CASE WHEN phone_norm = ?1 THEN 'phone' WHEN email_norm = ?2 THEN 'email'
                     ELSE 'company' END
         FROM clients
         WHERE (phone_norm = ?1 OR email_norm = ?2 OR company_norm = ?3)
           AND (?4 IS NULL OR id <> ?4)
         ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map(params![phone, email, company, except], |r| {
        Ok(DuplicateMatch {
            client_id: r.get(0)?,
            name: r.get(1)?,
            owner: r.get(2)?,
            matched_on: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Groups of clients that look like the same customer (e.g. created offline by two reps).
pub fn duplicate_groups(conn: &Connection) -> Result<Vec<Vec<DuplicateMatch>>> {
    let mut groups = Vec::new();
    for (column, label) in [
        ("phone_norm", "phone"),
        ("email_norm", "email"),
        ("company_norm", "company"),
    ] {
        let mut stmt = conn.prepare(&format!(
            "SELECT {column} FROM clients WHERE {column} IS NOT NULL
             GROUP BY {column} HAVING count(*) > 1 ORDER BY {column}"
        ))?;
        let keys: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for key in keys {
            let mut members = conn.prepare(&format!(
                "SELECT id, name, owner FROM clients WHERE {column} = ?1 ORDER BY created_at, id"
            ))?;
            let group = members
                .query_map([&key], |r| {
                    Ok(DuplicateMatch {
                        client_id: r.get(0)?,
                        name: r.get(1)?,
                        owner: r.get(2)?,
                        matched_on: label.to_string(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            groups.push(group);
        }
    }
    Ok(groups)
}

/// Clients per stage, and how many are overdue at `now`.
pub fn stage_counts(conn: &Connection, now: i64) -> Result<Vec<(String, i64, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT stage, count(*), coalesce(sum(due_at IS NOT NULL AND due_at <= ?1), 0)
         FROM clients GROUP BY stage",
    )?;
    let rows = stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Distinct clients that ever entered each stage on their effective path.
pub fn entered_counts(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT stage, count(DISTINCT client_id) FROM stage_visits GROUP BY stage",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Completed stays per stage in milliseconds, sorted ascending per stage.
pub fn dwell_times(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT stage, left_at - entered_at AS dwell FROM stage_visits
         WHERE left_at IS NOT NULL ORDER BY stage, dwell",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Moves between stages along effective paths, with counts (the flowchart's arrows).
pub fn flow_edges(conn: &Connection) -> Result<Vec<(String, String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT from_stage, to_stage, count(*) FROM transitions WHERE effective = 1
         GROUP BY from_stage, to_stage ORDER BY from_stage, to_stage",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Outcome counts: (won, lost, sum of won sales cycles in ms).
pub fn outcomes(conn: &Connection) -> Result<(i64, i64, i64)> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(won_at IS NOT NULL AND lost_at IS NULL), 0),
                coalesce(sum(lost_at IS NOT NULL), 0),
                coalesce(sum(CASE WHEN won_at IS NOT NULL AND lost_at IS NULL
                                  THEN won_at - created_at END), 0)
         FROM clients",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}

/// Loss reasons of lost clients, most frequent first.
pub fn loss_reasons(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT coalesce(loss_reason, '(none)'), count(*) FROM clients WHERE lost_at IS NOT NULL
         GROUP BY 1 ORDER BY 2 DESC, 1",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Exception moves (skips along no edge) and clients with concurrent moves or handovers.
pub fn review_counts(conn: &Connection) -> Result<(i64, i64, i64)> {
    Ok(conn.query_row(
        "SELECT (SELECT count(*) FROM transitions WHERE skipped = 1),
                (SELECT count(*) FROM clients WHERE concurrent_moves = 1),
                (SELECT count(*) FROM clients WHERE concurrent_handovers = 1)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}

/// Number of clients in the read model.
pub fn client_count(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT count(*) FROM clients", [], |r| r.get(0))?)
}
