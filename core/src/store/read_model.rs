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

/// Writes a client's rows from its fold.
pub fn upsert_client(tx: &Transaction, view: &ClientView, pipeline: &Pipeline) -> Result<()> {
    let field = |k: &str| view.profile.get(k).map(String::as_str).unwrap_or("");
    let kind_of = |stage: &str| pipeline.find(stage).map(|s| s.kind());
    let won_at = view
        .visits
        .iter()
        .find(|v| kind_of(&v.stage) == Some(StageKind::Won))
        .map(|v| v.entered_at);
    let lost = kind_of(&view.stage) == Some(StageKind::Lost);
    let loss_reason = view
        .transitions
        .iter()
        .filter(|_| lost)
        .find(|t| Some(&t.event.id) == view.current_transition.as_ref())
        .and_then(|t| t.event.loss_reason.clone());
    tx.execute(
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
        params![
            view.id,
            view.name(),
            field("company"),
            normalize_phone(field("phone")),
            normalize_email(field("email")),
            normalize_company(field("company")),
            view.owner,
            view.supervisor,
            view.stage,
            view.stage_entered_at,
            view.due_at,
            view.created_at,
            won_at,
            lost.then_some(view.stage_entered_at),
            loss_reason,
            view.concurrent_moves,
            view.concurrent_handovers,
            view.conflicts.len() as i64,
            serde_json::to_string(&view.tags).unwrap_or_else(|_| "[]".into()),
            serde_json::to_string(&view.collaborators).unwrap_or_else(|_| "[]".into()),
        ],
    )?;
    tx.execute("DELETE FROM stage_visits WHERE client_id = ?1", [&view.id])?;
    let mut visit = tx.prepare_cached(
        "INSERT INTO stage_visits(client_id, seq, stage, entered_at, left_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (seq, v) in view.visits.iter().enumerate() {
        visit.execute(params![
            view.id,
            seq as i64,
            v.stage,
            v.entered_at,
            v.left_at
        ])?;
    }
    tx.execute("DELETE FROM transitions WHERE client_id = ?1", [&view.id])?;
    let mut transition = tx.prepare_cached(
        "INSERT INTO transitions(client_id, id, from_stage, to_stage, at, skipped, effective)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for t in &view.transitions {
        transition.execute(params![
            view.id,
            t.event.id,
            t.event.from,
            t.event.to,
            t.event.at,
            t.event.skipped,
            t.effective
        ])?;
    }
    write_search(tx, view)?;
    Ok(())
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

/// Refreshes the client's search text: profile, tags and the communication history.
fn write_search(tx: &Transaction, view: &ClientView) -> Result<()> {
    let rowid: i64 = tx.query_row("SELECT rowid FROM clients WHERE id = ?1", [&view.id], |r| {
        r.get(0)
    })?;
    tx.execute("DELETE FROM client_search WHERE rowid = ?1", [rowid])?;
    let mut body: Vec<&str> = view.profile.values().map(String::as_str).collect();
    body.extend(view.tags.iter().map(String::as_str));
    body.extend(view.notes.iter().map(|n| n.text.as_str()));
    tx.execute(
        "INSERT INTO client_search(rowid, body) VALUES (?1, ?2)",
        params![rowid, body.join("\n")],
    )?;
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
