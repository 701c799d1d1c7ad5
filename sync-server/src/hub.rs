//! The server's state and what it does with it, without HTTP: the team replica (the
//! server founded the team, so its actor is the one the fold trusts), the server store,
//! and the sync, join and admin operations. Handlers call these under one lock.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use automerge::ReadDoc;
use fieldsync_core::bundle::BundleEntry;
use fieldsync_core::pipeline::Template;
use fieldsync_core::store::documents::DocKind;
use fieldsync_core::sync::{SyncDoc, SyncRequest, SyncResponse};
use fieldsync_core::team::{Member, Role};
use fieldsync_core::{Clock, Replica, SystemClock, UserId};
use serde::Serialize;

use crate::error::{AppError, AppResult};
use crate::store::{Device, ServerStore, SqliteServerStore};

/// Explicit limits (docs/protocol.md, "Limits").
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body, bytes.
    pub max_request_bytes: usize,
    /// Most documents in one request.
    pub max_docs_per_request: usize,
    /// Most changed documents in one response (more: the device asks again).
    pub docs_per_response: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 16 * 1024 * 1024,
            max_docs_per_request: 1000,
            docs_per_response: 500,
        }
    }
}

/// What the first start creates.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Team name.
    pub team: String,
    /// The first admin's name.
    pub admin: String,
    /// Pipeline template.
    pub template: Template,
}

/// Counts of one sync, for metrics and logs.
#[derive(Clone, Debug, Default)]
pub struct SyncStats {
    /// Documents the device uploaded changes to.
    pub merged: usize,
    /// Documents in the response.
    pub sent: usize,
}

/// The server's state.
pub struct Hub {
    replica: Replica,
    store: Box<dyn ServerStore>,
    limits: Limits,
}

/// The outcome of a request by a departed user's device: its upload is held.
#[derive(Debug)]
pub struct Quarantined(pub Option<i64>);

impl Hub {
    /// Opens the data folder, creating the team on the first start. Returns the admin's
    /// device token when it was just created (shown once).
    pub fn open(
        data: &Path,
        init: &InitOptions,
        limits: Limits,
    ) -> AppResult<(Self, Option<String>)> {
        Self::open_with_clock(data, init, limits, Arc::new(SystemClock))
    }

    /// Like [`Hub::open`] with a given clock.
    pub fn open_with_clock(
        data: &Path,
        init: &InitOptions,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> AppResult<(Self, Option<String>)> {
        std::fs::create_dir_all(data)
            .map_err(|e| AppError::Internal(format!("{}: {e}", data.display())))?;
        let team_path = data.join("team.db");
        let fresh = !team_path.exists();
        let replica = if fresh {
            Replica::create(&team_path, &init.team, &init.admin, init.template, clock)?
        } else {
            Replica::open(&team_path, clock)?
        };
        // An answer tells the device its changes are safe: each commit reaches the disk
        // before the answer goes out, power cut included.
        replica.store().sync_every_commit()?;
        let store: Box<dyn ServerStore> =
            Box::new(SqliteServerStore::open(&data.join("server.db"))?);
        let mut hub = Hub {
            replica,
            store,
            limits,
        };
        let token = if fresh {
            let admin = hub.replica.me().to_string();
            let (_, token) = hub.store.issue_device(&admin, hub.replica.now())?;
            Some(token)
        } else {
            None
        };
        Ok((hub, token))
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The team replica (read access).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The current change sequence (what live push announces).
    pub fn change_seq(&self) -> AppResult<u64> {
        Ok(self.replica.change_seq()?)
    }

    /// The device and member a token belongs to; 401 for unknown or revoked tokens.
    /// A departed user's device is returned with `departed` so the caller can quarantine.
    pub fn authenticate(&self, token: Option<&str>) -> AppResult<(Device, Member)> {
        let token = token.ok_or_else(|| AppError::Unauthorized("missing bearer token".into()))?;
        let device = self
            .store
            .authenticate(token)?
            .ok_or_else(|| AppError::Unauthorized("unknown token".into()))?;
        if device.revoked {
            return Err(AppError::Unauthorized(
                "this device's token was revoked".into(),
            ));
        }
        let member = self
            .replica
            .team()
            .members
            .get(&device.user)
            .cloned()
            .ok_or_else(|| AppError::Unauthorized("the device's user is not in the team".into()))?;
        Ok((device, member))
    }

    /// Fails with 401 for a departed user's device.
    pub fn require_active(member: &Member) -> AppResult<()> {
        if member.departed {
            return Err(AppError::Unauthorized(
                "this device's user has left the team; access is revoked".into(),
            ));
        }
        Ok(())
    }

    fn user(device: &Device) -> AppResult<UserId> {
        device
            .user
            .parse()
            .map_err(|_| AppError::Internal(format!("bad user id {}", device.user)))
    }

    /// A new device's first contact: registers a fresh automerge actor for it and returns
    /// the provisioning bundle (compact snapshots of everything it may see, the fast path
    /// of a new phone).
    pub fn join(&mut self, device: &Device) -> AppResult<Vec<u8>> {
        let mut bundle = Vec::new();
        self.join_into(device, &mut bundle)?;
        Ok(bundle)
    }

    /// Like [`Hub::join`], writing the bundle into `out` while it is read from the store.
    /// The device and its hints are recorded before the bundle's checksum is written, so
    /// a device never completes a join this server did not record; if anything fails
    /// first, the bundle stops short of its checksum and the device writes nothing.
    pub fn join_into(&mut self, device: &Device, out: impl std::io::Write) -> AppResult<()> {
        if device.actor.is_some() {
            return Err(AppError::Conflict(
                "this token already joined a replica; ask for a new device token".into(),
            ));
        }
        let user = Self::user(device)?;
        let (grant, bundle) = self.replica.provision_into(user, true, out)?;
        self.store.set_device_actor(&device.id, &grant.actor)?;
        // What the new device has: later syncs send it only what changes after this.
        self.store.set_hints(&device.id, &grant.heads)?;
        bundle.finish()?;
        Ok(())
    }

    /// Holds a departed user's upload for review. Uploads without changes are not kept.
    pub fn quarantine(&mut self, device: &Device, body: &[u8]) -> AppResult<Quarantined> {
        let request = SyncRequest::decode(body, self.limits.max_docs_per_request)?;
        if request.docs.iter().all(|d| d.changes.is_empty()) {
            return Ok(Quarantined(None));
        }
        let id = self
            .store
            .quarantine(&device.id, &device.user, body, self.replica.now())?;
        tracing::warn!(device = %device.id, user = %device.user, upload = id, "upload quarantined");
        Ok(Quarantined(Some(id)))
    }

    /// May `user` see a client (owner, collaborator, supervisor, manager above, admin)?
    fn may_see(&self, user: &UserId, doc_id: &str, kind: DocKind) -> AppResult<bool> {
        if kind == DocKind::Team {
            return Ok(true);
        }
        Ok(match self.replica.client_row(doc_id)? {
            Some(row) => self.replica.may_see(user, &row),
            None => false,
        })
    }

    /// One sync exchange (docs/protocol.md): merge the device's changes (all or nothing,
    /// committed before answering), then answer with the server's side of every document
    /// it named and every document changed since its cursor that it may see.
    pub fn sync(&mut self, device: &Device, body: &[u8]) -> AppResult<(Vec<u8>, SyncStats)> {
        let request = SyncRequest::decode(body, self.limits.max_docs_per_request)?;
        let user = Self::user(device)?;
        let actor = device
            .actor
            .clone()
            .ok_or_else(|| AppError::Conflict("this device has not joined yet".into()))?;
        let merged = self.merge(&user, Some(&actor), &request, true)?;
        let mut stats = SyncStats { merged, sent: 0 };

        let mut docs = Vec::new();
        let mut revoked = Vec::new();
        let mut named = BTreeSet::new();
        for d in &request.docs {
            named.insert(d.doc_id.clone());
            if self.may_see(&user, &d.doc_id, d.kind)? {
                if let Some((heads, changes)) =
                    self.replica.changes_for_peer(&d.doc_id, &d.heads)?
                {
                    docs.push(SyncDoc {
                        kind: d.kind,
                        doc_id: d.doc_id.clone(),
                        heads,
                        changes,
                    });
                    continue;
                }
            }
            // No longer visible (handed to someone else): its upload, if any, was merged
            // above; the device drops its copy.
            revoked.push(d.doc_id.clone());
        }
        let limit = self.limits.docs_per_response;
        let changed = self.replica.changed_since(request.cursor, limit)?;
        let more = changed.len() == limit;
        for (doc_id, kind, _) in &changed {
            if named.contains(doc_id) {
                continue;
            }
            let hint = self.store.hint(&device.id, doc_id)?;
            if !self.may_see(&user, doc_id, *kind)? {
                // The device had it and may no longer see it: it drops its copy.
                if !hint.is_empty() {
                    revoked.push(doc_id.clone());
                }
                continue;
            }
            if let Some((heads, changes)) = self.replica.changes_for_peer(doc_id, &hint)? {
                if !changes.is_empty() {
                    docs.push(SyncDoc {
                        kind: *kind,
                        doc_id: doc_id.clone(),
                        heads,
                        changes,
                    });
                }
            }
        }
        let cursor = match changed.last() {
            Some((_, _, seq)) if more => *seq,
            _ => self.replica.change_seq()?,
        };
        let hints: Vec<_> = docs
            .iter()
            .map(|d| (d.doc_id.clone(), d.heads.clone()))
            .collect();
        self.store.set_hints(&device.id, &hints)?;
        self.store.drop_hints(&device.id, &revoked)?;
        stats.sent = docs.len();
        let response = SyncResponse {
            cursor,
            more,
            docs,
            revoked,
        };
        Ok((response.encode(), stats))
    }

    /// Validates and commits the changes of a request. `check_access`: the device's user
    /// must be allowed to write each document (false only for a reviewed quarantine).
    fn merge(
        &mut self,
        user: &UserId,
        actor: Option<&str>,
        request: &SyncRequest,
        check_access: bool,
    ) -> AppResult<usize> {
        let team_doc_id = format!("team:{}", self.replica.team().id);
        let mut entries = Vec::new();
        for d in &request.docs {
            if d.kind == DocKind::Team && d.doc_id != team_doc_id {
                return Err(AppError::BadRequest(format!(
                    "{} is not this team's document",
                    d.doc_id
                )));
            }
            if !d.changes.is_empty() {
                entries.push(BundleEntry {
                    kind: d.kind,
                    doc_id: d.doc_id.clone(),
                    data: d.changes.clone(),
                    summary: None,
                });
            }
        }
        if entries.is_empty() {
            return Ok(0);
        }
        let prepared = self.replica.prepare_import(&entries, false)?;
        // automerge skips bytes it cannot parse; the heads the device declared are the
        // checksum: after the merge the server must have every one of them.
        for d in request.docs.iter().filter(|d| !d.changes.is_empty()) {
            if d.heads.is_empty() {
                return Err(AppError::BadRequest(format!(
                    "changes for {} come without the heads they lead to",
                    d.doc_id
                )));
            }
            let doc = match d.kind {
                DocKind::Team => prepared.team().doc(),
                DocKind::Client => match prepared
                    .clients()
                    .iter()
                    .find(|c| c.id.to_string() == d.doc_id)
                {
                    Some(c) => c.doc().doc(),
                    None => continue,
                },
            };
            if let Some(missing) = d.heads.iter().find(|h| doc.get_change_by_hash(h).is_none()) {
                return Err(AppError::Incomplete(format!(
                    "the changes for {} do not reach the heads sent (missing {missing}): corrupt, truncated, or built on changes this server does not have",
                    d.doc_id
                )));
            }
        }
        let team = self.replica.team_doc();
        let role = team.member(user).map(Member::role).unwrap_or(Role::Rep);
        let foreign =
            |actors: &BTreeSet<String>| actor.is_some_and(|a| actors.iter().any(|x| x != a));
        if prepared.team_changed() {
            if foreign(prepared.team_actors()) {
                return Err(AppError::Forbidden(
                    "team changes written by another actor".into(),
                ));
            }
            if check_access && role != Role::Admin {
                return Err(AppError::Forbidden(
                    "only admins change the team document".into(),
                ));
            }
        }
        for c in prepared.clients() {
            if c.new_actors().is_empty() {
                continue;
            }
            if foreign(c.new_actors()) {
                return Err(AppError::Forbidden(format!(
                    "changes to client {} are written by another device's actor",
                    c.id
                )));
            }
            if !check_access {
                continue;
            }
            let record = c.record()?;
            let me = user.to_string();
            let allowed = if c.existed() {
                // Visible now, or owned before a handover: edits a rep made offline before
                // learning of the handover are kept (DESIGN.md §3).
                self.may_see(user, &c.id.to_string(), DocKind::Client)?
                    || record.initial_owner == me
                    || record.handovers.iter().any(|h| h.from == me)
            } else {
                record.initial_owner == me
                    || role == Role::Admin
                    || (role == Role::Manager
                        && record
                            .initial_owner
                            .parse()
                            .is_ok_and(|o| team.is_in_subtree(user, &o)))
            };
            if !allowed {
                return Err(AppError::Forbidden(format!(
                    "client {} is not yours to change",
                    c.id
                )));
            }
        }
        let summary = self.replica.commit_import(prepared, |_| Ok(()))?;
        Ok(summary.changed)
    }

    // ----- administration ------------------------------------------------------------

    /// Requires an admin; managers may do what `manager_ok` allows.
    fn require_admin(member: &Member, what: &str) -> AppResult<()> {
        Hub::require_active(member)?;
        if member.role() == Role::Admin {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!("{what} needs an admin")))
        }
    }

    /// Adds a user (admin).
    pub fn add_user(
        &mut self,
        by: &Member,
        name: &str,
        role: Role,
        manager: Option<&str>,
        approves: Vec<String>,
    ) -> AppResult<String> {
        Self::require_admin(by, "adding a user")?;
        let manager = manager.map(|m| self.replica.resolve_user(m)).transpose()?;
        Ok(self
            .replica
            .add_user(name, role, manager, approves)?
            .to_string())
    }

    /// Issues a device token for a user (admin). The token is returned once.
    pub fn issue_device(&mut self, by: &Member, user: &str) -> AppResult<(String, String)> {
        Self::require_admin(by, "issuing a device token")?;
        let user = self.replica.resolve_user(user)?;
        if self
            .replica
            .team_doc()
            .member(&user)
            .is_some_and(|m| m.departed)
        {
            return Err(AppError::Conflict(format!("user {user} has left the team")));
        }
        self.store
            .issue_device(&user.to_string(), self.replica.now())
    }

    /// Revokes a device token (admin).
    pub fn revoke_device(&mut self, by: &Member, device: &str) -> AppResult<()> {
        Self::require_admin(by, "revoking a device")?;
        if self.store.revoke_device(device)? {
            Ok(())
        } else {
            Err(AppError::NotFound(format!("unknown device {device}")))
        }
    }

    /// Every device (admin).
    pub fn devices(&self, by: &Member) -> AppResult<Vec<Device>> {
        Self::require_admin(by, "listing devices")?;
        self.store.devices()
    }

    /// Marks a user departed and hands their clients to the new owners, round-robin.
    /// Admins, or a manager for a user below them with new owners below them.
    pub fn depart(
        &mut self,
        by_device: &Device,
        by: &Member,
        user: &str,
        new_owners: &[String],
        reason: Option<&str>,
    ) -> AppResult<DepartOutcome> {
        Hub::require_active(by)?;
        let user = self.replica.resolve_user(user)?;
        let owners = new_owners
            .iter()
            .map(|o| self.replica.resolve_user(o))
            .collect::<Result<Vec<_>, _>>()?;
        if owners.is_empty() {
            return Err(AppError::BadRequest("name at least one new owner".into()));
        }
        if owners.contains(&user) {
            return Err(AppError::BadRequest(
                "a departing user cannot inherit their clients".into(),
            ));
        }
        let me = Self::user(by_device)?;
        if by.role() != Role::Admin {
            let team = self.replica.team_doc();
            let within = by.role() == Role::Manager
                && team.is_in_subtree(&me, &user)
                && owners.iter().all(|o| team.is_in_subtree(&me, o));
            if !within {
                return Err(AppError::Forbidden(
                    "a manager hands over only within their own team; otherwise ask an admin"
                        .into(),
                ));
            }
        }
        if !self
            .replica
            .team_doc()
            .member(&user)
            .is_some_and(|m| m.departed)
        {
            self.replica.mark_departed(user)?;
        }
        let rows = self
            .replica
            .list(&fieldsync_core::store::read_model::ClientFilter {
                owner: Some(user.to_string()),
                ..Default::default()
            })?;
        // Dealt round-robin; one handover call (one transaction) per new owner.
        let mut handed = Vec::new();
        for (k, to) in owners.iter().enumerate() {
            let ids = rows
                .iter()
                .skip(k)
                .step_by(owners.len())
                .map(|row| row.id.parse())
                .collect::<Result<Vec<fieldsync_core::ClientId>, _>>()?;
            self.replica
                .handover(&ids, *to, Some(reason.unwrap_or("离职 departed")))?;
            handed.extend(ids.iter().map(|id| (id.to_string(), to.to_string())));
        }
        Ok(DepartOutcome {
            user: user.to_string(),
            handed,
        })
    }

    /// Held uploads (admins and managers).
    pub fn quarantined(&self, by: &Member) -> AppResult<Vec<crate::store::QuarantinedUpload>> {
        Hub::require_active(by)?;
        if !by.role().is_manager_or_admin() {
            return Err(AppError::Forbidden(
                "reviewing uploads needs a manager".into(),
            ));
        }
        self.store.quarantined()
    }

    /// Accepts (merges) or rejects (keeps, unmerged) a held upload.
    pub fn decide(
        &mut self,
        by_device: &Device,
        by: &Member,
        id: i64,
        accept: bool,
    ) -> AppResult<()> {
        Hub::require_active(by)?;
        if !by.role().is_manager_or_admin() {
            return Err(AppError::Forbidden(
                "reviewing uploads needs a manager".into(),
            ));
        }
        let (upload, body) = self
            .store
            .quarantined_body(id)?
            .ok_or_else(|| AppError::NotFound(format!("unknown upload {id}")))?;
        if upload.status != "pending" {
            return Err(AppError::Conflict(format!(
                "upload {id} was already {}",
                upload.status
            )));
        }
        if accept {
            let request = SyncRequest::decode(&body, usize::MAX)?;
            let device = self
                .store
                .devices()?
                .into_iter()
                .find(|d| d.id == upload.device)
                .ok_or_else(|| AppError::Internal(format!("device {} vanished", upload.device)))?;
            let user = Self::user(&device)?;
            // Still only the device's own actor: a reviewer accepts what that phone wrote.
            self.merge(&user, device.actor.as_deref(), &request, false)?;
        }
        self.store.decide(id, accept, &by_device.user)
    }
}

/// What a departure did.
#[derive(Clone, Debug, Serialize)]
pub struct DepartOutcome {
    /// The departed user.
    pub user: String,
    /// `(client id, new owner)` per client handed over.
    pub handed: Vec<(String, String)>,
}
