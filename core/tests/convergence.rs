//! The convergence property of DESIGN.md §3, over random operations and random
//! exchanges of bundles:
//!
//! - replicas that have seen the same changes show identical clients, boards and reports;
//! - every client has exactly one owner, a member of the team, and that owner follows only
//!   handovers made by managers and admins (a rep's forged handover changes nothing);
//! - no note, transition, quote, approval or handover that an operation created is lost;
//! - an operation that fails leaves its replica unchanged.
//!
//! Cases: `FIELDSYNC_PROPTEST_CASES` (default 16).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use automerge::ActorId;
use fieldsync_core::bundle::{Bundle, BundleEntry, BundleHeader, BundleKind};
use fieldsync_core::client::{ClientDoc, EventList, Handover, NoteKind};
use fieldsync_core::clock::HOUR_MS;
use fieldsync_core::fold::ClientView;
use fieldsync_core::pipeline::Template;
use fieldsync_core::store::documents::{self, DocKind};
use fieldsync_core::store::read_model::ClientFilter;
use fieldsync_core::team::Role;
use fieldsync_core::{ClientId, Error, ManualClock, MoveOptions, NewClient, Replica, UserId};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

const T0: i64 = 1_780_000_000_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Stage keys of the seven-stage template, in board order.
const STAGES: &[&str] = &[
    "lead",
    "screening",
    "first_contact",
    "needs_analysis",
    "proposal",
    "negotiation",
    "won",
    "lost",
];
const LOSS_REASONS: &[&str] = &["price", "竞品 competitor", "timing", "bogus reason"];
const APPROVAL_ROLES: &[&str] = &["product", "finance", "manager"];

fn cases() -> u32 {
    std::env::var("FIELDSYNC_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(16)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Regressions are reported in the failure message; no file is written next to
        // the test.
        failure_persistence: None,
        max_shrink_iters: 400,
        max_shrink_time: 180_000,
        ..ProptestConfig::default()
    }
}

// ----- the generated case ------------------------------------------------------------

/// The team and its devices.
#[derive(Clone, Debug)]
struct Setup {
    managers: usize,
    reps: usize,
    /// Per user (managers first, then reps): bit 0 signs for `product`, bit 1 for `finance`.
    approves: Vec<u8>,
    /// Users (index into managers then reps) with an extra device, maybe a second one.
    extra_devices: Vec<usize>,
    /// Owners (rep index) of the seeded clients.
    seeds: Vec<usize>,
    /// The final all-to-all sync uses heads (delta bundles) rather than full exports.
    final_delta: bool,
}

#[derive(Clone, Copy, Debug)]
enum Field {
    Name,
    Phone,
    Grade,
    Custom,
}

#[derive(Clone, Debug)]
enum Op {
    /// Edit one profile field.
    Edit {
        r: usize,
        c: usize,
        field: Field,
        value: usize,
    },
    /// Log a note, call or visit.
    Note { r: usize, c: usize, kind: usize },
    /// Move to a stage (by key or display name; past the list: the next stage on the main
    /// line), maybe through the green channel.
    Move {
        r: usize,
        c: usize,
        to: usize,
        by_name: bool,
        skip: bool,
        reason: bool,
        loss: usize,
    },
    /// Request a quote, within the discount band or beyond it.
    Quote { r: usize, c: usize, big: bool },
    /// Decide on a quote requested earlier (by any replica).
    Decide {
        r: usize,
        q: usize,
        role: usize,
        approve: bool,
    },
    /// Hand a client to a rep through the API (admins succeed, managers within their
    /// subtree, reps never).
    Handover { r: usize, c: usize, to: usize },
    /// A rep writes a handover into the document directly and ships it in a bundle; with
    /// `tamper`, it rewrites the `to` of the latest legitimate handover instead.
    Forge {
        r: usize,
        c: usize,
        to: usize,
        claim_manager: bool,
        future: bool,
        after_effective: bool,
        tamper: bool,
        ship_to: u8,
    },
    /// The admin adds a rep under a manager.
    AddRep { manager: usize },
    /// The admin marks a rep departed (离职).
    Depart { rep: usize },
    /// A replica is closed and opened again from its file.
    Reopen { r: usize },
    /// Create a client on a replica (only it knows it until it syncs).
    Create {
        r: usize,
        owner: usize,
        complete: bool,
    },
    /// Export from one replica (all, or what the other lacks by its heads) and import.
    Sync {
        from: usize,
        to: usize,
        delta: bool,
        twice: bool,
    },
    /// Import an earlier bundle again, late.
    Replay { k: usize, to: usize },
}

fn setup_strategy() -> impl Strategy<Value = Setup> {
    (1..=2usize, 2..=3usize)
        .prop_flat_map(|(managers, reps)| {
            let users = managers + reps;
            (
                Just(managers),
                Just(reps),
                prop::collection::vec(0..4u8, users),
                prop::collection::vec(0..users, 0..=2),
                prop::collection::vec(0..reps, 2..=4),
                any::<bool>(),
            )
        })
        .prop_map(
            |(managers, reps, approves, extra_devices, seeds, final_delta)| Setup {
                managers,
                reps,
                approves,
                extra_devices,
                seeds,
                final_delta,
            },
        )
}

fn op_strategy(tamper: bool) -> impl Strategy<Value = Op> {
    let r = 0..5usize;
    // Mostly the first two clients, so that replicas often work on the same one.
    let c = prop_oneof![3 => 0..2usize, 1 => 0..8usize];
    let field = prop_oneof![
        Just(Field::Name),
        Just(Field::Phone),
        Just(Field::Grade),
        Just(Field::Custom)
    ];
    prop_oneof![
        3 => (r.clone(), c.clone(), field, 0..6usize)
            .prop_map(|(r, c, field, value)| Op::Edit { r, c, field, value }),
        3 => (r.clone(), c.clone(), 0..3usize).prop_map(|(r, c, kind)| Op::Note { r, c, kind }),
        6 => (
            r.clone(),
            c.clone(),
            0..STAGES.len() + 4,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0..LOSS_REASONS.len() + 1
        )
            .prop_map(|(r, c, to, by_name, skip, reason, loss)| Op::Move {
                r,
                c,
                to,
                by_name,
                skip,
                reason,
                loss
            }),
        2 => (r.clone(), c.clone(), any::<bool>()).prop_map(|(r, c, big)| Op::Quote { r, c, big }),
        4 => (r.clone(), 0..8usize, 0..APPROVAL_ROLES.len(), any::<bool>())
            .prop_map(|(r, q, role, approve)| Op::Decide { r, q, role, approve }),
        3 => (r.clone(), c.clone(), 0..6usize).prop_map(|(r, c, to)| Op::Handover { r, c, to }),
        2 => (
            r.clone(),
            c.clone(),
            0..6usize,
            (any::<bool>(), any::<bool>(), any::<bool>()),
            if tamper { prop::bool::weighted(0.8).boxed() } else { Just(false).boxed() },
            any::<u8>()
        )
            .prop_map(
                |(r, c, to, (claim_manager, future, after_effective), tamper, ship_to)| Op::Forge {
                    r,
                    c,
                    to,
                    claim_manager,
                    future,
                    after_effective,
                    tamper,
                    ship_to
                }
            ),
        1 => (0..2usize).prop_map(|manager| Op::AddRep { manager }),
        1 => (0..6usize).prop_map(|rep| Op::Depart { rep }),
        1 => r.clone().prop_map(|r| Op::Reopen { r }),
        1 => (r.clone(), 0..3usize, any::<bool>())
            .prop_map(|(r, owner, complete)| Op::Create { r, owner, complete }),
        4 => (r.clone(), r.clone(), any::<bool>(), prop::bool::weighted(0.3))
            .prop_map(|(from, to, delta, twice)| Op::Sync { from, to, delta, twice }),
        1 => (0..64usize, r).prop_map(|(k, to)| Op::Replay { k, to }),
    ]
}

/// Milliseconds the shared clock moves before an operation: sometimes not at all, so
/// that events on different replicas share a timestamp and the id breaks the tie.
fn step_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        2 => Just(0i64),
        3 => 1..120_000i64,
        2 => Just(HOUR_MS),
        1 => Just(5 * HOUR_MS),
        1 => Just(DAY_MS + 3 * HOUR_MS),
    ]
}

fn ops_strategy(tamper: bool) -> impl Strategy<Value = Vec<(i64, Op)>> {
    prop::collection::vec((step_strategy(), op_strategy(tamper)), 10..=40)
}

// ----- the world the operations run in --------------------------------------------------

/// What the test expects every replica to show for one client after the final sync.
#[derive(Debug, Default)]
struct Expected {
    initial_owner: String,
    notes: BTreeSet<String>,
    transitions: BTreeSet<String>,
    quotes: BTreeSet<String>,
    approvals: BTreeSet<String>,
    /// Handovers made through the API by managers and admins, as they were made.
    legit_handovers: BTreeMap<String, Handover>,
    /// Handovers written by reps straight into the document.
    forged_handovers: BTreeSet<String>,
    /// Successful `add_note` / `move_stage` calls (the counts of the issue).
    note_calls: usize,
    move_calls: usize,
}

struct World {
    _dir: tempfile::TempDir,
    clock: ManualClock,
    replicas: Vec<Replica>,
    managers: Vec<UserId>,
    reps: Vec<UserId>,
    clients: Vec<ClientId>,
    expected: HashMap<ClientId, Expected>,
    /// (client, quote id) of every quote requested.
    quotes: Vec<(ClientId, String)>,
    /// Bundles made so far, with the replica a delta bundle was made for.
    bundles: Vec<(Vec<u8>, Option<usize>)>,
    created: usize,
    log: Vec<String>,
}

fn new_client(name: &str, serial: usize, owner: Option<UserId>, complete: bool) -> NewClient {
    let mut c = NewClient {
        owner,
        ..NewClient::default()
    };
    c.profile.insert("name".into(), name.into());
    c.profile
        .insert("company".into(), format!("深圳华强科技{serial}号有限公司"));
    c.profile
        .insert("phone".into(), format!("138{:08}", 10_000_000 + serial));
    if complete {
        c.profile.insert("company_size".into(), "200".into());
        c.profile.insert("budget_range".into(), "50-100万".into());
        c.profile
            .insert("decision_maker".into(), "李总 13800138000".into());
    }
    c
}

/// Whether an error is an expected outcome of a random operation (a rule said no, or the
/// replica has not heard of the client or quote yet).
fn is_rule_error(e: &Error) -> bool {
    matches!(
        e,
        Error::NotPermitted(_)
            | Error::GateRefused { .. }
            | Error::ExceptionNeedsReason { .. }
            | Error::LossReasonRequired { .. }
            | Error::UnknownClient(_)
            | Error::UnknownQuote(_)
            | Error::InvalidInput { .. }
            | Error::Duplicate { .. }
            | Error::Departed(_)
            | Error::UnknownUser(_)
    )
}

/// Heads per document, decoded from a replica's heads file: equal fingerprints mean the
/// replicas have seen the same changes.
fn fingerprint(r: &Replica) -> BTreeMap<String, BTreeSet<Vec<u8>>> {
    let bundle = Bundle::decode(&r.heads().unwrap()).unwrap();
    bundle
        .entries
        .into_iter()
        .map(|e| (e.doc_id, e.data.chunks(32).map(<[u8]>::to_vec).collect()))
        .collect()
}

/// Everything a user can see of a replica, as JSON: every client's view, the board and the
/// report.
fn views(r: &Replica) -> (BTreeMap<String, String>, String, String) {
    let clients = documents::ids(r.store().conn(), DocKind::Client)
        .unwrap()
        .into_iter()
        .map(|id| {
            let view = r.client(&id.parse().unwrap()).unwrap();
            (id, serde_json::to_string_pretty(&view).unwrap())
        })
        .collect();
    let board = serde_json::to_string_pretty(&r.board().unwrap()).unwrap();
    let report = serde_json::to_string_pretty(&r.report().unwrap()).unwrap();
    (clients, board, report)
}

/// What an operation must not change when it fails.
fn snapshot(r: &Replica) -> (Vec<u8>, String, Vec<String>) {
    let heads = Bundle::decode(&r.heads().unwrap()).unwrap();
    let heads: Vec<u8> = heads.entries.into_iter().flat_map(|e| e.data).collect();
    let rows = serde_json::to_string(&r.list(&ClientFilter::default()).unwrap()).unwrap();
    (heads, rows, r.outbox().unwrap())
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> BTreeSet<String> {
    items.iter().map(|i| id(i).to_string()).collect()
}

fn new_ids<T>(before: Option<&[T]>, after: &[T], id: impl Fn(&T) -> &str + Copy) -> Vec<String> {
    let old = before.map(|b| ids(b, id)).unwrap_or_default();
    ids(after, id).difference(&old).cloned().collect()
}

impl World {
    fn build(setup: &Setup) -> World {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let mut admin = Replica::create(
            &dir.path().join("admin.db"),
            "华南销售部",
            "王总",
            Template::SevenStage,
            Arc::new(clock.clone()),
        )
        .unwrap();
        let approves_of = |bits: u8| {
            let mut roles = Vec::new();
            if bits & 1 != 0 {
                roles.push("product".to_string());
            }
            if bits & 2 != 0 {
                roles.push("finance".to_string());
            }
            roles
        };
        let managers: Vec<UserId> = (0..setup.managers)
            .map(|i| {
                admin
                    .add_user(
                        &format!("经理{i}"),
                        Role::Manager,
                        None,
                        approves_of(setup.approves[i]),
                    )
                    .unwrap()
            })
            .collect();
        let reps: Vec<UserId> = (0..setup.reps)
            .map(|i| {
                admin
                    .add_user(
                        &format!("销售{i}"),
                        Role::Rep,
                        Some(managers[i % managers.len()]),
                        approves_of(setup.approves[setup.managers + i]),
                    )
                    .unwrap()
            })
            .collect();
        let users: Vec<UserId> = managers.iter().chain(&reps).copied().collect();
        // A manager's device and a rep's device always; maybe more (even a second phone
        // of the same user).
        let mut device_users = vec![managers[0], reps[0]];
        device_users.extend(setup.extra_devices.iter().map(|&u| users[u]));
        let mut replicas = vec![admin];
        for (i, user) in device_users.iter().enumerate() {
            clock.advance(1_000);
            let provisioning = replicas[0].provision_device(*user).unwrap();
            let device = Replica::join(
                &dir.path().join(format!("device{i}.db")),
                &provisioning,
                Arc::new(clock.clone()),
            )
            .unwrap();
            replicas.push(device);
        }
        let mut world = World {
            _dir: dir,
            clock,
            replicas,
            managers,
            reps,
            clients: Vec::new(),
            expected: HashMap::new(),
            quotes: Vec::new(),
            bundles: Vec::new(),
            created: 0,
            log: Vec::new(),
        };
        for &owner in &setup.seeds {
            world.clock.advance(60_000);
            let serial = world.next_serial();
            let owner = world.reps[owner];
            let id = world.replicas[0]
                .create_client(new_client(
                    &format!("客户{serial}"),
                    serial,
                    Some(owner),
                    true,
                ))
                .unwrap();
            world.clients.push(id);
            world.expected.insert(
                id,
                Expected {
                    initial_owner: owner.to_string(),
                    ..Expected::default()
                },
            );
        }
        let seed = world.replicas[0].export(None).unwrap();
        for r in world.replicas.iter_mut().skip(1) {
            let summary = r.import(&seed).unwrap();
            assert_eq!(summary.new_clients, setup.seeds.len());
        }
        world
    }

    fn next_serial(&mut self) -> usize {
        self.created += 1;
        self.created
    }

    fn role(&self, r: usize) -> Role {
        self.replicas[r].identity().role
    }

    fn client(&self, c: usize) -> ClientId {
        self.clients[c % self.clients.len()]
    }

    fn view(&self, r: usize, id: &ClientId) -> Option<ClientView> {
        match self.replicas[r].client(id) {
            Ok(v) => Some(v),
            Err(Error::UnknownClient(_)) => None,
            Err(e) => panic!("replica {r} cannot show client {id}: {e}"),
        }
    }

    /// Runs one API operation on replica `r`; a failure must be a rule's refusal and must
    /// leave the replica unchanged.
    fn attempt<T>(
        &mut self,
        r: usize,
        what: &str,
        f: impl FnOnce(&mut Replica) -> fieldsync_core::Result<T>,
    ) -> Option<T> {
        let before = snapshot(&self.replicas[r]);
        match f(&mut self.replicas[r]) {
            Ok(v) => {
                self.log.push(format!("{what} on replica {r}: ok"));
                Some(v)
            }
            Err(e) => {
                assert!(
                    is_rule_error(&e),
                    "{what} on replica {r} failed unexpectedly: {e:?}"
                );
                assert_eq!(
                    snapshot(&self.replicas[r]),
                    before,
                    "{what} on replica {r} failed ({e}) but changed the replica"
                );
                self.log.push(format!("{what} on replica {r}: {e}"));
                None
            }
        }
    }

    fn import(&mut self, to: usize, bundle: &[u8], what: &str) -> usize {
        match self.replicas[to].import(bundle) {
            Ok(summary) => summary.changed,
            Err(e) => panic!("{what}: import into replica {to} failed: {e:?}"),
        }
    }

    fn apply(&mut self, op: &Op) {
        let n = self.replicas.len();
        match *op {
            Op::Edit { r, c, field, value } => {
                let r = r % n;
                let id = self.client(c);
                let (key, v) = match field {
                    Field::Name => (
                        "name",
                        ["张三", "李四", "王五", "Acme", "赵六", "钱七"][value],
                    ),
                    Field::Phone => (
                        "phone",
                        [
                            "13800000001",
                            "13800000002",
                            "+86 138 0000 0003",
                            "",
                            "021-5555",
                            "13900000000",
                        ][value],
                    ),
                    Field::Grade => ("grade", ["A", "B", "C", "D", "E", "a"][value]),
                    Field::Custom => (
                        "industry",
                        ["制造", "retail", "金融", "", "能源", "教育"][value],
                    ),
                };
                let fields = [(key.to_string(), (!v.is_empty()).then(|| v.to_string()))];
                self.attempt(r, &format!("edit {key}={v:?} of {id}"), |rep| {
                    rep.edit_client(&id, &fields)
                });
            }
            Op::Note { r, c, kind } => {
                let r = r % n;
                let id = self.client(c);
                let kind = [NoteKind::Note, NoteKind::Call, NoteKind::Visit][kind];
                let before = self.view(r, &id);
                let serial = self.next_serial();
                let text = format!("第{serial}次跟进 follow-up");
                if let Some(after) = self.attempt(r, &format!("{} on {id}", kind.as_str()), |rep| {
                    rep.add_note(&id, kind, &text)
                }) {
                    let new = new_ids(before.as_ref().map(|b| &b.notes[..]), &after.notes, |n| {
                        &n.id
                    });
                    assert_eq!(new.len(), 1, "add_note added {new:?}");
                    let e = self.expected.get_mut(&id).unwrap();
                    e.notes.extend(new);
                    e.note_calls += 1;
                }
            }
            Op::Move {
                r,
                c,
                to,
                by_name,
                skip,
                reason,
                loss,
            } => {
                let r = r % n;
                let id = self.client(c);
                // Past the stage list: the next stage on the main line, as the replica sees it.
                let to = if to < STAGES.len() {
                    to
                } else {
                    let current = self.view(r, &id).map(|v| v.stage).unwrap_or_default();
                    let pipeline = &self.replicas[r].team().pipeline;
                    pipeline
                        .next_on_main_line(&current)
                        .and_then(|next| STAGES.iter().position(|s| *s == next.key))
                        .unwrap_or(to % STAGES.len())
                };
                let target = if by_name {
                    self.replicas[r].team().pipeline.stages[to].name.clone()
                } else {
                    STAGES[to].to_string()
                };
                let opts = MoveOptions {
                    reason: reason.then(|| "客户要求 customer asked".to_string()),
                    skip,
                    loss_reason: LOSS_REASONS.get(loss).map(|s| s.to_string()),
                };
                let before = self.view(r, &id);
                if let Some(after) =
                    self.attempt(r, &format!("move {id} to {target} {opts:?}"), |rep| {
                        rep.move_stage(&id, &target, opts)
                    })
                {
                    let new = new_ids(
                        before.as_ref().map(|b| &b.transitions[..]),
                        &after.transitions,
                        |t| &t.event.id,
                    );
                    assert_eq!(new.len(), 1, "move_stage added {new:?}");
                    let e = self.expected.get_mut(&id).unwrap();
                    e.transitions.extend(new);
                    e.move_calls += 1;
                }
            }
            Op::Quote { r, c, big } => {
                let r = r % n;
                let id = self.client(c);
                let discount = if big { 25.0 } else { 5.0 };
                if let Some((quote, _)) =
                    self.attempt(r, &format!("quote {discount}% on {id}"), |rep| {
                        rep.request_quote(&id, 1_280_000, discount)
                    })
                {
                    self.expected
                        .get_mut(&id)
                        .unwrap()
                        .quotes
                        .insert(quote.clone());
                    self.quotes.push((id, quote));
                }
            }
            Op::Decide {
                r,
                q,
                role,
                approve,
            } => {
                if self.quotes.is_empty() {
                    return;
                }
                let r = r % n;
                let (id, quote) = self.quotes[q % self.quotes.len()].clone();
                let role = APPROVAL_ROLES[role];
                let before = self.view(r, &id);
                if let Some(after) = self.attempt(
                    r,
                    &format!("decide {role} {approve} on quote {quote}"),
                    |rep| rep.decide_quote(&id, &quote, role, approve, Some("ok")),
                ) {
                    let decisions = |v: &ClientView| {
                        v.quotes
                            .iter()
                            .flat_map(|q| q.decisions.clone())
                            .collect::<Vec<_>>()
                    };
                    let new = new_ids(
                        before.as_ref().map(decisions).as_deref(),
                        &decisions(&after),
                        |a| &a.id,
                    );
                    assert_eq!(new.len(), 1, "decide_quote added {new:?}");
                    self.expected.get_mut(&id).unwrap().approvals.extend(new);
                }
            }
            Op::Handover { r, c, to } => {
                let r = r % n;
                let id = self.client(c);
                let to = self.reps[to % self.reps.len()];
                let role = self.role(r);
                let before = self.view(r, &id);
                let result = self.attempt(r, &format!("handover of {id} to {to}"), |rep| {
                    rep.handover(&[id], to, Some("离职 departed"))
                });
                // Admins hand over anything; managers within their subtree (current owner
                // and new owner), as the replica sees it.
                let permitted = |before: &ClientView| {
                    let team = self.replicas[r].team_doc();
                    let me = self.replicas[r].me();
                    let active = |u: &UserId| team.member(u).is_some_and(|m| !m.departed);
                    active(&me) && active(&to) && role == Role::Admin
                        || (active(&me)
                            && active(&to)
                            && role == Role::Manager
                            && team.is_in_subtree(&me, &to)
                            && before
                                .owner
                                .parse()
                                .is_ok_and(|o| team.is_in_subtree(&me, &o)))
                };
                match (before, result) {
                    (None, None) => {} // the replica has not heard of the client
                    (None, Some(_)) => panic!("a handover of a client the replica lacks succeeded"),
                    (Some(before), None) => assert!(
                        !permitted(&before),
                        "a {role:?}'s permitted handover failed"
                    ),
                    (Some(before), Some(after)) => {
                        assert!(permitted(&before), "a {role:?}'s handover succeeded");
                        let after = &after[0];
                        assert_eq!(
                            after.owner,
                            to.to_string(),
                            "the handover did not take on its own replica"
                        );
                        let new = new_ids(Some(&before.handovers[..]), &after.handovers, |h| {
                            &h.event.id
                        });
                        assert_eq!(
                            new.len(),
                            usize::from(before.owner != to.to_string()),
                            "handover added {new:?}"
                        );
                        let made = after
                            .handovers
                            .iter()
                            .filter(|h| new.contains(&h.event.id))
                            .map(|h| (h.event.id.clone(), h.event.clone()));
                        self.expected
                            .get_mut(&id)
                            .unwrap()
                            .legit_handovers
                            .extend(made);
                    }
                }
            }
            Op::Forge {
                r,
                c,
                to,
                claim_manager,
                future,
                after_effective,
                tamper,
                ship_to,
            } => {
                // Only reps forge: pick the first rep replica at or after `r`.
                let Some(r) = (0..n)
                    .map(|k| (r + k) % n)
                    .find(|&k| self.role(k) == Role::Rep)
                else {
                    return;
                };
                let id = self.client(c);
                let to = self.reps[to % self.reps.len()];
                let Some(view) = self.view(r, &id) else {
                    return;
                };
                let rep = &self.replicas[r];
                let now = rep.now();
                let mut doc = raw_client_doc(rep, &id);
                let legit = &self.expected[&id].legit_handovers;
                let victim = view
                    .handovers
                    .iter()
                    .rev()
                    .find(|h| legit.contains_key(&h.event.id));
                // Rewriting `to` with the value it has is no change at all.
                if tamper && victim.is_some_and(|v| v.event.to == to.to_string()) {
                    return;
                }
                let rewrites = tamper && victim.is_some();
                match victim {
                    Some(victim) if tamper => {
                        use automerge::transaction::Transactable;
                        let index = doc
                            .record()
                            .unwrap()
                            .handovers
                            .iter()
                            .position(|h| h.id == victim.event.id)
                            .unwrap();
                        let event = event_obj(&doc, "handovers", index);
                        doc.doc_mut().put(&event, "to", to.to_string()).unwrap();
                        self.log.push(format!(
                            "rewrote handover {} of {id} to {to} on replica {r}, shipped to {ship_to:#b}",
                            victim.event.id
                        ));
                    }
                    _ => {
                        let handover = Handover {
                            id: uuid::Uuid::new_v4().to_string(),
                            from: view.owner.clone(),
                            to: to.to_string(),
                            by: if claim_manager {
                                self.managers[0].to_string()
                            } else {
                                rep.me().to_string()
                            },
                            at: if future { now + 365 * DAY_MS } else { now },
                            reason: Some("forged".into()),
                            after: if after_effective {
                                view.current_handover.clone()
                            } else {
                                None
                            },
                        };
                        doc.append(EventList::Handovers, &handover).unwrap();
                        self.log.push(format!(
                            "forged handover {} of {id} to {to} on replica {r}, shipped to {ship_to:#b}",
                            handover.id
                        ));
                        self.expected
                            .get_mut(&id)
                            .unwrap()
                            .forged_handovers
                            .insert(handover.id);
                    }
                }
                doc.doc_mut().commit();
                let bundle = client_bundle(&self.replicas[r], &id, &mut doc);
                if rewrites {
                    // Events are immutable: every replica refuses the bundle whole.
                    for k in (0..n).filter(|k| *k == r || ship_to & (1 << k) != 0) {
                        let before = snapshot(&self.replicas[k]);
                        let err = self.replicas[k].import(&bundle).unwrap_err().to_string();
                        assert!(err.contains("rewrites an existing event"), "{err}");
                        assert_eq!(
                            snapshot(&self.replicas[k]),
                            before,
                            "a refused bundle changed replica {k}"
                        );
                        self.check_owner(k, &id, "after a refused rewrite");
                    }
                    return;
                }
                // The forger's own replica takes it first (so its actor's next change does
                // not reuse the sequence number), then whoever the bundle reaches. The
                // bundle carries the whole document, so it may bring legitimate news too:
                // the owner must follow exactly the legitimate handovers.
                self.import(r, &bundle, "forged handover");
                self.check_owner(r, &id, "after a forged handover");
                for k in (0..n).filter(|k| *k != r && ship_to & (1 << k) != 0) {
                    self.import(k, &bundle, "forged handover");
                    self.check_owner(k, &id, "after a forged handover");
                }
                self.bundles.push((bundle, None));
            }
            Op::AddRep { manager } => {
                let manager = self.managers[manager % self.managers.len()];
                let serial = self.next_serial();
                if let Some(user) = self.attempt(0, &format!("add rep {serial}"), |admin| {
                    admin.add_user(&format!("新销售{serial}"), Role::Rep, Some(manager), vec![])
                }) {
                    self.reps.push(user);
                }
            }
            Op::Depart { rep } => {
                let rep = self.reps[rep % self.reps.len()];
                self.attempt(0, &format!("{rep} departs"), |admin| {
                    admin.mark_departed(rep)
                });
            }
            Op::Reopen { r } => {
                let r = r % n;
                let before = views(&self.replicas[r]);
                let path = self.replicas[r].path().to_path_buf();
                let reopened = Replica::open(&path, Arc::new(self.clock.clone())).unwrap();
                self.replicas[r] = reopened;
                assert_eq!(
                    views(&self.replicas[r]),
                    before,
                    "replica {r} shows something else after reopening"
                );
                self.log.push(format!("reopened replica {r}"));
            }
            Op::Create { r, owner, complete } => {
                let r = r % n;
                let owner = match self.role(r) {
                    Role::Rep => None,
                    _ => Some(self.reps[owner % self.reps.len()]),
                };
                let serial = self.next_serial();
                let new = new_client(&format!("新客户{serial}"), serial, owner, complete);
                let me = self.replicas[r].me();
                if let Some(id) = self.attempt(r, &format!("create client {serial}"), |rep| {
                    rep.create_client(new)
                }) {
                    self.clients.push(id);
                    self.expected.insert(
                        id,
                        Expected {
                            initial_owner: owner.unwrap_or(me).to_string(),
                            ..Expected::default()
                        },
                    );
                }
            }
            Op::Sync {
                from,
                to,
                delta,
                twice,
            } => {
                let (from, to) = (from % n, to % n);
                let bundle = if delta {
                    let heads = self.replicas[to].heads().unwrap();
                    self.replicas[from].export(Some(&heads)).unwrap()
                } else {
                    self.replicas[from].export(None).unwrap()
                };
                let what = format!("sync {from} → {to} (delta {delta})");
                let changed = self.import(to, &bundle, &what);
                if from == to {
                    assert_eq!(changed, 0, "importing its own export changed replica {to}");
                }
                if twice {
                    assert_eq!(
                        self.import(to, &bundle, &what),
                        0,
                        "{what}: a repeated import changed something"
                    );
                }
                self.log
                    .push(format!("{what}: {changed} documents changed"));
                self.bundles.push((bundle, delta.then_some(to)));
            }
            Op::Replay { k, to } => {
                if self.bundles.is_empty() {
                    return;
                }
                let (bundle, target) = self.bundles[k % self.bundles.len()].clone();
                // A delta bundle is only complete for the replica it was made for.
                let to = target.unwrap_or(to % n);
                let changed = self.import(to, &bundle, "replay");
                self.log
                    .push(format!("replay of bundle {k} into {to}: {changed} changed"));
            }
        }
    }

    /// Every replica exports to every other, in rounds, until all have seen everything.
    fn sync_all(&mut self, delta: bool) {
        let n = self.replicas.len();
        for _round in 0..2 {
            for from in 0..n {
                for to in (0..n).filter(|to| *to != from) {
                    let bundle = if delta {
                        let heads = self.replicas[to].heads().unwrap();
                        self.replicas[from].export(Some(&heads)).unwrap()
                    } else {
                        self.replicas[from].export(None).unwrap()
                    };
                    self.import(to, &bundle, "final sync");
                }
            }
        }
    }

    /// Replicas with identical heads must show identical clients, boards and reports.
    /// Returns how many pairs qualified.
    fn check_pairs_that_saw_the_same_changes(&self) -> usize {
        let prints: Vec<_> = self.replicas.iter().map(fingerprint).collect();
        let views: Vec<_> = self.replicas.iter().map(views).collect();
        let mut pairs = 0;
        for a in 0..self.replicas.len() {
            for b in a + 1..self.replicas.len() {
                if prints[a] != prints[b] {
                    continue;
                }
                pairs += 1;
                let ((ca, ba, ra), (cb, bb, rb)) = (&views[a], &views[b]);
                assert_eq!(ca.keys().collect::<Vec<_>>(), cb.keys().collect::<Vec<_>>());
                for (id, va) in ca {
                    assert_eq!(va, &cb[id], "replicas {a} and {b} saw the same changes but show client {id} differently");
                }
                assert_eq!(
                    ba, bb,
                    "replicas {a} and {b} saw the same changes but show different boards"
                );
                assert_eq!(
                    ra, rb,
                    "replicas {a} and {b} saw the same changes but show different reports"
                );
            }
        }
        pairs
    }

    /// The owner is the `to` of the winning tip among the authorized handovers (the
    /// latest `(at, id)`), or the initial owner: forged handovers never count.
    fn check_owner(&self, r: usize, id: &ClientId, when: &str) {
        let view = self.replicas[r].client(id).unwrap();
        let e = &self.expected[id];
        // The legitimate handovers this replica has seen, as they were made.
        let legit: Vec<&Handover> = view
            .handovers
            .iter()
            .filter_map(|h| e.legit_handovers.get(&h.event.id))
            .collect();
        let parents: BTreeSet<&str> = legit.iter().filter_map(|h| h.after.as_deref()).collect();
        let expected_owner = legit
            .iter()
            .filter(|h| !parents.contains(h.id.as_str()))
            .max_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)))
            .map(|h| h.to.clone())
            .unwrap_or_else(|| e.initial_owner.clone());
        assert_eq!(
            view.owner, expected_owner,
            "owner of {id} on replica {r} {when}"
        );
        for h in &view.handovers {
            match e.legit_handovers.get(&h.event.id) {
                Some(made) => {
                    assert!(
                        h.authorized,
                        "handover {} of {id} on replica {r} {when}: not authorized",
                        h.event.id
                    );
                    assert_eq!(
                        &h.event, made,
                        "handover {} of {id} on replica {r} {when} changed after it was made",
                        h.event.id
                    );
                }
                None => assert!(
                    !h.authorized && !h.effective,
                    "forged handover {} of {id} counts on replica {r} {when}",
                    h.event.id
                ),
            }
        }
    }

    /// The invariants on one (fully synced) replica.
    fn check_invariants(&self, r: usize) {
        let replica = &self.replicas[r];
        let team = replica.team();
        let rows = replica.list(&ClientFilter::default()).unwrap();
        assert_eq!(
            rows.len(),
            self.clients.len(),
            "replica {r} lists the wrong number of clients"
        );
        let board = replica.board().unwrap();
        assert_eq!(
            board.total,
            self.clients.len() as i64,
            "replica {r}: board total"
        );
        for id in &self.clients {
            let view = replica.client(id).unwrap();
            let e = &self.expected[id];

            // Exactly one owner, a member of the team.
            assert!(!view.owner.is_empty(), "client {id} has no owner");
            assert!(
                team.members.contains_key(&view.owner),
                "owner {} of {id} is not a member",
                view.owner
            );

            // Nothing created is lost.
            assert_eq!(
                view.notes.len(),
                e.note_calls,
                "notes of {id} on replica {r}"
            );
            assert_eq!(
                ids(&view.notes, |n| &n.id),
                e.notes,
                "notes of {id} on replica {r}"
            );
            assert_eq!(
                view.transitions.len(),
                e.move_calls,
                "transitions of {id} on replica {r}"
            );
            assert_eq!(
                ids(&view.transitions, |t| &t.event.id),
                e.transitions,
                "transitions of {id} on replica {r}"
            );
            assert_eq!(
                ids(&view.quotes, |q| &q.quote.id),
                e.quotes,
                "quotes of {id} on replica {r}"
            );
            let decisions: Vec<_> = view
                .quotes
                .iter()
                .flat_map(|q| q.decisions.clone())
                .collect();
            assert_eq!(
                decisions.len(),
                e.approvals.len(),
                "approvals of {id} on replica {r}"
            );
            assert_eq!(
                ids(&decisions, |a| &a.id),
                e.approvals,
                "approvals of {id} on replica {r}"
            );
            let all: BTreeSet<String> = e
                .legit_handovers
                .keys()
                .chain(&e.forged_handovers)
                .cloned()
                .collect();
            assert_eq!(
                ids(&view.handovers, |h| &h.event.id),
                all,
                "handovers of {id} on replica {r}"
            );

            // Only managers' and admins' handovers count; forged ones are kept but ignored.
            self.check_owner(r, id, "after the final sync");

            // The read model (lists, board, reports) agrees with the documents.
            let row = rows.iter().find(|row| row.id == id.to_string()).unwrap();
            assert_eq!(
                (
                    &row.owner,
                    &row.stage,
                    row.stage_entered_at,
                    row.due_at,
                    &row.supervisor
                ),
                (
                    &view.owner,
                    &view.stage,
                    view.stage_entered_at,
                    view.due_at,
                    &view.supervisor
                ),
                "replica {r}: read-model row of {id} disagrees with the document"
            );
            assert_eq!(
                row.needs_review,
                view.concurrent_moves || view.concurrent_handovers || !view.conflicts.is_empty(),
                "replica {r}: review flag of {id}"
            );
        }
    }
}

fn run_case(setup: &Setup, ops: &[(i64, Op)]) {
    let mut world = World::build(setup);
    for (step, op) in ops {
        world.clock.advance(*step);
        world.apply(op);
    }
    // Before the final sync: whoever happens to have seen the same changes agrees.
    world.check_pairs_that_saw_the_same_changes();
    world.sync_all(setup.final_delta);
    world.clock.advance(HOUR_MS);
    let prints: Vec<_> = world.replicas.iter().map(fingerprint).collect();
    for (r, p) in prints.iter().enumerate() {
        assert_eq!(
            p, &prints[0],
            "replica {r} has not seen everything after the final sync"
        );
    }
    let n = world.replicas.len();
    assert_eq!(
        world.check_pairs_that_saw_the_same_changes(),
        n * (n - 1) / 2
    );
    for r in 0..n {
        world.check_invariants(r);
    }
}

fn run_property(tamper: bool) {
    let mut runner = TestRunner::new(config());
    let result = runner.run(&(setup_strategy(), ops_strategy(tamper)), |(setup, ops)| {
        run_case(&setup, &ops);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn replicas_that_saw_the_same_changes_show_identical_clients_boards_and_reports() {
    run_property(false);
}

/// The same property when forging reps also rewrite managers' handover events in place
/// (see `a_rep_who_rewrites_a_managers_handover_does_not_take_the_client`).
#[test]
fn owners_follow_only_managers_handovers_even_when_reps_rewrite_events() {
    run_property(true);
}

// ----- plain examples ----------------------------------------------------------------

/// An admin, a manager's phone and two reps' phones, with one client owned by rep 0 that
/// the manager has handed to rep 1 and that everyone has seen.
struct Small {
    _dir: tempfile::TempDir,
    admin: Replica,
    manager: Replica,
    rep0: Replica,
    rep1: Replica,
    rep0_id: UserId,
    rep1_id: UserId,
    client: ClientId,
}

fn small_team_after_a_handover() -> Small {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let arc = || -> Arc<dyn fieldsync_core::Clock> { Arc::new(clock.clone()) };
    let mut admin = Replica::create(
        &dir.path().join("a.db"),
        "华南销售部",
        "王总",
        Template::SevenStage,
        arc(),
    )
    .unwrap();
    let boss = admin
        .add_user(
            "经理",
            Role::Manager,
            None,
            vec!["product".into(), "finance".into()],
        )
        .unwrap();
    let rep0_id = admin
        .add_user("销售0", Role::Rep, Some(boss), vec![])
        .unwrap();
    let rep1_id = admin
        .add_user("销售1", Role::Rep, Some(boss), vec![])
        .unwrap();
    let mut join = |user: UserId, file: &str| {
        let bytes = admin.provision_device(user).unwrap();
        Replica::join(&dir.path().join(file), &bytes, arc()).unwrap()
    };
    let mut manager = join(boss, "m.db");
    let mut rep0 = join(rep0_id, "r0.db");
    let mut rep1 = join(rep1_id, "r1.db");
    let client = admin
        .create_client(new_client("张三", 1, Some(rep0_id), true))
        .unwrap();
    let all = admin.export(None).unwrap();
    for r in [&mut manager, &mut rep0, &mut rep1] {
        r.import(&all).unwrap();
    }
    clock.advance(HOUR_MS);
    manager.handover(&[client], rep1_id, Some("调岗")).unwrap();
    let news = manager.export(None).unwrap();
    for r in [&mut admin, &mut rep0, &mut rep1] {
        r.import(&news).unwrap();
        assert_eq!(r.client(&client).unwrap().owner, rep1_id.to_string());
    }
    clock.advance(HOUR_MS);
    Small {
        _dir: dir,
        admin,
        manager,
        rep0,
        rep1,
        rep0_id,
        rep1_id,
        client,
    }
}

/// Loads a client document from a replica's store, written from now on with that
/// replica's actor, as a modified app on the device could.
fn raw_client_doc(r: &Replica, id: &ClientId) -> ClientDoc {
    let mut doc = documents::load(r.store().conn(), &id.to_string())
        .unwrap()
        .unwrap();
    doc.set_actor(ActorId::try_from(r.identity().actor.as_str()).unwrap());
    ClientDoc::from_doc(doc, None).unwrap()
}

/// A bundle carrying a whole client document, as a device would ship it.
fn client_bundle(r: &Replica, id: &ClientId, doc: &mut ClientDoc) -> Vec<u8> {
    Bundle {
        header: BundleHeader {
            kind: BundleKind::Changes,
            team: r.team().id.clone(),
            founder: r.team_doc().founder().to_string(),
            from_user: r.me().to_string(),
            created_at: r.now(),
            provision: None,
        },
        entries: vec![BundleEntry {
            kind: DocKind::Client,
            doc_id: id.to_string(),
            data: doc.doc_mut().save(),
            summary: None,
        }],
    }
    .encode()
}

/// The map object of the `index`th element of an event list.
fn event_obj(doc: &ClientDoc, list: &str, index: usize) -> automerge::ObjId {
    use automerge::ReadDoc;
    let (_, list) = doc.doc().get(automerge::ROOT, list).unwrap().unwrap();
    let (_, event) = doc.doc().get(&list, index).unwrap().unwrap();
    event
}

#[test]
fn a_handover_a_rep_appends_through_the_document_layer_is_kept_but_ignored() {
    let mut s = small_team_after_a_handover();
    let mut doc = raw_client_doc(&s.rep0, &s.client);
    let legit = s.rep0.client(&s.client).unwrap().handovers[0]
        .event
        .id
        .clone();
    doc.append(
        EventList::Handovers,
        &Handover {
            id: uuid::Uuid::new_v4().to_string(),
            from: s.rep1_id.to_string(),
            to: s.rep0_id.to_string(),
            by: s.manager.me().to_string(),
            at: s.rep0.now() + 365 * DAY_MS,
            reason: Some("forged".into()),
            after: Some(legit),
        },
    )
    .unwrap();
    doc.doc_mut().commit();
    let bundle = client_bundle(&s.rep0, &s.client, &mut doc);
    for r in [&mut s.rep0, &mut s.admin, &mut s.manager, &mut s.rep1] {
        assert_eq!(r.import(&bundle).unwrap().changed, 1);
        let view = r.client(&s.client).unwrap();
        assert_eq!(view.owner, s.rep1_id.to_string());
        assert_eq!(view.handovers.len(), 2);
        assert_eq!(view.handovers.iter().filter(|h| h.authorized).count(), 1);
        let row = r.list(&ClientFilter::default()).unwrap();
        assert_eq!(row[0].owner, s.rep1_id.to_string());
    }
}

#[test]
fn a_rep_who_rewrites_a_managers_handover_does_not_take_the_client() {
    use automerge::transaction::Transactable;
    let mut s = small_team_after_a_handover();
    // Rep 0 lost the client to rep 1; a modified app on rep 0's phone rewrites the
    // manager's handover event instead of appending one of its own.
    let mut doc = raw_client_doc(&s.rep0, &s.client);
    let event = event_obj(&doc, "handovers", 0);
    doc.doc_mut()
        .put(&event, "to", s.rep0_id.to_string())
        .unwrap();
    doc.doc_mut().commit();
    let bundle = client_bundle(&s.rep0, &s.client, &mut doc);
    // Events are immutable: the bundle is refused whole, on every replica.
    for r in [&mut s.rep0, &mut s.admin] {
        let err = r.import(&bundle).unwrap_err().to_string();
        assert!(err.contains("rewrites an existing event"), "{err}");
    }
    let view = s.admin.client(&s.client).unwrap();
    assert_eq!(
        view.owner,
        s.rep1_id.to_string(),
        "the rep took the client back by editing the manager's handover"
    );
    assert_eq!(
        view.handovers[0].event.to,
        s.rep1_id.to_string(),
        "an event changed after it was made"
    );
}

#[test]
fn a_rep_who_rewrites_a_rejection_does_not_get_the_quote_approved() {
    use automerge::transaction::Transactable;
    use fieldsync_core::fold::QuoteStatus;
    let mut s = small_team_after_a_handover();
    // Rep 1 (the owner now) asks for a discount beyond the band; the manager, who signs
    // for every role, approves two of them and rejects finance.
    let (quote, _) = s.rep1.request_quote(&s.client, 1_280_000, 25.0).unwrap();
    s.manager.import(&s.rep1.export(None).unwrap()).unwrap();
    s.manager
        .decide_quote(&s.client, &quote, "product", true, None)
        .unwrap();
    s.manager
        .decide_quote(&s.client, &quote, "finance", false, Some("太低"))
        .unwrap();
    s.manager
        .decide_quote(&s.client, &quote, "manager", true, None)
        .unwrap();
    s.rep1.import(&s.manager.export(None).unwrap()).unwrap();
    let view = s.rep1.client(&s.client).unwrap();
    assert!(matches!(
        view.quotes[0].approval,
        QuoteStatus::Rejected { .. }
    ));
    // Rep 1's phone flips the finance decision.
    let finance = view.quotes[0]
        .decisions
        .iter()
        .position(|d| d.role == "finance")
        .unwrap();
    let mut doc = raw_client_doc(&s.rep1, &s.client);
    let record = doc.record().unwrap();
    let index = record
        .approvals
        .iter()
        .position(|a| a.id == view.quotes[0].decisions[finance].id)
        .unwrap();
    let event = event_obj(&doc, "approvals", index);
    doc.doc_mut().put(&event, "decision", "approved").unwrap();
    doc.doc_mut().commit();
    let bundle = client_bundle(&s.rep1, &s.client, &mut doc);
    // Events are immutable: the bundle is refused whole, on every replica.
    for r in [&mut s.rep1, &mut s.admin] {
        let err = r.import(&bundle).unwrap_err().to_string();
        assert!(err.contains("rewrites an existing event"), "{err}");
    }
    let view = s.rep1.client(&s.client).unwrap();
    assert!(
        matches!(view.quotes[0].approval, QuoteStatus::Rejected { .. }),
        "the rep turned finance's rejection into an approval: {:?}",
        view.quotes[0].approval
    );
}

#[test]
fn a_bundle_that_deletes_a_handover_or_rewrites_the_initial_owner_is_refused_whole() {
    use automerge::transaction::Transactable;
    use automerge::ReadDoc;
    let mut s = small_team_after_a_handover();
    let before = s.admin.client(&s.client).unwrap();
    // Deleting the manager's handover would give the client back to its first owner.
    let mut doc = raw_client_doc(&s.rep0, &s.client);
    let (_, list) = doc
        .doc()
        .get(automerge::ROOT, "handovers")
        .unwrap()
        .unwrap();
    doc.doc_mut().delete(&list, 0).unwrap();
    doc.doc_mut().commit();
    let deleting = client_bundle(&s.rep0, &s.client, &mut doc);
    let err = s.admin.import(&deleting).unwrap_err().to_string();
    assert!(err.contains("deletes or replaces an event"), "{err}");
    // Rewriting the initial owner moves ownership without touching an event list.
    let mut doc = raw_client_doc(&s.rep0, &s.client);
    doc.doc_mut()
        .put(automerge::ROOT, "initial_owner", s.rep1_id.to_string())
        .unwrap();
    doc.doc_mut().commit();
    let rewriting = client_bundle(&s.rep0, &s.client, &mut doc);
    let err = s.admin.import(&rewriting).unwrap_err().to_string();
    assert!(err.contains("rewrites \"initial_owner\""), "{err}");
    assert_eq!(s.admin.client(&s.client).unwrap(), before);
}
