//! Team administration on a replica: users, departures, devices, visibility.

use super::*;
use crate::bundle::BundleWriter;
use crate::store::read_model::ClientRows;

impl Replica {
    // ----- team administration -------------------------------------------------------

    pub(super) fn edit_team(
        &mut self,
        message: &str,
        f: impl FnOnce(&mut Team) -> Result<()>,
    ) -> Result<()> {
        let now = self.now();
        let before = self.team.doc_mut().get_heads();
        let mut staged = TeamDoc::from_doc(
            self.team.doc().clone().with_actor(self.actor.clone()),
            self.team.founder(),
        )?;
        staged.edit(f)?;
        commit(staged.doc_mut(), message, now);
        let doc_id = team_doc_id(staged.team());
        let ids = clients_to_refold(self.store.conn(), &self.team, &staged)?;
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
        Ok(self.provision(user, false)?.bundle)
    }

    /// Like [`Replica::provision_device`]; for a sync server (`with_cursor`) the bundle also
    /// carries the change sequence it is current up to. The heads of every document in it
    /// are returned too (what the new device has).
    pub fn provision(&mut self, user: UserId, with_cursor: bool) -> Result<Provisioned> {
        let (grant, bundle) = self.provision_into(user, with_cursor, Vec::new())?;
        Ok(Provisioned {
            bundle: bundle.finish()?,
            actor: grant.actor,
            heads: grant.heads,
        })
    }

    /// Like [`Replica::provision`], writing the bundle into `out` as it is read from the
    /// store (a sync server streams it to the device). The bundle is returned unfinished:
    /// the caller records the device, then calls [`BundleWriter::finish`], which writes
    /// the checksum; a bundle dropped before that is refused by its reader.
    pub fn provision_into<W: std::io::Write>(
        &mut self,
        user: UserId,
        with_cursor: bool,
        out: W,
    ) -> Result<(DeviceGrant, BundleWriter<W>)> {
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
        let cursor = if with_cursor {
            Some(documents::current_seq(self.store.conn())?)
        } else {
            None
        };
        let mut bundle = BundleWriter::new(
            &BundleHeader {
                kind: BundleKind::Changes,
                team: self.team().id.clone(),
                founder: self.team.founder().to_string(),
                from_user: self.me.to_string(),
                created_at: self.now(),
                provision: Some(Provision {
                    user: user.to_string(),
                    actor: actor.clone(),
                    cursor,
                }),
            },
            out,
        )?;
        let mut heads = Vec::with_capacity(visible.len() + 1);
        let team_key = team_doc_id(self.team());
        let mut team_doc = self.team.doc().clone();
        bundle.entry(DocKind::Team, &team_key, &team_doc.save(), None)?;
        heads.push((team_key, team_doc.get_heads()));
        for id in visible {
            let Some((data, summary)) = self.summarize(&id)? else {
                continue;
            };
            bundle.entry(DocKind::Client, &id, &data, Some(&summary))?;
            heads.push((id, summary.heads));
        }
        Ok((DeviceGrant { actor, heads }, bundle))
    }

    /// A client document's stored bytes and its [`DocSummary`], read without loading the
    /// document; one stored before schema 4 (no heads) is loaded and folded instead.
    fn summarize(&self, id: &str) -> Result<Option<(Vec<u8>, DocSummary)>> {
        let conn = self.store.conn();
        let Some(stored) = documents::stored(conn, id)? else {
            return Ok(None);
        };
        let (heads, rows) = match (stored.heads, read_model::read(conn, id)?) {
            (Some(heads), Some(rows)) => (heads, rows),
            _ => {
                let Some(doc) = documents::load(conn, id)? else {
                    return Ok(None);
                };
                let mut client = ClientDoc::from_doc(doc, None)?;
                let view = fold(&client, &self.team, self.now())?;
                let heads = client.doc_mut().get_heads();
                (heads, ClientRows::of(&view, &self.team().pipeline))
            }
        };
        let summary = DocSummary {
            heads,
            actors: documents::actors(conn, id)?,
            rows,
        };
        Ok(Some((stored.bytes, summary)))
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
}

/// A device registered by [`Replica::provision_into`]: its actor, and the heads of every
/// document its bundle carries.
#[derive(Debug)]
pub struct DeviceGrant {
    /// The automerge actor (hex) registered for the device.
    pub actor: String,
    /// `(document id, heads)` of every document in the bundle.
    pub heads: Vec<(String, Vec<ChangeHash>)>,
}

/// A provisioned device: its bundle, its actor, and the heads of every document it gets.
#[derive(Debug)]
pub struct Provisioned {
    /// The provisioning bundle.
    pub bundle: Vec<u8>,
    /// The automerge actor (hex) registered for the device.
    pub actor: String,
    /// `(document id, heads)` of every document in the bundle.
    pub heads: Vec<(String, Vec<ChangeHash>)>,
}
