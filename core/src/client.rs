//! The client document: one automerge document per client.
//!
//! Layout (docs/domain.md, "Client document"): profile fields are registers in a map;
//! tags and collaborators are maps used as sets; notes, stage transitions, handovers,
//! quotes, approvals, onboarding tasks and task completions are append-only lists.
//! Nothing here deletes from a list, so a merge never loses an event. Current stage and
//! owner are not stored: [`crate::fold`] derives them.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc, ROOT};
use autosurgeon::{Hydrate, Reconcile};
use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, TeamId, UserId};
use crate::team::actor_of;
use crate::{Error, Result};

/// Document schema version written into every client document.
pub const CLIENT_SCHEMA: u64 = 1;

/// The well-known profile fields. Any other key is a free custom field.
pub const PROFILE_FIELDS: &[&str] = &[
    "name",
    "company",
    "phone",
    "email",
    "company_size",
    "budget_range",
    "decision_maker",
    "source",
    "grade",
];

/// Kind of a communication-history entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoteKind {
    /// A written note.
    Note,
    /// A phone call.
    Call,
    /// A visit.
    Visit,
}

impl NoteKind {
    /// The spelling stored in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::Note => "note",
            NoteKind::Call => "call",
            NoteKind::Visit => "visit",
        }
    }
    /// Calls and visits count as contact for the SLA; notes do not.
    pub fn is_contact(self) -> bool {
        matches!(self, NoteKind::Call | NoteKind::Visit)
    }
}

impl std::str::FromStr for NoteKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "note" => Ok(NoteKind::Note),
            "call" => Ok(NoteKind::Call),
            "visit" => Ok(NoteKind::Visit),
            other => Err(Error::invalid(
                "kind",
                format!("{other:?} is not a note kind; use note, call or visit"),
            )),
        }
    }
}

/// A note, call or visit. Append-only and permanent.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct Note {
    /// Event id.
    pub id: String,
    /// `note`, `call` or `visit`.
    pub kind: String,
    /// Text.
    pub text: String,
    /// Author (user id).
    pub by: String,
    /// Time, ms since the epoch.
    pub at: i64,
}

/// A stage move. `after` is the transition the mover's replica saw as the latest one, so
/// moves made concurrently share an `after` and the fold can flag them.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct StageTransition {
    /// Event id.
    pub id: String,
    /// Stage key the client left.
    pub from: String,
    /// Stage key the client entered.
    pub to: String,
    /// Who moved it (user id).
    pub by: String,
    /// Time, ms since the epoch.
    pub at: i64,
    /// Why (required for exceptions).
    pub reason: Option<String>,
    /// Set when the move is along no edge of the flowchart (green channel).
    pub skipped: bool,
    /// The loss reason, for moves to a lost stage.
    pub loss_reason: Option<String>,
    /// The id of the transition this move follows, if any.
    pub after: Option<String>,
}

/// A change of owner (离职继承 or reassignment). Believed only when written by an actor
/// registered to a manager or admin.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct Handover {
    /// Event id.
    pub id: String,
    /// Owner before, as the writer saw it.
    pub from: String,
    /// New owner.
    pub to: String,
    /// Who handed over (user id, as claimed; the fold checks the writing actor).
    pub by: String,
    /// Time, ms since the epoch.
    pub at: i64,
    /// Why (e.g. 离职).
    pub reason: Option<String>,
    /// The handover this one follows, if any.
    pub after: Option<String>,
}

/// A quote that may need parallel approval.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct Quote {
    /// Quote id.
    pub id: String,
    /// Amount in cents.
    pub amount_cents: i64,
    /// Discount in percent.
    pub discount_pct: f64,
    /// Requesting rep.
    pub by: String,
    /// Time.
    pub at: i64,
    /// Approval roles that must each approve; empty when the discount is within the band.
    pub required_roles: Vec<String>,
}

/// One approver's decision on a quote. Each is its own entry so offline decisions merge.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct Approval {
    /// Event id.
    pub id: String,
    /// The quote decided on.
    pub quote: String,
    /// The approval role signed for.
    pub role: String,
    /// `approved` or `rejected`.
    pub decision: String,
    /// Approver (user id).
    pub by: String,
    /// Time.
    pub at: i64,
    /// Optional comment.
    pub comment: Option<String>,
}

/// An onboarding task created when the client reached a won stage.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct OnboardingTask {
    /// Template key; concurrent creations of the same key are one task.
    pub key: String,
    /// Title.
    pub title: String,
    /// Creation time.
    pub at: i64,
}

/// A completion of an onboarding task.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct TaskDone {
    /// Task key.
    pub key: String,
    /// Who completed it.
    pub by: String,
    /// When.
    pub at: i64,
}

/// The whole client document, as hydrated by autosurgeon.
#[derive(Clone, Debug, PartialEq, Hydrate, Reconcile, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Schema version.
    pub schema: u64,
    /// Client id.
    pub id: String,
    /// Team id.
    pub team: String,
    /// Creation time.
    pub created_at: i64,
    /// Creator (user id).
    pub created_by: String,
    /// Owner at creation; handovers change it from there.
    pub initial_owner: String,
    /// Stage key at creation.
    pub initial_stage: String,
    /// Profile fields (registers).
    pub profile: BTreeMap<String, String>,
    /// Tags (a set).
    pub tags: BTreeMap<String, bool>,
    /// Collaborators (协作者, a set of user ids).
    pub collaborators: BTreeMap<String, bool>,
    /// Supervisor (监督者), if set.
    pub supervisor: Option<String>,
    /// Communication history.
    pub notes: Vec<Note>,
    /// Stage history.
    pub transitions: Vec<StageTransition>,
    /// Owner changes.
    pub handovers: Vec<Handover>,
    /// Quotes.
    pub quotes: Vec<Quote>,
    /// Approval decisions.
    pub approvals: Vec<Approval>,
    /// Onboarding tasks.
    pub onboarding: Vec<OnboardingTask>,
    /// Onboarding completions.
    pub tasks_done: Vec<TaskDone>,
}

/// The event lists of a client document; each element is appended, never edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventList {
    /// Notes, calls and visits.
    Notes,
    /// Stage transitions.
    Transitions,
    /// Handovers.
    Handovers,
    /// Quotes.
    Quotes,
    /// Approval decisions.
    Approvals,
    /// Onboarding tasks.
    Onboarding,
    /// Onboarding completions.
    TasksDone,
}

/// Root keys written once, by the change that creates a client document.
const SEALED_KEYS: &[&str] = &[
    "schema",
    "id",
    "team",
    "created_at",
    "created_by",
    "initial_owner",
    "initial_stage",
];

fn refused(what: &str) -> Error {
    Error::CorruptDocument {
        doc: "client".into(),
        reason: format!("{what}; events are append-only and immutable"),
    }
}

impl EventList {
    /// Every event list.
    pub const ALL: [EventList; 7] = [
        EventList::Notes,
        EventList::Transitions,
        EventList::Handovers,
        EventList::Quotes,
        EventList::Approvals,
        EventList::Onboarding,
        EventList::TasksDone,
    ];

    fn key(self) -> &'static str {
        match self {
            EventList::Notes => "notes",
            EventList::Transitions => "transitions",
            EventList::Handovers => "handovers",
            EventList::Quotes => "quotes",
            EventList::Approvals => "approvals",
            EventList::Onboarding => "onboarding",
            EventList::TasksDone => "tasks_done",
        }
    }
}

/// A concurrent edit of one profile field: every value that survived, the winner first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldConflict {
    /// Profile field.
    pub field: String,
    /// The value every replica shows.
    pub value: String,
    /// The concurrent values that lost.
    pub other_values: Vec<String>,
}

/// A client document: the automerge history plus typed access.
pub struct ClientDoc {
    doc: AutoCommit,
}

fn am_err(e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("automerge: {e}"))
}

impl ClientDoc {
    /// Starts a new client document (written with `doc`'s actor).
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        mut doc: AutoCommit,
        id: ClientId,
        team: TeamId,
        by: UserId,
        owner: UserId,
        initial_stage: &str,
        profile: BTreeMap<String, String>,
        tags: &[String],
        now: i64,
    ) -> Result<Self> {
        let record = ClientRecord {
            schema: CLIENT_SCHEMA,
            id: id.to_string(),
            team: team.to_string(),
            created_at: now,
            created_by: by.to_string(),
            initial_owner: owner.to_string(),
            initial_stage: initial_stage.to_string(),
            profile,
            tags: tags.iter().map(|t| (t.clone(), true)).collect(),
            collaborators: BTreeMap::new(),
            supervisor: None,
            notes: vec![],
            transitions: vec![],
            handovers: vec![],
            quotes: vec![],
            approvals: vec![],
            onboarding: vec![],
            tasks_done: vec![],
        };
        autosurgeon::reconcile(&mut doc, &record).map_err(am_err)?;
        Ok(ClientDoc { doc })
    }

    /// Wraps a loaded document, checking that it is a client of `team`.
    /// Only the identity is read here; the whole document is hydrated (and its schema
    /// checked) by [`ClientDoc::record`], which every fold calls.
    pub fn from_doc(doc: AutoCommit, expected: Option<(ClientId, TeamId)>) -> Result<Self> {
        let this = ClientDoc { doc };
        let text = |key: &str| -> Option<String> {
            match this.doc.get(ROOT, key) {
                Ok(Some((automerge::Value::Scalar(v), _))) => v.as_str().map(str::to_string),
                _ => None,
            }
        };
        let (Some(doc_id), Some(doc_team)) = (text("id"), text("team")) else {
            return Err(Error::CorruptDocument {
                doc: expected
                    .map(|(id, _)| id.to_string())
                    .unwrap_or_else(|| "client".into()),
                reason: "not a client document (no id or team)".into(),
            });
        };
        if let Some((id, team)) = expected {
            if doc_id != id.to_string() || doc_team != team.to_string() {
                return Err(Error::CorruptDocument {
                    doc: id.to_string(),
                    reason: format!("document says it is client {doc_id} of team {doc_team}"),
                });
            }
        }
        Ok(this)
    }

    /// The automerge document.
    pub fn doc(&self) -> &AutoCommit {
        &self.doc
    }

    /// The automerge document.
    pub fn doc_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    /// Consumes the wrapper.
    pub fn into_doc(self) -> AutoCommit {
        self.doc
    }

    /// Hydrates the whole document.
    pub fn record(&self) -> Result<ClientRecord> {
        let hydrated = || {
            autosurgeon::hydrate(&self.doc).map_err(|e| Error::CorruptDocument {
                doc: "client".into(),
                reason: e.to_string(),
            })
        };
        // One pass over the document (automerge's own hydrate), read with serde: about
        // three times faster than autosurgeon's key-by-key reads. A document that does not
        // read this way is read by autosurgeon, whose error names what is wrong.
        let record: ClientRecord = match self.read_in_one_pass() {
            Some(record) => {
                #[cfg(debug_assertions)]
                debug_assert_eq!(Some(&record), hydrated().ok().as_ref());
                record
            }
            None => hydrated()?,
        };
        if record.schema > CLIENT_SCHEMA {
            return Err(Error::CorruptDocument {
                doc: record.id,
                reason: format!(
                    "client schema {} is newer than this FieldSync",
                    record.schema
                ),
            });
        }
        Ok(record)
    }

    /// The record read in one pass (see [`ClientDoc::record`]), or `None`.
    fn read_in_one_pass(&self) -> Option<ClientRecord> {
        let value = self.doc.hydrate(ROOT, None).ok()?;
        serde_json::from_value(to_json(&value)?).ok()
    }

    fn map_obj(&mut self, key: &str) -> Result<automerge::ObjId> {
        match self.doc.get(ROOT, key).map_err(am_err)? {
            Some((automerge::Value::Object(ObjType::Map), id)) => Ok(id),
            _ => self.doc.put_object(ROOT, key, ObjType::Map).map_err(am_err),
        }
    }

    fn list_obj(&self, list: EventList) -> Result<automerge::ObjId> {
        match self.doc.get(ROOT, list.key()).map_err(am_err)? {
            Some((automerge::Value::Object(ObjType::List), id)) => Ok(id),
            _ => Err(Error::CorruptDocument {
                doc: "client".into(),
                reason: format!("{} is not a list", list.key()),
            }),
        }
    }

    /// Sets (or, with `None`, clears) a profile field.
    pub fn set_field(&mut self, field: &str, value: Option<&str>) -> Result<()> {
        let profile = self.map_obj("profile")?;
        match value {
            Some(v) => self.doc.put(&profile, field, v).map_err(am_err),
            None => self.doc.delete(&profile, field).map_err(am_err),
        }
    }

    /// Adds or removes a tag.
    pub fn set_tag(&mut self, tag: &str, present: bool) -> Result<()> {
        let tags = self.map_obj("tags")?;
        if present {
            self.doc.put(&tags, tag, true).map_err(am_err)
        } else {
            self.doc.delete(&tags, tag).map_err(am_err)
        }
    }

    /// Adds or removes a collaborator.
    pub fn set_collaborator(&mut self, user: &UserId, present: bool) -> Result<()> {
        let map = self.map_obj("collaborators")?;
        if present {
            self.doc.put(&map, user.to_string(), true).map_err(am_err)
        } else {
            self.doc.delete(&map, user.to_string()).map_err(am_err)
        }
    }

    /// Sets or clears the supervisor.
    pub fn set_supervisor(&mut self, user: Option<&UserId>) -> Result<()> {
        match user {
            Some(u) => self
                .doc
                .put(ROOT, "supervisor", u.to_string())
                .map_err(am_err),
            None => self
                .doc
                .put(ROOT, "supervisor", automerge::ScalarValue::Null)
                .map_err(am_err),
        }
    }

    /// Appends an event to one of the append-only lists. This is the only way the lists
    /// grow; this layer does not check authority (the replica and the fold do).
    pub fn append<E: Reconcile>(&mut self, list: EventList, event: &E) -> Result<()> {
        let obj = self.list_obj(list)?;
        let len = self.doc.length(&obj);
        autosurgeon::reconcile_insert(&mut self.doc, obj, len, event).map_err(am_err)
    }

    /// The hex actor ids that wrote each element of an event list, in list order.
    pub fn authors(&self, list: EventList) -> Result<Vec<Option<String>>> {
        let obj = self.list_obj(list)?;
        let len = self.doc.length(&obj);
        (0..len)
            .map(|i| {
                let entry = self.doc.get(&obj, i).map_err(am_err)?;
                Ok(entry.and_then(|(_, ex)| actor_of(&ex)))
            })
            .collect()
    }

    /// Checks changes received from elsewhere (a bundle, later a sync peer) against the
    /// document's invariants, on the document they were merged into. Refused:
    ///
    /// - a change that writes into an existing event (rewriting a manager's handover or an
    ///   approver's decision) — an event's fields are written only by the change that
    ///   appends it;
    /// - a deletion or overwrite of an element of an event list (append-only);
    /// - a write to the identity keys (`id`, `team`, `initial_owner`, …) or the event-list
    ///   objects themselves outside the document's creating change, and a second
    ///   creating change.
    ///
    /// `changes` are every change the document gained; `had_history`: it had changes
    /// before (so any received change without dependencies would be a second root).
    ///
    /// Local edits go through this module's methods and never do any of these.
    pub fn check_received(
        &mut self,
        changes: &[automerge::Change],
        had_history: bool,
    ) -> Result<()> {
        use automerge::legacy::{Key, ObjectId};
        use std::collections::HashSet;

        let opid = |counter: u64, actor: &automerge::ActorId| {
            format!("{counter}@{}", actor.to_hex_string())
        };
        let mut lists = HashSet::new();
        let mut events = HashSet::new();
        for list in EventList::ALL {
            let obj = self.list_obj(list)?;
            if let automerge::ObjId::Id(c, a, _) = &obj {
                lists.insert(opid(*c, a));
            }
            for item in self.doc.list_range(&obj, ..) {
                if let automerge::ObjId::Id(c, a, _) = item.id() {
                    events.insert(opid(c, &a));
                }
            }
        }
        let creating = |c: &automerge::ExpandedChange| c.deps.is_empty() && c.seq == 1;
        let roots =
            usize::from(had_history) + changes.iter().filter(|c| c.deps().is_empty()).count();
        if roots > 1 {
            return Err(refused("a second change creates the document"));
        }
        for change in changes {
            let change = change.decode();
            let start = change.start_op.get();
            let end = start + change.operations.len() as u64;
            let own =
                |o: &automerge::legacy::OpId| o.1 == change.actor_id && (start..end).contains(&o.0);
            for op in &change.operations {
                match &op.obj {
                    ObjectId::Root => {
                        let Key::Map(key) = &op.key else { continue };
                        let sealed = SEALED_KEYS.contains(&key.as_str())
                            || EventList::ALL.iter().any(|l| l.key() == key.as_str());
                        if sealed && !creating(&change) {
                            return Err(refused(&format!("a change rewrites {key:?}")));
                        }
                    }
                    ObjectId::Id(o) if own(o) => {}
                    ObjectId::Id(o) => {
                        let id = opid(o.0, &o.1);
                        if events.contains(&id) {
                            return Err(refused("a change rewrites an existing event"));
                        }
                        if lists.contains(&id)
                            && (!op.insert
                                || matches!(op.action, automerge::legacy::OpType::Delete))
                        {
                            return Err(refused("a change deletes or replaces an event"));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Profile fields edited concurrently, with the values that lost.
    pub fn conflicts(&self) -> Result<Vec<FieldConflict>> {
        let Some((_, profile)) = self.doc.get(ROOT, "profile").map_err(am_err)? else {
            return Ok(vec![]);
        };
        // One pass over the profile finds the conflicted fields; only those are read again.
        let automerge::hydrate::Value::Map(fields) =
            self.doc.hydrate(&profile, None).map_err(am_err)?
        else {
            return Ok(vec![]);
        };
        let mut conflicted: Vec<String> = fields
            .iter()
            .filter(|(_, v)| v.conflict)
            .map(|(k, _)| k.clone())
            .collect();
        conflicted.sort();
        let mut out = Vec::new();
        for field in conflicted {
            let values = self.doc.get_all(&profile, field.as_str()).map_err(am_err)?;
            if values.len() < 2 {
                continue;
            }
            let winner = self.doc.get(&profile, field.as_str()).map_err(am_err)?;
            let winner_id = winner.as_ref().map(|(_, ex)| ex.clone());
            let value = winner
                .and_then(|(v, _)| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let other_values = values
                .iter()
                .filter(|(_, ex)| Some(ex) != winner_id.as_ref())
                .map(|(v, _)| v.as_str().unwrap_or_default().to_string())
                .collect();
            out.push(FieldConflict {
                field,
                value,
                other_values,
            });
        }
        Ok(out)
    }
}

/// A hydrated automerge value as JSON, for serde: maps, lists, text and the scalars the
/// schema uses; `None` for any other scalar (bytes, counters...).
fn to_json(value: &automerge::hydrate::Value) -> Option<serde_json::Value> {
    use automerge::hydrate::Value;
    use automerge::ScalarValue;
    use serde_json::Value as Json;
    Some(match value {
        Value::Map(map) => Json::Object(
            map.iter()
                .map(|(k, v)| Some((k.clone(), to_json(&v.value)?)))
                .collect::<Option<_>>()?,
        ),
        Value::List(list) => Json::Array(
            list.iter()
                .map(|v| to_json(&v.value))
                .collect::<Option<_>>()?,
        ),
        Value::Text(text) => Json::String(text.to_string()),
        Value::Scalar(scalar) => match scalar {
            ScalarValue::Str(s) => Json::String(s.to_string()),
            ScalarValue::Int(i) => Json::from(*i),
            ScalarValue::Uint(u) => Json::from(*u),
            ScalarValue::F64(f) => Json::from(*f),
            ScalarValue::Boolean(b) => Json::Bool(*b),
            ScalarValue::Null => Json::Null,
            _ => return None,
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pipeline::Template;
    use crate::store::documents;
    use crate::team::Role;
    use crate::{ManualClock, MoveOptions, NewClient, Replica};

    #[test]
    fn a_client_document_with_every_kind_of_event_is_read_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_780_000_000_000));
        let mut r = Replica::create(
            &dir.path().join("r.db"),
            "华南销售部",
            "王总",
            Template::SevenStage,
            clock.clone(),
        )
        .unwrap();
        let rep = r.add_user("张三", Role::Rep, None, vec![]).unwrap();
        let mut c = NewClient::default();
        for (k, v) in [
            ("name", "李四"),
            ("company", "深圳华强科技有限公司"),
            ("company_size", "200"),
            ("budget_range", "50-100万"),
            ("decision_maker", "李总"),
        ] {
            c.profile.insert(k.into(), v.into());
        }
        let id = r.create_client(c).unwrap();
        r.add_note(&id, NoteKind::Call, "首次电话").unwrap();
        r.tag_client(&id, &["重点".into()], &[]).unwrap();
        r.set_collaborator(&id, rep, true).unwrap();
        r.set_supervisor(&id, Some(rep)).unwrap();
        for stage in ["screening", "first_contact", "needs_analysis", "proposal"] {
            r.move_stage(&id, stage, MoveOptions::default()).unwrap();
        }
        let (quote, _) = r.request_quote(&id, 5_000_000, 25.0).unwrap();
        r.decide_quote(&id, &quote, "manager", true, Some("同意"))
            .unwrap();
        r.handover(&[id], rep, Some("调岗")).unwrap();
        let doc = documents::load(r.store().conn(), &id.to_string())
            .unwrap()
            .unwrap();
        let doc = ClientDoc::from_doc(doc, None).unwrap();
        let fast = doc.read_in_one_pass().expect("read in one pass");
        let slow: ClientRecord = autosurgeon::hydrate(&doc.doc).unwrap();
        assert_eq!(fast, slow);
        assert!(!fast.notes.is_empty() && !fast.handovers.is_empty() && !fast.approvals.is_empty());
    }
}
