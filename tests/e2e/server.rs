//! The sync server end to end (issue 3): a real `fieldsync-server` on 127.0.0.1:0 in this
//! process, real replica files in temporary directories, devices syncing over HTTP with
//! the core's blocking transport, and the admin API called with ureq.
//!
//! Every device shares one `ManualClock` with the server, so SLA colours and timestamps
//! are comparable across replicas. No assertion reads the wall clock: waits are bounded
//! by join timeouts, and sizes are asserted in requests and bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fieldsync_core::client::{ClientDoc, NoteKind};
use fieldsync_core::clock::HOUR_MS as HOUR;
use fieldsync_core::pipeline::Template;
use fieldsync_core::remote::{self, SyncReport};
use fieldsync_core::store::documents::{self, DocKind};
use fieldsync_core::store::read_model::ClientFilter;
use fieldsync_core::sync::{SyncDoc, SyncRequest, SyncResponse, CONTENT_TYPE};
use fieldsync_core::UserId;
use fieldsync_core::{ClientId, Clock, Error, ManualClock, MoveOptions, NewClient, Replica};
use fieldsync_server::hub::{Hub, InitOptions, Limits};
use fieldsync_server::AppState;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;

const T0: i64 = 1_780_000_000_000;

// ----- the server ----------------------------------------------------------------------

fn init() -> InitOptions {
    InitOptions {
        team: "华东销售 East China sales".into(),
        admin: "Admin Chen".into(),
        template: Template::SevenStage,
    }
}

/// A server running in this process on its own tokio runtime.
struct Server {
    data: PathBuf,
    limits: Limits,
    clock: ManualClock,
    url: String,
    running: Option<Running>,
}

struct Running {
    rt: tokio::runtime::Runtime,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Opens the hub on `data` and serves it; returns the admin token on the first start.
    fn start(data: &Path, limits: Limits, clock: &ManualClock) -> (Server, Option<String>) {
        let mut server = Server {
            data: data.to_path_buf(),
            limits,
            clock: clock.clone(),
            url: String::new(),
            running: None,
        };
        let token = server.serve();
        (server, token)
    }

    fn serve(&mut self) -> Option<String> {
        let clock: Arc<dyn Clock> = Arc::new(self.clock.clone());
        let (hub, token) = Hub::open_with_clock(&self.data, &init(), self.limits.clone(), clock)
            .expect("the hub opens");
        let state = AppState::new(hub).expect("the app state builds");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        self.url = format!("http://{}", listener.local_addr().expect("an address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = rt.spawn(fieldsync_server::run(listener, state, async move {
            let _ = stopped.await;
        }));
        self.running = Some(Running { rt, stop, task });
        token
    }

    /// Shuts the server down (finishing requests under way) and drops the hub.
    fn shutdown(&mut self) {
        if let Some(Running { rt, stop, task }) = self.running.take() {
            let _ = stop.send(());
            let done =
                rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await });
            rt.shutdown_timeout(Duration::from_secs(5));
            let served = done.expect("the server stops within 30 s");
            served.expect("the server task").expect("the server ran");
        }
    }

    /// Stops the server and opens a new hub on the same data folder (a new port).
    fn restart(&mut self) {
        self.shutdown();
        let token = self.serve();
        assert!(token.is_none(), "a restart must not create a new admin");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(Running { rt, stop, .. }) = self.running.take() {
            let _ = stop.send(());
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

// ----- HTTP helpers ----------------------------------------------------------------------

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// What an HTTP call answered.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "status {} with a body that is not JSON: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error` of a JSON error body.
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {:?}", self.json()))
            .to_string()
    }
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("the response body reads");
    Answer { status, body }
}

fn auth(token: &str) -> String {
    format!("Bearer {token}")
}

fn get(url: &str, token: Option<&str>) -> Answer {
    let mut req = agent().get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &auth(t));
    }
    read(req.call().expect("GET is answered"))
}

fn post_json(url: &str, token: &str, body: Value) -> Answer {
    read(
        agent()
            .post(url)
            .header("Authorization", &auth(token))
            .send_json(body)
            .expect("POST is answered"),
    )
}

fn delete(url: &str, token: &str) -> Answer {
    read(
        agent()
            .delete(url)
            .header("Authorization", &auth(token))
            .call()
            .expect("DELETE is answered"),
    )
}

/// POST /v1/sync with raw bytes, as a device would (or would not) send them.
fn post_sync(server: &Server, token: Option<&str>, body: &[u8]) -> Answer {
    let mut req = agent()
        .post(format!("{}/v1/sync", server.url))
        .header("Content-Type", CONTENT_TYPE);
    if let Some(t) = token {
        req = req.header("Authorization", &auth(t));
    }
    read(req.send(body).expect("POST /v1/sync is answered"))
}

// ----- devices and the team ----------------------------------------------------------------

/// A device: its replica file and its token.
struct Device {
    name: String,
    user: UserId,
    token: String,
    replica: Replica,
}

impl Device {
    fn try_sync(&mut self, server: &Server) -> Result<SyncReport, Error> {
        remote::sync(&mut self.replica, &server.url, &self.token)
    }

    fn sync(&mut self, server: &Server) -> SyncReport {
        let report = self
            .try_sync(server)
            .unwrap_or_else(|e| panic!("{} syncs: {e}", self.name));
        assert_eq!(report.pending, 0, "{} is in sync: {report:?}", self.name);
        report
    }

    fn ids(&self) -> BTreeSet<String> {
        self.replica
            .list(&ClientFilter::default())
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    }

    fn client_json(&self, id: &ClientId) -> Value {
        serde_json::to_value(self.replica.client(id).unwrap()).unwrap()
    }
}

/// A running server with its admin token, a temporary folder and the shared clock.
struct Fixture {
    dir: TempDir,
    clock: ManualClock,
    server: Server,
    admin_token: String,
}

impl Fixture {
    fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let (server, token) = Server::start(&dir.path().join("server"), limits, &clock);
        Fixture {
            dir,
            clock,
            server,
            admin_token: token.expect("the first start returns the admin's token"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url)
    }

    fn arc_clock(&self) -> Arc<dyn Clock> {
        Arc::new(self.clock.clone())
    }

    /// Adds a user over the admin API.
    fn add_user(&self, name: &str, role: &str, manager: Option<UserId>) -> UserId {
        let a = post_json(
            &self.url("/v1/admin/users"),
            &self.admin_token,
            json!({"name": name, "role": role, "manager": manager.map(|m| m.to_string()), "approves": []}),
        );
        assert_eq!(a.status, 201, "adding {name}: {:?}", a.json());
        a.json()["user_id"].as_str().unwrap().parse().unwrap()
    }

    /// Issues a device token for `user`: `(device id, token)`.
    fn issue(&self, user: UserId) -> (String, String) {
        let a = post_json(
            &self.url("/v1/admin/devices"),
            &self.admin_token,
            json!({ "user": user.to_string() }),
        );
        assert_eq!(a.status, 201, "issuing a device: {:?}", a.json());
        let v = a.json();
        (
            v["device_id"].as_str().unwrap().to_string(),
            v["token"].as_str().unwrap().to_string(),
        )
    }

    /// Joins a new device of `user` with its own replica file.
    fn device(&self, name: &str, user: UserId) -> Device {
        let (_, token) = self.issue(user);
        self.join(name, user, token)
    }

    fn join(&self, name: &str, user: UserId, token: String) -> Device {
        let path = self.dir.path().join(format!("{name}.db"));
        let replica = remote::join(&path, &self.server.url, &token, self.arc_clock())
            .unwrap_or_else(|e| panic!("{name} joins: {e}"));
        assert_eq!(replica.me(), user);
        Device {
            name: name.into(),
            user,
            token,
            replica,
        }
    }

    /// The admin's own device (the token the first start printed).
    fn admin_device(&self) -> Device {
        let path = self.dir.path().join("admin.db");
        let replica = remote::join(&path, &self.server.url, &self.admin_token, self.arc_clock())
            .expect("the admin joins");
        Device {
            name: "admin".into(),
            user: replica.me(),
            token: self.admin_token.clone(),
            replica,
        }
    }

    fn metrics(&self) -> String {
        let a = get(&self.url("/metrics"), None);
        assert_eq!(a.status, 200);
        String::from_utf8(a.body).unwrap()
    }
}

/// The server's change sequence, as the admin's device learns it from a quiet sync.
fn server_seq(admin: &mut Device, server: &Server) -> u64 {
    let report = admin.sync(server);
    assert_eq!(report.uploaded, 0, "the admin device had nothing to upload");
    admin.replica.sync_cursor().unwrap()
}

/// The value of a counter in the Prometheus text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} is not in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Creates a client that passes the lead-quality gate; `n` makes its contact data unique.
fn new_client(replica: &mut Replica, name: &str, n: usize, owner: Option<UserId>) -> ClientId {
    let profile: BTreeMap<String, String> = [
        ("name", name.to_string()),
        ("company", format!("{name} 有限公司")),
        ("phone", format!("138{n:08}")),
        ("company_size", "50-200".to_string()),
        ("budget_range", "100k".to_string()),
        ("decision_maker", "CTO".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    replica
        .create_client(NewClient {
            profile,
            owner,
            ..Default::default()
        })
        .unwrap()
}

fn set(replica: &mut Replica, id: &ClientId, field: &str, value: &str) {
    replica
        .edit_client(id, &[(field.to_string(), Some(value.to_string()))])
        .unwrap();
}

fn move_to(replica: &mut Replica, id: &ClientId, to: &str) {
    let opts = MoveOptions {
        loss_reason: (to == "lost").then(|| "price".to_string()),
        ..Default::default()
    };
    replica.move_stage(id, to, opts).unwrap();
}

// ----- 1. convergence ----------------------------------------------------------------------

#[test]
fn two_reps_and_a_manager_editing_offline_converge_to_identical_clients_boards_and_reports() {
    let f = Fixture::new();
    let m = f.add_user("Manager Wang", "manager", None);
    let r1 = f.add_user("Rep Li", "rep", Some(m));
    let r2 = f.add_user("Rep Zhao", "rep", Some(m));
    let mut man = f.device("manager", m);
    let mut rep1 = f.device("rep1", r1);
    let mut rep2 = f.device("rep2", r2);

    // Each rep owns one client and makes the other a collaborator, so that all three
    // replicas see the same two clients.
    let c1 = new_client(&mut rep1.replica, "华为 Huawei", 1, None);
    rep1.replica.set_collaborator(&c1, r2, true).unwrap();
    let c2 = new_client(&mut rep2.replica, "比亚迪 BYD", 2, None);
    rep2.replica.set_collaborator(&c2, r1, true).unwrap();
    rep1.sync(&f.server);
    rep2.sync(&f.server);
    rep1.sync(&f.server);
    man.sync(&f.server);
    let both: BTreeSet<String> = [c1.to_string(), c2.to_string()].into();
    for d in [&man, &rep1, &rep2] {
        assert_eq!(
            d.ids(),
            both,
            "{} sees both clients before going offline",
            d.name
        );
    }

    // Offline, all three edit.
    f.clock.advance(HOUR);
    set(&mut rep1.replica, &c1, "phone", "13911112222"); // same client, different fields
    set(&mut rep2.replica, &c1, "email", "cto@huawei.example");
    set(&mut rep1.replica, &c1, "budget_range", "500k"); // same field
    set(&mut man.replica, &c1, "budget_range", "1m");
    rep2.replica
        .add_note(&c2, NoteKind::Note, "客户要求下周回访 call back next week")
        .unwrap();
    man.replica
        .add_note(&c2, NoteKind::Call, "经理电话跟进 manager called")
        .unwrap();
    f.clock.advance(60_000);
    move_to(&mut rep1.replica, &c1, "screening"); // concurrent stage moves
    move_to(&mut rep1.replica, &c2, "screening"); // a collaborator moves a stage
    f.clock.advance(60_000);
    move_to(&mut man.replica, &c1, "lost");

    // Sync in varying orders until everyone has seen everything.
    rep2.sync(&f.server);
    man.sync(&f.server);
    rep1.sync(&f.server);
    rep2.sync(&f.server);
    man.sync(&f.server);
    // Time passes so that SLA colours differ from green: c2 has 48 h in screening.
    f.clock.advance(50 * HOUR);

    let devices = [&man, &rep1, &rep2];
    for id in [&c1, &c2] {
        let reference = rep1.client_json(id);
        for d in devices {
            assert_eq!(
                d.client_json(id),
                reference,
                "{} shows client {id} like rep1",
                d.name
            );
        }
    }
    let reference = (
        rep1.replica.board().unwrap(),
        rep1.replica.report().unwrap(),
        rep1.replica.conflicts().unwrap(),
    );
    for d in devices {
        assert!(
            d.replica.outbox().unwrap().is_empty(),
            "{}'s outbox",
            d.name
        );
        assert_eq!(
            d.replica.board().unwrap(),
            reference.0,
            "{}'s board",
            d.name
        );
        assert_eq!(
            d.replica.report().unwrap(),
            reference.1,
            "{}'s report",
            d.name
        );
        assert_eq!(
            d.replica.conflicts().unwrap(),
            reference.2,
            "{}'s conflicts",
            d.name
        );
    }

    // What converged is what was written.
    let v1 = rep1.replica.client(&c1).unwrap();
    assert_eq!(v1.profile["phone"], "13911112222");
    assert_eq!(v1.profile["email"], "cto@huawei.example");
    assert!(v1.concurrent_moves, "the two stage moves are flagged");
    assert_eq!(v1.transitions.len(), 2, "both moves stay in history");
    let v2 = rep1.replica.client(&c2).unwrap();
    assert_eq!(v2.notes.len(), 2);
    assert_eq!(v2.stage, "screening");
    assert_eq!(reference.0.total, 2);
    assert!(
        reference.0.columns.iter().any(|c| c.overdue > 0),
        "the board shows an overdue client (c2 is 50 h in a 48 h stage): {:?}",
        reference.0
    );
    assert_eq!(reference.1.concurrent_moves, 1);

    // The same-field conflict is listed on every replica.
    let listed = &reference.2;
    let c1_conflicts = listed
        .iter()
        .find(|c| c.client_id == c1.to_string())
        .expect("c1 is listed by conflicts()");
    assert!(c1_conflicts.concurrent_moves);
    let budget = c1_conflicts
        .fields
        .iter()
        .find(|c| c.field == "budget_range")
        .expect("budget_range is a conflict");
    let mut values: Vec<&str> = budget.other_values.iter().map(String::as_str).collect();
    values.push(&budget.value);
    values.sort();
    assert_eq!(values, ["1m", "500k"]);
}

// ----- 2. visibility ------------------------------------------------------------------------

/// The ids of the client documents in a raw sync response.
fn client_ids(response: &SyncResponse) -> BTreeSet<String> {
    response
        .docs
        .iter()
        .filter(|d| d.kind == DocKind::Client)
        .map(|d| d.doc_id.clone())
        .collect()
}

#[test]
fn a_rep_never_receives_nor_writes_another_reps_client_and_a_manager_sees_only_their_subtree() {
    let f = Fixture::new();
    let m1 = f.add_user("Manager North", "manager", None);
    let m2 = f.add_user("Manager South", "manager", None);
    let r1 = f.add_user("Rep North 1", "rep", Some(m1));
    let r2 = f.add_user("Rep North 2", "rep", Some(m1));
    let r3 = f.add_user("Rep South", "rep", Some(m2));
    let mut admin = f.admin_device();
    let mut man1 = f.device("man1", m1);
    let mut man2 = f.device("man2", m2);
    let mut rep1 = f.device("rep1", r1);
    let mut rep2 = f.device("rep2", r2);
    let mut rep3 = f.device("rep3", r3);

    let a = new_client(&mut rep1.replica, "Rep1 Client", 1, None);
    let b = new_client(&mut rep2.replica, "Rep2 Client", 2, None);
    let c = new_client(&mut rep3.replica, "Rep3 Client", 3, None);
    for d in [
        &mut rep1, &mut rep2, &mut rep3, &mut man1, &mut man2, &mut admin,
    ] {
        d.sync(&f.server);
    }
    let ids =
        |list: &[&ClientId]| -> BTreeSet<String> { list.iter().map(|c| c.to_string()).collect() };
    assert_eq!(rep1.ids(), ids(&[&a]), "a rep sees only their own client");
    assert_eq!(rep2.ids(), ids(&[&b]));
    assert_eq!(rep3.ids(), ids(&[&c]));
    assert_eq!(man1.ids(), ids(&[&a, &b]), "a manager sees their subtree");
    assert_eq!(man2.ids(), ids(&[&c]), "the other subtree never arrives");
    assert_eq!(admin.ids(), ids(&[&a, &b, &c]), "an admin sees all");

    // Asking from cursor 0, and even naming the client, gets nothing of it.
    let ask = SyncRequest {
        cursor: 0,
        docs: vec![SyncDoc {
            kind: DocKind::Client,
            doc_id: a.to_string(),
            heads: vec![],
            changes: vec![],
        }],
    };
    let answer = post_sync(&f.server, Some(&rep2.token), &ask.encode());
    assert_eq!(answer.status, 200);
    let response = SyncResponse::decode(&answer.body).unwrap();
    assert!(
        client_ids(&response).is_subset(&ids(&[&a, &b])),
        "only the named a and rep2's own b: {:?}",
        client_ids(&response)
    );
    // The named a may be acknowledged (or listed as not visible), never served.
    for named in response.docs.iter().filter(|d| d.doc_id == a.to_string()) {
        assert!(
            named.changes.is_empty(),
            "no byte of rep1's client reaches rep2"
        );
        assert!(named.heads.is_empty(), "not even its heads");
    }
    assert!(
        rep2.replica.edit_client(&a, &[]).is_err(),
        "rep2 has no copy of a"
    );

    // Forge a write: rep1's client document, taken from the manager's replica file,
    // edited with rep2's own actor.
    let before_view = man1.client_json(&a);
    let seq_before = server_seq(&mut admin, &f.server);
    let mut doc = documents::load(man1.replica.store().conn(), &a.to_string())
        .unwrap()
        .unwrap();
    let heads = doc.get_heads();
    let actor = automerge::ActorId::try_from(rep2.replica.identity().actor.as_str()).unwrap();
    doc.set_actor(actor);
    let mut client = ClientDoc::from_doc(doc, None).unwrap();
    client.set_field("phone", Some("13000000000")).unwrap();
    client.set_field("name", Some("hijacked")).unwrap();
    let mut doc = client.into_doc();
    let changes = doc.save_after(&heads);
    assert!(!changes.is_empty());
    let forged = SyncRequest {
        cursor: rep2.replica.sync_cursor().unwrap(),
        docs: vec![SyncDoc {
            kind: DocKind::Client,
            doc_id: a.to_string(),
            heads: doc.get_heads(),
            changes: changes.clone(),
        }],
    };
    let answer = post_sync(&f.server, Some(&rep2.token), &forged.encode());
    assert_eq!(
        answer.status,
        403,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(answer.error().contains("not yours"), "{}", answer.error());
    // Same bytes with the whole document (no delta) are refused too.
    let whole = SyncRequest {
        cursor: 0,
        docs: vec![SyncDoc {
            kind: DocKind::Client,
            doc_id: a.to_string(),
            heads: doc.get_heads(),
            changes: doc.save(),
        }],
    };
    let answer = post_sync(&f.server, Some(&rep2.token), &whole.encode());
    assert_eq!(answer.status, 403);

    // Nothing changed on the server.
    assert_eq!(server_seq(&mut admin, &f.server), seq_before);
    let report = man1.sync(&f.server);
    assert_eq!(report.downloaded, 0, "{report:?}");
    assert_eq!(man1.client_json(&a), before_view);
    assert_eq!(
        admin.replica.client(&a).unwrap().profile["name"],
        "Rep1 Client"
    );
    rep1.sync(&f.server);
    assert_eq!(rep1.replica.client(&a).unwrap().notes.len(), 0);
    assert_eq!(rep1.client_json(&a), before_view);
}

// ----- 3. departure and handover --------------------------------------------------------

#[test]
fn a_departed_reps_offline_work_is_held_for_review_and_accepted_into_the_heirs_clients() {
    let f = Fixture::new();
    let m = f.add_user("Manager Sun", "manager", None);
    let ra = f.add_user("Rep Leaving", "rep", Some(m));
    let rb = f.add_user("Rep Heir", "rep", Some(m));
    let mut admin = f.admin_device();
    let mut man = f.device("manager", m);
    let mut a = f.device("rep_a", ra);
    let mut b = f.device("rep_b", rb);
    let x = new_client(&mut a.replica, "Client X", 1, None);
    let y = new_client(&mut a.replica, "Client Y", 2, None);
    a.sync(&f.server);
    man.sync(&f.server);
    b.sync(&f.server);
    admin.sync(&f.server);
    assert!(b.ids().is_empty());

    // A works offline while the manager records the departure.
    f.clock.advance(HOUR);
    a.replica
        .add_note(&x, NoteKind::Visit, "拜访了客户 visited the client")
        .unwrap();
    move_to(&mut a.replica, &y, "screening");
    a.replica
        .add_note(&y, NoteKind::Call, "约了演示 booked a demo")
        .unwrap();
    a.replica
        .add_note(&x, NoteKind::Note, "预算确认 budget ok")
        .unwrap();
    let a_notes: BTreeSet<String> = [&x, &y]
        .iter()
        .flat_map(|id| a.replica.client(id).unwrap().notes)
        .map(|n| n.id)
        .collect();
    let a_moves: Vec<String> = a
        .replica
        .client(&y)
        .unwrap()
        .transitions
        .iter()
        .map(|t| t.event.id.clone())
        .collect();
    assert_eq!((a_notes.len(), a_moves.len()), (3, 1));

    let answer = post_json(
        &f.url(&format!("/v1/admin/users/{ra}/depart")),
        &man.token,
        json!({"handover_to": [rb.to_string()], "reason": "离职 left"}),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert_eq!(answer.json()["handed"].as_array().unwrap().len(), 2);

    // A's device gets 401 and its upload is held.
    let request = a.replica.sync_request().unwrap();
    assert_eq!(request.docs.len(), 2);
    let answer = post_sync(&f.server, Some(&a.token), &request.encode());
    assert_eq!(answer.status, 401);
    assert!(
        answer.error().contains("held for review"),
        "{}",
        answer.error()
    );
    let wait = get(&f.url("/v1/wait?cursor=0&timeout=1"), Some(&a.token));
    assert_eq!(
        wait.status, 401,
        "a departed device cannot long-poll either"
    );
    let held = get(&f.url("/v1/admin/quarantine"), Some(&man.token));
    assert_eq!(held.status, 200);
    let held = held.json();
    let held = held.as_array().unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["user"], ra.to_string());
    assert_eq!(held[0]["status"], "pending");
    let upload = held[0]["id"].as_i64().unwrap();
    // Not merged yet: the heir sees the clients without A's offline work.
    b.sync(&f.server);
    assert_eq!(b.ids().len(), 2);
    assert!(b.replica.client(&x).unwrap().notes.is_empty());

    // A rep cannot review; the manager accepts.
    let refused = post_json(
        &f.url(&format!("/v1/admin/quarantine/{upload}")),
        &b.token,
        json!({"decision": "accept"}),
    );
    assert_eq!(refused.status, 403);
    let accepted = post_json(
        &f.url(&format!("/v1/admin/quarantine/{upload}")),
        &man.token,
        json!({"decision": "accept"}),
    );
    assert_eq!(
        accepted.status,
        204,
        "{:?}",
        String::from_utf8_lossy(&accepted.body)
    );
    let again = post_json(
        &f.url(&format!("/v1/admin/quarantine/{upload}")),
        &man.token,
        json!({"decision": "reject"}),
    );
    assert_eq!(again.status, 409, "a decision is taken once");
    let held = get(&f.url("/v1/admin/quarantine"), Some(&man.token)).json();
    assert_eq!(held[0]["status"], "accepted");

    // B owns every client and has every one of A's notes and moves.
    for d in [&mut b, &mut man, &mut admin] {
        d.sync(&f.server);
    }
    let both: BTreeSet<String> = [x.to_string(), y.to_string()].into();
    assert_eq!(b.ids(), both);
    let owned = b
        .replica
        .list(&ClientFilter {
            owner: Some(rb.to_string()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(owned.len(), 2, "the heir owns both clients");
    let b_notes: BTreeSet<String> = [&x, &y]
        .iter()
        .flat_map(|id| b.replica.client(id).unwrap().notes)
        .map(|n| n.id)
        .collect();
    assert_eq!(b_notes, a_notes, "every note of A arrived, once");
    let yv = b.replica.client(&y).unwrap();
    let moves: Vec<String> = yv.transitions.iter().map(|t| t.event.id.clone()).collect();
    assert_eq!(moves, a_moves);

    // Exactly one owner everywhere, the same on every replica, an active member.
    for id in [&x, &y] {
        let owner = b.replica.client(id).unwrap().owner;
        assert_eq!(owner, rb.to_string());
        for d in [&man, &admin] {
            let view = d.replica.client(id).unwrap();
            assert_eq!(view.owner, owner, "{} agrees on the owner of {id}", d.name);
            assert_eq!(d.client_json(id), b.client_json(id));
            let row = d.replica.client_row(&id.to_string()).unwrap().unwrap();
            assert_eq!(row.owner, owner);
        }
    }
    for d in [&b, &man, &admin] {
        for row in d.replica.list(&ClientFilter::default()).unwrap() {
            let owner: UserId = row.owner.parse().unwrap();
            let member = &d.replica.team().members[&owner.to_string()];
            assert!(!member.departed, "{} shows a departed owner", d.name);
        }
    }

    // 9. Metrics count the syncs and the held upload.
    let text = f.metrics();
    assert!(metric(&text, "fieldsync_syncs_total") > 0, "{text}");
    assert_eq!(
        metric(&text, "fieldsync_quarantined_uploads_total"),
        1,
        "{text}"
    );
}

// ----- 4. concurrent handovers ---------------------------------------------------------------

/// admin → manager2 → manager1 → {owner rep, heir1, heir2}.
struct HandoverTeam {
    f: Fixture,
    man1: Device,
    man2: Device,
    owner: Device,
    heir1: Device,
    heir2: Device,
    admin: Device,
    client: ClientId,
}

fn double_handover() -> HandoverTeam {
    let f = Fixture::new();
    let m2 = f.add_user("Director Gao", "manager", None);
    let m1 = f.add_user("Manager Hu", "manager", Some(m2));
    let r = f.add_user("Rep Owner", "rep", Some(m1));
    let h1 = f.add_user("Rep Heir One", "rep", Some(m1));
    let h2 = f.add_user("Rep Heir Two", "rep", Some(m1));
    let mut admin = f.admin_device();
    let mut man1 = f.device("man1", m1);
    let mut man2 = f.device("man2", m2);
    let mut owner = f.device("owner", r);
    let mut heir1 = f.device("heir1", h1);
    let mut heir2 = f.device("heir2", h2);
    let client = new_client(&mut owner.replica, "Contested Client", 7, None);
    owner.sync(&f.server);
    man1.sync(&f.server);
    man2.sync(&f.server);

    // Both managers hand the client over, each offline.
    f.clock.advance(HOUR);
    man1.replica
        .handover(&[client], h1, Some("rebalance"))
        .unwrap();
    man2.replica
        .handover(&[client], h2, Some("key account"))
        .unwrap();
    man1.sync(&f.server);
    man2.sync(&f.server);
    man1.sync(&f.server);
    for d in [&mut owner, &mut heir1, &mut heir2, &mut admin] {
        d.sync(&f.server);
    }
    HandoverTeam {
        f,
        man1,
        man2,
        owner,
        heir1,
        heir2,
        admin,
        client,
    }
}

#[test]
fn two_managers_handing_one_client_to_two_reps_converge_to_one_flagged_owner() {
    let t = double_handover();
    let id = &t.client;
    let reference = t.man1.client_json(id);
    let owner = reference["owner"].as_str().unwrap().to_string();
    let heirs = [t.heir1.user.to_string(), t.heir2.user.to_string()];
    assert!(
        heirs.contains(&owner),
        "the owner is one of the heirs: {owner}"
    );
    for d in [&t.man1, &t.man2, &t.admin] {
        assert_eq!(
            d.client_json(id),
            reference,
            "{} shows the client like man1",
            d.name
        );
        let view = d.replica.client(id).unwrap();
        assert!(
            view.concurrent_handovers,
            "{} flags the double handover",
            d.name
        );
        assert_eq!(view.handovers.len(), 2);
        let listed = d.replica.conflicts().unwrap();
        assert!(
            listed
                .iter()
                .any(|c| c.client_id == id.to_string() && c.concurrent_handovers),
            "{} lists the double handover: {listed:?}",
            d.name
        );
        assert_eq!(d.replica.report().unwrap().concurrent_handovers, 1);
    }
    // The winning heir has the client, the other does not.
    let (winner, loser) = if owner == heirs[0] {
        (&t.heir1, &t.heir2)
    } else {
        (&t.heir2, &t.heir1)
    };
    assert_eq!(winner.client_json(id), reference);
    assert!(loser.ids().is_empty(), "{} never owned it", loser.name);
    drop(t.f);
}

#[test]
fn the_previous_owner_learns_that_the_client_was_handed_over() {
    let t = double_handover();
    let id = &t.client;
    let owner = t.man1.replica.client(id).unwrap().owner;
    // The previous owner's replica either dropped the client or shows the new owner;
    // never itself as the owner of a client that the rest of the team gave away.
    if t.owner.ids().contains(&id.to_string()) {
        assert_eq!(
            t.owner.replica.client(id).unwrap().owner,
            owner,
            "the previous owner's replica still names a different owner"
        );
    }
}

// ----- 5. interrupted syncs -------------------------------------------------------------

/// Offline work on `c`: two notes and a move to `to`.
fn offline_work(rep: &mut Device, c: &ClientId, to: &str, round: &str) {
    rep.replica
        .add_note(c, NoteKind::Call, &format!("{round}: 电话 call"))
        .unwrap();
    rep.replica
        .add_note(c, NoteKind::Note, &format!("{round}: 备注 note"))
        .unwrap();
    move_to(&mut rep.replica, c, to);
}

fn assert_history(d: &Device, c: &ClientId, notes: usize, moves: usize) {
    let view = d.replica.client(c).unwrap();
    let note_ids: BTreeSet<&str> = view.notes.iter().map(|n| n.id.as_str()).collect();
    let move_ids: BTreeSet<&str> = view
        .transitions
        .iter()
        .map(|t| t.event.id.as_str())
        .collect();
    assert_eq!(
        view.notes.len(),
        notes,
        "{}: notes {:?}",
        d.name,
        view.notes
    );
    assert_eq!(note_ids.len(), notes, "{}: no note twice", d.name);
    assert_eq!(view.transitions.len(), moves, "{}: moves", d.name);
    assert_eq!(move_ids.len(), moves, "{}: no move twice", d.name);
}

#[test]
fn a_sync_interrupted_at_every_step_loses_nothing_and_duplicates_nothing() {
    let mut f = Fixture::new();
    let m = f.add_user("Manager Qian", "manager", None);
    let r = f.add_user("Rep Flaky Network", "rep", Some(m));
    let mut admin = f.admin_device();
    let mut man = f.device("manager", m);
    let mut rep = f.device("rep", r);
    let c = new_client(&mut rep.replica, "Tunnel Client", 1, None);
    rep.sync(&f.server);
    man.sync(&f.server);

    // (a) The connection drops before the response: the server committed, the device
    // never heard. Its outbox keeps the client; the next sync repeats the upload.
    offline_work(&mut rep, &c, "screening", "a");
    let request = rep.replica.sync_request().unwrap();
    let lost = post_sync(&f.server, Some(&rep.token), &request.encode());
    assert_eq!(lost.status, 200);
    assert_eq!(rep.replica.outbox().unwrap(), [c.to_string()]);
    let seq = server_seq(&mut admin, &f.server);
    assert_history(&admin, &c, 2, 1);
    let report = rep.sync(&f.server);
    assert_eq!(report.requests, 1, "{report:?}");
    assert_eq!(
        server_seq(&mut admin, &f.server),
        seq,
        "the repeated upload added nothing on the server"
    );
    assert!(rep.replica.outbox().unwrap().is_empty());

    // (b) The same request sent twice, then its response applied twice.
    f.clock.advance(HOUR);
    offline_work(&mut rep, &c, "first_contact", "b");
    let request = rep.replica.sync_request().unwrap();
    let body = request.encode();
    let first = post_sync(&f.server, Some(&rep.token), &body);
    let seq = server_seq(&mut admin, &f.server);
    let second = post_sync(&f.server, Some(&rep.token), &body);
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(
        server_seq(&mut admin, &f.server),
        seq,
        "the retry added nothing"
    );
    let response = SyncResponse::decode(&second.body).unwrap();
    rep.replica
        .apply_sync_response(&request, response.clone())
        .unwrap();
    rep.replica.apply_sync_response(&request, response).unwrap();
    assert!(rep.replica.outbox().unwrap().is_empty());
    assert_eq!(rep.sync(&f.server).uploaded, 0);

    // (c) The server restarts between the request and the retry.
    f.clock.advance(HOUR);
    offline_work(&mut rep, &c, "needs_analysis", "c");
    let request = rep.replica.sync_request().unwrap();
    let body = request.encode();
    let before_restart = post_sync(&f.server, Some(&rep.token), &body);
    assert_eq!(before_restart.status, 200);
    f.server.restart();
    let retry = post_sync(&f.server, Some(&rep.token), &body);
    assert_eq!(
        retry.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&retry.body)
    );
    rep.replica
        .apply_sync_response(&request, SyncResponse::decode(&retry.body).unwrap())
        .unwrap();
    assert!(rep.replica.outbox().unwrap().is_empty());
    let report = rep.sync(&f.server);
    assert_eq!((report.requests, report.uploaded), (1, 0), "{report:?}");

    // Six notes and three moves were made; every replica has each exactly once.
    man.sync(&f.server);
    admin.sync(&f.server);
    for d in [&rep, &man, &admin] {
        assert_history(d, &c, 6, 3);
        assert!(
            d.replica.outbox().unwrap().is_empty(),
            "{}'s outbox",
            d.name
        );
        assert_eq!(d.client_json(&c), rep.client_json(&c));
    }
    assert_eq!(rep.replica.client(&c).unwrap().stage, "needs_analysis");
    // A phone joining after the restart gets the same history from the server's files.
    let fresh = f.device("manager_new_phone", m);
    assert_history(&fresh, &c, 6, 3);
}

// ----- 6. cost of a quiet sync -----------------------------------------------------------

#[test]
fn a_replica_with_thousands_of_clients_and_nothing_changed_syncs_in_one_small_round_trip() {
    let n: usize = std::env::var("FIELDSYNC_E2E_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let f = Fixture::new();
    let mut admin = f.admin_device();
    let me = admin.user;
    for i in 0..n {
        new_client(&mut admin.replica, &format!("Client {i}"), i, Some(me));
    }
    let upload = admin.sync(&f.server);
    assert!(upload.uploaded >= n, "{upload:?}");

    // Nothing changed: one request, a header each way.
    let quiet = admin.sync(&f.server);
    assert_eq!(quiet.requests, 1, "{quiet:?}");
    assert_eq!((quiet.uploaded, quiet.downloaded), (0, 0), "{quiet:?}");
    assert!(
        quiet.bytes_sent + quiet.bytes_received < 200,
        "a quiet sync of {n} clients costs {} + {} bytes",
        quiet.bytes_sent,
        quiet.bytes_received
    );

    // A new phone of the same admin: the join bundle carries everything, and the first
    // sync after it is just as small.
    let (_, token) = f.issue(me);
    let mut phone = f.join("admin_phone", me, token);
    assert_eq!(phone.ids().len(), n);
    let first = phone.sync(&f.server);
    assert_eq!(first.requests, 1, "{first:?}");
    assert!(first.bytes_sent + first.bytes_received < 200, "{first:?}");
    assert_eq!(first.downloaded, 0);
}

// ----- 7. bad input -------------------------------------------------------------------

/// A request with one client document whose changes are `changes`.
fn request_with(cursor: u64, doc_id: &str, kind: DocKind, changes: Vec<u8>) -> Vec<u8> {
    SyncRequest {
        cursor,
        docs: vec![SyncDoc {
            kind,
            doc_id: doc_id.to_string(),
            heads: vec![],
            changes,
        }],
    }
    .encode()
}

#[test]
fn malformed_truncated_oversized_and_unauthenticated_requests_get_a_clear_4xx_and_change_nothing() {
    let limits = Limits {
        max_request_bytes: 32 * 1024,
        max_docs_per_request: 10,
        ..Limits::default()
    };
    let f = Fixture::with_limits(limits);
    let m = f.add_user("Manager Strict", "manager", None);
    let r = f.add_user("Rep Careless", "rep", Some(m));
    let mut admin = f.admin_device();
    let mut man = f.device("manager", m);
    let mut rep = f.device("rep", r);
    let (phone2_id, phone2_token) = f.issue(r);
    let mut phone2 = f.join("rep_phone2", r, phone2_token);
    let c = new_client(&mut rep.replica, "Careful Client", 1, None);
    rep.sync(&f.server);
    man.sync(&f.server);
    phone2.sync(&f.server);

    // The rep has a real change waiting; every bad request below carries it or its bytes.
    rep.replica
        .add_note(&c, NoteKind::Note, "这条必须原子提交 all or nothing")
        .unwrap();
    let request = rep.replica.sync_request().unwrap();
    let valid = request.encode();
    let cursor = request.cursor;
    let seq = server_seq(&mut admin, &f.server);
    let view = man.client_json(&c);

    let bad_request = |name: &str, body: &[u8], expect: &str| {
        let a = post_sync(&f.server, Some(&rep.token), body);
        assert_eq!(
            a.status,
            400,
            "{name}: {:?}",
            String::from_utf8_lossy(&a.body)
        );
        assert!(
            a.error().contains(expect),
            "{name}: the error says {expect:?}: {}",
            a.error()
        );
    };
    bad_request(
        "garbage",
        b"this is not a sync request",
        "not a FieldSync sync message",
    );
    bad_request("empty", b"", "not a FieldSync sync message");
    bad_request("truncated", &valid[..valid.len() - 1], "sync message");
    bad_request("header only", &valid[..12], "sync message");
    let mut future = valid.clone();
    future[4..6].copy_from_slice(&99u16.to_be_bytes());
    bad_request("another format version", &future, "not supported");
    let mut response_frame = valid.clone();
    response_frame[6] = 2;
    bad_request("a response frame", &response_frame, "frame");
    let unknown_client = ClientId::random().to_string();
    let corrupt = request_with(
        cursor,
        &unknown_client,
        DocKind::Client,
        vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3],
    );
    bad_request("corrupt automerge bytes of a new client", &corrupt, "");
    let not_a_client = request_with(
        cursor,
        "../../etc/passwd",
        DocKind::Client,
        request.docs[0].changes.clone(),
    );
    bad_request(
        "a document id that is no client id",
        &not_a_client,
        "client id",
    );
    let other_team = request_with(cursor, "team:someone-else", DocKind::Team, vec![1, 2, 3]);
    bad_request(
        "another team's document",
        &other_team,
        "not this team's document",
    );
    let many = SyncRequest {
        cursor,
        docs: (0..11)
            .map(|i| SyncDoc {
                kind: DocKind::Client,
                doc_id: format!("doc-{i}"),
                heads: vec![],
                changes: vec![],
            })
            .collect(),
    };
    bad_request("too many documents", &many.encode(), "limit is 10");
    // All or nothing: the valid note in front of a corrupt document is not kept.
    let mut mixed = request.clone();
    mixed.docs.push(SyncDoc {
        kind: DocKind::Client,
        doc_id: ClientId::random().to_string(),
        heads: vec![],
        changes: vec![0xde, 0xad, 0xbe, 0xef],
    });
    bad_request("a valid document beside a corrupt one", &mixed.encode(), "");

    // Beyond the configured limit: 413 before anything is parsed.
    let huge = request_with(cursor, &c.to_string(), DocKind::Client, vec![7; 64 * 1024]);
    let a = post_sync(&f.server, Some(&rep.token), &huge);
    assert_eq!(a.status, 413, "{:?}", String::from_utf8_lossy(&a.body));
    assert!(a.error().contains("over the limit"), "{:?}", a.error());

    // Unauthenticated: no token, a wrong token, another scheme, a revoked device.
    let unauthorized = |name: &str, a: Answer, expect: &str| {
        assert_eq!(
            a.status,
            401,
            "{name}: {:?}",
            String::from_utf8_lossy(&a.body)
        );
        assert!(a.error().contains(expect), "{name}: {}", a.error());
    };
    unauthorized(
        "no token",
        post_sync(&f.server, None, &valid),
        "missing bearer token",
    );
    unauthorized(
        "a wrong token",
        post_sync(&f.server, Some("fs_0000000000000000"), &valid),
        "unknown token",
    );
    let basic = agent()
        .post(f.url("/v1/sync"))
        .header("Authorization", &format!("Basic {}", rep.token))
        .send(&valid[..])
        .unwrap();
    unauthorized("basic auth", read(basic), "missing bearer token");
    let refused = delete(
        &f.url(&format!("/v1/admin/devices/{phone2_id}")),
        &rep.token,
    );
    assert_eq!(refused.status, 403, "a rep revokes no device");
    let unknown = delete(&f.url("/v1/admin/devices/no-such-device"), &f.admin_token);
    assert_eq!(unknown.status, 404);
    assert!(unknown.error().contains("unknown device"));
    let revoked = delete(
        &f.url(&format!("/v1/admin/devices/{phone2_id}")),
        &f.admin_token,
    );
    assert_eq!(revoked.status, 204);
    phone2
        .replica
        .add_note(&c, NoteKind::Note, "from the stolen phone")
        .unwrap();
    let stolen = phone2.replica.sync_request().unwrap().encode();
    unauthorized(
        "a revoked device",
        post_sync(&f.server, Some(&phone2.token), &stolen),
        "revoked",
    );
    let err = phone2.try_sync(&f.server).unwrap_err();
    assert!(matches!(err, Error::NotPermitted(_)), "{err}");
    unauthorized(
        "a revoked device waiting",
        get(&f.url("/v1/wait?cursor=0&timeout=1"), Some(&phone2.token)),
        "revoked",
    );
    // Bad admin input is refused with a message too.
    let role = post_json(
        &f.url("/v1/admin/users"),
        &f.admin_token,
        json!({"name": "Nobody", "role": "king", "manager": null, "approves": []}),
    );
    assert_eq!(role.status, 400, "{:?}", role.json());
    let by_rep = post_json(
        &f.url("/v1/admin/users"),
        &rep.token,
        json!({"name": "Sneaky", "role": "admin", "manager": null, "approves": []}),
    );
    assert_eq!(by_rep.status, 403, "{:?}", by_rep.json());

    // Nothing of it changed the server or anyone's view.
    assert_eq!(server_seq(&mut admin, &f.server), seq);
    let report = man.sync(&f.server);
    assert_eq!(report.downloaded, 0, "{report:?}");
    assert_eq!(man.client_json(&c), view);
    assert!(!admin
        .replica
        .team()
        .members
        .values()
        .any(|m| m.name == "Sneaky" || m.name == "Nobody"));
    assert!(metric(&f.metrics(), "fieldsync_sync_errors_total") > 0);

    // The rep's own, valid sync still goes through (so the checks above could see a change).
    let report = rep.sync(&f.server);
    assert_eq!(report.uploaded, 1, "{report:?}");
    assert!(server_seq(&mut admin, &f.server) > seq);
    man.sync(&f.server);
    assert_eq!(man.replica.client(&c).unwrap().notes.len(), 1);
}

// ----- 8. live push ----------------------------------------------------------------------

#[test]
fn a_waiting_device_is_woken_by_another_devices_change_and_times_out_without_one() {
    let f = Fixture::new();
    let m = f.add_user("Manager Online", "manager", None);
    let r = f.add_user("Rep Roaming", "rep", Some(m));
    let mut man = f.device("manager", m);
    let mut rep = f.device("rep", r);
    let c = new_client(&mut rep.replica, "Live Client", 1, None);
    rep.sync(&f.server);
    man.sync(&f.server);
    let cursor = man.replica.sync_cursor().unwrap();

    let token = man.token.clone();
    let wait = |cursor: u64, timeout: u64| {
        let url = f.url(&format!("/v1/wait?cursor={cursor}&timeout={timeout}"));
        let token = token.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(get(&url, Some(&token)));
        });
        rx
    };

    let woken = wait(cursor, 10);
    assert!(
        woken.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing changed yet: the wait is still open"
    );
    rep.replica
        .add_note(&c, NoteKind::Call, "客户回电 the client called back")
        .unwrap();
    rep.sync(&f.server);
    let answer = woken
        .recv_timeout(Duration::from_secs(30))
        .expect("the wait returns");
    assert_eq!(
        answer.status, 200,
        "woken by the change, not by the timeout"
    );
    let seq = answer.json()["seq"].as_u64().unwrap();
    assert!(seq > cursor);
    let report = man.sync(&f.server);
    assert_eq!((report.requests, report.downloaded), (1, 1), "{report:?}");
    assert_eq!(man.replica.sync_cursor().unwrap(), seq);

    // No change: 204 after the timeout.
    let quiet = wait(man.replica.sync_cursor().unwrap(), 1)
        .recv_timeout(Duration::from_secs(30))
        .expect("the wait returns");
    assert_eq!(quiet.status, 204);
    assert!(quiet.body.is_empty());
    // The core's helper agrees.
    assert!(
        !remote::wait_for_changes(&f.server.url, &man.token, seq, Duration::from_secs(1)).unwrap()
    );
    assert!(
        remote::wait_for_changes(&f.server.url, &man.token, cursor, Duration::from_secs(1))
            .unwrap()
    );
    // Unauthenticated waits are refused.
    assert_eq!(get(&f.url("/v1/wait?cursor=0&timeout=1"), None).status, 401);
}

#[test]
fn corrupt_automerge_bytes_for_an_existing_client_get_a_400_and_change_nothing() {
    let f = Fixture::new();
    let r = f.add_user("Rep Corrupt", "rep", None);
    let mut admin = f.admin_device();
    let mut rep = f.device("rep", r);
    let c = new_client(&mut rep.replica, "Existing Client", 1, None);
    rep.sync(&f.server);
    let seq = server_seq(&mut admin, &f.server);
    let cursor = rep.replica.sync_cursor().unwrap();
    let mut truncated_change = {
        rep.replica
            .add_note(&c, NoteKind::Note, "this change arrives cut short")
            .unwrap();
        rep.replica.sync_request().unwrap().docs[0].changes.clone()
    };
    truncated_change.truncate(truncated_change.len() / 2);
    for (name, changes) in [
        ("junk", vec![0xde, 0xad, 0xbe, 0xef]),
        (
            "automerge magic then junk",
            vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3],
        ),
        ("a change cut in half", truncated_change),
    ] {
        let body = request_with(cursor, &c.to_string(), DocKind::Client, changes);
        let a = post_sync(&f.server, Some(&rep.token), &body);
        assert_eq!(
            a.status, 400,
            "{name}: corrupt bytes are refused with a clear error"
        );
        assert!(!a.error().is_empty());
    }
    assert_eq!(server_seq(&mut admin, &f.server), seq);
}

#[test]
fn the_server_writes_each_commit_to_disk_before_it_answers() {
    let dir = TempDir::new().expect("a temp dir");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_780_000_000_000));
    for start in ["first start", "restart"] {
        let (hub, _) = Hub::open_with_clock(dir.path(), &init(), Limits::default(), clock.clone())
            .expect("the hub opens");
        let synchronous: i64 = hub
            .replica()
            .store()
            .conn()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("a pragma");
        // 2 = FULL: the write-ahead log is synced on every commit.
        assert_eq!(synchronous, 2, "{start}");
    }
}
