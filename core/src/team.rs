//! The team document: members and hierarchy, the pipeline, the rules, and the actor
//! registry that maps automerge actor ids to users.
//!
//! Authority (docs/domain.md, "Authority"): the registry and the members' roles are only
//! believed when they were written by a trusted actor — the team's founding actor (the
//! server, or the admin replica that created the team) or an actor the founder registered
//! to an admin. A device that writes itself into the registry, or promotes itself to
//! manager, changes nothing that the fold believes.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{AutoCommit, ReadDoc, ROOT};
use autosurgeon::{Hydrate, Reconcile};
use serde::{Deserialize, Serialize};

use crate::ids::{TeamId, UserId};
use crate::pipeline::{Pipeline, Template};
use crate::{Error, Result};

/// Document schema version written into every team document.
pub const TEAM_SCHEMA: u64 = 1;

/// A member's role in the team.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A field rep: owns their clients.
    Rep,
    /// A manager: sees their subtree, hands over clients, approves quotes.
    Manager,
    /// An admin: defines the pipeline, rules, users and devices.
    Admin,
}

impl Role {
    /// The spelling stored in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Rep => "rep",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    /// Managers and admins may hand clients over and see the whole team's state.
    pub fn is_manager_or_admin(self) -> bool {
        matches!(self, Role::Manager | Role::Admin)
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "rep" => Ok(Role::Rep),
            "manager" => Ok(Role::Manager),
            "admin" => Ok(Role::Admin),
            other => Err(Error::invalid(
                "role",
                format!("{other:?} is not a role; use rep, manager or admin"),
            )),
        }
    }
}

/// A team member as stored in the team document.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct Member {
    /// Display name.
    pub name: String,
    /// `rep`, `manager` or `admin`.
    pub role: String,
    /// The member's manager (their supervisor for escalations), if any.
    pub manager: Option<String>,
    /// Quote-approval roles this member may sign for (e.g. `finance`, `product`).
    pub approves: Vec<String>,
    /// Set when the member has left the team (离职).
    pub departed: bool,
}

impl Member {
    /// The parsed role; an unreadable role counts as the least privileged one.
    pub fn role(&self) -> Role {
        self.role.parse().unwrap_or(Role::Rep)
    }
}

/// One task of the post-sale onboarding template.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct OnboardingTemplateItem {
    /// Stable key, e.g. `kickoff`.
    pub key: String,
    /// Title shown to the rep.
    pub title: String,
}

/// Team rules: SLA warning window, lead gate, loss reasons, approvals, onboarding.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct Rules {
    /// A client turns yellow this many hours before its SLA deadline.
    pub warning_hours: u32,
    /// Profile fields a lead needs before it may leave the lead stage.
    pub required_lead_fields: Vec<String>,
    /// Loss reasons a move to a lost stage must pick from.
    pub loss_reasons: Vec<String>,
    /// A rep may discount up to this percentage without approval.
    pub discount_band_pct: f64,
    /// Roles that must each approve a quote beyond the band (in any order).
    pub approval_roles: Vec<String>,
    /// Tasks created when a client reaches a won stage.
    pub onboarding: Vec<OnboardingTemplateItem>,
}

impl Default for Rules {
    fn default() -> Self {
        let item = |key: &str, title: &str| OnboardingTemplateItem {
            key: key.into(),
            title: title.into(),
        };
        Rules {
            warning_hours: 4,
            required_lead_fields: vec![
                "company_size".into(),
                "budget_range".into(),
                "decision_maker".into(),
            ],
            loss_reasons: vec![
                "价格 price".into(),
                "竞品 competitor".into(),
                "无预算 no budget".into(),
                "无决策权 no authority".into(),
                "时机不对 timing".into(),
                "无响应 unresponsive".into(),
            ],
            discount_band_pct: 10.0,
            approval_roles: vec!["product".into(), "finance".into(), "manager".into()],
            onboarding: vec![
                item("kickoff", "启动会 kick-off call"),
                item("training", "培训 training"),
                item("welcome_pack", "欢迎礼包 welcome pack"),
            ],
        }
    }
}

/// The team document's content, as hydrated by autosurgeon.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct Team {
    /// Document schema version.
    pub schema: u64,
    /// Team id (also the document id).
    pub id: String,
    /// Team name.
    pub name: String,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Members by user id.
    pub members: BTreeMap<String, Member>,
    /// The pipeline flowchart.
    pub pipeline: Pipeline,
    /// Team rules.
    pub rules: Rules,
    /// Actor registry: automerge actor id (hex) → user id. Written by trusted actors only.
    pub actors: BTreeMap<String, String>,
}

/// The team document with its automerge history and its validated content.
#[derive(Clone)]
pub struct TeamDoc {
    doc: AutoCommit,
    team: Team,
    founder: String,
}

impl std::fmt::Debug for TeamDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamDoc").field("team", &self.team).finish()
    }
}

/// Hex actor id of the change that wrote the value `ex`.
pub(crate) fn actor_of(ex: &automerge::ObjId) -> Option<String> {
    match ex {
        automerge::ObjId::Id(_, actor, _) => Some(actor.to_hex_string()),
        automerge::ObjId::Root => None,
    }
}

impl TeamDoc {
    /// Creates a new team document written by `doc`'s actor, who becomes the founder.
    pub fn create(
        mut doc: AutoCommit,
        id: TeamId,
        name: &str,
        template: Template,
        now: i64,
    ) -> Result<Self> {
        if name.trim().is_empty() {
            return Err(Error::invalid("team name", "is empty"));
        }
        let team = Team {
            schema: TEAM_SCHEMA,
            id: id.to_string(),
            name: name.trim().to_string(),
            created_at: now,
            members: BTreeMap::new(),
            pipeline: Pipeline::from_template(template),
            rules: Rules::default(),
            actors: BTreeMap::new(),
        };
        autosurgeon::reconcile(&mut doc, &team).map_err(|e| Error::Storage(e.to_string()))?;
        let founder = doc.get_actor().to_hex_string();
        Ok(TeamDoc { doc, team, founder })
    }

    /// Wraps a loaded document; `founder` is the founding actor recorded when the
    /// replica first met this team.
    pub fn from_doc(doc: AutoCommit, founder: &str) -> Result<Self> {
        let mut this = TeamDoc {
            team: hydrate_team(&doc)?,
            doc,
            founder: founder.to_string(),
        };
        this.apply_authority();
        Ok(this)
    }

    /// The founding actor of the team (hex).
    pub fn founder(&self) -> &str {
        &self.founder
    }

    /// The validated content.
    pub fn team(&self) -> &Team {
        &self.team
    }

    /// Team id.
    pub fn id(&self) -> Result<TeamId> {
        self.team.id.parse()
    }

    /// The underlying automerge document.
    pub fn doc_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    /// The underlying automerge document.
    pub fn doc(&self) -> &AutoCommit {
        &self.doc
    }

    /// Re-reads the content after the document changed (local edit or merge).
    pub fn refresh(&mut self) -> Result<()> {
        self.team = hydrate_team(&self.doc)?;
        self.apply_authority();
        Ok(())
    }

    /// Applies an edit to the content and writes it back into the document.
    pub fn edit(&mut self, f: impl FnOnce(&mut Team) -> Result<()>) -> Result<()> {
        let mut raw = hydrate_team(&self.doc)?;
        f(&mut raw)?;
        raw.pipeline.validate()?;
        autosurgeon::reconcile(&mut self.doc, &raw).map_err(|e| Error::Storage(e.to_string()))?;
        self.refresh()
    }

    /// Whether every client folded with `before` must be re-folded with this team: the
    /// fold and the read model read the pipeline, the rules, members' roles, managers and
    /// approval roles, and the actor registry. Departures do not count (the fold does not
    /// read them), and new registry entries only matter to the clients those actors wrote
    /// ([`TeamDoc::new_actors`]).
    pub fn refold_needed(&self, before: &TeamDoc) -> bool {
        let (old, new) = (&before.team, &self.team);
        let member = |m: &Member| (m.role.clone(), m.manager.clone(), m.approves.clone());
        old.pipeline != new.pipeline
            || old.rules != new.rules
            || old.members.len() != new.members.len()
            || old
                .members
                .iter()
                .any(|(id, m)| new.members.get(id).map(member) != Some(member(m)))
            || old
                .actors
                .iter()
                .any(|(actor, user)| new.actors.get(actor) != Some(user))
    }

    /// Registry entries added since `before`.
    pub fn new_actors(&self, before: &TeamDoc) -> Vec<String> {
        self.team
            .actors
            .keys()
            .filter(|a| !before.team.actors.contains_key(*a))
            .cloned()
            .collect()
    }

    /// Looks a member up.
    pub fn member(&self, user: &UserId) -> Option<&Member> {
        self.team.members.get(&user.to_string())
    }

    /// Finds a member by user id or by exact display name.
    pub fn resolve_user(&self, id_or_name: &str) -> Result<UserId> {
        let wanted = id_or_name.trim();
        if let Some((id, _)) = self
            .team
            .members
            .iter()
            .find(|(id, _)| id.as_str() == wanted)
        {
            return id.parse();
        }
        let by_name: Vec<&String> = self
            .team
            .members
            .iter()
            .filter(|(_, m)| m.name == wanted)
            .map(|(id, _)| id)
            .collect();
        match by_name.as_slice() {
            [one] => one.parse(),
            [] => Err(Error::UnknownUser(wanted.to_string())),
            _ => Err(Error::invalid(
                "user",
                format!("{wanted:?} names several members; use the user id"),
            )),
        }
    }

    /// The role of the user an automerge actor is registered to, if it is registered.
    pub fn role_of_actor(&self, actor_hex: &str) -> Option<(UserId, Role)> {
        let user = self.team.actors.get(actor_hex)?;
        let member = self.team.members.get(user)?;
        Some((user.parse().ok()?, member.role()))
    }

    /// The user a (registered) actor acts for.
    pub fn user_of_actor(&self, actor_hex: &str) -> Option<UserId> {
        self.team.actors.get(actor_hex)?.parse().ok()
    }

    /// The supervisor a client's overdue items escalate to: the owner's manager.
    pub fn manager_of(&self, user: &UserId) -> Option<UserId> {
        self.member(user)?.manager.as_deref()?.parse().ok()
    }

    /// Whether `user` is `manager` or below them in the hierarchy.
    pub fn is_in_subtree(&self, manager: &UserId, user: &UserId) -> bool {
        let mut current = Some(*user);
        let mut seen = BTreeSet::new();
        while let Some(u) = current {
            if u == *manager {
                return true;
            }
            if !seen.insert(u) {
                return false;
            }
            current = self.manager_of(&u);
        }
        false
    }

    /// Keeps only registry entries and roles written by trusted actors.
    fn apply_authority(&mut self) {
        let trusted = self.trusted_actors();
        let doc = &self.doc;
        let trusted_value = |obj: &automerge::ObjId, key: &str| -> Option<String> {
            let all = doc.get_all(obj, key).ok()?;
            // get_all lists concurrent values in automerge's winner order; the last
            // trusted one is the one every replica picks.
            all.into_iter()
                .rev()
                .find(|(_, ex)| actor_of(ex).is_some_and(|a| trusted.contains(&a)))
                .and_then(|(v, _)| v.as_str().map(str::to_string))
        };
        if let Ok(Some((_, actors_obj))) = doc.get(ROOT, "actors") {
            let mut actors = BTreeMap::new();
            for key in doc.keys(&actors_obj) {
                if let Some(user) = trusted_value(&actors_obj, &key) {
                    actors.insert(key, user);
                }
            }
            self.team.actors = actors;
        }
        if let Ok(Some((_, members_obj))) = doc.get(ROOT, "members") {
            for (id, member) in self.team.members.iter_mut() {
                let Ok(Some((_, member_obj))) = doc.get(&members_obj, id.as_str()) else {
                    continue;
                };
                // A member whose role no trusted actor wrote has no authority at all.
                member.role = trusted_value(&member_obj, "role").unwrap_or_else(|| "rep".into());
            }
        }
    }

    /// The founder plus every actor the founder registered to an admin: the only actors
    /// whose changes to the team document a replica accepts.
    pub fn trusted_actors(&self) -> BTreeSet<String> {
        let mut trusted = BTreeSet::from([self.founder.clone()]);
        let doc = &self.doc;
        let founder_value = |obj: &automerge::ObjId, key: &str| -> Option<String> {
            doc.get_all(obj, key)
                .ok()?
                .into_iter()
                .rev()
                .find(|(_, ex)| actor_of(ex).as_deref() == Some(self.founder.as_str()))
                .and_then(|(v, _)| v.as_str().map(str::to_string))
        };
        let (Ok(Some((_, actors_obj))), Ok(Some((_, members_obj)))) =
            (doc.get(ROOT, "actors"), doc.get(ROOT, "members"))
        else {
            return trusted;
        };
        for actor in doc.keys(&actors_obj) {
            let Some(user) = founder_value(&actors_obj, &actor) else {
                continue;
            };
            let Ok(Some((_, member_obj))) = doc.get(&members_obj, user.as_str()) else {
                continue;
            };
            if founder_value(&member_obj, "role").as_deref() == Some("admin") {
                trusted.insert(actor);
            }
        }
        trusted
    }
}

fn hydrate_team(doc: &AutoCommit) -> Result<Team> {
    let team: Team = autosurgeon::hydrate(doc).map_err(|e| Error::CorruptDocument {
        doc: "team".into(),
        reason: e.to_string(),
    })?;
    if team.schema > TEAM_SCHEMA {
        return Err(Error::CorruptDocument {
            doc: team.id,
            reason: format!("team schema {} is newer than this FieldSync", team.schema),
        });
    }
    Ok(team)
}
