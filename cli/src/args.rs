//! The command line, as clap derive types. Parsing only: nothing here touches a replica.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// `fieldsync`: a FieldSync device replica on disk, for people and tests.
///
/// Every command works offline on one replica file (`--db`). Replicas exchange changes
/// as bundle files: `heads`, `export` and `import`.
#[derive(Debug, Parser)]
#[command(name = "fieldsync", version, about, long_about = None)]
#[command(
    after_help = "Environment:\n  FIELDSYNC_DB   replica file (same as --db)\n  \
    FIELDSYNC_NOW  fixed clock, integer milliseconds since the Unix epoch (tests, demos)"
)]
pub struct Cli {
    /// The replica file.
    #[arg(
        long,
        global = true,
        env = "FIELDSYNC_DB",
        default_value = "fieldsync.db"
    )]
    pub db: PathBuf,
    /// Machine output: JSON of the core types instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a replica: a new team (you become its admin) or a provisioned device.
    Init(InitArgs),
    /// Show who this replica acts for.
    Whoami,
    /// Team members (admin).
    #[command(subcommand)]
    User(UserCommand),
    /// Devices (admin).
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Clients: add, edit, show, list.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Full-text search over profiles, tags and notes (Chinese substrings work).
    Search {
        /// Text to look for.
        query: String,
    },
    /// Communication history.
    #[command(subcommand)]
    Note(NoteCommand),
    /// Pipeline stages.
    #[command(subcommand)]
    Stage(StageCommand),
    /// Quote approvals.
    #[command(subcommand)]
    Approval(ApprovalCommand),
    /// Onboarding tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Hand clients to another owner (manager or admin).
    Handover(HandoverArgs),
    /// Clients with concurrent edits, moves or handovers to review.
    Conflicts,
    /// Groups of clients that look like the same customer.
    Duplicates,
    /// The pipeline board: clients per stage.
    Board,
    /// The flow-health report.
    Report,
    /// Overdue clients per supervisor (escalation list).
    Overdue,
    /// Write this replica's heads, for another replica's `export --have`.
    Heads {
        /// Where to write the heads file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a bundle of changes for other replicas.
    Export {
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
        /// Another replica's heads file: export only what it lacks.
        #[arg(long)]
        have: Option<PathBuf>,
    },
    /// Merge a bundle of changes (idempotent, all or nothing).
    Import {
        /// The bundle file.
        file: PathBuf,
    },
    /// Create this replica (--db) from a sync server, with a device token an admin issued
    /// (`fieldsync-server admin device-add`).
    Join {
        /// Server base URL, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "FIELDSYNC_SERVER")]
        server: String,
        /// The device token (shown once when it was issued).
        #[arg(long, env = "FIELDSYNC_TOKEN")]
        token: String,
    },
    /// Sync with the server this replica joined, until quiet.
    Sync {
        /// Stay connected: sync again whenever the server announces changes.
        #[arg(long)]
        watch: bool,
        /// With --watch: stop after this many syncs (default: until interrupted).
        #[arg(long)]
        max_syncs: Option<usize>,
        /// With --watch: seconds one wait for changes lasts before it is renewed.
        #[arg(long, default_value_t = 25)]
        wait_seconds: u64,
    },
    /// A guided demo with a Chinese sales team, four replicas and bundle exchanges.
    Demo {
        /// Directory for the demo's replicas and bundles (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// `init`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("mode").required(true).args(["team", "from"])))]
pub struct InitArgs {
    /// Name of the new team.
    #[arg(long, requires = "user")]
    pub team: Option<String>,
    /// Your name: you become the team's first admin.
    #[arg(long, requires = "team")]
    pub user: Option<String>,
    /// Pipeline template: `seven` (线索获取 … 成交 / 失败归档) or `five`.
    #[arg(long, default_value = "seven", conflicts_with = "from")]
    pub template: String,
    /// A device-provisioning bundle from `fieldsync device add`.
    #[arg(long, conflicts_with_all = ["team", "user"])]
    pub from: Option<PathBuf>,
}

/// `user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a team member (admin).
    Add {
        /// Display name (unique names can be used instead of ids).
        #[arg(long)]
        name: String,
        /// `rep`, `manager` or `admin`.
        #[arg(long)]
        role: String,
        /// Their manager (user id or name): supervisor of their overdue clients.
        #[arg(long)]
        manager: Option<String>,
        /// Quote-approval roles they sign for, comma-separated (e.g. `finance,product`).
        #[arg(long, value_delimiter = ',')]
        approves: Vec<String>,
    },
    /// List team members.
    List,
    /// Mark a member as departed (离职); hand their clients over with `handover --all-of`.
    Depart {
        /// User id or name.
        user: String,
    },
}

/// `device …`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a device for a user and write its provisioning bundle (admin).
    Add {
        /// User id or name.
        #[arg(long)]
        user: String,
        /// Where to write the bundle (`fieldsync init --from FILE` on the device).
        #[arg(long)]
        out: PathBuf,
    },
}

/// `client add`.
#[derive(Debug, Args)]
pub struct ClientAddArgs {
    /// Display name of the client.
    #[arg(long)]
    pub name: String,
    /// Company.
    #[arg(long)]
    pub company: Option<String>,
    /// Phone.
    #[arg(long)]
    pub phone: Option<String>,
    /// Email.
    #[arg(long)]
    pub email: Option<String>,
    /// Company size (required to leave the lead stage).
    #[arg(long)]
    pub company_size: Option<String>,
    /// Budget range (required to leave the lead stage).
    #[arg(long)]
    pub budget_range: Option<String>,
    /// Decision maker (required to leave the lead stage).
    #[arg(long)]
    pub decision_maker: Option<String>,
    /// Lead source.
    #[arg(long)]
    pub source: Option<String>,
    /// Grade: A, B, C or D.
    #[arg(long)]
    pub grade: Option<String>,
    /// A tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// A custom field `key=value` (repeatable).
    #[arg(long = "field")]
    pub fields: Vec<String>,
    /// Owner (user id or name; managers and admins only). Default: you.
    #[arg(long)]
    pub owner: Option<String>,
    /// Create it even if it looks like an existing customer.
    #[arg(long)]
    pub allow_duplicate: bool,
}

/// `client edit`.
#[derive(Debug, Args)]
pub struct ClientEditArgs {
    /// Client id or unique id prefix.
    pub id: String,
    /// Set a profile field `key=value` (repeatable).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Clear a profile field (repeatable).
    #[arg(long = "unset")]
    pub unset: Vec<String>,
    /// Add a tag (repeatable).
    #[arg(long = "tag-add")]
    pub tag_add: Vec<String>,
    /// Remove a tag (repeatable).
    #[arg(long = "tag-remove")]
    pub tag_remove: Vec<String>,
    /// Add a collaborator (协作者), user id or name (repeatable).
    #[arg(long = "collaborator-add")]
    pub collaborator_add: Vec<String>,
    /// Remove a collaborator (repeatable).
    #[arg(long = "collaborator-remove")]
    pub collaborator_remove: Vec<String>,
    /// Set the supervisor (监督者), user id or name.
    #[arg(long)]
    pub supervisor: Option<String>,
}

/// `client …`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Add a client in the first stage; prints its id.
    Add(ClientAddArgs),
    /// Edit profile fields, tags, collaborators or the supervisor.
    Edit(ClientEditArgs),
    /// Show one client in detail.
    Show {
        /// Client id or unique id prefix.
        id: String,
    },
    /// List clients.
    List {
        /// Only this stage (key or name, e.g. `lead` or `线索获取`).
        #[arg(long)]
        stage: Option<String>,
        /// Only this owner (user id or name).
        #[arg(long)]
        owner: Option<String>,
        /// Only overdue clients.
        #[arg(long)]
        overdue: bool,
    },
}

/// `note …`.
#[derive(Debug, Subcommand)]
pub enum NoteCommand {
    /// Log a note, call or visit (a call or visit meets the stage's contact SLA).
    Add {
        /// Client id or unique id prefix.
        id: String,
        /// `note`, `call` or `visit`.
        #[arg(long, default_value = "note")]
        kind: String,
        /// The text.
        text: String,
    },
}

/// `stage …`.
#[derive(Debug, Subcommand)]
pub enum StageCommand {
    /// Move a client to another stage.
    Move {
        /// Client id or unique id prefix.
        id: String,
        /// Target stage (key or name).
        stage: String,
        /// Why (required with --skip).
        #[arg(long)]
        reason: Option<String>,
        /// Green channel: allow a move along no edge of the flowchart (needs --reason).
        #[arg(long)]
        skip: bool,
        /// Loss reason, for a move to a lost stage (a configured reason or one of its words).
        #[arg(long)]
        loss_reason: Option<String>,
    },
}

/// `approval …`.
#[derive(Debug, Subcommand)]
pub enum ApprovalCommand {
    /// Request approval of a quote; beyond the discount band every approval role must approve.
    Request {
        /// Client id or unique id prefix.
        id: String,
        /// Amount, e.g. `12000.50` (at most two decimals; parsed exactly to cents).
        #[arg(long)]
        amount: String,
        /// Discount in percent, e.g. `15`.
        #[arg(long)]
        discount: f64,
    },
    /// Approve or reject a quote for one approval role.
    #[command(group(ArgGroup::new("decision").required(true).args(["approve", "reject"])))]
    Decide {
        /// Client id or unique id prefix.
        id: String,
        /// Quote id or unique prefix.
        quote_id: String,
        /// The approval role you sign for (e.g. `finance`, `product`, `manager`).
        #[arg(long)]
        role: String,
        /// Approve.
        #[arg(long)]
        approve: bool,
        /// Reject.
        #[arg(long)]
        reject: bool,
        /// Optional comment.
        #[arg(long)]
        comment: Option<String>,
    },
}

/// `task …`.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Mark an onboarding task done.
    Done {
        /// Client id or unique id prefix.
        id: String,
        /// Task key (e.g. `kickoff`).
        key: String,
    },
}

/// `handover`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["clients", "all_of"])))]
pub struct HandoverArgs {
    /// New owner (user id or name).
    #[arg(long)]
    pub to: String,
    /// A client to hand over (repeatable).
    #[arg(long = "client")]
    pub clients: Vec<String>,
    /// Hand over every client this user owns (离职继承).
    #[arg(long)]
    pub all_of: Option<String>,
    /// Why (e.g. 离职).
    #[arg(long)]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
