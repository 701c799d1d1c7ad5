//! A device replica: the store, the team document, who is acting, and the rules of
//! DESIGN.md §1 enforced locally, offline.
//!
//! Every operation loads the document it needs, commits one automerge change, and writes
//! the document, its read-model rows and the outbox entry in one SQLite transaction.
//! Documents are not kept in memory between operations.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use automerge::{transaction::CommitOptions, ActorId, AutoCommit, ChangeHash};
use serde::{Deserialize, Serialize};

use crate::bundle::{
    Bundle, BundleEntry, BundleHeader, BundleKind, BundleReader, DocSummary, Provision,
};
use crate::client::{
    Approval, ClientDoc, EventList, FieldConflict, Handover, Note, NoteKind, OnboardingTask, Quote,
    StageTransition, TaskDone, PROFILE_FIELDS,
};
use crate::clock::Clock;
use crate::duplicate::DuplicateMatch;
use crate::fold::{fold, ClientView};
use crate::ids::{ClientId, TeamId, UserId};
use crate::pipeline::{StageKind, Template};
use crate::report::{self, Board, FlowReport, OverdueGroup};
use crate::store::documents::{self, DocKind};
use crate::store::read_model::{self, ClientFilter, ClientRow};
use crate::store::{meta_get, meta_set, Store};
use crate::team::{Member, Role, Team, TeamDoc};
use crate::{Error, Result};

mod admin;
mod bundles;
pub use admin::{DeviceGrant, Provisioned};
pub use bundles::{PreparedClient, PreparedImport};
mod clients;
mod sync;
pub use sync::SyncProgress;

/// A client to create.
#[derive(Clone, Debug, Default)]
pub struct NewClient {
    /// Profile fields (`name` is required).
    pub profile: BTreeMap<String, String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Owner; defaults to the acting user. Only managers and admins may assign others.
    pub owner: Option<UserId>,
    /// Create it even if it looks like an existing customer.
    pub allow_duplicate: bool,
}

/// Options of a stage move.
#[derive(Clone, Debug, Default)]
pub struct MoveOptions {
    /// Why; required for an exception (a move along no edge).
    pub reason: Option<String>,
    /// Take the green channel: allow a move along no edge of the flowchart.
    pub skip: bool,
    /// Loss reason from the configured list, for a move to a lost stage.
    pub loss_reason: Option<String>,
}

/// Profile conflicts of one client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientConflicts {
    /// Client id.
    pub client_id: String,
    /// Display name.
    pub name: String,
    /// Conflicting fields.
    pub fields: Vec<FieldConflict>,
    /// Concurrent stage moves to review.
    pub concurrent_moves: bool,
    /// Concurrent handovers to review.
    pub concurrent_handovers: bool,
}

/// What an import changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    /// Documents in the bundle.
    pub documents: usize,
    /// Documents that gained changes (0 on a repeated import).
    pub changed: usize,
    /// Clients this replica had not seen before.
    pub new_clients: usize,
    /// Ids of the clients that gained changes.
    pub changed_clients: Vec<String>,
}

/// Who this replica acts for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Team id.
    pub team_id: String,
    /// Team name.
    pub team_name: String,
    /// User id.
    pub user_id: String,
    /// User name.
    pub user_name: String,
    /// Role.
    pub role: Role,
    /// Automerge actor id (hex) of this device.
    pub actor: String,
}

/// A device replica on disk.
pub struct Replica {
    store: Store,
    team: TeamDoc,
    me: UserId,
    actor: ActorId,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("store", &self.store)
            .field("me", &self.me)
            .finish()
    }
}

fn team_doc_id(team: &Team) -> String {
    format!("team:{}", team.id)
}

fn commit(doc: &mut AutoCommit, message: &str, now: i64) {
    doc.commit_with(
        CommitOptions::default()
            .with_message(message.to_string())
            .with_time(now / 1000),
    );
}

fn parse_actor(hex: &str) -> Result<ActorId> {
    ActorId::try_from(hex).map_err(|_| Error::Storage(format!("bad actor id {hex:?}")))
}

impl Replica {
    /// Creates a new team and a replica for its first admin, who founds the team.
    pub fn create(
        path: &Path,
        team_name: &str,
        admin_name: &str,
        template: Template,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        if admin_name.trim().is_empty() {
            return Err(Error::invalid("user name", "is empty"));
        }
        let now = clock.now_ms();
        let actor = ActorId::random();
        let team_id = TeamId::random();
        let admin = UserId::random();
        let mut team = TeamDoc::create(
            AutoCommit::new().with_actor(actor.clone()),
            team_id,
            team_name,
            template,
            now,
        )?;
        team.edit(|t| {
            t.members.insert(
                admin.to_string(),
                Member {
                    name: admin_name.trim().to_string(),
                    role: Role::Admin.as_str().into(),
                    manager: None,
                    approves: t.rules.approval_roles.clone(),
                    departed: false,
                },
            );
            t.actors.insert(actor.to_hex_string(), admin.to_string());
            Ok(())
        })?;
        commit(team.doc_mut(), "create team", now);
        let mut store = Store::create(path)?;
        let founder = actor.to_hex_string();
        store.write(|tx| {
            meta_set(tx, "team_id", &team_id.to_string())?;
            meta_set(tx, "user_id", &admin.to_string())?;
            meta_set(tx, "actor", &founder)?;
            meta_set(tx, "founder", &founder)?;
            documents::save(
                tx,
                &team_doc_id(team.team()),
                DocKind::Team,
                team.doc_mut(),
                None,
                now,
            )?;
            documents::outbox_add(tx, &team_doc_id(team.team()), now)?;
            Ok(())
        })?;
        Ok(Replica {
            store,
            team,
            me: admin,
            actor,
            clock,
        })
    }

    /// Creates a replica from a device-provisioning bundle made by an admin with
    /// [`Replica::provision_device`].
    pub fn join(path: &Path, provisioning: &[u8], clock: Arc<dyn Clock>) -> Result<Self> {
        Self::join_from(path, provisioning, clock)
    }

    /// Like [`Replica::join`], reading the bundle from a stream (a sync server's answer)
    /// one document at a time: a new phone never holds the whole bundle. Everything is
    /// written in one transaction, committed only after the bundle's checksum has been
    /// verified at its end; on any error the new file is removed.
    ///
    /// A client document that comes with a [`DocSummary`] (its heads, actors and
    /// read-model rows, as the provisioning replica folded them) is stored as it came,
    /// without being loaded: the bundle is the team authority's snapshot (ADR 0006). A
    /// document without one is loaded strictly, checked and folded here.
    pub fn join_from(
        path: &Path,
        provisioning: impl std::io::Read,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let mut reader = BundleReader::new(provisioning)?;
        let header = reader.header().clone();
        let Some(provision) = header.provision.clone() else {
            return Err(Error::BadBundle(
                "not a provisioning bundle: ask an admin for `fieldsync device add`".into(),
            ));
        };
        let team_entry = reader
            .next_entry()?
            .filter(|e| e.kind == DocKind::Team)
            .ok_or_else(|| Error::BadBundle("does not start with the team document".into()))?;
        let mut doc = AutoCommit::new();
        doc.load_incremental(&team_entry.data)
            .map_err(|e| Error::BadBundle(format!("team document: {e}")))?;
        let mut team = TeamDoc::from_doc(doc, &header.founder)?;
        if team.team().id != header.team {
            return Err(Error::BadBundle(
                "team document does not match the header".into(),
            ));
        }
        // Trust on first use: every team change must come from the founder or an admin.
        let trusted = team.trusted_actors();
        if let Some(c) = team
            .doc_mut()
            .get_changes(&[])
            .iter()
            .find(|c| !trusted.contains(&c.actor_id().to_hex_string()))
        {
            return Err(Error::BadBundle(format!(
                "the team document carries a change by actor {} that is not a team admin",
                c.actor_id().to_hex_string()
            )));
        }
        let user: UserId = provision.user.parse()?;
        if team.team().actors.get(&provision.actor) != Some(&provision.user) {
            return Err(Error::BadBundle(
                "the device's actor is not registered to its user by a team admin".into(),
            ));
        }
        let actor = parse_actor(&provision.actor)?;
        let team_key = team_doc_id(team.team());
        let now = clock.now_ms();
        let mut store = Store::create(path)?;
        // One transaction, one client at a time.
        let written = store.bulk_load(|tx| {
            meta_set(tx, "team_id", &team.team().id)?;
            meta_set(tx, "user_id", &user.to_string())?;
            meta_set(tx, "actor", &provision.actor)?;
            meta_set(tx, "founder", &header.founder)?;
            documents::save(tx, &team_key, DocKind::Team, team.doc_mut(), None, now)?;
            if provision.cursor.is_some() {
                documents::set_peer_heads(tx, &team_key, &team.doc_mut().get_heads())?;
            }
            let mut seen = std::collections::HashSet::new();
            while let Some(entry) = reader.next_entry()? {
                if entry.kind != DocKind::Client {
                    return Err(Error::BadBundle("a second team document".into()));
                }
                let id: ClientId = entry.doc_id.parse().map_err(|_| {
                    Error::BadBundle(format!("{:?} is not a client id", entry.doc_id))
                })?;
                if !seen.insert(id) {
                    return Err(Error::BadBundle(format!("client {id} appears twice")));
                }
                let heads = match entry.summary {
                    Some(summary) => {
                        store_summarized(tx, &entry.doc_id, &entry.data, &summary, now)?;
                        summary.heads
                    }
                    None => store_checked(tx, id, &entry.data, &team, now)?,
                };
                if provision.cursor.is_some() {
                    documents::set_peer_heads(tx, &entry.doc_id, &heads)?;
                }
            }
            if let Some(cursor) = provision.cursor {
                meta_set(tx, "sync_cursor", &cursor.to_string())?;
            }
            Ok(())
        });
        if let Err(e) = written {
            drop(store);
            Store::remove_files(path);
            return Err(e);
        }
        Ok(Replica {
            store,
            team,
            me: user,
            actor,
            clock,
        })
    }

    /// Opens an existing replica.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        let mut store = Store::open(path)?;
        let get = |key: &str| -> Result<String> {
            meta_get(store.conn(), key)?
                .ok_or_else(|| Error::Storage(format!("replica is not initialised (no {key})")))
        };
        let team_id = get("team_id")?;
        let me: UserId = get("user_id")?.parse()?;
        let actor = parse_actor(&get("actor")?)?;
        let founder = get("founder")?;
        let doc = documents::load(store.conn(), &format!("team:{team_id}"))?
            .ok_or_else(|| Error::Storage("the team document is missing".into()))?;
        let team = TeamDoc::from_doc(doc, &founder)?;
        if read_model::needs_rebuild(store.conn())? {
            let now = clock.now_ms();
            let ids = documents::ids(store.conn(), DocKind::Client)?;
            store.write(|tx| {
                for id in &ids {
                    let mut doc = documents::load(tx, id)?
                        .ok_or_else(|| Error::Storage(format!("document {id} vanished")))?;
                    documents::record_actors(tx, id, &doc.get_changes(&[]))?;
                    let view = fold(&ClientDoc::from_doc(doc, None)?, &team, now)?;
                    read_model::upsert_client(tx, &view, &team.team().pipeline)?;
                }
                read_model::rebuilt(tx)
            })?;
        }
        Ok(Replica {
            store,
            team,
            me,
            actor,
            clock,
        })
    }

    /// The path of the replica file.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// The acting user.
    pub fn me(&self) -> UserId {
        self.me
    }

    /// The team's content (members, pipeline, rules).
    pub fn team(&self) -> &Team {
        self.team.team()
    }

    /// The team document (for the fold and for sync).
    pub fn team_doc(&self) -> &TeamDoc {
        &self.team
    }

    /// Now, by the replica's clock.
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Who this replica acts for.
    pub fn identity(&self) -> Identity {
        let member = self.team.member(&self.me);
        Identity {
            team_id: self.team().id.clone(),
            team_name: self.team().name.clone(),
            user_id: self.me.to_string(),
            user_name: member.map(|m| m.name.clone()).unwrap_or_default(),
            role: self.my_role(),
            actor: self.actor.to_hex_string(),
        }
    }

    /// Resolves a user by id or display name.
    pub fn resolve_user(&self, id_or_name: &str) -> Result<UserId> {
        self.team.resolve_user(id_or_name)
    }

    fn my_role(&self) -> Role {
        // The role the fold believes: the replica cannot grant itself more.
        match self.team.user_of_actor(&self.actor.to_hex_string()) {
            Some(u) if u == self.me => self
                .team
                .member(&self.me)
                .map(Member::role)
                .unwrap_or(Role::Rep),
            _ => Role::Rep,
        }
    }

    fn require_active(&self) -> Result<()> {
        match self.team.member(&self.me) {
            Some(m) if m.departed => Err(Error::Departed(self.me)),
            Some(_) => Ok(()),
            None => Err(Error::UnknownUser(self.me.to_string())),
        }
    }

    fn require_role(&self, allowed: &[Role], what: &str) -> Result<()> {
        self.require_active()?;
        if allowed.contains(&self.my_role()) {
            Ok(())
        } else {
            Err(Error::NotPermitted(format!(
                "{what} needs the role {}",
                allowed
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }
}

/// The clients whose read-model rows a change of the team document from `before` to
/// `after` can alter: all of them when the pipeline, rules, roles or hierarchy changed,
/// else those written by newly registered actors.
fn clients_to_refold(
    conn: &rusqlite::Connection,
    before: &TeamDoc,
    after: &TeamDoc,
) -> Result<Vec<String>> {
    if after.refold_needed(before) {
        documents::ids(conn, DocKind::Client)
    } else {
        documents::docs_by_actors(conn, &after.new_actors(before))
    }
}

/// Stores a provisioning bundle's client document with its summary, as it came: the
/// bytes, heads and actors, and the read-model rows (ADR 0006).
fn store_summarized(
    tx: &rusqlite::Transaction,
    doc_id: &str,
    data: &[u8],
    summary: &DocSummary,
    now: i64,
) -> Result<()> {
    if summary.rows.id != doc_id || summary.heads.is_empty() || data.is_empty() {
        return Err(Error::BadBundle(format!(
            "the summary of client {doc_id} does not describe it"
        )));
    }
    documents::insert_snapshot(
        tx,
        doc_id,
        DocKind::Client,
        data,
        &summary.heads,
        &summary.actors,
        now,
    )?;
    read_model::write(tx, &summary.rows)
}

/// Stores a bundle's client document after loading it strictly (no partial loads), checking
/// its schema and that no change rewrites an event, and folding it. Returns its heads.
fn store_checked(
    tx: &rusqlite::Transaction,
    id: ClientId,
    data: &[u8],
    team: &TeamDoc,
    now: i64,
) -> Result<Vec<ChangeHash>> {
    let corrupt = |reason: String| Error::CorruptDocument {
        doc: id.to_string(),
        reason,
    };
    let mut doc = AutoCommit::load(data).map_err(|e| corrupt(e.to_string()))?;
    let heads = doc.get_heads();
    if heads.is_empty() {
        return Err(corrupt("no complete change".into()));
    }
    let mut client = ClientDoc::from_doc(doc, Some((id, team.id()?)))?;
    let changes = client.doc_mut().get_changes(&[]);
    client
        .check_received(&changes, false)
        .map_err(|e| match e {
            Error::CorruptDocument { reason, .. } => corrupt(reason),
            other => other,
        })?;
    let actors: std::collections::BTreeSet<String> = changes
        .iter()
        .map(|c| c.actor_id().to_hex_string())
        .collect();
    let actors: Vec<String> = actors.into_iter().collect();
    // Stored as it came: the bytes are not re-encoded.
    documents::insert_snapshot(
        tx,
        &id.to_string(),
        DocKind::Client,
        data,
        &heads,
        &actors,
        now,
    )?;
    let view = fold(&client, team, now)?;
    read_model::upsert_client(tx, &view, &team.team().pipeline)?;
    Ok(heads)
}

/// Re-folds clients into the read model (after the team document changed).
fn refresh_clients(
    tx: &rusqlite::Transaction,
    team: &TeamDoc,
    ids: &[String],
    now: i64,
) -> Result<()> {
    for id in ids {
        if let Some(doc) = documents::load(tx, id)? {
            let view = fold(&ClientDoc::from_doc(doc, None)?, team, now)?;
            read_model::upsert_client(tx, &view, &team.team().pipeline)?;
        }
    }
    Ok(())
}
