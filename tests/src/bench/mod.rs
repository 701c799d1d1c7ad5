//! The benchmark harness (DESIGN.md §7): each scenario runs against a real FieldSync
//! server on loopback with real replica files, and, in the same process and on the same
//! documents, against the naive baseline and the floor ([`baseline`]). Bytes are counted
//! by a proxy in front of each server, so they include HTTP headers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use automerge::AutoCommit;
use fieldsync_core::client::NoteKind;
use fieldsync_core::remote;
use fieldsync_core::store::documents;
use fieldsync_core::{ClientId, Replica, SystemClock, UserId};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

use crate::generator::{self, People, TeamSpec};

pub mod baseline;
pub mod net;

use baseline::{BoardCounts, FloorDevice, NaiveDevice, Shared};
use net::{Counter, Running};

/// Sizes of a run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Clients of the large scenarios (new phone, no-change, board, memory).
    pub clients: usize,
    /// Clients of back-online and handover (a fifth of `clients` by default).
    pub small_clients: usize,
    /// Devices syncing at once.
    pub devices: usize,
    /// Sync rounds per device in the concurrency scenario.
    pub rounds: usize,
    /// Documents changed on each side in back-online.
    pub changed: usize,
    /// Seed of the generated team.
    pub seed: u64,
    /// Tiny sizes for CI: checks that every scenario runs and converges, not speed.
    pub smoke: bool,
}

impl Config {
    /// Full size (10,000 clients, 200 devices), scaled by `scale`.
    pub fn full(scale: f64) -> Self {
        let n = ((10_000.0 * scale) as usize).max(20);
        Config {
            clients: n,
            small_clients: (n / 5).max(10),
            devices: ((200.0 * scale.min(1.0)) as usize).max(2),
            rounds: 5,
            changed: (n / 200).clamp(2, 50),
            seed: 42,
            smoke: false,
        }
    }

    /// The CI smoke size.
    pub fn smoke() -> Self {
        Config {
            clients: 50,
            small_clients: 30,
            devices: 5,
            rounds: 2,
            changed: 5,
            seed: 7,
            smoke: true,
        }
    }
}

/// One way of doing a scenario, measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Measure {
    /// `fieldsync`, `naive` or `floor`.
    pub way: String,
    /// Wall time, milliseconds.
    pub ms: f64,
    /// Bytes sent by the device(s), headers included.
    pub bytes_up: u64,
    /// Bytes received by the device(s), headers included.
    pub bytes_down: u64,
    /// HTTP requests.
    pub requests: u64,
    /// Peak resident memory, kB (memory scenario only).
    pub peak_rss_kb: Option<u64>,
    /// p99 latency of one sync, ms (concurrency scenario only).
    pub p99_ms: Option<f64>,
    /// Syncs per second (concurrency scenario only).
    pub throughput: Option<f64>,
    /// Failed requests (concurrency scenario only).
    pub errors: Option<u64>,
}

/// A budget of docs/benchmarks.md and whether this run met it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Budget {
    /// The budget.
    pub text: String,
    /// Met?
    pub met: bool,
    /// The figures it was judged on.
    pub detail: String,
}

/// The result of one scenario.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    /// Scenario name.
    pub scenario: String,
    /// Size, in words.
    pub size: String,
    /// FieldSync, naive, floor.
    pub ways: Vec<Measure>,
    /// Other figures (setup times, server-side work).
    pub notes: Vec<String>,
    /// The budget, if the scenario has one.
    pub budget: Option<Budget>,
}

/// Every scenario, in run order.
pub const SCENARIOS: &[&str] = &[
    "new-phone",
    "no-change",
    "board",
    "memory",
    "back-online",
    "handover",
    "concurrent",
];

fn e<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |err| format!("{what}: {err}")
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("did not converge: {}", what()))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Runs `f` and measures its time and the bytes through `counter`.
fn measured<T>(
    way: &str,
    counter: &Counter,
    f: impl FnOnce() -> Result<(T, u64), String>,
) -> Result<(T, Measure), String> {
    let (u0, d0) = counter.get();
    let t = Instant::now();
    let (out, requests) = f()?;
    let elapsed = ms(t);
    let (u1, d1) = counter.get();
    Ok((
        out,
        Measure {
            way: way.into(),
            ms: elapsed,
            bytes_up: u1 - u0,
            bytes_down: d1 - d0,
            requests,
            ..Default::default()
        },
    ))
}

/// A seeded team served three ways.
pub struct World {
    dir: tempfile::TempDir,
    /// The FieldSync server.
    pub fs: Running,
    /// The baseline server.
    pub base: Running,
    /// Its state.
    pub shared: Shared,
    /// Admin token of the FieldSync server.
    pub admin: String,
    /// The team's people.
    pub people: People,
    /// Generated clients: id and owner.
    pub clients: Vec<(ClientId, UserId)>,
    /// Id of the team document.
    pub team_doc_id: String,
    /// The team's founding actor.
    pub founder: String,
    devices: usize,
}

impl World {
    /// Seeds a server with a generated team: `owners(people)` gives the owners of the
    /// `count` clients, round-robin. The baseline server gets the same documents.
    pub fn new(
        rt: &Runtime,
        spec: &TeamSpec,
        count: usize,
        owners: impl Fn(&People) -> Vec<UserId>,
    ) -> Result<World, String> {
        let dir = tempfile::tempdir().map_err(e("tempdir"))?;
        let data = dir.path().join("server");
        let admin = net::create_server_data(&data)?;
        let now = now_ms();
        let mut replica =
            Replica::open(&net::team_db(&data), Arc::new(SystemClock)).map_err(e("team.db"))?;
        let people = generator::add_people(&mut replica, spec)?;
        let mut built =
            generator::build_clients(&replica, spec.seed, count, &owners(&people), now)?;
        generator::import_clients(&mut replica, &mut built)?;
        let team_doc_id = format!("team:{}", replica.team().id);
        let founder = replica.team_doc().founder().to_string();
        let shared: Shared = Default::default();
        {
            let mut inner = shared.lock().map_err(|_| "lock".to_string())?;
            inner
                .docs
                .insert(team_doc_id.clone(), replica.team_doc().doc().clone());
            for c in &built {
                let view = replica.client(&c.id).map_err(e("fold"))?;
                inner.put_row(&baseline::row_of(&view));
                inner.docs.insert(c.id.to_string(), c.doc.clone());
            }
        }
        let clients = built.iter().map(|c| (c.id, c.owner)).collect();
        drop(replica);
        let fs = net::start_fieldsync(rt, &data)?;
        let base = net::serve_router(rt, baseline::router(shared.clone()))?;
        Ok(World {
            dir,
            fs,
            base,
            shared,
            admin,
            people,
            clients,
            team_doc_id,
            founder,
            devices: 0,
        })
    }

    fn path(&mut self, what: &str) -> PathBuf {
        self.devices += 1;
        self.dir.path().join(format!("{what}-{}.db", self.devices))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("server")
    }

    /// A device token for `user`.
    pub fn token(&self, user: &UserId) -> Result<String, String> {
        net::issue_device(&self.fs.url, &self.admin, &user.to_string())
    }

    /// Lets a naive device sync these documents (and the team document).
    pub fn naive_visible(&self, device: &str, ids: impl IntoIterator<Item = String>) {
        let mut inner = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let mut list = vec![self.team_doc_id.clone()];
        list.extend(ids);
        inner.visible.insert(device.to_string(), list);
    }

    fn all_ids(&self) -> Vec<String> {
        self.clients.iter().map(|(id, _)| id.to_string()).collect()
    }

    fn ids_of(&self, owner: &UserId) -> Vec<String> {
        self.clients
            .iter()
            .filter(|(_, o)| o == owner)
            .map(|(id, _)| id.to_string())
            .collect()
    }
}

fn fs_board(r: &Replica) -> Result<BoardCounts, String> {
    let board = r.board().map_err(e("board"))?;
    Ok(board
        .columns
        .into_iter()
        .filter(|c| c.count > 0)
        .map(|c| (c.stage, (c.count, c.overdue)))
        .collect())
}

fn stages(b: &BoardCounts) -> BTreeMap<String, i64> {
    b.iter().map(|(k, (c, _))| (k.clone(), *c)).collect()
}

/// A FieldSync device that joined and synced: (replica, token).
fn fs_join(w: &mut World, user: &UserId) -> Result<(Replica, String), String> {
    let token = w.token(user)?;
    let path = w.path("fs");
    let mut r = remote::join(&path, &w.fs.url, &token, Arc::new(SystemClock)).map_err(e("join"))?;
    remote::sync(&mut r, &w.fs.url, &token).map_err(e("sync"))?;
    Ok((r, token))
}

/// The large world and its three synced devices, shared by the 10,000-client scenarios.
pub struct Big {
    /// The world.
    pub world: World,
    phone: Option<(Replica, String)>,
    naive: Option<NaiveDevice>,
    floor: Option<FloorDevice>,
}

/// What a run keeps between scenarios.
pub struct Harness {
    /// Sizes.
    pub cfg: Config,
    rt: Runtime,
    big: Option<Big>,
}

fn spec(cfg: &Config) -> TeamSpec {
    TeamSpec {
        seed: cfg.seed,
        managers: 4,
        reps: if cfg.smoke { 6 } else { 20 },
    }
}

impl Harness {
    /// A harness with its own tokio runtime for the servers.
    pub fn new(cfg: Config) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(e("runtime"))?;
        Ok(Harness { cfg, rt, big: None })
    }

    fn big(&mut self) -> Result<&mut Big, String> {
        if self.big.is_none() {
            let t = Instant::now();
            let world = World::new(&self.rt, &spec(&self.cfg), self.cfg.clients, |p| {
                p.reps.clone()
            })?;
            eprintln!(
                "  seeded {} clients in {:.1} s",
                self.cfg.clients,
                t.elapsed().as_secs_f64()
            );
            self.big = Some(Big {
                world,
                phone: None,
                naive: None,
                floor: None,
            });
        }
        self.big.as_mut().ok_or_else(|| "no world".to_string())
    }

    /// Runs one scenario by name.
    pub fn run(&mut self, name: &str) -> Result<Outcome, String> {
        eprintln!("== {name}");
        match name {
            "new-phone" => self.new_phone(),
            "no-change" => self.no_change(),
            "board" => self.board(),
            "memory" => self.memory(),
            "back-online" => self.back_online(),
            "handover" => self.handover(),
            "concurrent" => self.concurrent(),
            other => Err(format!(
                "unknown scenario {other:?}; use one of {} or all",
                SCENARIOS.join(", ")
            )),
        }
    }

    fn new_phone(&mut self) -> Result<Outcome, String> {
        let n = self.cfg.clients;
        let now = now_ms();
        let big = self.big()?;
        let w = &mut big.world;
        let director = w.people.director;
        let token = w.token(&director)?;
        let path = w.path("fs-phone");
        let mut split = (0.0, 0.0);
        let ((r, _), fs) = measured("fieldsync", &w.fs.counter, || {
            // remote::join: the server streams the bundle while it writes it and the
            // device writes each client as it arrives, so the two overlap.
            let t = Instant::now();
            let mut r =
                remote::join(&path, &w.fs.url, &token, Arc::new(SystemClock)).map_err(e("join"))?;
            split.0 = ms(t);
            let t = Instant::now();
            let rep = remote::sync(&mut r, &w.fs.url, &token).map_err(e("sync"))?;
            split.1 = ms(t);
            Ok(((r, rep.pending), 1 + rep.requests as u64))
        })?;
        let fs_rows = r.board().map_err(e("board"))?.total;
        ensure(fs_rows == n as i64, || {
            format!("fieldsync phone has {fs_rows} of {n}")
        })?;
        let fs_b = fs_board(&r)?;

        w.naive_visible("phone", w.all_ids());
        let npath = w.path("naive-phone");
        let (naive_dev, naive) = measured("naive", &w.base.counter, || {
            let mut d = NaiveDevice::open(&npath, &w.base.url, "phone")?;
            let s = d.sync_all()?;
            Ok((d, s.requests))
        })?;
        let nb = naive_dev.board(&w.team_doc_id, &w.founder, now)?;
        ensure(stages(&nb) == stages(&fs_b), || {
            format!("naive board {nb:?} != {fs_b:?}")
        })?;

        let fpath = w.path("floor-phone");
        let (floor_dev, floor) = measured("floor", &w.base.counter, || {
            let mut d = FloorDevice::open(&fpath, &w.base.url, None)?;
            let s = d.sync()?;
            Ok((d, s.requests))
        })?;
        let (fb, _) = floor_dev.board_and_report(now)?;
        ensure(stages(&fb) == stages(&fs_b), || {
            format!("floor board {fb:?} != {fs_b:?}")
        })?;
        big.phone = Some((r, token));
        big.naive = Some(naive_dev);
        big.floor = Some(floor_dev);
        let ratio = fs.ms / floor.ms.max(0.001);
        Ok(Outcome {
            scenario: "new-phone".into(),
            size: format!("{n} clients"),
            budget: Some(Budget {
                text: "new phone ≤ 3× the floor".into(),
                met: ratio <= 3.0,
                detail: format!("{ratio:.2}× the floor"),
            }),
            ways: vec![fs, naive, floor],
            notes: vec![format!(
                "FieldSync: join (the server streaming the bundle, the device writing it) {:.0} ms, first sync {:.0} ms",
                split.0, split.1
            )],
        })
    }

    fn synced_big(&mut self) -> Result<&mut Big, String> {
        if self.big.as_ref().is_none_or(|b| b.phone.is_none()) {
            eprintln!("  (setting up: new phone)");
            self.new_phone()?;
        }
        self.big()
    }

    fn no_change(&mut self) -> Result<Outcome, String> {
        let n = self.cfg.clients;
        let big = self.synced_big()?;
        let w = &big.world;
        let (r, token) = big.phone.as_mut().ok_or("no phone")?;
        let (rep, fs) = measured("fieldsync", &w.fs.counter, || {
            let rep = remote::sync(r, &w.fs.url, token).map_err(e("sync"))?;
            Ok((rep.clone(), rep.requests as u64))
        })?;
        ensure(rep.downloaded == 0 && rep.pending == 0, || {
            format!("{rep:?}")
        })?;
        let naive_dev = big.naive.as_mut().ok_or("no naive device")?;
        let (ns, naive) = measured("naive", &w.base.counter, || {
            let s = naive_dev.sync_all()?;
            Ok((s.clone(), s.requests))
        })?;
        ensure(ns.changed == 0, || format!("naive changed {}", ns.changed))?;
        let floor_dev = big.floor.as_mut().ok_or("no floor device")?;
        let (fls, floor) = measured("floor", &w.base.counter, || {
            let s = floor_dev.sync()?;
            Ok((s.clone(), s.requests))
        })?;
        ensure(fls.changed == 0, || {
            format!("floor changed {}", fls.changed)
        })?;
        let bytes = fs.bytes_up + fs.bytes_down;
        Ok(Outcome {
            scenario: "no-change".into(),
            size: format!("{n} clients"),
            budget: Some(Budget {
                text: "no-change reconnect: one round trip, ≤ 2 KB".into(),
                met: fs.requests == 1 && bytes <= 2048,
                detail: format!("{} request(s), {bytes} bytes", fs.requests),
            }),
            ways: vec![fs, naive, floor],
            notes: vec![],
        })
    }

    fn board(&mut self) -> Result<Outcome, String> {
        let n = self.cfg.clients;
        let now = now_ms();
        let big = self.synced_big()?;
        let w = &big.world;
        let (r, _) = big.phone.as_ref().ok_or("no phone")?;
        let runs = 5;
        let median = |mut v: Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let mut times = Vec::new();
        let mut fb = BoardCounts::new();
        for _ in 0..runs {
            let t = Instant::now();
            fb = fs_board(r)?;
            let report = r.report().map_err(e("report"))?;
            times.push(ms(t));
            ensure(report.stages.len() == 8, || "report".into())?;
        }
        let fs = Measure {
            way: "fieldsync".into(),
            ms: median(times),
            ..Default::default()
        };
        let naive_dev = big.naive.as_ref().ok_or("no naive device")?;
        let t = Instant::now();
        let nb = naive_dev.board(&w.team_doc_id, &w.founder, now)?;
        let naive = Measure {
            way: "naive".into(),
            ms: ms(t),
            ..Default::default()
        };
        let floor_dev = big.floor.as_ref().ok_or("no floor device")?;
        let mut times = Vec::new();
        let mut flb = BoardCounts::new();
        for _ in 0..runs {
            let t = Instant::now();
            flb = floor_dev.board_and_report(now)?.0;
            times.push(ms(t));
        }
        let floor = Measure {
            way: "floor".into(),
            ms: median(times),
            ..Default::default()
        };
        ensure(
            stages(&nb) == stages(&fb) && stages(&flb) == stages(&fb),
            || format!("boards differ: {fb:?} {nb:?} {flb:?}"),
        )?;
        let ratio = fs.ms / floor.ms.max(0.001);
        Ok(Outcome {
            scenario: "board".into(),
            size: format!("{n} clients, board + report, median of {runs}"),
            budget: Some(Budget {
                text: "board + report ≤ 2× a plain SQLite GROUP BY".into(),
                met: ratio <= 2.0,
                detail: format!("{ratio:.2}× the floor"),
            }),
            ways: vec![fs, naive, floor],
            notes: vec![],
        })
    }

    fn memory(&mut self) -> Result<Outcome, String> {
        let n = self.cfg.clients;
        let big = self.big()?;
        let w = &mut big.world;
        let exe = std::env::current_exe().map_err(e("current_exe"))?;
        let child = |args: Vec<String>| -> Result<(u64, f64), String> {
            let t = Instant::now();
            let out = std::process::Command::new(&exe)
                .arg("--child")
                .args(&args)
                .output()
                .map_err(e("child"))?;
            let elapsed = ms(t);
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                return Err(format!(
                    "child {args:?} failed: {}{}",
                    text,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let v: Value = serde_json::from_str(text.trim()).map_err(e("child output"))?;
            let clients = v["clients"].as_i64().unwrap_or(-1);
            if clients != n as i64 {
                return Err(format!(
                    "did not converge: child {args:?} saw {clients} clients"
                ));
            }
            Ok((v["vmhwm_kb"].as_u64().unwrap_or(0), elapsed))
        };
        let token = w.token(&w.people.director)?;
        let p = w.path("rss-fs");
        let (fs_kb, fs_ms) = child(vec![
            "fieldsync".into(),
            w.fs.url.clone(),
            token,
            p.display().to_string(),
        ])?;
        w.naive_visible("rss", w.all_ids());
        let p = w.path("rss-naive");
        let (naive_kb, naive_ms) = child(vec![
            "naive".into(),
            w.base.url.clone(),
            "rss".into(),
            p.display().to_string(),
            w.team_doc_id.clone(),
            w.founder.clone(),
        ])?;
        let p = w.path("rss-floor");
        let (floor_kb, floor_ms) = child(vec![
            "floor".into(),
            w.base.url.clone(),
            p.display().to_string(),
        ])?;
        let m = |way: &str, kb: u64, t: f64| Measure {
            way: way.into(),
            ms: t,
            peak_rss_kb: Some(kb),
            ..Default::default()
        };
        Ok(Outcome {
            scenario: "memory".into(),
            size: format!("{n} clients: full sync + board in a child process"),
            budget: Some(Budget {
                text: "device peak RSS ≤ 60 MB".into(),
                met: fs_kb <= 60 * 1024,
                detail: format!("{:.1} MB", fs_kb as f64 / 1024.0),
            }),
            ways: vec![
                m("fieldsync", fs_kb, fs_ms),
                m("naive", naive_kb, naive_ms),
                m("floor", floor_kb, floor_ms),
            ],
            notes: vec!["time includes process start".into()],
        })
    }

    fn back_online(&mut self) -> Result<Outcome, String> {
        let n = self.cfg.small_clients;
        let k = self.cfg.changed.min(n / 2);
        let mut w = World::new(&self.rt, &spec(&self.cfg), n, |p| p.reps.clone())?;
        let director = w.people.director;
        // The colleague: a device of the admin, whose changes reach the server. It joins
        // first: a join changes the team document (the actor registry), and a team change
        // makes every device re-fold every client (measured separately below).
        let admin_user = w.people.admin;
        let (mut colleague, ctoken) = fs_join(&mut w, &admin_user)?;
        let (mut phone, token) = fs_join(&mut w, &director)?;
        w.naive_visible("phone", w.all_ids());
        let npath = w.path("naive");
        let mut naive_dev = NaiveDevice::open(&npath, &w.base.url, "phone")?;
        naive_dev.sync_all()?;
        let fpath = w.path("floor");
        let mut floor_dev = FloorDevice::open(&fpath, &w.base.url, None)?;
        floor_dev.sync()?;

        // A day offline: k clients changed on the phone, k others on the server.
        let mine: Vec<ClientId> = w.clients[..k].iter().map(|c| c.0).collect();
        let theirs: Vec<ClientId> = w.clients[k..2 * k].iter().map(|c| c.0).collect();
        let note = "回访客户，确认下周二上门演示，需要准备报价单和案例 / call back: demo next Tuesday, bring quote";
        let mut before = BTreeMap::new();
        for id in mine.iter().chain(&theirs) {
            before.insert(*id, phone.client(id).map_err(e("view"))?.notes.len());
        }
        for id in &mine {
            phone
                .add_note(id, NoteKind::Call, note)
                .map_err(e("note"))?;
            let mut doc = load(&phone, id)?;
            naive_dev.merge_local(&id.to_string(), &mut doc)?;
            floor_dev.edit(&baseline::row_of(&phone.client(id).map_err(e("view"))?))?;
        }
        for id in &theirs {
            colleague
                .add_note(id, NoteKind::Visit, note)
                .map_err(e("note"))?;
        }
        remote::sync(&mut colleague, &w.fs.url, &ctoken).map_err(e("colleague sync"))?;
        {
            let mut inner = w.shared.lock().map_err(|_| "lock".to_string())?;
            for id in &theirs {
                let mut doc = load(&colleague, id)?;
                let server = inner
                    .docs
                    .get_mut(&id.to_string())
                    .ok_or("naive server lacks a document")?;
                server.merge(&mut doc).map_err(e("merge"))?;
                inner.put_row(&baseline::row_of(&colleague.client(id).map_err(e("view"))?));
            }
        }

        let (rep, fs) = measured("fieldsync", &w.fs.counter, || {
            let rep = remote::sync(&mut phone, &w.fs.url, &token).map_err(e("sync"))?;
            Ok((rep.clone(), rep.requests as u64))
        })?;
        ensure(rep.pending == 0, || format!("{rep:?}"))?;
        for id in &theirs {
            let notes = phone.client(id).map_err(e("view"))?.notes.len();
            ensure(notes == before[id] + 1, || {
                format!("phone sees {notes} notes on {id}")
            })?;
        }
        let crep = remote::sync(&mut colleague, &w.fs.url, &ctoken).map_err(e("colleague sync"))?;
        for id in &mine {
            let notes = colleague.client(id).map_err(e("view"))?.notes.len();
            ensure(notes == before[id] + 1, || {
                format!(
                    "the colleague sees {notes} notes on {id} after its sync ({crep:?}); the phone's sync was {rep:?}"
                )
            })?;
        }
        let (ns, naive) = measured("naive", &w.base.counter, || {
            let s = naive_dev.sync_all()?;
            Ok((s.clone(), s.requests))
        })?;
        ensure(ns.changed as usize == k, || {
            format!("naive device changed {} documents", ns.changed)
        })?;
        {
            let mut inner = w.shared.lock().map_err(|_| "lock".to_string())?;
            for id in &mine {
                let heads = inner
                    .docs
                    .get_mut(&id.to_string())
                    .map(|d| d.get_heads())
                    .unwrap_or_default();
                let mut phone_doc = load(&phone, id)?;
                ensure(heads == phone_doc.get_heads(), || {
                    format!("naive server differs on {id}")
                })?;
            }
        }
        let (fls, floor) = measured("floor", &w.base.counter, || {
            let s = floor_dev.sync()?;
            Ok((s.clone(), s.requests))
        })?;
        ensure(fls.changed as usize >= k, || {
            format!("floor got {}", fls.changed)
        })?;
        // The same phone after another device joined (a team-document change only).
        let other = w.people.reps[0];
        fs_join(&mut w, &other)?;
        let t = Instant::now();
        remote::sync(&mut phone, &w.fs.url, &token).map_err(e("sync"))?;
        let team_change_ms = ms(t);
        let speed = naive.ms / fs.ms.max(0.001);
        let fs_bytes = fs.bytes_up + fs.bytes_down;
        let naive_bytes = naive.bytes_up + naive.bytes_down;
        Ok(Outcome {
            scenario: "back-online".into(),
            size: format!("{n} clients, {k} changed on the phone and {k} on the server"),
            budget: Some(Budget {
                text: "back online ≥ 10× faster than naive, ≤ 1/5 of its bytes".into(),
                met: speed >= 10.0 && fs_bytes * 5 <= naive_bytes,
                detail: format!(
                    "{speed:.1}× faster, {:.1}% of the bytes",
                    100.0 * fs_bytes as f64 / naive_bytes.max(1) as f64
                ),
            }),
            ways: vec![fs, naive, floor],
            notes: vec![format!(
                "a later sync that brings only a team-document change (another device joined) took {team_change_ms:.0} ms"
            )],
        })
    }

    fn handover(&mut self) -> Result<Outcome, String> {
        let n = self.cfg.small_clients;
        let own = (n / 100).max(3);
        let spec = spec(&self.cfg);
        // Rep 0 owns n clients, rep 1 owns a few.
        let mut w = World::new(&self.rt, &spec, n + own, |p| {
            let mut v = vec![p.reps[0]; 100];
            v.extend(std::iter::repeat_n(p.reps[1], (100 * own / n).max(1)));
            v
        })?;
        let (leaver, heir) = (w.people.reps[0], w.people.reps[1]);
        let handed = w.ids_of(&leaver);
        let kept = w.ids_of(&heir);
        let (mut r, token) = fs_join(&mut w, &heir)?;
        w.naive_visible("heir", kept.clone());
        let npath = w.path("naive");
        let mut naive_dev = NaiveDevice::open(&npath, &w.base.url, "heir")?;
        naive_dev.sync_all()?;
        let fpath = w.path("floor");
        let mut floor_dev = FloorDevice::open(&fpath, &w.base.url, Some(&heir.to_string()))?;
        floor_dev.sync()?;

        let t = Instant::now();
        let out = net::post_json(
            &w.fs.url,
            &w.admin,
            &format!("/v1/admin/users/{leaver}/depart"),
            &json!({ "handover_to": [heir.to_string()], "reason": "离职 departed" }),
        )?;
        let depart_ms = ms(t);
        let count = out["handed"].as_array().map(Vec::len).unwrap_or(0);
        ensure(count == handed.len(), || format!("handed {count}"))?;
        // The baselines get the server's documents after the handover.
        {
            let conn = rusqlite::Connection::open_with_flags(
                net::team_db(&w.data()),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .map_err(e("team.db"))?;
            let mut inner = w.shared.lock().map_err(|_| "lock".to_string())?;
            for id in &handed {
                let doc = documents::load(&conn, id)
                    .map_err(e("load"))?
                    .ok_or("handed document missing")?;
                inner.docs.insert(id.clone(), doc);
                let row = inner.rows.get(id).map(|r| r.2.clone()).unwrap_or_default();
                let mut row: Value = serde_json::from_str(&row).map_err(e("row"))?;
                row["owner"] = json!(heir.to_string());
                inner.put_row(&row);
            }
        }
        w.naive_visible("heir", kept.iter().chain(&handed).cloned());

        let (rep, fs) = measured("fieldsync", &w.fs.counter, || {
            let rep = remote::sync(&mut r, &w.fs.url, &token).map_err(e("sync"))?;
            Ok((rep.clone(), rep.requests as u64))
        })?;
        let total = r.board().map_err(e("board"))?.total as usize;
        ensure(
            total == handed.len() + kept.len() && rep.pending == 0,
            || format!("heir sees {total} clients"),
        )?;
        let (_, naive) = measured("naive", &w.base.counter, || {
            let s = naive_dev.sync_all()?;
            Ok((s.clone(), s.requests))
        })?;
        let nc = naive_dev.count()? as usize;
        ensure(nc == total + 1, || format!("naive heir has {nc}"))?;
        let (_, floor) = measured("floor", &w.base.counter, || {
            let s = floor_dev.sync()?;
            Ok((s.clone(), s.requests))
        })?;
        let fc = floor_dev.count()? as usize;
        ensure(fc == total, || format!("floor heir has {fc}"))?;
        Ok(Outcome {
            scenario: "handover".into(),
            size: format!(
                "{} clients handed over; the heir's device syncs",
                handed.len()
            ),
            budget: None,
            ways: vec![fs, naive, floor],
            notes: vec![format!(
                "server: depart + handover of {} clients took {depart_ms:.0} ms",
                handed.len()
            )],
        })
    }

    fn concurrent(&mut self) -> Result<Outcome, String> {
        let devices = self.cfg.devices;
        let rounds = self.cfg.rounds;
        let per = (self.cfg.small_clients / devices).max(2);
        let spec = TeamSpec {
            seed: self.cfg.seed,
            managers: (devices / 20).max(1),
            reps: devices,
        };
        let mut w = World::new(&self.rt, &spec, devices * per, |p| p.reps.clone())?;
        let reps = w.people.reps.clone();
        let mut tokens = Vec::new();
        for rep in &reps {
            tokens.push(w.token(rep)?);
        }
        let mut paths = Vec::new();
        for (i, rep) in reps.iter().enumerate() {
            w.naive_visible(&format!("d{i}"), w.ids_of(rep));
            paths.push((w.path("fs"), w.path("naive"), w.path("floor")));
        }
        let owned: Vec<Vec<ClientId>> = reps
            .iter()
            .map(|r| {
                w.clients
                    .iter()
                    .filter(|c| c.1 == *r)
                    .map(|c| c.0)
                    .collect()
            })
            .collect();
        let note = "电话跟进：客户确认预算，约定周五前发送正式报价 / follow-up: budget confirmed";
        // Joins at once, then rounds of edit + sync at once.
        let run_threads = |way: &'static str| -> Result<(Measure, Vec<f64>, f64), String> {
            let barrier = Arc::new(Barrier::new(devices));
            let counter = if way == "fieldsync" {
                &w.fs.counter
            } else {
                &w.base.counter
            };
            let (u0, d0) = counter.get();
            let started = Instant::now();
            let results: Vec<Result<DeviceRun, String>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..devices)
                    .map(|i| {
                        let barrier = barrier.clone();
                        let (fs_url, base_url) = (w.fs.url.clone(), w.base.url.clone());
                        let token = tokens[i].clone();
                        let (fp, np, flp) = paths[i].clone();
                        let ids = owned[i].clone();
                        let rep = reps[i].to_string();
                        s.spawn(move || {
                            device_loop(
                                way, &barrier, &fs_url, &base_url, &token, &fp, &np, &flp, &ids,
                                &rep, i, rounds, note,
                            )
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
                    .collect()
            });
            let wall = ms(started);
            let (u1, d1) = counter.get();
            let mut lat = Vec::new();
            let (mut requests, mut errors, mut join_ms) = (0, 0, 0.0f64);
            for r in results {
                match r {
                    Ok((l, req, err, j)) => {
                        lat.extend(l);
                        requests += req;
                        errors += err;
                        join_ms = join_ms.max(j);
                    }
                    Err(m) => {
                        eprintln!("  device failed: {m}");
                        errors += 1;
                    }
                }
            }
            lat.sort_by(|a, b| a.total_cmp(b));
            let p99 = lat
                .get(((lat.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0.0);
            let busy = wall - join_ms;
            Ok((
                Measure {
                    way: way.into(),
                    ms: busy,
                    bytes_up: u1 - u0,
                    bytes_down: d1 - d0,
                    requests,
                    p99_ms: Some(p99),
                    throughput: Some(lat.len() as f64 / (busy / 1000.0).max(1e-9)),
                    errors: Some(errors),
                    ..Default::default()
                },
                lat,
                join_ms,
            ))
        };
        let (fs, _, fs_join_ms) = run_threads("fieldsync")?;
        let (naive, _, _) = run_threads("naive")?;
        let (floor, _, _) = run_threads("floor")?;
        let errors = fs.errors.unwrap_or(0) + naive.errors.unwrap_or(0) + floor.errors.unwrap_or(0);
        let budget = Budget {
            text: format!("{devices} concurrent devices: no errors"),
            met: fs.errors == Some(0),
            detail: format!(
                "{} errors, {:.0} syncs/s, p99 {:.0} ms",
                fs.errors.unwrap_or(0),
                fs.throughput.unwrap_or(0.0),
                fs.p99_ms.unwrap_or(0.0)
            ),
        };
        if errors > 0 && self.cfg.smoke {
            return Err(format!("{errors} errors with {devices} devices"));
        }
        Ok(Outcome {
            scenario: "concurrent".into(),
            size: format!(
                "{devices} devices × {rounds} rounds (edit one client + sync), {per} clients each"
            ),
            budget: Some(budget),
            ways: vec![fs, naive, floor],
            notes: vec![format!(
                "all {devices} FieldSync devices joined at once in {fs_join_ms:.0} ms (not in the time)"
            )],
        })
    }
}

/// What one device of the concurrency scenario did: sync latencies (ms), requests,
/// errors, setup time (ms).
type DeviceRun = (Vec<f64>, u64, u64, f64);

fn load(r: &Replica, id: &ClientId) -> Result<AutoCommit, String> {
    documents::load(r.store().conn(), &id.to_string())
        .map_err(e("load"))?
        .ok_or_else(|| format!("{id} missing"))
}

/// One device of the concurrency scenario: set up (join / first sync), wait for the
/// others, then `rounds` of edit + sync. Returns sync latencies, requests, errors and
/// the setup time.
#[allow(clippy::too_many_arguments)]
fn device_loop(
    way: &str,
    barrier: &Barrier,
    fs_url: &str,
    base_url: &str,
    token: &str,
    fs_path: &Path,
    naive_path: &Path,
    floor_path: &Path,
    ids: &[ClientId],
    rep: &str,
    i: usize,
    rounds: usize,
    note: &str,
) -> Result<DeviceRun, String> {
    let t = Instant::now();
    let mut lat = Vec::new();
    let (mut requests, mut errors) = (0u64, 0u64);
    match way {
        "fieldsync" => {
            let joined = remote::join(fs_path, fs_url, token, Arc::new(SystemClock));
            let setup = ms(t);
            barrier.wait();
            let mut r = joined.map_err(e("join"))?;
            requests += 1;
            for k in 0..rounds {
                r.add_note(&ids[k % ids.len()], NoteKind::Call, note)
                    .map_err(e("note"))?;
                let t = Instant::now();
                match remote::sync(&mut r, fs_url, token) {
                    Ok(rep) if rep.pending == 0 => requests += rep.requests as u64,
                    Ok(rep) => {
                        requests += rep.requests as u64;
                        errors += 1;
                    }
                    Err(err) => {
                        eprintln!("  device {i}: {err}");
                        errors += 1;
                    }
                }
                lat.push(ms(t));
            }
            Ok((lat, requests, errors, setup))
        }
        "naive" => {
            let mut d = NaiveDevice::open(naive_path, base_url, &format!("d{i}"))?;
            d.sync_all()?;
            let setup = ms(t);
            barrier.wait();
            for k in 0..rounds {
                let id = ids[k % ids.len()].to_string();
                let (doc, state) = d.load(&id)?.ok_or("missing")?;
                let mut c =
                    fieldsync_core::client::ClientDoc::from_doc(doc, None).map_err(e("doc"))?;
                c.append(
                    fieldsync_core::client::EventList::Notes,
                    &fieldsync_core::client::Note {
                        id: format!("{i}-{k}"),
                        kind: "call".into(),
                        text: note.into(),
                        by: rep.into(),
                        at: now_ms(),
                    },
                )
                .map_err(e("note"))?;
                c.doc_mut().commit();
                d.store(&id, c.doc_mut(), &state)?;
                let t = Instant::now();
                match d.sync_all() {
                    Ok(s) => requests += s.requests,
                    Err(err) => {
                        eprintln!("  naive device {i}: {err}");
                        errors += 1;
                    }
                }
                lat.push(ms(t));
            }
            Ok((lat, requests, errors, setup))
        }
        _ => {
            let mut d = FloorDevice::open(floor_path, base_url, Some(rep))?;
            d.sync()?;
            let setup = ms(t);
            barrier.wait();
            for k in 0..rounds {
                let id = ids[k % ids.len()].to_string();
                let body: String = d.row_body(&id)?;
                let mut row: Value = serde_json::from_str(&body).map_err(e("row"))?;
                if let Some(notes) = row["notes"].as_array_mut() {
                    notes.push(
                        json!({"id": format!("{i}-{k}"), "kind": "call", "text": note,
                        "by": rep, "at": now_ms()}),
                    );
                }
                d.edit(&row)?;
                let t = Instant::now();
                match d.sync() {
                    Ok(s) => requests += s.requests,
                    Err(err) => {
                        eprintln!("  floor device {i}: {err}");
                        errors += 1;
                    }
                }
                lat.push(ms(t));
            }
            Ok((lat, requests, errors, setup))
        }
    }
}

/// Peak resident memory of this process, kB (VmHWM).
pub fn vmhwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The memory scenario's child process: one device's full sync and board, then its
/// peak RSS as JSON.
pub fn child(args: &[String]) -> Result<String, String> {
    let now = now_ms();
    let arg = |i: usize| args.get(i).cloned().ok_or_else(|| format!("argument {i}"));
    let clients = match arg(0)?.as_str() {
        "fieldsync" => {
            let (url, token, path) = (arg(1)?, arg(2)?, arg(3)?);
            let mut r = remote::join(Path::new(&path), &url, &token, Arc::new(SystemClock))
                .map_err(e("join"))?;
            remote::sync(&mut r, &url, &token).map_err(e("sync"))?;
            let board = r.board().map_err(e("board"))?;
            r.report().map_err(e("report"))?;
            board.total
        }
        "naive" => {
            let (url, device, path, team, founder) = (arg(1)?, arg(2)?, arg(3)?, arg(4)?, arg(5)?);
            let mut d = NaiveDevice::open(Path::new(&path), &url, &device)?;
            d.sync_all()?;
            d.board(&team, &founder, now)?.values().map(|v| v.0).sum()
        }
        "floor" => {
            let (url, path) = (arg(1)?, arg(2)?);
            let mut d = FloorDevice::open(Path::new(&path), &url, None)?;
            d.sync()?;
            d.board_and_report(now)?.0.values().map(|v| v.0).sum()
        }
        other => return Err(format!("unknown child {other}")),
    };
    Ok(json!({ "clients": clients, "vmhwm_kb": vmhwm_kb() }).to_string())
}

fn human_bytes(b: u64) -> String {
    if b >= 10 * 1024 * 1024 {
        format!("{:.1} MB", b as f64 / (1024.0 * 1024.0))
    } else if b >= 10 * 1024 {
        format!("{:.1} KB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// The results as one table (with ratios to FieldSync).
pub fn table(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "| {:<11} | {:<9} | {:>10} | {:>8} | {:>10} | {:>10} | {:>9} | {:>8} | {:<30} |\n",
        "scenario", "way", "time ms", "× FS", "up", "down", "requests", "peak RSS", "other"
    ));
    s.push_str(&format!(
        "|{}|{}|{}|{}|{}|{}|{}|{}|{}|\n",
        "-".repeat(13),
        "-".repeat(11),
        "-".repeat(12),
        "-".repeat(10),
        "-".repeat(12),
        "-".repeat(12),
        "-".repeat(11),
        "-".repeat(10),
        "-".repeat(32)
    ));
    for o in outcomes {
        let fs_ms = o.ways.first().map(|m| m.ms).unwrap_or(0.0);
        for m in &o.ways {
            let other = match (m.throughput, m.p99_ms, m.errors) {
                (Some(t), Some(p), Some(err)) => {
                    format!("{t:.0} syncs/s, p99 {p:.0} ms, {err} err")
                }
                _ => String::new(),
            };
            s.push_str(&format!(
                "| {:<11} | {:<9} | {:>10.1} | {:>8} | {:>10} | {:>10} | {:>9} | {:>8} | {:<30} |\n",
                o.scenario,
                m.way,
                m.ms,
                if m.way == "fieldsync" {
                    "1".to_string()
                } else {
                    format!("{:.2}", m.ms / fs_ms.max(1e-6))
                },
                if m.bytes_up + m.bytes_down == 0 { "-".into() } else { human_bytes(m.bytes_up) },
                if m.bytes_up + m.bytes_down == 0 { "-".into() } else { human_bytes(m.bytes_down) },
                if m.requests == 0 { "-".into() } else { m.requests.to_string() },
                m.peak_rss_kb
                    .map(|k| format!("{:.1} MB", k as f64 / 1024.0))
                    .unwrap_or_else(|| "-".into()),
                other
            ));
        }
    }
    s.push('\n');
    for o in outcomes {
        s.push_str(&format!("- {}: {}", o.scenario, o.size));
        if let Some(b) = &o.budget {
            s.push_str(&format!(
                "; budget \"{}\": {} ({})",
                b.text,
                if b.met { "met" } else { "NOT MET" },
                b.detail
            ));
        }
        for n in &o.notes {
            s.push_str(&format!("; {n}"));
        }
        s.push('\n');
    }
    s
}

/// The machine the run was on.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "mem_gb": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "unix_time": now_ms() / 1000,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}
