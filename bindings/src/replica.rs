//! The `Replica` object: one replica file on the device, every operation of the CLI.
//!
//! Each method locks the core replica, delegates to the one core method that does the
//! work, converts the result, releases the lock, and then tells the change listener which
//! clients changed. Validation, permissions and merging all happen in the core.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use fieldsync_core::store::read_model;
use fieldsync_core::{remote, SystemClock};

use crate::error::ApiError;
use crate::listener::ClientChangeListener;
use crate::records::{
    Board, ClientConflicts, ClientFilter, ClientRow, ClientView, DuplicateMatch, FieldEdit,
    FlowReport, Identity, ImportSummary, Member, MoveOptions, NewClient, NoteKind, OverdueGroup,
    PipelineTemplate, QuoteRequested, Role, Stage, SyncReport,
};

type Result<T, E = ApiError> = std::result::Result<T, E>;
type Core = fieldsync_core::Replica;

/// A FieldSync replica: the team's clients as this device knows them, stored in one
/// SQLite file and usable offline.
///
/// Every method reads or writes that file and blocks until it is done (usually a few
/// milliseconds, longer for large imports). Do not call it on the UI thread: use a
/// background thread (Kotlin `Dispatchers.IO`, a Swift `Task`) or the `…Async` variants,
/// which run the work on a worker thread. Calls from several threads are safe; they run
/// one at a time.
///
/// Release it when done (Kotlin `close()` or `use {}`; Swift and Python release it when
/// the last reference goes): the file is closed then.
#[derive(uniffi::Object)]
pub struct Replica {
    // The core replica owns a SQLite connection, which may move between threads but not
    // be shared: the mutex makes the object Sync and calls run one at a time.
    core: Mutex<Core>,
    listener: Mutex<Option<Arc<dyn ClientChangeListener>>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").finish_non_exhaustive()
    }
}

/// Locks a mutex even if a call panicked while holding it: the core writes each change in
/// one SQLite transaction and swaps in-memory state only after it committed, so the
/// replica is consistent after a panic.
fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Replica {
    fn wrap(core: Core) -> Arc<Self> {
        Arc::new(Replica {
            core: Mutex::new(core),
            listener: Mutex::new(None),
        })
    }

    /// Runs `f` on the locked core replica and converts its error.
    fn with<T>(&self, f: impl FnOnce(&mut Core) -> fieldsync_core::Result<T>) -> Result<T> {
        let mut core = lock(&self.core);
        Ok(f(&mut core)?)
    }

    /// Runs a local edit of clients, then tells the listener which ones changed.
    fn edit<T>(
        &self,
        f: impl FnOnce(&mut Core) -> fieldsync_core::Result<T>,
        changed: impl FnOnce(&T) -> Vec<String>,
    ) -> Result<T> {
        let out = self.with(f)?;
        self.notify(changed(&out));
        Ok(out)
    }

    /// Edits one client and returns its new state.
    fn edit_client_view(
        &self,
        f: impl FnOnce(&mut Core) -> fieldsync_core::Result<fieldsync_core::fold::ClientView>,
    ) -> Result<ClientView> {
        let view = self.edit(f, |v| vec![v.id.clone()])?;
        Ok(view.into())
    }

    fn notify(&self, client_ids: Vec<String>) {
        if client_ids.is_empty() {
            return;
        }
        // Cloned out so the listener runs without any lock held and may call back in.
        let listener = lock(&self.listener).clone();
        if let Some(listener) = listener {
            listener.on_clients_changed(client_ids);
        }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Replica {
    // ----- opening ----------------------------------------------------------------------

    /// Creates a new team and its replica file at `path`; the acting user becomes the
    /// team's first admin, named `admin_name`. Fails if the file exists.
    #[uniffi::constructor]
    pub fn create(
        path: String,
        team_name: String,
        admin_name: String,
        template: PipelineTemplate,
    ) -> Result<Arc<Self>> {
        let core = Core::create(
            Path::new(&path),
            &team_name,
            &admin_name,
            template.into(),
            Arc::new(SystemClock),
        )?;
        Ok(Self::wrap(core))
    }

    /// Creates this device's replica file at `path` from a provisioning bundle an admin
    /// made for this user with `provisionDevice` (the usual first start of the app).
    #[uniffi::constructor]
    pub fn join(path: String, provisioning: Vec<u8>) -> Result<Arc<Self>> {
        let core = Core::join(Path::new(&path), &provisioning, Arc::new(SystemClock))?;
        Ok(Self::wrap(core))
    }

    /// Creates this device's replica file at `path` from the sync server at `server_url`
    /// (e.g. `https://sync.example.com`), with the device token an admin issued for this
    /// user (`fieldsync-server admin device-add`, or `POST /v1/admin/devices`). The replica
    /// remembers the server and the token: later `sync()` calls need neither.
    ///
    /// This is a network call and blocks until the server answered (up to two minutes):
    /// never call it on the main thread. Prefer `joinServerAsync`, which runs off the
    /// caller's thread. Fails with `NotPermitted` for an unknown or revoked token and with
    /// `Network` when the server cannot be reached.
    #[uniffi::constructor]
    pub fn join_server(
        path: String,
        server_url: String,
        device_token: String,
    ) -> Result<Arc<Self>> {
        let core = remote::join(
            Path::new(&path),
            &server_url,
            &device_token,
            Arc::new(SystemClock),
        )?;
        Ok(Self::wrap(core))
    }

    /// `joinServer` on a worker thread: a Kotlin `suspend fun`, a Swift `async func`, a
    /// Python coroutine. Safe to await from the main thread.
    #[uniffi::constructor]
    pub async fn join_server_async(
        path: String,
        server_url: String,
        device_token: String,
    ) -> Result<Arc<Self>> {
        Self::off_thread(move || Self::join_server(path, server_url, device_token)).await
    }

    /// Opens the replica file at `path`, made earlier by `create` or `join`.
    #[uniffi::constructor]
    pub fn open(path: String) -> Result<Arc<Self>> {
        let core = Core::open(Path::new(&path), Arc::new(SystemClock))?;
        Ok(Self::wrap(core))
    }

    /// Registers the listener told about changed clients (see `ClientChangeListener`),
    /// replacing any previous one; `null`/`nil`/`None` removes it.
    pub fn set_change_listener(&self, listener: Option<Arc<dyn ClientChangeListener>>) {
        *lock(&self.listener) = listener;
    }

    // ----- team -------------------------------------------------------------------------

    /// Who this replica acts for: team, user and role.
    pub fn identity(&self) -> Identity {
        lock(&self.core).identity().into()
    }

    /// The team's members, departed ones included.
    pub fn members(&self) -> Vec<Member> {
        let core = lock(&self.core);
        core.team()
            .members
            .iter()
            .map(|(id, m)| Member::from_core(id, m))
            .collect()
    }

    /// The pipeline's stages in board order; new clients start in the first.
    pub fn stages(&self) -> Vec<Stage> {
        let core = lock(&self.core);
        core.team().pipeline.stages.iter().map(Into::into).collect()
    }

    /// The team's loss reasons, to offer when moving a client to a lost stage.
    pub fn loss_reasons(&self) -> Vec<String> {
        lock(&self.core).team().rules.loss_reasons.clone()
    }

    /// Adds a team member and returns their user id (admins only). `manager` is a user id
    /// or name; `approves` lists the quote-approval roles they sign for.
    pub fn add_user(
        &self,
        name: String,
        role: Role,
        manager: Option<String>,
        approves: Vec<String>,
    ) -> Result<String> {
        self.with(|core| {
            let manager = manager.map(|m| core.resolve_user(&m)).transpose()?;
            Ok(core
                .add_user(&name, role.into(), manager, approves)?
                .to_string())
        })
    }

    /// Marks a member as departed (离职, admins only): their devices can no longer edit.
    /// Hand their clients over with `handoverAll`.
    pub fn mark_departed(&self, user: String) -> Result<()> {
        self.with(|core| {
            let user = core.resolve_user(&user)?;
            core.mark_departed(user)
        })
    }

    /// Registers a new device for `user` (id or name, admins only) and returns the
    /// provisioning bundle that device passes to `Replica.join`.
    pub fn provision_device(&self, user: String) -> Result<Vec<u8>> {
        self.with(|core| {
            let user = core.resolve_user(&user)?;
            core.provision_device(user)
        })
    }

    // ----- clients ----------------------------------------------------------------------

    /// Creates a client in the pipeline's first stage and returns its id. Fails with
    /// `Duplicate` when it looks like an existing customer, unless `allowDuplicate` is set.
    pub fn create_client(&self, client: NewClient) -> Result<String> {
        self.edit(
            |core| {
                let owner = client.owner.map(|o| core.resolve_user(&o)).transpose()?;
                let id = core.create_client(fieldsync_core::NewClient {
                    profile: client.profile.into_iter().collect(),
                    tags: client.tags,
                    owner,
                    allow_duplicate: client.allow_duplicate,
                })?;
                Ok(id.to_string())
            },
            |id| vec![id.clone()],
        )
    }

    /// Sets or clears profile fields. Writing a field also resolves a conflict on it.
    pub fn edit_client(&self, client_id: String, edits: Vec<FieldEdit>) -> Result<ClientView> {
        self.edit_client_view(|core| {
            let id = core.resolve_client(&client_id)?;
            let fields: Vec<(String, Option<String>)> =
                edits.into_iter().map(|e| (e.field, e.value)).collect();
            core.edit_client(&id, &fields)
        })
    }

    /// Adds and removes tags.
    pub fn tag_client(
        &self,
        client_id: String,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Result<ClientView> {
        self.edit_client_view(|core| {
            let id = core.resolve_client(&client_id)?;
            core.tag_client(&id, &add, &remove)
        })
    }

    /// Adds (`present` true) or removes a collaborator (协作者), by user id or name.
    pub fn set_collaborator(
        &self,
        client_id: String,
        user: String,
        present: bool,
    ) -> Result<ClientView> {
        self.edit_client_view(|core| {
            let id = core.resolve_client(&client_id)?;
            let user = core.resolve_user(&user)?;
            core.set_collaborator(&id, user, present)
        })
    }

    /// Sets the supervisor (监督者), by user id or name; none falls back to the owner's
    /// manager.
    pub fn set_supervisor(&self, client_id: String, user: Option<String>) -> Result<ClientView> {
        self.edit_client_view(|core| {
            let id = core.resolve_client(&client_id)?;
            let user = user.map(|u| core.resolve_user(&u)).transpose()?;
            core.set_supervisor(&id, user)
        })
    }

    /// Logs a note, call or visit. A call or visit meets the stage's contact SLA.
    pub fn add_note(&self, client_id: String, kind: NoteKind, text: String) -> Result<ClientView> {
        self.edit_client_view(|core| {
            let id = core.resolve_client(&client_id)?;
            core.add_note(&id, kind.into(), &text)
        })
    }

    /// Moves a client to another stage (key or display name). Leaving the lead stage
    /// fails with `GateRefused` until the required profile fields are filled in; a move
    /// along no arrow needs `skip` and a reason; a lost stage needs a loss reason.
    pub fn move_stage(
        &self,
        client_id: String,
        stage: String,
        options: MoveOptions,
    ) -> Result<ClientView> {
        self.edit_client_view(|core| {
            let id = core.resolve_client(&client_id)?;
            core.move_stage(&id, &stage, options.into())
        })
    }

    /// Marks an onboarding task of a won client done, by its key.
    pub fn complete_task(&self, client_id: String, task_key: String) -> Result<ClientView> {
        self.edit_client_view(|core| {
            let id = core.resolve_client(&client_id)?;
            core.complete_task(&id, &task_key)
        })
    }

    /// Requests approval of a quote. Within the team's discount band no approval is
    /// needed; beyond it every approval role must approve, in any order.
    pub fn request_quote(
        &self,
        client_id: String,
        amount_cents: i64,
        discount_pct: f64,
    ) -> Result<QuoteRequested> {
        let (quote_id, view) = self.edit(
            |core| {
                let id = core.resolve_client(&client_id)?;
                core.request_quote(&id, amount_cents, discount_pct)
            },
            |(_, view)| vec![view.id.clone()],
        )?;
        Ok(QuoteRequested {
            quote_id,
            client: view.into(),
        })
    }

    /// Approves (`approve` true) or rejects a quote for one approval role the acting
    /// user signs for, e.g. `finance`.
    pub fn decide_quote(
        &self,
        client_id: String,
        quote_id: String,
        role: String,
        approve: bool,
        comment: Option<String>,
    ) -> Result<ClientView> {
        self.edit_client_view(|core| {
            let id = core.resolve_client(&client_id)?;
            core.decide_quote(&id, &quote_id, &role, approve, comment.as_deref())
        })
    }

    /// Hands clients to a new owner (user id or name; managers and admins only). Nothing
    /// changes if any of them may not be handed over.
    pub fn handover(
        &self,
        client_ids: Vec<String>,
        to: String,
        reason: Option<String>,
    ) -> Result<Vec<ClientView>> {
        let views = self.edit(
            |core| {
                let ids = client_ids
                    .iter()
                    .map(|c| core.resolve_client(c))
                    .collect::<fieldsync_core::Result<Vec<_>>>()?;
                let to = core.resolve_user(&to)?;
                core.handover(&ids, to, reason.as_deref())
            },
            |views| views.iter().map(|v| v.id.clone()).collect(),
        )?;
        Ok(views.into_iter().map(Into::into).collect())
    }

    /// Hands every client owned by `from` to `to` (离职继承; user ids or names).
    pub fn handover_all(
        &self,
        from: String,
        to: String,
        reason: Option<String>,
    ) -> Result<Vec<ClientView>> {
        let views = self.edit(
            |core| {
                let from = core.resolve_user(&from)?;
                let to = core.resolve_user(&to)?;
                core.handover_all(from, to, reason.as_deref())
            },
            |views| views.iter().map(|v| v.id.clone()).collect(),
        )?;
        Ok(views.into_iter().map(Into::into).collect())
    }

    // ----- reading ----------------------------------------------------------------------

    /// One client in full: profile, history, quotes, conflicts. Accepts an id or an
    /// unambiguous id prefix.
    pub fn client(&self, client_id: String) -> Result<ClientView> {
        let view = self.with(|core| {
            let id = core.resolve_client(&client_id)?;
            core.client(&id)
        })?;
        Ok(view.into())
    }

    /// Client rows for a list screen (cheap: no document is loaded).
    pub fn list_clients(&self, filter: ClientFilter) -> Result<Vec<ClientRow>> {
        let rows = self.with(|core| {
            let stage = match filter.stage {
                Some(s) => Some(core.team().pipeline.require(&s)?.key.clone()),
                None => None,
            };
            let owner = match filter.owner {
                Some(o) => Some(core.resolve_user(&o)?.to_string()),
                None => None,
            };
            core.list(&read_model::ClientFilter {
                stage,
                owner,
                overdue_at: filter.overdue.then(|| core.now()),
            })
        })?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Full-text search over profiles, tags and notes (Chinese substrings included).
    pub fn search(&self, query: String) -> Result<Vec<ClientRow>> {
        let rows = self.with(|core| core.search(&query))?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// `search` on a worker thread: a Kotlin `suspend fun`, a Swift `async func`.
    pub async fn search_async(self: Arc<Self>, query: String) -> Result<Vec<ClientRow>> {
        Self::off_thread(move || self.search(query)).await
    }

    /// Clients with concurrent edits, stage moves or handovers to review.
    pub fn conflicts(&self) -> Result<Vec<ClientConflicts>> {
        let out = self.with(|core| core.conflicts())?;
        Ok(out.into_iter().map(Into::into).collect())
    }

    /// Groups of clients that look like the same customer.
    pub fn duplicates(&self) -> Result<Vec<Vec<DuplicateMatch>>> {
        let groups = self.with(|core| core.duplicates())?;
        Ok(groups
            .into_iter()
            .map(|g| g.into_iter().map(Into::into).collect())
            .collect())
    }

    /// The pipeline board: clients per stage.
    pub fn board(&self) -> Result<Board> {
        Ok(self.with(|core| core.board())?.into())
    }

    /// The flow-health report: backlog, conversion, dwell times, win rate, loss reasons.
    pub fn report(&self) -> Result<FlowReport> {
        Ok(self.with(|core| core.report())?.into())
    }

    /// Overdue clients per supervisor (the escalation list).
    pub fn overdue(&self) -> Result<Vec<OverdueGroup>> {
        let groups = self.with(|core| core.overdue())?;
        Ok(groups.into_iter().map(Into::into).collect())
    }

    /// Ids of the documents changed on this device and not yet acknowledged by a sync
    /// server ("N changes not synced").
    pub fn outbox(&self) -> Result<Vec<String>> {
        self.with(|core| core.outbox())
    }

    // ----- exchanging changes as files --------------------------------------------------

    /// This replica's heads: pass them to another replica's `exportBundle` to receive only
    /// what this one lacks.
    pub fn heads(&self) -> Result<Vec<u8>> {
        self.with(|core| core.heads())
    }

    /// A bundle of changes for other replicas of the team (share it as a file). With
    /// another replica's `heads`, only the changes that replica lacks.
    pub fn export_bundle(&self, have: Option<Vec<u8>>) -> Result<Vec<u8>> {
        self.with(|core| core.export(have.as_deref()))
    }

    /// `exportBundle` on a worker thread: a Kotlin `suspend fun`, a Swift `async func`.
    pub async fn export_bundle_async(self: Arc<Self>, have: Option<Vec<u8>>) -> Result<Vec<u8>> {
        Self::off_thread(move || self.export_bundle(have)).await
    }

    /// Merges a bundle from another replica of the team. Importing the same bundle again
    /// changes nothing; a corrupt or foreign bundle is refused whole (`InvalidInput` on
    /// `bundle`). The listener hears every client the import changed.
    pub fn import_bundle(&self, bundle: Vec<u8>) -> Result<ImportSummary> {
        let summary = self.edit(
            |core| core.import(&bundle),
            |summary| summary.changed_clients.clone(),
        )?;
        Ok(summary.into())
    }

    /// `importBundle` on a worker thread: a Kotlin `suspend fun`, a Swift `async func`.
    pub async fn import_bundle_async(self: Arc<Self>, bundle: Vec<u8>) -> Result<ImportSummary> {
        Self::off_thread(move || self.import_bundle(bundle)).await
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Replica {
    // ----- syncing with the server ------------------------------------------------------

    /// Syncs with the server this replica joined (`joinServer`): uploads this device's
    /// changes (the `outbox`), downloads the team's changes this user may see, and repeats
    /// until both sides are in step (a bounded number of rounds; `pending` in the report
    /// tells what is left for the next sync). The listener then hears every client the sync
    /// changed here.
    ///
    /// A Kotlin `suspend fun`, a Swift `async func`, a Python coroutine: the work runs on a
    /// worker thread of the SDK and never blocks the caller's thread, so it may be awaited
    /// from the main thread. Other calls on this replica wait while a sync runs.
    ///
    /// Call it at app start (after opening the replica) and when the app returns to the
    /// foreground; when connectivity is regained; periodically in the background (Android
    /// WorkManager with a `CONNECTED` constraint, iOS `BGAppRefreshTask`); and shortly after
    /// local edits (debounced). Changes made offline are kept and go with the next sync.
    ///
    /// Fails with `Network` when the server cannot be reached or could not finish (retry
    /// later: nothing is lost), with `NotPermitted` when the server refuses this device's
    /// token (revoked, or the user left the team), and with `InvalidInput` on `server` when
    /// this replica never joined a server (use `syncWith`).
    pub async fn sync(self: Arc<Self>) -> Result<SyncReport> {
        Self::off_thread(move || {
            let remembered = self.with(|core| core.server())?;
            let (url, token) = remembered.ok_or_else(|| ApiError::InvalidInput {
                field: "server".to_string(),
                reason: "this replica has not joined a sync server: join with joinServer, \
                         or sync with syncWith"
                    .to_string(),
            })?;
            self.sync_blocking(&url, &token)
        })
        .await
    }

    /// `sync` with an explicit server and device token instead of the remembered ones
    /// (e.g. a replica created from a provisioning bundle, or a server that moved). The
    /// replica does not remember them. Runs off the caller's thread like `sync`.
    pub async fn sync_with(
        self: Arc<Self>,
        server_url: String,
        device_token: String,
    ) -> Result<SyncReport> {
        Self::off_thread(move || self.sync_blocking(&server_url, &device_token)).await
    }

    /// The sync server this replica joined (its URL), if any; the token is not returned.
    pub fn server_url(&self) -> Result<Option<String>> {
        Ok(self.with(|core| core.server())?.map(|(url, _)| url))
    }
}

impl Replica {
    /// One whole sync on the current (worker) thread; other calls may run between its
    /// round trips, and the listener is told after the core replica is released.
    fn sync_blocking(&self, server_url: &str, device_token: &str) -> Result<SyncReport> {
        // The core holds the lock only between network round trips.
        let report = remote::sync(&self.core, server_url, device_token)?;
        self.notify(report.changed_clients.clone());
        Ok(report.into())
    }

    /// Runs blocking replica work on tokio's blocking pool so that the caller's thread
    /// (and the foreign async runtime driving the future) is never blocked on SQLite.
    async fn off_thread<T: Send + 'static>(
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
            Err(ApiError::Storage {
                reason: format!("the worker thread failed: {e}"),
            })
        })
    }
}
