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

use crate::bundle::{Bundle, BundleEntry, BundleHeader, BundleKind, Provision};
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
        let bundle = Bundle::decode(provisioning)?;
        let Some(provision) = bundle.header.provision.clone() else {
            return Err(Error::BadBundle(
                "not a provisioning bundle: ask an admin for `fieldsync device add`".into(),
            ));
        };
        let team_entry = bundle
            .entries
            .iter()
            .find(|e| e.kind == DocKind::Team)
            .ok_or_else(|| Error::BadBundle("has no team document".into()))?;
        let mut doc = AutoCommit::new();
        doc.load_incremental(&team_entry.data)
            .map_err(|e| Error::BadBundle(format!("team document: {e}")))?;
        let team = TeamDoc::from_doc(doc, &bundle.header.founder)?;
        if team.team().id != bundle.header.team {
            return Err(Error::BadBundle(
                "team document does not match the header".into(),
            ));
        }
        let user: UserId = provision.user.parse()?;
        if team.team().actors.get(&provision.actor) != Some(&provision.user) {
            return Err(Error::BadBundle(
                "the device's actor is not registered to its user by a team admin".into(),
            ));
        }
        let actor = parse_actor(&provision.actor)?;
        let mut store = Store::create(path)?;
        store.write(|tx| {
            meta_set(tx, "team_id", &team.team().id)?;
            meta_set(tx, "user_id", &user.to_string())?;
            meta_set(tx, "actor", &provision.actor)?;
            meta_set(tx, "founder", &bundle.header.founder)?;
            Ok(())
        })?;
        let mut replica = Replica {
            store,
            team,
            me: user,
            actor,
            clock,
        };
        // The team document is stored by the import below, like any other.
        let imported = replica.import_bundle(
            Bundle {
                header: BundleHeader {
                    kind: BundleKind::Changes,
                    provision: None,
                    ..bundle.header
                },
                entries: bundle.entries,
            },
            true,
        );
        if let Err(e) = imported {
            drop(replica);
            Store::remove_files(path);
            return Err(e);
        }
        Ok(replica)
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
        if read_model::search_needs_rebuild(store.conn())? {
            let now = clock.now_ms();
            let ids = documents::ids(store.conn(), DocKind::Client)?;
            store.write(|tx| {
                for id in &ids {
                    let doc = documents::load(tx, id)?
                        .ok_or_else(|| Error::Storage(format!("document {id} vanished")))?;
                    let view = fold(&ClientDoc::from_doc(doc, None)?, &team, now)?;
                    read_model::upsert_client(tx, &view, &team.team().pipeline)?;
                }
                read_model::search_rebuilt(tx)
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

    // ----- team administration -------------------------------------------------------

    fn edit_team(&mut self, message: &str, f: impl FnOnce(&mut Team) -> Result<()>) -> Result<()> {
        let now = self.now();
        let before = self.team.doc_mut().get_heads();
        let mut staged = TeamDoc::from_doc(
            self.team.doc().clone().with_actor(self.actor.clone()),
            self.team.founder(),
        )?;
        staged.edit(f)?;
        commit(staged.doc_mut(), message, now);
        let doc_id = team_doc_id(staged.team());
        let ids = documents::ids(self.store.conn(), DocKind::Client)?;
        self.store.write(|tx| {
            documents::save(
                tx,
                &doc_id,
                DocKind::Team,
                staged.doc_mut(),
                Some(&before),
                now,
            )?;
            documents::outbox_add(tx, &doc_id, now)?;
            // Roles and hierarchy feed the fold (authority, supervisors): refresh rows.
            refresh_clients(tx, &staged, &ids, now)
        })?;
        self.team = staged;
        Ok(())
    }

    /// Adds a team member (admin).
    pub fn add_user(
        &mut self,
        name: &str,
        role: Role,
        manager: Option<UserId>,
        approves: Vec<String>,
    ) -> Result<UserId> {
        self.require_role(&[Role::Admin], "adding a user")?;
        if name.trim().is_empty() {
            return Err(Error::invalid("name", "is empty"));
        }
        if let Some(m) = manager {
            if self.team.member(&m).is_none() {
                return Err(Error::UnknownUser(m.to_string()));
            }
        }
        if self.team().members.values().any(|m| m.name == name.trim()) {
            return Err(Error::invalid(
                "name",
                format!(
                    "{:?} is already a member; names identify users",
                    name.trim()
                ),
            ));
        }
        let roles = &self.team().rules.approval_roles;
        if let Some(unknown) = approves.iter().find(|r| !roles.contains(r)) {
            return Err(Error::invalid(
                "approves",
                format!(
                    "{unknown:?} is not an approval role; configured: {}",
                    roles.join(", ")
                ),
            ));
        }
        let id = UserId::random();
        self.edit_team(&format!("add user {name}"), |t| {
            t.members.insert(
                id.to_string(),
                Member {
                    name: name.trim().to_string(),
                    role: role.as_str().into(),
                    manager: manager.map(|m| m.to_string()),
                    approves,
                    departed: false,
                },
            );
            Ok(())
        })?;
        Ok(id)
    }

    /// Marks a user as departed (离职): their replicas refuse further edits, and the
    /// sync server stops serving their devices. Hand their clients over with
    /// [`Replica::handover_all`].
    pub fn mark_departed(&mut self, user: UserId) -> Result<()> {
        // Admin only: the team document is written by admins (ADR 0004).
        self.require_role(&[Role::Admin], "marking a user departed")?;
        if self.team.member(&user).is_none() {
            return Err(Error::UnknownUser(user.to_string()));
        }
        self.edit_team("mark user departed", |t| {
            if let Some(m) = t.members.get_mut(&user.to_string()) {
                m.departed = true;
            }
            Ok(())
        })
    }

    /// Registers a new device for `user` and returns the provisioning bundle a new
    /// replica is created from (`fieldsync init --from`). The bundle holds the team
    /// document and the clients the user may see (admin).
    pub fn provision_device(&mut self, user: UserId) -> Result<Vec<u8>> {
        self.require_role(&[Role::Admin], "adding a device")?;
        match self.team.member(&user) {
            None => return Err(Error::UnknownUser(user.to_string())),
            Some(m) if m.departed => return Err(Error::Departed(user)),
            Some(_) => {}
        }
        let actor = ActorId::random().to_hex_string();
        self.edit_team("register device", |t| {
            t.actors.insert(actor.clone(), user.to_string());
            Ok(())
        })?;
        let visible: Vec<String> = read_model::list(self.store.conn(), &ClientFilter::default())?
            .into_iter()
            .filter(|row| self.may_see(&user, row))
            .map(|row| row.id)
            .collect();
        let mut bundle = self.bundle_of(&visible, None)?;
        bundle.header.provision = Some(Provision {
            user: user.to_string(),
            actor,
        });
        Ok(bundle.encode())
    }

    /// Whether `user` may see a client: owner, collaborator or supervisor; a manager
    /// above the owner; an admin. (DESIGN.md §6; the sync server applies the same rule.)
    pub fn may_see(&self, user: &UserId, row: &ClientRow) -> bool {
        let Some(member) = self.team.member(user) else {
            return false;
        };
        if member.departed {
            return false;
        }
        let u = user.to_string();
        if member.role() == Role::Admin || row.owner == u || row.supervisor.as_deref() == Some(&u) {
            return true;
        }
        if row.collaborators.contains(&u) {
            return true;
        }
        member.role() == Role::Manager
            && row
                .owner
                .parse::<UserId>()
                .is_ok_and(|owner| self.team.is_in_subtree(user, &owner))
    }

    // ----- clients ----------------------------------------------------------------------

    fn load_client(&self, id: &ClientId) -> Result<(ClientDoc, Vec<ChangeHash>)> {
        let mut doc = documents::load(self.store.conn(), &id.to_string())?
            .ok_or(Error::UnknownClient(*id))?;
        let heads = doc.get_heads();
        doc.set_actor(self.actor.clone());
        Ok((
            ClientDoc::from_doc(doc, Some((*id, self.team.id()?)))?,
            heads,
        ))
    }

    fn save_client(
        &mut self,
        id: &ClientId,
        doc: &mut ClientDoc,
        before: Option<&[ChangeHash]>,
        message: &str,
    ) -> Result<ClientView> {
        let now = self.now();
        commit(doc.doc_mut(), message, now);
        let view = fold(doc, &self.team, now)?;
        let team = &self.team;
        let doc_id = id.to_string();
        self.store.write(|tx| {
            documents::save(tx, &doc_id, DocKind::Client, doc.doc_mut(), before, now)?;
            read_model::upsert_client(tx, &view, &team.team().pipeline)?;
            documents::outbox_add(tx, &doc_id, now)
        })?;
        Ok(view)
    }

    /// Loads a client, checks the acting user may edit it, applies `f`, saves.
    fn edit_client_with(
        &mut self,
        id: &ClientId,
        message: &str,
        f: impl FnOnce(&mut ClientDoc, &ClientView, &Replica) -> Result<()>,
    ) -> Result<ClientView> {
        self.require_active()?;
        let (mut doc, heads) = self.load_client(id)?;
        let view = fold(&doc, &self.team, self.now())?;
        let me = self.me.to_string();
        let role = self.my_role();
        let allowed = role == Role::Admin
            || view.owner == me
            || view.collaborators.contains(&me)
            || view.supervisor.as_deref() == Some(&me)
            || (role == Role::Manager
                && view
                    .owner
                    .parse()
                    .is_ok_and(|o| self.team.is_in_subtree(&self.me, &o)));
        if !allowed {
            return Err(Error::NotPermitted(format!(
                "client {id} belongs to another rep; ask their manager to add you as a collaborator"
            )));
        }
        f(&mut doc, &view, self)?;
        self.save_client(id, &mut doc, Some(&heads), message)
    }

    /// Creates a client in the pipeline's first stage. Refuses a likely duplicate with
    /// [`Error::Duplicate`] unless `allow_duplicate` is set.
    pub fn create_client(&mut self, new: NewClient) -> Result<ClientId> {
        self.require_active()?;
        let mut profile = BTreeMap::new();
        for (k, v) in new.profile {
            validate_field(&k)?;
            if !v.trim().is_empty() {
                profile.insert(k, v.trim().to_string());
            }
        }
        if !profile.contains_key("name") {
            return Err(Error::invalid("name", "a client needs a name"));
        }
        if let Some(grade) = profile.get("grade") {
            validate_grade(grade)?;
        }
        let owner = new.owner.unwrap_or(self.me);
        if owner != self.me {
            self.require_role(
                &[Role::Admin, Role::Manager],
                "creating a client for someone else",
            )?;
        }
        match self.team.member(&owner) {
            None => return Err(Error::UnknownUser(owner.to_string())),
            Some(m) if m.departed => return Err(Error::Departed(owner)),
            Some(_) => {}
        }
        if !new.allow_duplicate {
            let get = |k: &str| profile.get(k).map(String::as_str);
            let matches = read_model::duplicates_of(
                self.store.conn(),
                get("phone"),
                get("email"),
                get("company"),
                None,
            )?;
            if !matches.is_empty() {
                return Err(Error::Duplicate { matches });
            }
        }
        let id = ClientId::random();
        let now = self.now();
        let mut doc = ClientDoc::create(
            AutoCommit::new().with_actor(self.actor.clone()),
            id,
            self.team.id()?,
            self.me,
            owner,
            &self.team().pipeline.initial().key,
            profile,
            &new.tags,
            now,
        )?;
        self.save_client(&id, &mut doc, None, "create client")?;
        Ok(id)
    }

    /// Sets (`Some`) or clears (`None`) profile fields. Also resolves a conflict: the
    /// value written replaces every concurrent one.
    pub fn edit_client(
        &mut self,
        id: &ClientId,
        fields: &[(String, Option<String>)],
    ) -> Result<ClientView> {
        for (k, v) in fields {
            validate_field(k)?;
            if k == "name" && v.as_deref().is_none_or(|v| v.trim().is_empty()) {
                return Err(Error::invalid("name", "a client needs a name"));
            }
            if let (true, Some(v)) = (k == "grade", v) {
                validate_grade(v)?;
            }
        }
        self.edit_client_with(id, "edit profile", |doc, _, _| {
            for (k, v) in fields {
                doc.set_field(k, v.as_deref().map(str::trim).filter(|v| !v.is_empty()))?;
            }
            Ok(())
        })
    }

    /// Adds and removes tags.
    pub fn tag_client(
        &mut self,
        id: &ClientId,
        add: &[String],
        remove: &[String],
    ) -> Result<ClientView> {
        self.edit_client_with(id, "tags", |doc, _, _| {
            for t in add {
                doc.set_tag(t, true)?;
            }
            for t in remove {
                doc.set_tag(t, false)?;
            }
            Ok(())
        })
    }

    /// Adds or removes a collaborator (协作者).
    pub fn set_collaborator(
        &mut self,
        id: &ClientId,
        user: UserId,
        present: bool,
    ) -> Result<ClientView> {
        if self.team.member(&user).is_none() {
            return Err(Error::UnknownUser(user.to_string()));
        }
        self.edit_client_with(id, "collaborators", |doc, _, _| {
            doc.set_collaborator(&user, present)
        })
    }

    /// Sets the supervisor (监督者); `None` falls back to the owner's manager.
    pub fn set_supervisor(&mut self, id: &ClientId, user: Option<UserId>) -> Result<ClientView> {
        if let Some(u) = user {
            if self.team.member(&u).is_none() {
                return Err(Error::UnknownUser(u.to_string()));
            }
        }
        self.edit_client_with(id, "supervisor", |doc, _, _| {
            doc.set_supervisor(user.as_ref())
        })
    }

    /// Appends a note, call or visit. A call or visit meets the stage's contact SLA.
    pub fn add_note(&mut self, id: &ClientId, kind: NoteKind, text: &str) -> Result<ClientView> {
        if text.trim().is_empty() {
            return Err(Error::invalid("text", "a note needs text"));
        }
        let note = Note {
            id: uuid::Uuid::new_v4().to_string(),
            kind: kind.as_str().into(),
            text: text.trim().to_string(),
            by: self.me.to_string(),
            at: self.now(),
        };
        self.edit_client_with(id, &format!("{} logged", kind.as_str()), |doc, _, _| {
            doc.append(EventList::Notes, &note)
        })
    }

    /// Moves a client to another stage, enforcing the lead-quality gate, the exception
    /// (green) channel and loss reasons.
    pub fn move_stage(&mut self, id: &ClientId, to: &str, opts: MoveOptions) -> Result<ClientView> {
        let pipeline = self.team().pipeline.clone();
        let rules = self.team().rules.clone();
        let target = pipeline.require(to)?.clone();
        let now = self.now();
        let me = self.me.to_string();
        self.edit_client_with(id, &format!("move to {}", target.key), |doc, view, _| {
            let from = view.stage.clone();
            if from == target.key {
                return Err(Error::invalid(
                    "stage",
                    format!("client is already in {}", target.name),
                ));
            }
            // Lead-quality gate: disqualifying (a move to lost) is always allowed.
            if from == pipeline.initial().key && target.kind() != StageKind::Lost {
                let missing: Vec<String> = rules
                    .required_lead_fields
                    .iter()
                    .filter(|f| view.profile.get(*f).is_none_or(|v| v.trim().is_empty()))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    return Err(Error::GateRefused { missing });
                }
            }
            let reason = opts
                .reason
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty());
            let on_edge = pipeline.is_edge(&from, &target.key);
            let green_channel = opts.skip && reason.is_some();
            if !on_edge && !green_channel {
                return Err(Error::ExceptionNeedsReason {
                    from,
                    to: target.key.clone(),
                });
            }
            let loss_reason = if target.kind() == StageKind::Lost {
                let given = opts.loss_reason.as_deref().map(str::trim).unwrap_or("");
                let found = match_loss_reason(&rules.loss_reasons, given);
                match found {
                    Some(r) => Some(r.clone()),
                    None => {
                        return Err(Error::LossReasonRequired {
                            stage: target.key.clone(),
                            allowed: rules.loss_reasons.clone(),
                        })
                    }
                }
            } else {
                None
            };
            let after = view.current_transition.clone();
            doc.append(
                EventList::Transitions,
                &StageTransition {
                    id: uuid::Uuid::new_v4().to_string(),
                    from,
                    to: target.key.clone(),
                    by: me.clone(),
                    at: now,
                    reason: reason.map(str::to_string),
                    skipped: !on_edge,
                    loss_reason,
                    after,
                },
            )?;
            if target.kind() == StageKind::Won {
                for item in &rules.onboarding {
                    if view.onboarding.iter().all(|t| t.key != item.key) {
                        doc.append(
                            EventList::Onboarding,
                            &OnboardingTask {
                                key: item.key.clone(),
                                title: item.title.clone(),
                                at: now,
                            },
                        )?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Marks an onboarding task done.
    pub fn complete_task(&mut self, id: &ClientId, key: &str) -> Result<ClientView> {
        let done = TaskDone {
            key: key.to_string(),
            by: self.me.to_string(),
            at: self.now(),
        };
        self.edit_client_with(id, "onboarding task done", |doc, view, _| {
            if view.onboarding.iter().all(|t| t.key != done.key) {
                return Err(Error::invalid(
                    "task",
                    format!("no onboarding task {:?}", done.key),
                ));
            }
            doc.append(EventList::TasksDone, &done)
        })
    }

    /// Requests approval of a quote. Within the discount band no approval is needed;
    /// beyond it every configured approval role must approve, in any order.
    pub fn request_quote(
        &mut self,
        id: &ClientId,
        amount_cents: i64,
        discount_pct: f64,
    ) -> Result<(String, ClientView)> {
        if amount_cents <= 0 {
            return Err(Error::invalid("amount", "must be positive"));
        }
        if !(0.0..=100.0).contains(&discount_pct) {
            return Err(Error::invalid(
                "discount",
                "must be between 0 and 100 percent",
            ));
        }
        let rules = &self.team().rules;
        let required_roles = if discount_pct <= rules.discount_band_pct {
            vec![]
        } else {
            rules.approval_roles.clone()
        };
        let quote = Quote {
            id: uuid::Uuid::new_v4().to_string(),
            amount_cents,
            discount_pct,
            by: self.me.to_string(),
            at: self.now(),
            required_roles,
        };
        let quote_id = quote.id.clone();
        let view = self.edit_client_with(id, "quote requested", |doc, _, _| {
            doc.append(EventList::Quotes, &quote)
        })?;
        Ok((quote_id, view))
    }

    /// Records one approver's decision for one role on a quote.
    pub fn decide_quote(
        &mut self,
        id: &ClientId,
        quote_id: &str,
        role: &str,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<ClientView> {
        self.require_active()?;
        let member = self
            .team
            .member(&self.me)
            .cloned()
            .ok_or(Error::UnknownUser(self.me.to_string()))?;
        let my_role = self.my_role();
        let entitled = member.approves.iter().any(|r| r == role)
            || my_role == Role::Admin
            || (role == "manager" && my_role == Role::Manager);
        if !entitled {
            return Err(Error::NotPermitted(format!(
                "you do not sign for the approval role {role:?}"
            )));
        }
        let approval = Approval {
            id: uuid::Uuid::new_v4().to_string(),
            quote: quote_id.to_string(),
            role: role.to_string(),
            decision: if approve { "approved" } else { "rejected" }.into(),
            by: self.me.to_string(),
            at: self.now(),
            comment: comment.map(str::to_string),
        };
        // Approvers decide on clients they may not own: no ownership check here.
        let (mut doc, heads) = self.load_client(id)?;
        let view = fold(&doc, &self.team, self.now())?;
        let quote = view
            .quotes
            .iter()
            .find(|q| q.quote.id == quote_id)
            .ok_or_else(|| Error::UnknownQuote(quote_id.to_string()))?;
        if !quote.quote.required_roles.iter().any(|r| r == role) {
            return Err(Error::invalid(
                "role",
                format!("quote {quote_id} does not need {role:?} approval"),
            ));
        }
        doc.append(EventList::Approvals, &approval)?;
        self.save_client(id, &mut doc, Some(&heads), "quote decision")
    }

    /// Hands clients to a new owner (manager or admin). History stays with the client.
    pub fn handover(
        &mut self,
        ids: &[ClientId],
        to: UserId,
        reason: Option<&str>,
    ) -> Result<Vec<ClientView>> {
        self.require_role(&[Role::Admin, Role::Manager], "a handover")?;
        match self.team.member(&to) {
            None => return Err(Error::UnknownUser(to.to_string())),
            Some(m) if m.departed => return Err(Error::Departed(to)),
            Some(_) => {}
        }
        let manager_scope = (self.my_role() == Role::Manager).then_some(self.me);
        if let Some(m) = manager_scope {
            if !self.team.is_in_subtree(&m, &to) {
                return Err(Error::NotPermitted(format!(
                    "{to} is not in your team; a manager hands clients over within their subtree"
                )));
            }
        }
        // Check every client before writing any, so a refused handover changes nothing.
        for id in ids {
            let row = read_model::get(self.store.conn(), &id.to_string())?
                .ok_or(Error::UnknownClient(*id))?;
            if let Some(m) = manager_scope {
                if !row
                    .owner
                    .parse()
                    .is_ok_and(|o| self.team.is_in_subtree(&m, &o))
                {
                    return Err(Error::NotPermitted(format!(
                        "client {id} is owned outside your team"
                    )));
                }
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (mut doc, heads) = self.load_client(id)?;
            let view = fold(&doc, &self.team, self.now())?;

            if view.owner == to.to_string() {
                out.push(view);
                continue;
            }
            let after = view.current_handover.clone();
            doc.append(
                EventList::Handovers,
                &Handover {
                    id: uuid::Uuid::new_v4().to_string(),
                    from: view.owner.clone(),
                    to: to.to_string(),
                    by: self.me.to_string(),
                    at: self.now(),
                    reason: reason.map(str::to_string),
                    after,
                },
            )?;
            out.push(self.save_client(id, &mut doc, Some(&heads), "handover")?);
        }
        Ok(out)
    }

    /// Hands every client currently owned by `from` to `to` (离职继承).
    pub fn handover_all(
        &mut self,
        from: UserId,
        to: UserId,
        reason: Option<&str>,
    ) -> Result<Vec<ClientView>> {
        let ids: Vec<ClientId> = read_model::list(
            self.store.conn(),
            &ClientFilter {
                owner: Some(from.to_string()),
                ..Default::default()
            },
        )?
        .into_iter()
        .map(|r| r.id.parse())
        .collect::<Result<_>>()?;
        self.handover(&ids, to, reason)
    }

    // ----- reading ----------------------------------------------------------------------

    /// One client's full derived state (loads its document).
    pub fn client(&self, id: &ClientId) -> Result<ClientView> {
        let (doc, _) = self.load_client(id)?;
        fold(&doc, &self.team, self.now())
    }

    /// Finds a client by id or by an unambiguous id prefix.
    pub fn resolve_client(&self, id_or_prefix: &str) -> Result<ClientId> {
        let wanted = id_or_prefix.trim();
        if let Ok(id) = wanted.parse::<ClientId>() {
            return Ok(id);
        }
        let matches: Vec<ClientRow> =
            read_model::list(self.store.conn(), &ClientFilter::default())?
                .into_iter()
                .filter(|r| !wanted.is_empty() && r.id.starts_with(wanted))
                .collect();
        match matches.as_slice() {
            [one] => one.id.parse(),
            [] => Err(Error::invalid(
                "client",
                format!("no client id starts with {wanted:?}"),
            )),
            _ => Err(Error::invalid(
                "client",
                format!("{wanted:?} matches several clients"),
            )),
        }
    }

    /// Lists clients from the read model.
    pub fn list(&self, filter: &ClientFilter) -> Result<Vec<ClientRow>> {
        read_model::list(self.store.conn(), filter)
    }

    /// Full-text search over profiles, tags and notes (Chinese substrings included).
    pub fn search(&self, query: &str) -> Result<Vec<ClientRow>> {
        read_model::search(self.store.conn(), query)
    }

    /// Clients with profile conflicts or concurrent moves or handovers to review.
    pub fn conflicts(&self) -> Result<Vec<ClientConflicts>> {
        let mut out = Vec::new();
        for row in read_model::list(self.store.conn(), &ClientFilter::default())? {
            if !row.needs_review {
                continue;
            }
            let view = self.client(&row.id.parse()?)?;
            out.push(ClientConflicts {
                client_id: view.id.clone(),
                name: view.name().to_string(),
                fields: view.conflicts,
                concurrent_moves: view.concurrent_moves,
                concurrent_handovers: view.concurrent_handovers,
            });
        }
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(out)
    }

    /// Groups of clients that look like the same customer.
    pub fn duplicates(&self) -> Result<Vec<Vec<DuplicateMatch>>> {
        read_model::duplicate_groups(self.store.conn())
    }

    /// The pipeline board.
    pub fn board(&self) -> Result<Board> {
        report::board(self.store.conn(), self.team(), self.now())
    }

    /// The flow-health report.
    pub fn report(&self) -> Result<FlowReport> {
        report::flow_report(self.store.conn(), self.team(), self.now())
    }

    /// Overdue clients per supervisor (escalation list).
    pub fn overdue(&self) -> Result<Vec<OverdueGroup>> {
        report::overdue_by_supervisor(self.store.conn(), self.now())
    }

    /// Documents changed locally and not yet acknowledged by a server.
    pub fn outbox(&self) -> Result<Vec<String>> {
        documents::outbox(self.store.conn())
    }

    /// The store (for sync and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    // ----- bundles ----------------------------------------------------------------------

    fn bundle_of(
        &self,
        client_ids: &[String],
        have: Option<&HashMap<String, Vec<ChangeHash>>>,
    ) -> Result<Bundle> {
        let mut entries = Vec::new();
        let mut add = |kind: DocKind, doc_id: &str, mut doc: AutoCommit| {
            let data = match have.and_then(|h| h.get(doc_id)) {
                Some(heads) => {
                    let known: Vec<ChangeHash> = heads
                        .iter()
                        .copied()
                        .filter(|h| doc.get_change_by_hash(h).is_some())
                        .collect();
                    if doc.get_changes(&known).is_empty() {
                        return;
                    }
                    doc.save_after(&known)
                }
                None => doc.save(),
            };
            entries.push(BundleEntry {
                kind,
                doc_id: doc_id.to_string(),
                data,
            });
        };
        let team_id = team_doc_id(self.team());
        add(DocKind::Team, &team_id, self.team.doc().clone());
        for id in client_ids {
            if let Some(doc) = documents::load(self.store.conn(), id)? {
                add(DocKind::Client, id, doc);
            }
        }
        Ok(Bundle {
            header: BundleHeader {
                kind: BundleKind::Changes,
                team: self.team().id.clone(),
                founder: self.team.founder().to_string(),
                from_user: self.me.to_string(),
                created_at: self.now(),
                provision: None,
            },
            entries,
        })
    }

    /// This replica's heads per document, for another replica's [`Replica::export`].
    pub fn heads(&self) -> Result<Vec<u8>> {
        let mut entries = Vec::new();
        let mut push = |kind, doc_id: String, mut doc: AutoCommit| {
            let data = doc.get_heads().iter().flat_map(|h| h.0).collect();
            entries.push(BundleEntry { kind, doc_id, data });
        };
        push(
            DocKind::Team,
            team_doc_id(self.team()),
            self.team.doc().clone(),
        );
        for id in documents::ids(self.store.conn(), DocKind::Client)? {
            if let Some(doc) = documents::load(self.store.conn(), &id)? {
                push(DocKind::Client, id, doc);
            }
        }
        Ok(Bundle {
            header: BundleHeader {
                kind: BundleKind::Heads,
                team: self.team().id.clone(),
                founder: self.team.founder().to_string(),
                from_user: self.me.to_string(),
                created_at: self.now(),
                provision: None,
            },
            entries,
        }
        .encode())
    }

    /// Exports every document as a bundle; given another replica's heads file, only the
    /// changes that replica lacks.
    pub fn export(&self, have: Option<&[u8]>) -> Result<Vec<u8>> {
        let have = match have {
            None => None,
            Some(bytes) => {
                let bundle = Bundle::decode(bytes)?;
                if bundle.header.kind != BundleKind::Heads {
                    return Err(Error::BadBundle(
                        "expected a heads file (`fieldsync heads`)".into(),
                    ));
                }
                self.check_team(&bundle.header)?;
                let mut map = HashMap::new();
                for e in bundle.entries {
                    if e.data.len() % 32 != 0 {
                        return Err(Error::BadBundle(format!(
                            "heads of {} are malformed",
                            e.doc_id
                        )));
                    }
                    let hashes = e
                        .data
                        .chunks(32)
                        .map(|c| ChangeHash(c.try_into().unwrap_or([0; 32])))
                        .collect();
                    map.insert(e.doc_id, hashes);
                }
                Some(map)
            }
        };
        let ids = documents::ids(self.store.conn(), DocKind::Client)?;
        Ok(self.bundle_of(&ids, have.as_ref())?.encode())
    }

    fn check_team(&self, header: &BundleHeader) -> Result<()> {
        if header.team != self.team().id {
            return Err(Error::BadBundle(format!(
                "it belongs to team {}, this replica is team {} ({})",
                header.team,
                self.team().id,
                self.team().name
            )));
        }
        Ok(())
    }

    /// Merges a bundle. Idempotent; all or nothing: a corrupt or foreign bundle changes
    /// nothing.
    pub fn import(&mut self, bytes: &[u8]) -> Result<ImportSummary> {
        let bundle = Bundle::decode(bytes)?;
        if bundle.header.kind != BundleKind::Changes {
            return Err(Error::BadBundle(
                "this is a heads file, not a bundle of changes".into(),
            ));
        }
        self.check_team(&bundle.header)?;
        self.import_bundle(bundle, false)
    }

    fn import_bundle(&mut self, bundle: Bundle, first: bool) -> Result<ImportSummary> {
        let now = self.now();
        let team_id = self.team.id()?;
        let team_doc_key = team_doc_id(self.team());
        // Merge everything in memory first; nothing is written unless all of it is valid.
        let mut team_doc = self.team.doc().clone();
        let team_before = if first {
            None
        } else {
            Some(team_doc.get_heads())
        };
        let mut clients: Vec<(ClientId, ClientDoc, Option<Vec<ChangeHash>>)> = Vec::new();
        for entry in &bundle.entries {
            match entry.kind {
                DocKind::Team => {
                    if entry.doc_id != team_doc_key {
                        return Err(Error::BadBundle(format!(
                            "foreign team document {}",
                            entry.doc_id
                        )));
                    }
                    team_doc
                        .load_incremental(&entry.data)
                        .map_err(|e| Error::CorruptDocument {
                            doc: entry.doc_id.clone(),
                            reason: e.to_string(),
                        })?;
                }
                DocKind::Client => {
                    let id: ClientId = entry.doc_id.parse().map_err(|_| {
                        Error::BadBundle(format!("{:?} is not a client id", entry.doc_id))
                    })?;
                    let corrupt = |e: automerge::AutomergeError| Error::CorruptDocument {
                        doc: entry.doc_id.clone(),
                        reason: e.to_string(),
                    };
                    // The same document twice in one bundle merges into one entry.
                    if let Some((_, doc, _)) = clients.iter_mut().find(|(c, _, _)| *c == id) {
                        doc.doc_mut()
                            .load_incremental(&entry.data)
                            .map_err(corrupt)?;
                        ClientDoc::from_doc(doc.doc().clone(), Some((id, team_id)))?;
                        continue;
                    }
                    let existing = documents::load(self.store.conn(), &entry.doc_id)?;
                    let known = existing.is_some();
                    let mut doc = existing.unwrap_or_default();
                    let before = known.then(|| doc.get_heads());
                    doc.load_incremental(&entry.data).map_err(corrupt)?;
                    let doc = ClientDoc::from_doc(doc, Some((id, team_id)))?;
                    clients.push((id, doc, before));
                }
            }
        }
        for (id, doc, before) in clients.iter_mut() {
            let received = doc
                .doc_mut()
                .get_changes(before.as_deref().unwrap_or_default());
            doc.check_received(&received).map_err(|e| match e {
                Error::CorruptDocument { reason, .. } => Error::CorruptDocument {
                    doc: id.to_string(),
                    reason,
                },
                other => other,
            })?;
        }
        let team_new_changes = team_doc.get_changes(team_before.as_deref().unwrap_or_default());
        let mut team = TeamDoc::from_doc(team_doc, self.team.founder())?;
        // Only the founder and admins write the team document (ADR 0004): a bundle that
        // carries anyone else's team changes is refused whole.
        let trusted = team.trusted_actors();
        if let Some(change) = team_new_changes
            .iter()
            .find(|c| !trusted.contains(&c.actor_id().to_hex_string()))
        {
            return Err(Error::BadBundle(format!(
                "the team document carries a change by actor {} that is not a team admin",
                change.actor_id().to_hex_string()
            )));
        }
        let team_changed = team_before.as_deref() != Some(&team.doc_mut().get_heads()[..]);
        let mut summary = ImportSummary {
            documents: bundle.entries.len(),
            ..Default::default()
        };
        for (_, doc, before) in clients.iter_mut() {
            if before.is_none() {
                summary.new_clients += 1;
            }
            if before.as_deref() != Some(&doc.doc_mut().get_heads()[..]) {
                summary.changed += 1;
            }
        }
        if team_changed {
            summary.changed += 1;
        }
        let imported: Vec<String> = clients.iter().map(|(id, _, _)| id.to_string()).collect();
        let others: Vec<String> = if team_changed {
            documents::ids(self.store.conn(), DocKind::Client)?
                .into_iter()
                .filter(|id| !imported.contains(id))
                .collect()
        } else {
            vec![]
        };
        self.store.write(|tx| {
            if team_changed {
                documents::save(
                    tx,
                    &team_doc_key,
                    DocKind::Team,
                    team.doc_mut(),
                    team_before.as_deref(),
                    now,
                )?;
            }
            for (id, doc, before) in clients.iter_mut() {
                let changed = documents::save(
                    tx,
                    &id.to_string(),
                    DocKind::Client,
                    doc.doc_mut(),
                    before.as_deref(),
                    now,
                )?;
                // A new team document can change what the fold believes (roles, registry).
                if changed || team_changed {
                    let view = fold(doc, &team, now)?;
                    read_model::upsert_client(tx, &view, &team.team().pipeline)?;
                }
            }
            refresh_clients(tx, &team, &others, now)
        })?;
        self.team = team;
        Ok(summary)
    }
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

/// Finds the configured loss reason meant by `given`: the whole configured string, its
/// Chinese part (before the first space) or its English part (after it, any case). An
/// ambiguous or unknown answer matches nothing.
fn match_loss_reason<'a>(configured: &'a [String], given: &str) -> Option<&'a String> {
    let given = given.trim();
    if given.is_empty() {
        return None;
    }
    let matches: Vec<&String> = configured
        .iter()
        .filter(|r| {
            let (zh, en) = r.split_once(' ').unwrap_or((r.as_str(), ""));
            r.as_str() == given
                || zh == given
                || (!en.is_empty() && en.trim().eq_ignore_ascii_case(given))
        })
        .collect();
    match matches.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

fn validate_field(field: &str) -> Result<()> {
    let ok = !field.is_empty()
        && field.len() <= 64
        && field
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "field",
            format!(
                "{field:?} is not a field name (letters, digits, _ and -; known: {})",
                PROFILE_FIELDS.join(", ")
            ),
        ))
    }
}

fn validate_grade(grade: &str) -> Result<()> {
    if matches!(grade, "A" | "B" | "C" | "D") {
        Ok(())
    } else {
        Err(Error::invalid(
            "grade",
            format!("{grade:?} is not a grade; use A, B, C or D"),
        ))
    }
}
