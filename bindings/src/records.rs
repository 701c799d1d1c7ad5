//! Plain data crossing the FFI: inputs (`NewClient`, `MoveOptions`, …) and what reads
//! return (`ClientView`, `ClientRow`, `Board`, `FlowReport`, …). Each mirrors a core type
//! field for field and converts from it here; no value is computed on this side.
//!
//! Times are milliseconds since the Unix epoch (UTC); ids are UUID strings; stage keys are
//! the stable ASCII keys of the team's pipeline (display names are separate fields).

use std::collections::HashMap;

use fieldsync_core::{client, duplicate, fold, pipeline, remote, replica, report, store, team};

/// A team member's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Role {
    /// A field rep: owns their clients.
    Rep,
    /// A manager: sees their subtree, hands clients over, approves quotes.
    Manager,
    /// An admin: users, devices, pipeline and rules.
    Admin,
}

impl From<team::Role> for Role {
    fn from(r: team::Role) -> Self {
        match r {
            team::Role::Rep => Role::Rep,
            team::Role::Manager => Role::Manager,
            team::Role::Admin => Role::Admin,
        }
    }
}

impl From<Role> for team::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::Rep => team::Role::Rep,
            Role::Manager => team::Role::Manager,
            Role::Admin => team::Role::Admin,
        }
    }
}

/// The stock pipeline a new team starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum PipelineTemplate {
    /// 线索获取 → 初步筛选 → 首次接触 → 需求分析 → 方案报价 → 跟进谈判 → 成交 / 失败归档.
    SevenStage,
    /// 客户发现 → 需求沟通 → 方案报价 → 合同签约 → 售后维护.
    FiveStage,
}

impl From<PipelineTemplate> for pipeline::Template {
    fn from(t: PipelineTemplate) -> Self {
        match t {
            PipelineTemplate::SevenStage => pipeline::Template::SevenStage,
            PipelineTemplate::FiveStage => pipeline::Template::FiveStage,
        }
    }
}

/// Who this replica acts for.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct Identity {
    /// Team id.
    pub team_id: String,
    /// Team name.
    pub team_name: String,
    /// The acting user's id.
    pub user_id: String,
    /// The acting user's display name.
    pub user_name: String,
    /// The acting user's role, as the team document grants it to this device.
    pub role: Role,
    /// This device's automerge actor id (hex), for support and logs.
    pub actor: String,
}

impl From<replica::Identity> for Identity {
    fn from(i: replica::Identity) -> Self {
        Identity {
            team_id: i.team_id,
            team_name: i.team_name,
            user_id: i.user_id,
            user_name: i.user_name,
            role: i.role.into(),
            actor: i.actor,
        }
    }
}

/// A team member.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct Member {
    /// User id.
    pub user_id: String,
    /// Display name (unique in the team; accepted wherever a user is asked for).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Their manager's user id: the supervisor their overdue clients escalate to.
    pub manager: Option<String>,
    /// Quote-approval roles they sign for, e.g. `finance`.
    pub approves: Vec<String>,
    /// They have left the team (离职): their devices can no longer edit.
    pub departed: bool,
}

impl Member {
    pub(crate) fn from_core(user_id: &str, m: &team::Member) -> Self {
        Member {
            user_id: user_id.to_string(),
            name: m.name.clone(),
            role: m.role().into(),
            manager: m.manager.clone(),
            approves: m.approves.clone(),
            departed: m.departed,
        }
    }
}

/// What reaching a stage means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum StageKind {
    /// Work in progress.
    Open,
    /// The deal is won: onboarding tasks are created on arrival.
    Won,
    /// The deal is lost: moving here needs a loss reason.
    Lost,
}

impl From<pipeline::StageKind> for StageKind {
    fn from(k: pipeline::StageKind) -> Self {
        match k {
            pipeline::StageKind::Open => StageKind::Open,
            pipeline::StageKind::Won => StageKind::Won,
            pipeline::StageKind::Lost => StageKind::Lost,
        }
    }
}

/// One stage of the team's pipeline.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct Stage {
    /// Stable ASCII key, e.g. `lead`: use it in calls.
    pub key: String,
    /// Display name, e.g. `线索获取`: show it.
    pub name: String,
    /// Open, won or lost.
    pub kind: StageKind,
    /// Hours a client may stay without a call or visit before it is overdue; none: no SLA.
    pub sla_hours: Option<u32>,
}

impl From<&pipeline::Stage> for Stage {
    fn from(s: &pipeline::Stage) -> Self {
        Stage {
            key: s.key.clone(),
            name: s.name.clone(),
            kind: s.kind().into(),
            sla_hours: s.sla_hours,
        }
    }
}

/// A client to create with `Replica.createClient`.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct NewClient {
    /// Profile fields by key: `name` is required; well-known keys are `company`, `phone`,
    /// `email`, `company_size`, `budget_range`, `decision_maker`, `source` and `grade`
    /// (A–D); any other key is a custom field.
    pub profile: HashMap<String, String>,
    /// Tags.
    #[uniffi(default = [])]
    pub tags: Vec<String>,
    /// Owner, by user id or name; none: the acting user. Only managers and admins may
    /// create clients for someone else.
    #[uniffi(default = None)]
    pub owner: Option<String>,
    /// Create it even though it looks like an existing customer (after the user saw the
    /// `ApiError.Duplicate` matches).
    #[uniffi(default = false)]
    pub allow_duplicate: bool,
}

/// One profile-field change for `Replica.editClient`.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct FieldEdit {
    /// Profile field key, e.g. `company_size`.
    pub field: String,
    /// The new value; none (or blank) clears the field.
    pub value: Option<String>,
}

/// Options of `Replica.moveStage`.
#[derive(Clone, Debug, Default, PartialEq, uniffi::Record)]
pub struct MoveOptions {
    /// Why; required with `skip`.
    #[uniffi(default = None)]
    pub reason: Option<String>,
    /// Green channel: allow a move along no arrow of the pipeline (needs a reason).
    #[uniffi(default = false)]
    pub skip: bool,
    /// For a move to a lost stage: one of the team's loss reasons (or one of its words).
    #[uniffi(default = None)]
    pub loss_reason: Option<String>,
}

impl From<MoveOptions> for replica::MoveOptions {
    fn from(o: MoveOptions) -> Self {
        replica::MoveOptions {
            reason: o.reason,
            skip: o.skip,
            loss_reason: o.loss_reason,
        }
    }
}

/// Which clients `Replica.listClients` returns; every field narrows the list.
#[derive(Clone, Debug, Default, PartialEq, uniffi::Record)]
pub struct ClientFilter {
    /// Only this stage (key or display name).
    #[uniffi(default = None)]
    pub stage: Option<String>,
    /// Only this owner (user id or name).
    #[uniffi(default = None)]
    pub owner: Option<String>,
    /// Only clients overdue now.
    #[uniffi(default = false)]
    pub overdue: bool,
}

/// Kind of a communication-history entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum NoteKind {
    /// A written note.
    Note,
    /// A phone call: meets the stage's contact SLA.
    Call,
    /// A visit: meets the stage's contact SLA.
    Visit,
}

impl From<NoteKind> for client::NoteKind {
    fn from(k: NoteKind) -> Self {
        match k {
            NoteKind::Note => client::NoteKind::Note,
            NoteKind::Call => client::NoteKind::Call,
            NoteKind::Visit => client::NoteKind::Visit,
        }
    }
}

impl From<client::NoteKind> for NoteKind {
    fn from(k: client::NoteKind) -> Self {
        match k {
            client::NoteKind::Note => NoteKind::Note,
            client::NoteKind::Call => NoteKind::Call,
            client::NoteKind::Visit => NoteKind::Visit,
        }
    }
}

/// SLA colour of a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum SlaStatus {
    /// On track, or no SLA applies.
    Green,
    /// Due within the team's warning window.
    Yellow,
    /// Overdue: flagged to the owner and escalated to the supervisor.
    Red,
}

impl From<fold::SlaStatus> for SlaStatus {
    fn from(s: fold::SlaStatus) -> Self {
        match s {
            fold::SlaStatus::Green => SlaStatus::Green,
            fold::SlaStatus::Yellow => SlaStatus::Yellow,
            fold::SlaStatus::Red => SlaStatus::Red,
        }
    }
}

/// One row of a client list (from the read model: cheap, no document is loaded).
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct ClientRow {
    /// Client id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Company.
    pub company: String,
    /// Owner (user id).
    pub owner: String,
    /// Supervisor the client escalates to (user id).
    pub supervisor: Option<String>,
    /// Current stage key.
    pub stage: String,
    /// When the client entered its stage.
    pub stage_entered_at: i64,
    /// SLA deadline, if one is pending.
    pub due_at: Option<i64>,
    /// Tags.
    pub tags: Vec<String>,
    /// Collaborators (user ids).
    pub collaborators: Vec<String>,
    /// Concurrent edits, moves or handovers wait for review (see `Replica.conflicts`).
    pub needs_review: bool,
}

impl From<store::read_model::ClientRow> for ClientRow {
    fn from(r: store::read_model::ClientRow) -> Self {
        ClientRow {
            id: r.id,
            name: r.name,
            company: r.company,
            owner: r.owner,
            supervisor: r.supervisor,
            stage: r.stage,
            stage_entered_at: r.stage_entered_at,
            due_at: r.due_at,
            tags: r.tags,
            collaborators: r.collaborators,
            needs_review: r.needs_review,
        }
    }
}

/// A note, call or visit in a client's communication history.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct Note {
    /// Entry id.
    pub id: String,
    /// Note, call or visit.
    pub kind: NoteKind,
    /// Text.
    pub text: String,
    /// Author (user id).
    pub by: String,
    /// When.
    pub at: i64,
}

impl From<client::Note> for Note {
    fn from(n: client::Note) -> Self {
        Note {
            // The core writes only its own three spellings.
            kind: n
                .kind
                .parse::<client::NoteKind>()
                .map(Into::into)
                .unwrap_or(NoteKind::Note),
            id: n.id,
            text: n.text,
            by: n.by,
            at: n.at,
        }
    }
}

/// A stage move in a client's history.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct TransitionView {
    /// Move id.
    pub id: String,
    /// Stage key left.
    pub from: String,
    /// Stage key entered.
    pub to: String,
    /// Who moved it (user id).
    pub by: String,
    /// When.
    pub at: i64,
    /// Why, if given.
    pub reason: Option<String>,
    /// Along no arrow of the pipeline (green channel).
    pub skipped: bool,
    /// Loss reason, for a move to a lost stage.
    pub loss_reason: Option<String>,
    /// On the effective path: counted by reports.
    pub effective: bool,
    /// Made concurrently with another move on another device: show for review.
    pub concurrent: bool,
}

impl From<fold::TransitionView> for TransitionView {
    fn from(t: fold::TransitionView) -> Self {
        TransitionView {
            id: t.event.id,
            from: t.event.from,
            to: t.event.to,
            by: t.event.by,
            at: t.event.at,
            reason: t.event.reason,
            skipped: t.event.skipped,
            loss_reason: t.event.loss_reason,
            effective: t.effective,
            concurrent: t.concurrent,
        }
    }
}

/// A change of owner in a client's history.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct HandoverView {
    /// Handover id.
    pub id: String,
    /// Owner before (user id).
    pub from: String,
    /// New owner (user id).
    pub to: String,
    /// Who handed over (user id).
    pub by: String,
    /// When.
    pub at: i64,
    /// Why, e.g. 离职.
    pub reason: Option<String>,
    /// Made by a manager or admin device, so it counts.
    pub authorized: bool,
    /// On the effective path of ownership.
    pub effective: bool,
    /// Made concurrently with another handover: show for review.
    pub concurrent: bool,
}

impl From<fold::HandoverView> for HandoverView {
    fn from(h: fold::HandoverView) -> Self {
        HandoverView {
            id: h.event.id,
            from: h.event.from,
            to: h.event.to,
            by: h.event.by,
            at: h.event.at,
            reason: h.event.reason,
            authorized: h.authorized,
            effective: h.effective,
            concurrent: h.concurrent,
        }
    }
}

/// Approval status of a quote.
#[derive(Clone, Debug, PartialEq, uniffi::Enum)]
pub enum QuoteStatus {
    /// The discount is within the band: no approval needed.
    WithinBand,
    /// Waiting for these approval roles.
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

impl From<fold::QuoteStatus> for QuoteStatus {
    fn from(s: fold::QuoteStatus) -> Self {
        match s {
            fold::QuoteStatus::WithinBand => QuoteStatus::WithinBand,
            fold::QuoteStatus::Pending { waiting_for } => QuoteStatus::Pending { waiting_for },
            fold::QuoteStatus::Approved => QuoteStatus::Approved,
            fold::QuoteStatus::Rejected { rejected_by } => QuoteStatus::Rejected { rejected_by },
        }
    }
}

/// One approver's decision on a quote.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct Approval {
    /// Decision id.
    pub id: String,
    /// The approval role signed for, e.g. `finance`.
    pub role: String,
    /// Approved (true) or rejected (false).
    pub approved: bool,
    /// Approver (user id).
    pub by: String,
    /// When.
    pub at: i64,
    /// Comment, if any.
    pub comment: Option<String>,
}

impl From<client::Approval> for Approval {
    fn from(a: client::Approval) -> Self {
        Approval {
            approved: a.decision == "approved",
            id: a.id,
            role: a.role,
            by: a.by,
            at: a.at,
            comment: a.comment,
        }
    }
}

/// A quote and its approvals.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct QuoteView {
    /// Quote id (for `Replica.decideQuote`).
    pub id: String,
    /// Amount in cents.
    pub amount_cents: i64,
    /// Discount in percent.
    pub discount_pct: f64,
    /// Requesting rep (user id).
    pub by: String,
    /// When.
    pub at: i64,
    /// Approval roles that must each approve; empty within the discount band.
    pub required_roles: Vec<String>,
    /// Derived status.
    pub status: QuoteStatus,
    /// The decisions that count.
    pub decisions: Vec<Approval>,
}

impl From<fold::QuoteView> for QuoteView {
    fn from(q: fold::QuoteView) -> Self {
        QuoteView {
            id: q.quote.id,
            amount_cents: q.quote.amount_cents,
            discount_pct: q.quote.discount_pct,
            by: q.quote.by,
            at: q.quote.at,
            required_roles: q.quote.required_roles,
            status: q.approval.into(),
            decisions: q.decisions.into_iter().map(Into::into).collect(),
        }
    }
}

/// An onboarding task of a won client.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct TaskView {
    /// Task key (for `Replica.completeTask`), e.g. `kickoff`.
    pub key: String,
    /// Title.
    pub title: String,
    /// When it was done; none: still open.
    pub done_at: Option<i64>,
    /// Who did it (user id).
    pub done_by: Option<String>,
}

impl From<fold::TaskView> for TaskView {
    fn from(t: fold::TaskView) -> Self {
        TaskView {
            key: t.key,
            title: t.title,
            done_at: t.done_at,
            done_by: t.done_by,
        }
    }
}

/// A profile field edited concurrently on two devices.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct FieldConflict {
    /// Profile field key.
    pub field: String,
    /// The value every device shows now.
    pub value: String,
    /// The concurrent values that lost; writing the field again resolves the conflict.
    pub other_values: Vec<String>,
}

impl From<client::FieldConflict> for FieldConflict {
    fn from(c: client::FieldConflict) -> Self {
        FieldConflict {
            field: c.field,
            value: c.value,
            other_values: c.other_values,
        }
    }
}

/// Everything about one client, for a detail screen.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct ClientView {
    /// Client id.
    pub id: String,
    /// Display name (the `name` field, else the company).
    pub name: String,
    /// Profile fields by key.
    pub profile: HashMap<String, String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Current owner (主责人, user id).
    pub owner: String,
    /// Collaborators (协作者, user ids).
    pub collaborators: Vec<String>,
    /// Supervisor (监督者, user id): the explicit one, else the owner's manager.
    pub supervisor: Option<String>,
    /// Current stage key.
    pub stage: String,
    /// Current stage display name.
    pub stage_name: String,
    /// When the client entered its stage.
    pub stage_entered_at: i64,
    /// SLA deadline, unless met or none.
    pub due_at: Option<i64>,
    /// SLA colour when this was read.
    pub sla: SlaStatus,
    /// Last call or visit.
    pub last_contact_at: Option<i64>,
    /// Created at.
    pub created_at: i64,
    /// Created by (user id).
    pub created_by: String,
    /// Communication history, oldest first.
    pub notes: Vec<Note>,
    /// Stage history, oldest first.
    pub transitions: Vec<TransitionView>,
    /// Owner history, oldest first.
    pub handovers: Vec<HandoverView>,
    /// Quotes and their approvals.
    pub quotes: Vec<QuoteView>,
    /// Onboarding tasks (after a win).
    pub onboarding: Vec<TaskView>,
    /// Concurrent stage moves wait for review.
    pub concurrent_moves: bool,
    /// Concurrent handovers were made.
    pub concurrent_handovers: bool,
    /// Profile fields edited concurrently.
    pub conflicts: Vec<FieldConflict>,
}

impl From<fold::ClientView> for ClientView {
    fn from(v: fold::ClientView) -> Self {
        ClientView {
            name: v.name().to_string(),
            id: v.id,
            profile: v.profile.into_iter().collect(),
            tags: v.tags,
            owner: v.owner,
            collaborators: v.collaborators,
            supervisor: v.supervisor,
            stage: v.stage,
            stage_name: v.stage_name,
            stage_entered_at: v.stage_entered_at,
            due_at: v.due_at,
            sla: v.sla.into(),
            last_contact_at: v.last_contact_at,
            created_at: v.created_at,
            created_by: v.created_by,
            notes: v.notes.into_iter().map(Into::into).collect(),
            transitions: v.transitions.into_iter().map(Into::into).collect(),
            handovers: v.handovers.into_iter().map(Into::into).collect(),
            quotes: v.quotes.into_iter().map(Into::into).collect(),
            onboarding: v.onboarding.into_iter().map(Into::into).collect(),
            concurrent_moves: v.concurrent_moves,
            concurrent_handovers: v.concurrent_handovers,
            conflicts: v.conflicts.into_iter().map(Into::into).collect(),
        }
    }
}

/// A quote just requested, with the client as it is now.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct QuoteRequested {
    /// The new quote's id (for `Replica.decideQuote`).
    pub quote_id: String,
    /// The client after the request.
    pub client: ClientView,
}

/// An existing client that looks like the same customer.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct DuplicateMatch {
    /// The existing client's id.
    pub client_id: String,
    /// Its display name.
    pub name: String,
    /// Its owner (user id).
    pub owner: String,
    /// What matched: `phone`, `email` or `company`.
    pub matched_on: String,
}

impl From<duplicate::DuplicateMatch> for DuplicateMatch {
    fn from(m: duplicate::DuplicateMatch) -> Self {
        DuplicateMatch {
            client_id: m.client_id,
            name: m.name,
            owner: m.owner,
            matched_on: m.matched_on,
        }
    }
}

/// A client with concurrent edits to review.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct ClientConflicts {
    /// Client id.
    pub client_id: String,
    /// Display name.
    pub name: String,
    /// Profile fields edited concurrently.
    pub fields: Vec<FieldConflict>,
    /// Concurrent stage moves.
    pub concurrent_moves: bool,
    /// Concurrent handovers.
    pub concurrent_handovers: bool,
}

impl From<replica::ClientConflicts> for ClientConflicts {
    fn from(c: replica::ClientConflicts) -> Self {
        ClientConflicts {
            client_id: c.client_id,
            name: c.name,
            fields: c.fields.into_iter().map(Into::into).collect(),
            concurrent_moves: c.concurrent_moves,
            concurrent_handovers: c.concurrent_handovers,
        }
    }
}

/// One column of the pipeline board.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct BoardColumn {
    /// Stage key.
    pub stage: String,
    /// Stage display name.
    pub name: String,
    /// Open, won or lost.
    pub kind: StageKind,
    /// Clients in the stage.
    pub count: i64,
    /// Of which overdue.
    pub overdue: i64,
}

/// The pipeline board: clients per stage, in pipeline order.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct Board {
    /// Columns in pipeline order.
    pub columns: Vec<BoardColumn>,
    /// All clients.
    pub total: i64,
}

impl From<report::Board> for Board {
    fn from(b: report::Board) -> Self {
        Board {
            columns: b
                .columns
                .into_iter()
                .map(|c| BoardColumn {
                    kind: stage_kind(c.kind),
                    stage: c.stage,
                    name: c.name,
                    count: c.count,
                    overdue: c.overdue,
                })
                .collect(),
            total: b.total,
        }
    }
}

/// Reads a stored stage-kind spelling the way the core does (unknown spellings are open).
fn stage_kind(spelling: String) -> StageKind {
    let stage = pipeline::Stage {
        key: String::new(),
        name: String::new(),
        kind: spelling,
        sla_hours: None,
    };
    stage.kind().into()
}

/// Flow health of one stage.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct StageHealth {
    /// Stage key.
    pub stage: String,
    /// Display name.
    pub name: String,
    /// Clients in the stage now.
    pub backlog: i64,
    /// Clients that ever entered the stage.
    pub entered: i64,
    /// Next stage on the main line, if any.
    pub next_stage: Option<String>,
    /// Share of clients that went on to the next stage (0–1).
    pub next_step_conversion: Option<f64>,
    /// Mean completed stay, in hours.
    pub avg_dwell_hours: Option<f64>,
    /// 90th-percentile completed stay, in hours.
    pub p90_dwell_hours: Option<f64>,
    /// Clients in the stage past their SLA.
    pub overdue: i64,
}

/// An arrow of the pipeline with how many clients moved along it.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct FlowEdge {
    /// From stage key.
    pub from: String,
    /// To stage key.
    pub to: String,
    /// Effective moves along it.
    pub count: i64,
    /// An arrow of the pipeline (false: moves taken as exceptions).
    pub defined: bool,
}

/// How often a loss reason was given.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct LossReasonCount {
    /// The configured loss reason.
    pub reason: String,
    /// Clients lost for it.
    pub count: i64,
}

/// The flow-health report (see docs/domain.md, "Reports", for the definitions).
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct FlowReport {
    /// Per stage, in pipeline order.
    pub stages: Vec<StageHealth>,
    /// Effective moves per arrow.
    pub edges: Vec<FlowEdge>,
    /// Loss reasons, most frequent first.
    pub loss_reasons: Vec<LossReasonCount>,
    /// Clients won.
    pub won: i64,
    /// Clients lost.
    pub lost: i64,
    /// won / (won + lost).
    pub win_rate: Option<f64>,
    /// Mean days from creation to winning.
    pub avg_sales_cycle_days: Option<f64>,
    /// Moves along no arrow (green channel).
    pub exceptions: i64,
    /// Clients with concurrent stage moves to review.
    pub concurrent_moves: i64,
    /// Clients with concurrent handovers to review.
    pub concurrent_handovers: i64,
}

impl From<report::FlowReport> for FlowReport {
    fn from(r: report::FlowReport) -> Self {
        FlowReport {
            stages: r
                .stages
                .into_iter()
                .map(|s| StageHealth {
                    stage: s.stage,
                    name: s.name,
                    backlog: s.backlog,
                    entered: s.entered,
                    next_stage: s.next_stage,
                    next_step_conversion: s.next_step_conversion,
                    avg_dwell_hours: s.avg_dwell_hours,
                    p90_dwell_hours: s.p90_dwell_hours,
                    overdue: s.overdue,
                })
                .collect(),
            edges: r
                .edges
                .into_iter()
                .map(|e| FlowEdge {
                    from: e.from,
                    to: e.to,
                    count: e.count,
                    defined: e.defined,
                })
                .collect(),
            loss_reasons: r
                .loss_reasons
                .into_iter()
                .map(|(reason, count)| LossReasonCount { reason, count })
                .collect(),
            won: r.won,
            lost: r.lost,
            win_rate: r.win_rate,
            avg_sales_cycle_days: r.avg_sales_cycle_days,
            exceptions: r.exceptions,
            concurrent_moves: r.concurrent_moves,
            concurrent_handovers: r.concurrent_handovers,
        }
    }
}

/// Overdue clients escalated to one supervisor.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct OverdueGroup {
    /// Supervisor (user id); none when nobody is above the owners.
    pub supervisor: Option<String>,
    /// The overdue clients, most overdue first.
    pub clients: Vec<ClientRow>,
}

impl From<report::OverdueGroup> for OverdueGroup {
    fn from(g: report::OverdueGroup) -> Self {
        OverdueGroup {
            supervisor: g.supervisor,
            clients: g.clients.into_iter().map(Into::into).collect(),
        }
    }
}

/// What an import changed.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ImportSummary {
    /// Documents in the bundle.
    pub documents: u64,
    /// Documents that gained changes (0 when the bundle was imported before).
    pub changed: u64,
    /// Clients this replica had not seen before.
    pub new_clients: u64,
    /// Ids of the clients that gained changes (the listener hears the same ids).
    pub changed_clients: Vec<String>,
}

impl From<replica::ImportSummary> for ImportSummary {
    fn from(s: replica::ImportSummary) -> Self {
        ImportSummary {
            documents: s.documents as u64,
            changed: s.changed as u64,
            new_clients: s.new_clients as u64,
            changed_clients: s.changed_clients,
        }
    }
}

/// What a `Replica.sync` did. `pending` is 0 when this device and the server are in step.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    /// HTTP requests sent.
    pub requests: u64,
    /// Bytes sent to the server.
    pub bytes_sent: u64,
    /// Bytes received from the server.
    pub bytes_received: u64,
    /// Documents uploaded with changes from this device.
    pub uploaded: u64,
    /// Documents received with changes from other devices.
    pub downloaded: u64,
    /// Ids of the clients the sync changed here (the listener hears the same ids).
    pub changed_clients: Vec<String>,
    /// Documents still waiting to be uploaded (0 when fully in sync; otherwise sync again).
    pub pending: u64,
}

impl From<remote::SyncReport> for SyncReport {
    fn from(r: remote::SyncReport) -> Self {
        SyncReport {
            requests: r.requests as u64,
            bytes_sent: r.bytes_sent as u64,
            bytes_received: r.bytes_received as u64,
            uploaded: r.uploaded as u64,
            downloaded: r.downloaded as u64,
            changed_clients: r.changed_clients,
            pending: r.pending as u64,
        }
    }
}
