//! The deterministic fold: from a client document's event lists to its current state.
//!
//! Every replica runs the same fold over the same events and so shows the same stage and
//! owner. The rules (docs/domain.md, "Merge rules"):
//!
//! - Each stage move and each handover names the event it follows (`after`). Events that
//!   follow the same event were made concurrently: they are all kept and flagged.
//! - The current value comes from the branch tip with the latest `(at, id)`; the path from
//!   the root to that tip is the effective history used by reports.
//! - A handover counts only if the automerge actor that wrote it is registered to a
//!   manager or admin in the team document. Others are kept in history but ignored.
//! - The owner is the initial owner until a counted handover says otherwise, so a client
//!   always has exactly one owner.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::client::{
    Approval, ClientDoc, ClientRecord, EventList, FieldConflict, Handover, Note, NoteKind, Quote,
    StageTransition,
};
use crate::clock::{Millis, HOUR_MS};
use crate::team::{Role, TeamDoc};
use crate::Result;

/// SLA status colour of a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlaStatus {
    /// On track (or no SLA applies).
    Green,
    /// Due within the warning window.
    Yellow,
    /// Overdue: flagged to the owner and escalated to the supervisor.
    Red,
}

impl SlaStatus {
    /// Colour of a client whose SLA falls due at `due_at` (None: none pending).
    pub fn at(due_at: Option<Millis>, now: Millis, warning_hours: u32) -> Self {
        match due_at {
            None => SlaStatus::Green,
            Some(due) if now >= due => SlaStatus::Red,
            Some(due) if now >= due - warning_hours as Millis * HOUR_MS => SlaStatus::Yellow,
            Some(_) => SlaStatus::Green,
        }
    }
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SlaStatus::Green => "green",
            SlaStatus::Yellow => "yellow",
            SlaStatus::Red => "red",
        }
    }
}

/// A stage transition with what the fold concluded about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransitionView {
    /// The stored event.
    #[serde(flatten)]
    pub event: StageTransition,
    /// On the effective path (counted by reports).
    pub effective: bool,
    /// Made concurrently with another move: shown for review.
    pub concurrent: bool,
}

/// A handover with what the fold concluded about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandoverView {
    /// The stored event.
    #[serde(flatten)]
    pub event: Handover,
    /// Written by a manager or admin, so it counts.
    pub authorized: bool,
    /// On the effective path of ownership.
    pub effective: bool,
    /// Made concurrently with another handover: flagged.
    pub concurrent: bool,
}

/// Status of a quote's approval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "status")]
pub enum QuoteStatus {
    /// The discount is within the band: no approval needed.
    WithinBand,
    /// Waiting for these roles.
    Pending {
        /// Roles that have not approved yet.
        waiting_for: Vec<String>,
    },
    /// Every required role approved.
    Approved,
    /// At least one required role rejected.
    Rejected {
        /// Roles that rejected.
        rejected_by: Vec<String>,
    },
}

/// A quote with its approvals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuoteView {
    /// The stored quote.
    #[serde(flatten)]
    pub quote: Quote,
    /// Derived status.
    pub approval: QuoteStatus,
    /// Decisions that count (by an approver holding the role).
    pub decisions: Vec<Approval>,
}

/// An onboarding task and whether it is done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    /// Task key.
    pub key: String,
    /// Title.
    pub title: String,
    /// Completion time, if done.
    pub done_at: Option<Millis>,
    /// Who completed it.
    pub done_by: Option<String>,
}

/// One stay in a stage along the effective path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageVisit {
    /// Stage key.
    pub stage: String,
    /// Entered at.
    pub entered_at: Millis,
    /// Left at (None: still there).
    pub left_at: Option<Millis>,
}

/// The derived state of one client: what lists, detail screens and the read model show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientView {
    /// Client id.
    pub id: String,
    /// Profile fields.
    pub profile: BTreeMap<String, String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Current owner (主责人), derived.
    pub owner: String,
    /// Collaborators (协作者).
    pub collaborators: Vec<String>,
    /// Supervisor (监督者): the explicit one, else the owner's manager.
    pub supervisor: Option<String>,
    /// Current stage key, derived.
    pub stage: String,
    /// Current stage display name.
    pub stage_name: String,
    /// When the client entered the current stage.
    pub stage_entered_at: Millis,
    /// SLA deadline in the current stage, unless met or none.
    pub due_at: Option<Millis>,
    /// SLA colour at the time of the fold.
    pub sla: SlaStatus,
    /// Last call or visit.
    pub last_contact_at: Option<Millis>,
    /// Created at.
    pub created_at: Millis,
    /// Created by.
    pub created_by: String,
    /// Communication history, oldest first.
    pub notes: Vec<Note>,
    /// Stage history, oldest first.
    pub transitions: Vec<TransitionView>,
    /// Owner history, oldest first.
    pub handovers: Vec<HandoverView>,
    /// Quotes and approvals.
    pub quotes: Vec<QuoteView>,
    /// Onboarding tasks.
    pub onboarding: Vec<TaskView>,
    /// Stays along the effective path (for reports).
    pub visits: Vec<StageVisit>,
    /// Id of the transition that put the client in its current stage (the effective tip);
    /// a new move follows it.
    pub current_transition: Option<String>,
    /// Id of the handover that made the current owner (the effective tip of ownership).
    pub current_handover: Option<String>,
    /// Concurrent stage moves are waiting for review.
    pub concurrent_moves: bool,
    /// Concurrent handovers were made.
    pub concurrent_handovers: bool,
    /// Profile fields edited concurrently.
    pub conflicts: Vec<FieldConflict>,
}

impl ClientView {
    /// Display name (falls back to the company).
    pub fn name(&self) -> &str {
        self.profile
            .get("name")
            .or_else(|| self.profile.get("company"))
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Result of folding a chain of events that each name the event they follow.
struct Chain {
    /// Indices on the effective path, oldest first.
    path: Vec<usize>,
    /// Indices of events made concurrently with a sibling.
    concurrent: BTreeSet<usize>,
}

/// Folds events linked by `after` into the effective path: the tip with the latest
/// `(at, id)` wins; events sharing a parent are concurrent.
fn fold_chain(events: &[(&str, Option<&str>, Millis)]) -> Chain {
    let index: HashMap<&str, usize> = events.iter().enumerate().map(|(i, e)| (e.0, i)).collect();
    let parent = |i: usize| events[i].1.and_then(|p| index.get(p).copied());
    let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
    for i in 0..events.len() {
        children.entry(parent(i)).or_default().push(i);
    }
    let concurrent = children
        .values()
        .filter(|c| c.len() > 1)
        .flatten()
        .copied()
        .collect();
    let tip = (0..events.len())
        .filter(|i| !children.contains_key(&Some(*i)))
        .max_by(|a, b| (events[*a].2, events[*a].0).cmp(&(events[*b].2, events[*b].0)));
    let mut path = Vec::new();
    let mut cursor = tip;
    while let Some(i) = cursor {
        if path.contains(&i) {
            break; // a forged cycle; stop rather than loop
        }
        path.push(i);
        cursor = parent(i);
    }
    path.reverse();
    Chain { path, concurrent }
}

/// Whether an approval decision was made by someone entitled to sign for its role.
fn may_approve(team: &TeamDoc, author: Option<&str>, role: &str) -> bool {
    let Some((user, user_role)) = author.and_then(|a| team.role_of_actor(a)) else {
        return false;
    };
    let holds = team
        .member(&user)
        .is_some_and(|m| m.approves.iter().any(|r| r == role));
    holds || user_role == Role::Admin || (role == "manager" && user_role == Role::Manager)
}

/// Derives a client's state.
pub fn fold(client: &ClientDoc, team: &TeamDoc, now: Millis) -> Result<ClientView> {
    fold_record(client.record()?, client, team, now)
}

/// [`fold`] of a record already read from `client` (one hydration instead of two).
pub fn fold_record(
    mut record: ClientRecord,
    client: &ClientDoc,
    team: &TeamDoc,
    now: Millis,
) -> Result<ClientView> {
    let pipeline = &team.team().pipeline;
    let rules = &team.team().rules;

    // Stage history.
    let chain = fold_chain(
        &record
            .transitions
            .iter()
            .map(|t| (t.id.as_str(), t.after.as_deref(), t.at))
            .collect::<Vec<_>>(),
    );
    let effective: BTreeSet<usize> = chain.path.iter().copied().collect();
    let current_transition = chain.path.last().map(|&i| record.transitions[i].id.clone());
    let mut visits = vec![StageVisit {
        stage: record.initial_stage.clone(),
        entered_at: record.created_at,
        left_at: None,
    }];
    for &i in &chain.path {
        let t = &record.transitions[i];
        if let Some(last) = visits.last_mut() {
            last.left_at = Some(t.at);
        }
        visits.push(StageVisit {
            stage: t.to.clone(),
            entered_at: t.at,
            left_at: None,
        });
    }
    let current = visits.last().cloned().unwrap_or(StageVisit {
        stage: record.initial_stage.clone(),
        entered_at: record.created_at,
        left_at: None,
    });
    let mut transitions: Vec<TransitionView> = record
        .transitions
        .iter()
        .enumerate()
        .map(|(i, t)| TransitionView {
            event: t.clone(),
            effective: effective.contains(&i),
            concurrent: chain.concurrent.contains(&i),
        })
        .collect();
    transitions.sort_by(|a, b| (a.event.at, &a.event.id).cmp(&(b.event.at, &b.event.id)));

    // Ownership: only handovers written by managers or admins count.
    let authors = client.authors(EventList::Handovers)?;
    let authorized: Vec<bool> = authors
        .iter()
        .map(|a| {
            a.as_deref()
                .and_then(|a| team.role_of_actor(a))
                .is_some_and(|(_, role)| role.is_manager_or_admin())
        })
        .collect();
    let counted: Vec<usize> = (0..record.handovers.len())
        .filter(|i| authorized.get(*i).copied().unwrap_or(false))
        .collect();
    let owner_chain = fold_chain(
        &counted
            .iter()
            .map(|&i| {
                let h = &record.handovers[i];
                (h.id.as_str(), h.after.as_deref(), h.at)
            })
            .collect::<Vec<_>>(),
    );
    let owner = owner_chain
        .path
        .last()
        .map(|&k| record.handovers[counted[k]].to.clone())
        .unwrap_or_else(|| record.initial_owner.clone());
    let current_handover = owner_chain
        .path
        .last()
        .map(|&k| record.handovers[counted[k]].id.clone());
    let owner_effective: BTreeSet<usize> = owner_chain.path.iter().map(|&k| counted[k]).collect();
    let owner_concurrent: BTreeSet<usize> =
        owner_chain.concurrent.iter().map(|&k| counted[k]).collect();
    let mut handovers: Vec<HandoverView> = record
        .handovers
        .iter()
        .enumerate()
        .map(|(i, h)| HandoverView {
            event: h.clone(),
            authorized: authorized.get(i).copied().unwrap_or(false),
            effective: owner_effective.contains(&i),
            concurrent: owner_concurrent.contains(&i),
        })
        .collect();
    handovers.sort_by(|a, b| (a.event.at, &a.event.id).cmp(&(b.event.at, &b.event.id)));

    // Communication history and the SLA: a call or visit in the stage meets it.
    record
        .notes
        .sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    let is_contact = |n: &Note| n.kind.parse::<NoteKind>().is_ok_and(NoteKind::is_contact);
    let last_contact_at = record
        .notes
        .iter()
        .filter(|n| is_contact(n))
        .map(|n| n.at)
        .max();
    let stage = pipeline.find(&current.stage);
    let contacted_in_stage = last_contact_at.is_some_and(|at| at >= current.entered_at);
    let due_at = stage
        .and_then(|s| s.sla_hours)
        .filter(|_| !contacted_in_stage)
        .map(|h| current.entered_at + h as Millis * HOUR_MS);

    // Quotes: each required role's latest entitled decision counts.
    let approval_authors = client.authors(EventList::Approvals)?;
    let quotes = record
        .quotes
        .iter()
        .map(|q| {
            let mut decisions: Vec<Approval> = record
                .approvals
                .iter()
                .zip(approval_authors.iter())
                .filter(|(a, author)| {
                    a.quote == q.id && may_approve(team, author.as_deref(), &a.role)
                })
                .map(|(a, _)| a.clone())
                .collect();
            decisions.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
            let latest = |role: &str| decisions.iter().rev().find(|d| d.role == role);
            let approval = if q.required_roles.is_empty() {
                QuoteStatus::WithinBand
            } else {
                let rejected_by: Vec<String> = q
                    .required_roles
                    .iter()
                    .filter(|r| latest(r).is_some_and(|d| d.decision == "rejected"))
                    .cloned()
                    .collect();
                let waiting_for: Vec<String> = q
                    .required_roles
                    .iter()
                    .filter(|r| latest(r).is_none())
                    .cloned()
                    .collect();
                if !rejected_by.is_empty() {
                    QuoteStatus::Rejected { rejected_by }
                } else if !waiting_for.is_empty() {
                    QuoteStatus::Pending { waiting_for }
                } else {
                    QuoteStatus::Approved
                }
            };
            QuoteView {
                quote: q.clone(),
                approval,
                decisions,
            }
        })
        .collect();

    // Onboarding: tasks by key (concurrent creations of one key are one task).
    let mut onboarding: Vec<TaskView> = Vec::new();
    for task in &record.onboarding {
        if onboarding.iter().all(|t| t.key != task.key) {
            let done = record
                .tasks_done
                .iter()
                .filter(|d| d.key == task.key)
                .min_by_key(|d| (d.at, d.by.clone()));
            onboarding.push(TaskView {
                key: task.key.clone(),
                title: task.title.clone(),
                done_at: done.map(|d| d.at),
                done_by: done.map(|d| d.by.clone()),
            });
        }
    }

    let owner_id = owner.parse().ok();
    let supervisor = record
        .supervisor
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            owner_id
                .and_then(|o| team.manager_of(&o))
                .map(|m| m.to_string())
        });

    Ok(ClientView {
        id: record.id,
        tags: record
            .tags
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(t, _)| t)
            .collect(),
        collaborators: record
            .collaborators
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(u, _)| u)
            .collect(),
        profile: record.profile,
        owner,
        supervisor,
        stage_name: stage
            .map(|s| s.name.clone())
            .unwrap_or_else(|| current.stage.clone()),
        stage: current.stage,
        stage_entered_at: current.entered_at,
        sla: SlaStatus::at(due_at, now, rules.warning_hours),
        due_at,
        last_contact_at,
        created_at: record.created_at,
        created_by: record.created_by,
        notes: record.notes,
        concurrent_moves: transitions.iter().any(|t| t.concurrent),
        transitions,
        concurrent_handovers: handovers.iter().any(|h| h.concurrent),
        handovers,
        quotes,
        onboarding,
        visits,
        current_transition,
        current_handover,
        conflicts: client.conflicts()?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_branch_tip_wins_and_siblings_are_flagged_concurrent() {
        // a → (b | c), c → d; b is the latest tip, so c's branch loses although it is longer.
        let events = [
            ("a", None, 1),
            ("b", Some("a"), 5),
            ("c", Some("a"), 3),
            ("d", Some("c"), 4),
        ];
        let chain = fold_chain(&events);
        assert_eq!(chain.path, vec![0, 1]);
        assert_eq!(chain.concurrent, BTreeSet::from([1, 2]));
    }

    #[test]
    fn equal_times_are_broken_by_event_id() {
        let events = [("x", None, 7), ("y", None, 7)];
        assert_eq!(fold_chain(&events).path, vec![1]);
    }

    #[test]
    fn sla_turns_yellow_inside_the_warning_window_and_red_when_due() {
        let due = 100 * HOUR_MS;
        assert_eq!(
            SlaStatus::at(Some(due), due - 5 * HOUR_MS, 4),
            SlaStatus::Green
        );
        assert_eq!(
            SlaStatus::at(Some(due), due - 3 * HOUR_MS, 4),
            SlaStatus::Yellow
        );
        assert_eq!(SlaStatus::at(Some(due), due, 4), SlaStatus::Red);
        assert_eq!(SlaStatus::at(None, due, 4), SlaStatus::Green);
    }
}
