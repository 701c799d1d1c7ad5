//! The rules of DESIGN.md §1 on a real replica file.
#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::sync::Arc;

use automerge::{ActorId, AutoCommit};
use fieldsync_core::bundle::{Bundle, BundleEntry, BundleHeader, BundleKind};
use fieldsync_core::client::{Approval, ClientDoc, EventList, Handover, NoteKind};
use fieldsync_core::clock::HOUR_MS;
use fieldsync_core::fold::{QuoteStatus, SlaStatus};
use fieldsync_core::pipeline::Template;
use fieldsync_core::replica::ImportSummary;
use fieldsync_core::store::documents::{self, DocKind};
use fieldsync_core::store::read_model::ClientFilter;
use fieldsync_core::team::{Role, Team, TeamDoc};
use fieldsync_core::{ClientId, Error, ManualClock, MoveOptions, NewClient, Replica, UserId};

const T0: i64 = 1_780_000_000_000;

fn admin(dir: &tempfile::TempDir, clock: &ManualClock) -> Replica {
    Replica::create(
        &dir.path().join("admin.db"),
        "华南销售部",
        "王总",
        Template::SevenStage,
        Arc::new(clock.clone()),
    )
    .unwrap()
}

fn client(name: &str, company: &str, complete: bool) -> NewClient {
    let mut c = NewClient::default();
    c.profile.insert("name".into(), name.into());
    c.profile.insert("company".into(), company.into());
    if complete {
        c.profile.insert("company_size".into(), "200".into());
        c.profile.insert("budget_range".into(), "50-100万".into());
        c.profile
            .insert("decision_maker".into(), "李总 13800138000".into());
    }
    c
}

#[test]
fn a_lead_cannot_leave_the_lead_stage_until_required_fields_are_present() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut r = admin(&dir, &clock);
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", false))
        .unwrap();
    let err = r
        .move_stage(&id, "初步筛选", MoveOptions::default())
        .unwrap_err();
    match err {
        Error::GateRefused { missing } => {
            assert_eq!(missing, ["company_size", "budget_range", "decision_maker"])
        }
        other => panic!("{other}"),
    }
    assert_eq!(r.client(&id).unwrap().stage, "lead");
    r.edit_client(
        &id,
        &[
            ("company_size".into(), Some("50".into())),
            ("budget_range".into(), Some("10万".into())),
            ("decision_maker".into(), Some("张总".into())),
        ],
    )
    .unwrap();
    let v = r
        .move_stage(&id, "screening", MoveOptions::default())
        .unwrap();
    assert_eq!(v.stage, "screening");
    let _ = (NoteKind::Call, HOUR_MS, Role::Rep);
}

#[test]
fn search_finds_a_two_character_chinese_substring() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut r = admin(&dir, &clock);
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    let hits = r.search("华强").unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, id.to_string());
    assert_eq!(r.search("华强科技").unwrap().len(), 1);
    assert!(r.search("北京").unwrap().is_empty());
}

// ----- fixtures -------------------------------------------------------------------------

/// A team: the founding admin's replica, a manager and two reps under them.
struct Org {
    dir: tempfile::TempDir,
    clock: ManualClock,
    admin: Replica,
    manager: UserId,
    rep_a: UserId,
    rep_b: UserId,
    devices: Cell<u32>,
}

impl Org {
    fn new() -> Org {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let mut admin = admin(&dir, &clock);
        let manager = admin
            .add_user("李经理", Role::Manager, None, vec![])
            .unwrap();
        let rep_a = admin
            .add_user("张三", Role::Rep, Some(manager), vec![])
            .unwrap();
        let rep_b = admin
            .add_user("李四", Role::Rep, Some(manager), vec![])
            .unwrap();
        Org {
            dir,
            clock,
            admin,
            manager,
            rep_a,
            rep_b,
            devices: Cell::new(0),
        }
    }

    /// Provisions a device for `user` and creates its replica.
    fn device(&mut self, user: UserId) -> Replica {
        let bundle = self.admin.provision_device(user).unwrap();
        self.devices.set(self.devices.get() + 1);
        let path = self
            .dir
            .path()
            .join(format!("device-{}.db", self.devices.get()));
        Replica::join(&path, &bundle, Arc::new(self.clock.clone())).unwrap()
    }

    fn advance_hours(&self, h: i64) {
        self.clock.advance(h * HOUR_MS);
    }
}

fn send(from: &Replica, to: &mut Replica) -> ImportSummary {
    to.import(&from.export(None).unwrap()).unwrap()
}

fn sync(a: &mut Replica, b: &mut Replica) {
    send(a, b);
    send(b, a);
    send(a, b);
}

fn owned_by(mut c: NewClient, owner: UserId) -> NewClient {
    c.owner = Some(owner);
    c
}

/// Moves a client along `stages`, one minute apart.
fn walk(clock: &ManualClock, r: &mut Replica, id: &ClientId, stages: &[&str]) {
    for s in stages {
        clock.advance(60_000);
        r.move_stage(id, s, MoveOptions::default()).unwrap();
    }
}

const TO_NEGOTIATION: &[&str] = &[
    "screening",
    "first_contact",
    "needs_analysis",
    "proposal",
    "negotiation",
];

fn lost(reason: &str) -> MoveOptions {
    MoveOptions {
        loss_reason: Some(reason.into()),
        ..Default::default()
    }
}

fn skip(reason: &str) -> MoveOptions {
    MoveOptions {
        skip: true,
        reason: Some(reason.into()),
        ..Default::default()
    }
}

fn actor_of(r: &Replica) -> ActorId {
    ActorId::try_from(r.identity().actor.as_str()).unwrap()
}

/// A bundle of changes for `r`'s team, with arbitrary entries (a forged device's upload).
fn bundle_for(r: &Replica, entries: Vec<BundleEntry>) -> Vec<u8> {
    Bundle {
        header: BundleHeader {
            kind: BundleKind::Changes,
            team: r.team().id.clone(),
            founder: r.team_doc().founder().to_string(),
            from_user: r.me().to_string(),
            created_at: r.now(),
            provision: None,
        },
        entries,
    }
    .encode()
}

/// Writes a client change through the document layer with `r`'s actor, bypassing every
/// check of the replica, and returns it as a bundle.
fn forge_client(
    r: &Replica,
    id: &ClientId,
    actor: ActorId,
    f: impl FnOnce(&mut ClientDoc),
) -> Vec<u8> {
    let mut doc = documents::load(r.store().conn(), &id.to_string())
        .unwrap()
        .unwrap();
    doc.set_actor(actor);
    let mut client = ClientDoc::from_doc(doc, None).unwrap();
    f(&mut client);
    let mut doc = client.into_doc();
    doc.commit();
    bundle_for(
        r,
        vec![BundleEntry {
            kind: DocKind::Client,
            doc_id: id.to_string(),
            data: doc.save(),
            summary: None,
        }],
    )
}

/// Edits the team document with `r`'s own actor, bypassing the replica's role checks.
fn forge_team(r: &Replica, f: impl FnOnce(&mut Team)) -> Vec<u8> {
    let doc_id = format!("team:{}", r.team().id);
    let doc: AutoCommit = documents::load(r.store().conn(), &doc_id)
        .unwrap()
        .unwrap()
        .with_actor(actor_of(r));
    let mut team = TeamDoc::from_doc(doc, r.team_doc().founder()).unwrap();
    team.edit(|t| {
        f(t);
        Ok(())
    })
    .unwrap();
    team.doc_mut().commit();
    let data = team.doc_mut().save();
    bundle_for(
        r,
        vec![BundleEntry {
            kind: DocKind::Team,
            doc_id,
            data,
            summary: None,
        }],
    )
}

/// Delivers a forged bundle. A replica may refuse it outright (then nothing may change) or
/// merge it and ignore what it carries; the tests then check that no authority was gained.
fn deliver_forged(r: &mut Replica, bytes: &[u8]) {
    let before = snapshot(r);
    match r.import(bytes) {
        Ok(_) => {}
        Err(Error::BadBundle(_) | Error::NotPermitted(_) | Error::CorruptDocument { .. }) => {
            assert!(
                snapshot(r) == before,
                "a refused bundle changed the replica"
            )
        }
        Err(other) => panic!("unexpected error for a forged bundle: {other}"),
    }
}

fn new_handover(from: UserId, to: UserId, by: UserId, at: i64) -> Handover {
    Handover {
        id: uuid::Uuid::new_v4().to_string(),
        from: from.to_string(),
        to: to.to_string(),
        by: by.to_string(),
        at,
        reason: Some("forged".into()),
        after: None,
    }
}

fn assert_close(actual: Option<f64>, expected: f64, what: &str) {
    let a = actual.unwrap_or_else(|| panic!("{what}: none, expected {expected}"));
    assert!((a - expected).abs() < 1e-9, "{what}: {a} != {expected}");
}

// ----- pipeline stages ------------------------------------------------------------------

#[test]
fn the_seven_stage_template_accepts_chinese_stage_names_and_keys() {
    let org = Org::new();
    let mut r = org.admin;
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    assert_eq!(r.client(&id).unwrap().stage_name, "线索获取");
    org.clock.advance(60_000);
    let v = r
        .move_stage(&id, "初步筛选", MoveOptions::default())
        .unwrap();
    assert_eq!(
        (v.stage.as_str(), v.stage_name.as_str()),
        ("screening", "初步筛选")
    );
    org.clock.advance(60_000);
    let v = r
        .move_stage(&id, "first_contact", MoveOptions::default())
        .unwrap();
    assert_eq!(v.stage_name, "首次接触");
    org.clock.advance(60_000);
    let v = r
        .move_stage(&id, "需求分析", MoveOptions::default())
        .unwrap();
    assert_eq!(v.stage, "needs_analysis");
    org.clock.advance(60_000);
    let v = r
        .move_stage(&id, "方案报价", MoveOptions::default())
        .unwrap();
    assert_eq!(v.stage, "proposal");
    org.clock.advance(60_000);
    let v = r
        .move_stage(&id, "跟进谈判", MoveOptions::default())
        .unwrap();
    assert_eq!(v.stage, "negotiation");
    org.clock.advance(60_000);
    let v = r.move_stage(&id, "成交", MoveOptions::default()).unwrap();
    assert_eq!((v.stage.as_str(), v.stage_name.as_str()), ("won", "成交"));
    let keys: Vec<String> = r
        .board()
        .unwrap()
        .columns
        .into_iter()
        .map(|c| c.stage)
        .collect();
    assert_eq!(
        keys,
        [
            "lead",
            "screening",
            "first_contact",
            "needs_analysis",
            "proposal",
            "negotiation",
            "won",
            "lost"
        ]
    );
}

#[test]
fn the_five_stage_template_reaches_after_sales_and_loops_back_for_repeat_business() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut r = Replica::create(
        &dir.path().join("five.db"),
        "华东",
        "王总",
        Template::FiveStage,
        Arc::new(clock.clone()),
    )
    .unwrap();
    let id = r
        .create_client(client("赵六", "杭州云栖有限公司", true))
        .unwrap();
    let v = r.client(&id).unwrap();
    assert_eq!(
        (v.stage.as_str(), v.stage_name.as_str()),
        ("discovery", "客户发现")
    );
    walk(&clock, &mut r, &id, &["需求沟通", "proposal", "合同签约"]);
    let v = r.client(&id).unwrap();
    assert_eq!(v.stage, "contract");
    assert_eq!(
        v.onboarding.len(),
        3,
        "the contract stage is the won stage of the five-stage template"
    );
    clock.advance(60_000);
    let v = r
        .move_stage(&id, "售后维护", MoveOptions::default())
        .unwrap();
    assert_eq!(v.stage, "after_sales");
    // 复购: after-sales back to needs is an edge, not an exception.
    clock.advance(60_000);
    let v = r
        .move_stage(&id, "需求沟通", MoveOptions::default())
        .unwrap();
    assert_eq!(v.stage, "needs");
    assert!(v.transitions.iter().all(|t| !t.event.skipped));
    let keys: Vec<String> = r
        .board()
        .unwrap()
        .columns
        .into_iter()
        .map(|c| c.stage)
        .collect();
    assert_eq!(
        keys,
        ["discovery", "needs", "proposal", "contract", "after_sales"]
    );
    assert_eq!(r.report().unwrap().exceptions, 0);
}

#[test]
fn an_unknown_stage_is_refused_and_changes_nothing() {
    let org = Org::new();
    let mut r = org.admin;
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    let before = r.client(&id).unwrap();
    let board = r.board().unwrap();
    let export = r.export(None).unwrap();
    match r
        .move_stage(&id, "谈判中", MoveOptions::default())
        .unwrap_err()
    {
        Error::UnknownStage(s) => assert_eq!(s, "谈判中"),
        other => panic!("expected UnknownStage, got {other}"),
    }
    assert!(matches!(
        r.move_stage(&id, "closing", skip("why not")),
        Err(Error::UnknownStage(_))
    ));
    assert_eq!(r.client(&id).unwrap(), before);
    assert_eq!(r.board().unwrap(), board);
    assert_eq!(r.export(None).unwrap(), export);
}

// ----- lead-quality gate ----------------------------------------------------------------

#[test]
fn the_lead_gate_names_only_the_missing_fields_on_an_offline_rep_replica() {
    let mut org = Org::new();
    // The rep's phone never syncs after provisioning: the gate is enforced locally.
    let mut rep = org.device(org.rep_a);
    let mut c = client("张三", "深圳华强科技有限公司", false);
    c.profile.insert("budget_range".into(), "10万".into());
    c.profile.insert("company_size".into(), "   ".into());
    let id = rep.create_client(c).unwrap();
    match rep
        .move_stage(&id, "screening", MoveOptions::default())
        .unwrap_err()
    {
        Error::GateRefused { missing } => assert_eq!(missing, ["company_size", "decision_maker"]),
        other => panic!("expected GateRefused, got {other}"),
    }
    // The gate also holds for exceptions out of the lead stage.
    let err = rep
        .move_stage(&id, "proposal", skip("客户很急"))
        .unwrap_err();
    assert!(matches!(err, Error::GateRefused { .. }), "{err}");
    assert!(err.to_string().contains("company_size"), "{err}");
    assert_eq!(rep.client(&id).unwrap().transitions.len(), 0);
}

#[test]
fn a_lead_may_be_disqualified_to_lost_without_the_required_fields() {
    let org = Org::new();
    let mut r = org.admin;
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", false))
        .unwrap();
    let v = r.move_stage(&id, "失败归档", lost("无预算")).unwrap();
    assert_eq!(v.stage, "lost");
    assert_eq!(
        v.transitions[0].event.loss_reason.as_deref(),
        Some("无预算 no budget")
    );
    assert!(!v.transitions[0].event.skipped);
}

// ----- exception / green channel --------------------------------------------------------

#[test]
fn a_move_along_no_edge_needs_skip_and_a_reason() {
    let org = Org::new();
    let mut r = org.admin;
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    let before = r.client(&id).unwrap();
    for opts in [
        MoveOptions::default(),
        MoveOptions {
            skip: true,
            ..Default::default()
        },
        MoveOptions {
            skip: true,
            reason: Some("   ".into()),
            ..Default::default()
        },
        MoveOptions {
            reason: Some("老客户转介绍".into()),
            ..Default::default()
        },
    ] {
        match r.move_stage(&id, "proposal", opts).unwrap_err() {
            Error::ExceptionNeedsReason { from, to } => {
                assert_eq!((from.as_str(), to.as_str()), ("lead", "proposal"))
            }
            other => panic!("expected ExceptionNeedsReason, got {other}"),
        }
    }
    assert_eq!(r.client(&id).unwrap(), before);
    // Jumping back is an exception too.
    walk(&org.clock, &mut r, &id, &["screening", "first_contact"]);
    assert!(matches!(
        r.move_stage(&id, "lead", MoveOptions::default()),
        Err(Error::ExceptionNeedsReason { .. })
    ));
}

#[test]
fn a_skipped_move_is_recorded_as_an_exception_and_reported_as_an_undefined_edge() {
    let org = Org::new();
    let mut r = org.admin;
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    let other = r
        .create_client(client("李四", "广州白云电器", true))
        .unwrap();
    r.move_stage(&other, "screening", MoveOptions::default())
        .unwrap();
    org.clock.advance(HOUR_MS);
    let v = r
        .move_stage(&id, "方案报价", skip("老客户转介绍，需求已明确"))
        .unwrap();
    assert_eq!(v.stage, "proposal");
    let t = &v.transitions[0].event;
    assert!(t.skipped);
    assert_eq!(t.reason.as_deref(), Some("老客户转介绍，需求已明确"));
    assert_eq!((t.from.as_str(), t.to.as_str()), ("lead", "proposal"));
    let report = r.report().unwrap();
    assert_eq!(report.exceptions, 1);
    let edge = report
        .edges
        .iter()
        .find(|e| e.from == "lead" && e.to == "proposal")
        .unwrap();
    assert_eq!(edge.count, 1);
    assert!(!edge.defined);
    let edge = report
        .edges
        .iter()
        .find(|e| e.from == "lead" && e.to == "screening")
        .unwrap();
    assert!(edge.defined);
    // A move along an edge with skip set is not an exception.
    let v = r
        .move_stage(&other, "first_contact", skip("unneeded"))
        .unwrap();
    assert!(!v.transitions.last().unwrap().event.skipped);
    assert_eq!(r.report().unwrap().exceptions, 1);
}

// ----- loss reasons ---------------------------------------------------------------------

#[test]
fn moving_to_lost_needs_a_loss_reason_from_the_configured_list() {
    let org = Org::new();
    let mut r = org.admin;
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    r.move_stage(&id, "screening", MoveOptions::default())
        .unwrap();
    let before = r.client(&id).unwrap();
    for opts in [
        MoveOptions::default(),
        lost(""),
        lost("太贵了"),
        lost("pricey"),
    ] {
        match r.move_stage(&id, "lost", opts).unwrap_err() {
            Error::LossReasonRequired { stage, allowed } => {
                assert_eq!(stage, "lost");
                assert_eq!(allowed, r.team().rules.loss_reasons);
            }
            other => panic!("expected LossReasonRequired, got {other}"),
        }
    }
    assert_eq!(r.client(&id).unwrap(), before);
}

#[test]
fn a_loss_reason_is_accepted_by_its_chinese_or_english_word_and_normalised() {
    let org = Org::new();
    let mut r = org.admin;
    for (i, (given, stored)) in [
        ("价格", "价格 price"),
        ("price", "价格 price"),
        ("竞品 competitor", "竞品 competitor"),
        ("competitor", "竞品 competitor"),
        ("时机不对", "时机不对 timing"),
        ("unresponsive", "无响应 unresponsive"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = r
            .create_client(client(&format!("客户{i}"), &format!("公司{i}号"), true))
            .unwrap();
        let v = r.move_stage(&id, "lost", lost(given)).unwrap();
        assert_eq!(
            v.transitions.last().unwrap().event.loss_reason.as_deref(),
            Some(stored),
            "given {given:?}"
        );
    }
}

#[test]
fn a_multi_word_english_loss_reason_is_accepted() {
    let org = Org::new();
    let mut r = org.admin;
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    let v = r.move_stage(&id, "lost", lost("no budget")).unwrap();
    assert_eq!(
        v.transitions[0].event.loss_reason.as_deref(),
        Some("无预算 no budget")
    );
}

#[test]
fn an_ambiguous_loss_reason_word_is_refused_rather_than_guessed() {
    let org = Org::new();
    let mut r = org.admin;
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    // "no" is a word of both "无预算 no budget" and "无决策权 no authority".
    let err = r.move_stage(&id, "lost", lost("no")).unwrap_err();
    assert!(matches!(err, Error::LossReasonRequired { .. }), "{err}");
    assert_eq!(r.client(&id).unwrap().stage, "lead");
}

#[test]
fn loss_reasons_are_ranked_by_frequency_in_the_report() {
    let org = Org::new();
    let mut r = org.admin;
    for (i, reason) in [
        "price",
        "竞品",
        "competitor",
        "timing",
        "competitor",
        "价格",
    ]
    .into_iter()
    .enumerate()
    {
        let id = r
            .create_client(client(&format!("客户{i}"), &format!("公司{i}号"), true))
            .unwrap();
        r.move_stage(&id, "lost", lost(reason)).unwrap();
    }
    assert_eq!(
        r.report().unwrap().loss_reasons,
        vec![
            ("竞品 competitor".to_string(), 3),
            ("价格 price".to_string(), 2),
            ("时机不对 timing".to_string(), 1)
        ]
    );
}

// ----- stage history --------------------------------------------------------------------

#[test]
fn every_transition_records_who_when_from_to_and_reason() {
    let mut org = Org::new();
    let mut rep = org.device(org.rep_a);
    let id = rep
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    org.advance_hours(2);
    rep.move_stage(
        &id,
        "screening",
        MoveOptions {
            reason: Some("预算已确认".into()),
            ..Default::default()
        },
    )
    .unwrap();
    org.advance_hours(3);
    rep.move_stage(&id, "first_contact", MoveOptions::default())
        .unwrap();
    org.advance_hours(4);
    rep.move_stage(&id, "lost", lost("price")).unwrap();
    let v = rep.client(&id).unwrap();
    let got: Vec<_> = v
        .transitions
        .iter()
        .map(|t| {
            let e = &t.event;
            (
                e.by.clone(),
                e.at,
                e.from.clone(),
                e.to.clone(),
                e.reason.clone(),
                t.effective,
            )
        })
        .collect();
    let a = org.rep_a.to_string();
    assert_eq!(
        got,
        vec![
            (
                a.clone(),
                T0 + 2 * HOUR_MS,
                "lead".into(),
                "screening".into(),
                Some("预算已确认".into()),
                true
            ),
            (
                a.clone(),
                T0 + 5 * HOUR_MS,
                "screening".into(),
                "first_contact".into(),
                None,
                true
            ),
            (
                a,
                T0 + 9 * HOUR_MS,
                "first_contact".into(),
                "lost".into(),
                None,
                true
            ),
        ]
    );
    // The history survives the trip to another replica unchanged.
    send(&rep, &mut org.admin);
    assert_eq!(org.admin.client(&id).unwrap().transitions, v.transitions);
}

// ----- first-contact SLA ----------------------------------------------------------------

#[test]
fn first_contact_sla_turns_yellow_in_the_warning_window_then_red_when_overdue() {
    let org = Org::new();
    let mut r = org.admin;
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    let v = r.client(&id).unwrap();
    assert_eq!(v.due_at, Some(T0 + 24 * HOUR_MS));
    assert_eq!(v.sla, SlaStatus::Green);
    org.clock.set(T0 + 20 * HOUR_MS - 1);
    assert_eq!(r.client(&id).unwrap().sla, SlaStatus::Green);
    org.clock.set(T0 + 20 * HOUR_MS);
    assert_eq!(r.client(&id).unwrap().sla, SlaStatus::Yellow);
    assert!(r.overdue().unwrap().is_empty());
    org.clock.set(T0 + 24 * HOUR_MS - 1);
    assert_eq!(r.client(&id).unwrap().sla, SlaStatus::Yellow);
    org.clock.set(T0 + 24 * HOUR_MS);
    assert_eq!(r.client(&id).unwrap().sla, SlaStatus::Red);
    assert_eq!(r.board().unwrap().columns[0].overdue, 1);
}

#[test]
fn a_call_or_visit_in_the_stage_meets_the_sla_but_a_note_does_not() {
    let org = Org::new();
    let mut r = org.admin;
    let a = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    let b = r
        .create_client(client("李四", "广州白云电器", true))
        .unwrap();
    let c = r
        .create_client(client("王五", "北京中关村软件", true))
        .unwrap();
    org.clock.advance(HOUR_MS);
    let v = r.add_note(&a, NoteKind::Note, "发了微信，未回复").unwrap();
    assert_eq!(v.due_at, Some(T0 + 24 * HOUR_MS));
    let v = r.add_note(&b, NoteKind::Call, "电话沟通需求").unwrap();
    assert_eq!(v.due_at, None);
    assert_eq!(v.last_contact_at, Some(T0 + HOUR_MS));
    let v = r.add_note(&c, NoteKind::Visit, "上门拜访").unwrap();
    assert_eq!(v.due_at, None);
    org.clock.set(T0 + 30 * HOUR_MS);
    assert_eq!(r.client(&a).unwrap().sla, SlaStatus::Red);
    assert_eq!(r.client(&b).unwrap().sla, SlaStatus::Green);
    assert_eq!(r.client(&c).unwrap().sla, SlaStatus::Green);
    let overdue: Vec<String> = r
        .list(&ClientFilter {
            overdue_at: Some(r.now()),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|row| row.id)
        .collect();
    assert_eq!(overdue, [a.to_string()]);
}

#[test]
fn leaving_the_stage_resets_the_sla() {
    let org = Org::new();
    let mut r = org.admin;
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    org.clock.advance(HOUR_MS);
    r.add_note(&id, NoteKind::Call, "首次电话").unwrap();
    org.clock.advance(HOUR_MS);
    let v = r
        .move_stage(&id, "screening", MoveOptions::default())
        .unwrap();
    // The call was in the lead stage; screening has its own 48 h clock.
    assert_eq!(v.stage_entered_at, T0 + 2 * HOUR_MS);
    assert_eq!(v.due_at, Some(T0 + 50 * HOUR_MS));
    org.clock.set(T0 + 50 * HOUR_MS);
    assert_eq!(r.client(&id).unwrap().sla, SlaStatus::Red);
    assert_eq!(r.overdue().unwrap().len(), 1);
    org.clock.advance(HOUR_MS);
    let v = r.add_note(&id, NoteKind::Visit, "拜访").unwrap();
    assert_eq!((v.due_at, v.sla), (None, SlaStatus::Green));
    assert!(r.overdue().unwrap().is_empty());
}

#[test]
fn overdue_clients_escalate_to_the_owners_manager_or_the_set_supervisor() {
    let mut org = Org::new();
    let boss = org
        .admin
        .add_user("赵总监", Role::Manager, None, vec![])
        .unwrap();
    let rep_c = org
        .admin
        .add_user("王五", Role::Rep, Some(boss), vec![])
        .unwrap();
    let a1 = org
        .admin
        .create_client(owned_by(client("客户甲", "甲公司", true), org.rep_a))
        .unwrap();
    let b1 = org
        .admin
        .create_client(owned_by(client("客户乙", "乙公司", true), org.rep_b))
        .unwrap();
    let c1 = org
        .admin
        .create_client(owned_by(client("客户丙", "丙公司", true), rep_c))
        .unwrap();
    let fine = org
        .admin
        .create_client(owned_by(client("客户丁", "丁公司", true), org.rep_a))
        .unwrap();
    let own = org
        .admin
        .create_client(client("客户戊", "戊公司", true))
        .unwrap();
    org.admin.add_note(&fine, NoteKind::Call, "已联系").unwrap();
    org.clock.set(T0 + 25 * HOUR_MS);
    let overdue = org.admin.overdue().unwrap();
    let groups: Vec<(Option<String>, Vec<String>)> = overdue
        .iter()
        .map(|g| {
            let mut ids: Vec<String> = g.clients.iter().map(|c| c.id.clone()).collect();
            ids.sort();
            (g.supervisor.clone(), ids)
        })
        .collect();
    let mut expected = vec![
        (None, vec![own.to_string()]),
        (Some(org.manager.to_string()), {
            let mut v = vec![a1.to_string(), b1.to_string()];
            v.sort();
            v
        }),
        (Some(boss.to_string()), vec![c1.to_string()]),
    ];
    expected.sort();
    let mut groups = groups;
    groups.sort();
    assert_eq!(groups, expected);
    let listed = org
        .admin
        .list(&ClientFilter {
            overdue_at: Some(org.admin.now()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|r| r.id != fine.to_string()));
    // An explicit supervisor (监督者) takes over the escalation.
    org.admin.set_supervisor(&c1, Some(org.manager)).unwrap();
    let overdue = org.admin.overdue().unwrap();
    let of_manager = overdue
        .iter()
        .find(|g| g.supervisor.as_deref() == Some(&*org.manager.to_string()))
        .unwrap();
    assert_eq!(of_manager.clients.len(), 3);
    assert!(overdue
        .iter()
        .all(|g| g.supervisor.as_deref() != Some(&*boss.to_string())));
}

// ----- parallel quote approval ----------------------------------------------------------

struct Approvers {
    org: Org,
    product: UserId,
    finance: UserId,
}

fn approvers() -> Approvers {
    let mut org = Org::new();
    let product = org
        .admin
        .add_user(
            "产品周",
            Role::Rep,
            Some(org.manager),
            vec!["product".into()],
        )
        .unwrap();
    let finance = org
        .admin
        .add_user(
            "财务钱",
            Role::Rep,
            Some(org.manager),
            vec!["finance".into()],
        )
        .unwrap();
    Approvers {
        org,
        product,
        finance,
    }
}

#[test]
fn a_discount_within_the_band_needs_no_approval() {
    let mut org = Org::new();
    let mut rep = org.device(org.rep_a);
    let id = rep
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    let (q, v) = rep.request_quote(&id, 1_000_000, 10.0).unwrap();
    let quote = v.quotes.iter().find(|x| x.quote.id == q).unwrap();
    assert_eq!(quote.approval, QuoteStatus::WithinBand);
    assert!(quote.quote.required_roles.is_empty());
    let (q, v) = rep.request_quote(&id, 1_000_000, 10.5).unwrap();
    let quote = v.quotes.iter().find(|x| x.quote.id == q).unwrap();
    assert_eq!(
        quote.approval,
        QuoteStatus::Pending {
            waiting_for: vec!["product".into(), "finance".into(), "manager".into()]
        }
    );
}

#[test]
fn a_discount_beyond_the_band_needs_every_role_in_any_order() {
    let Approvers {
        mut org,
        product,
        finance,
    } = approvers();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut rep = org.device(org.rep_a);
    let (q, _) = rep.request_quote(&id, 5_000_000, 25.0).unwrap();
    let mut p = org.device(product);
    let mut f = org.device(finance);
    let mut m = org.device(org.manager);
    for r in [&mut p, &mut f, &mut m] {
        send(&rep, r);
    }
    // manager first, then finance, then product: the order does not matter.
    let v = m
        .decide_quote(&id, &q, "manager", true, Some("同意"))
        .unwrap();
    assert_eq!(
        v.quotes[0].approval,
        QuoteStatus::Pending {
            waiting_for: vec!["product".into(), "finance".into()]
        }
    );
    send(&m, &mut f);
    let v = f.decide_quote(&id, &q, "finance", true, None).unwrap();
    assert_eq!(
        v.quotes[0].approval,
        QuoteStatus::Pending {
            waiting_for: vec!["product".into()]
        }
    );
    send(&f, &mut p);
    let v = p.decide_quote(&id, &q, "product", true, None).unwrap();
    assert_eq!(v.quotes[0].approval, QuoteStatus::Approved);
    assert_eq!(v.quotes[0].decisions.len(), 3);
    // A role the quote does not need is refused.
    assert!(matches!(
        p.decide_quote(&id, &q, "legal", true, None),
        Err(Error::NotPermitted(_) | Error::InvalidInput { .. })
    ));
    assert!(matches!(
        p.decide_quote(&id, "no-such-quote", "product", true, None),
        Err(Error::UnknownQuote(_))
    ));
}

#[test]
fn approvals_made_offline_on_different_replicas_merge_to_approved() {
    let Approvers {
        mut org,
        product,
        finance,
    } = approvers();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut rep = org.device(org.rep_a);
    let (q, _) = rep.request_quote(&id, 5_000_000, 25.0).unwrap();
    let mut p = org.device(product);
    let mut f = org.device(finance);
    let mut m = org.device(org.manager);
    for r in [&mut p, &mut f, &mut m] {
        send(&rep, r);
    }
    // Each approver decides on their own phone without seeing the others.
    p.decide_quote(&id, &q, "product", true, None).unwrap();
    org.advance_hours(1);
    f.decide_quote(&id, &q, "finance", true, None).unwrap();
    org.advance_hours(1);
    m.decide_quote(&id, &q, "manager", true, None).unwrap();
    for r in [&p, &f, &m] {
        assert!(matches!(
            r.client(&id).unwrap().quotes[0].approval,
            QuoteStatus::Pending { .. }
        ));
        send(r, &mut rep);
    }
    let v = rep.client(&id).unwrap();
    assert_eq!(v.quotes[0].approval, QuoteStatus::Approved);
    let mut roles: Vec<&str> = v.quotes[0]
        .decisions
        .iter()
        .map(|d| d.role.as_str())
        .collect();
    roles.sort();
    assert_eq!(roles, ["finance", "manager", "product"]);
    send(&rep, &mut p);
    assert_eq!(p.client(&id).unwrap(), v);
}

#[test]
fn one_rejection_rejects_the_quote_whatever_the_others_decide() {
    let Approvers {
        mut org,
        product,
        finance,
    } = approvers();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut rep = org.device(org.rep_a);
    let (q, _) = rep.request_quote(&id, 5_000_000, 30.0).unwrap();
    let mut p = org.device(product);
    let mut f = org.device(finance);
    send(&rep, &mut p);
    send(&rep, &mut f);
    send(&rep, &mut org.admin);
    f.decide_quote(&id, &q, "finance", false, Some("毛利太低"))
        .unwrap();
    p.decide_quote(&id, &q, "product", true, None).unwrap();
    org.admin
        .decide_quote(&id, &q, "manager", true, None)
        .unwrap();
    send(&f, &mut org.admin);
    send(&p, &mut org.admin);
    let v = org.admin.client(&id).unwrap();
    assert_eq!(
        v.quotes[0].approval,
        QuoteStatus::Rejected {
            rejected_by: vec!["finance".into()]
        }
    );
    let rejection = v.quotes[0]
        .decisions
        .iter()
        .find(|d| d.decision == "rejected")
        .unwrap();
    assert_eq!(rejection.comment.as_deref(), Some("毛利太低"));
    assert_eq!(rejection.by, finance.to_string());
}

#[test]
fn a_user_who_does_not_hold_the_approval_role_is_refused() {
    let Approvers {
        mut org, product, ..
    } = approvers();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut rep = org.device(org.rep_a);
    let (q, _) = rep.request_quote(&id, 5_000_000, 30.0).unwrap();
    let mut p = org.device(product);
    send(&rep, &mut p);
    let before = p.client(&id).unwrap();
    for role in ["finance", "manager"] {
        assert!(
            matches!(
                p.decide_quote(&id, &q, role, true, None),
                Err(Error::NotPermitted(_))
            ),
            "{role}"
        );
    }
    assert!(matches!(
        rep.decide_quote(&id, &q, "product", true, None),
        Err(Error::NotPermitted(_))
    ));
    assert_eq!(p.client(&id).unwrap(), before);
}

#[test]
fn a_forged_approval_by_a_non_holder_is_ignored_by_the_fold() {
    let Approvers {
        mut org,
        product,
        finance,
    } = approvers();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut rep = org.device(org.rep_a);
    let (q, _) = rep.request_quote(&id, 5_000_000, 30.0).unwrap();
    // The rep signs for finance in the finance approver's name, through the document layer.
    let now = rep.now();
    let forged = forge_client(&rep, &id, actor_of(&rep), |doc| {
        for role in ["finance", "product", "manager"] {
            doc.append(
                EventList::Approvals,
                &Approval {
                    id: uuid::Uuid::new_v4().to_string(),
                    quote: q.clone(),
                    role: role.into(),
                    decision: "approved".into(),
                    by: finance.to_string(),
                    at: now,
                    comment: None,
                },
            )
            .unwrap();
        }
    });
    org.admin.import(&forged).unwrap();
    let v = org.admin.client(&id).unwrap();
    assert_eq!(
        v.quotes[0].approval,
        QuoteStatus::Pending {
            waiting_for: vec!["product".into(), "finance".into(), "manager".into()]
        }
    );
    assert!(v.quotes[0].decisions.is_empty());
    // The genuine decisions still count alongside the forged ones.
    let mut p = org.device(product);
    send(&org.admin, &mut p);
    p.decide_quote(&id, &q, "product", true, None).unwrap();
    send(&p, &mut org.admin);
    assert_eq!(
        org.admin.client(&id).unwrap().quotes[0].approval,
        QuoteStatus::Pending {
            waiting_for: vec!["finance".into(), "manager".into()]
        }
    );
}

// ----- roles per client -----------------------------------------------------------------

#[test]
fn a_rep_cannot_edit_another_reps_client_but_a_collaborator_can() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut a = org.device(org.rep_a);
    let mut b = org.device(org.rep_b);
    send(&org.admin, &mut b);
    let before = b.client(&id).unwrap();
    assert!(matches!(
        b.edit_client(&id, &[("phone".into(), Some("13900139000".into()))]),
        Err(Error::NotPermitted(_))
    ));
    assert!(matches!(
        b.add_note(&id, NoteKind::Call, "抢客户"),
        Err(Error::NotPermitted(_))
    ));
    assert!(matches!(
        b.move_stage(&id, "screening", MoveOptions::default()),
        Err(Error::NotPermitted(_))
    ));
    assert!(matches!(
        b.set_collaborator(&id, org.rep_b, true),
        Err(Error::NotPermitted(_))
    ));
    assert_eq!(b.client(&id).unwrap(), before);
    // The owner adds B as a collaborator (协作者); after sync B may edit.
    let v = a.set_collaborator(&id, org.rep_b, true).unwrap();
    assert_eq!(v.collaborators, [org.rep_b.to_string()]);
    send(&a, &mut b);
    let v = b.add_note(&id, NoteKind::Visit, "协助拜访").unwrap();
    assert_eq!(v.notes.len(), 1);
    b.edit_client(&id, &[("email".into(), Some("li@example.com".into()))])
        .unwrap();
    // A collaborator is not the owner.
    assert_eq!(b.client(&id).unwrap().owner, org.rep_a.to_string());
}

#[test]
fn the_supervisor_defaults_to_the_owners_manager_and_may_edit() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let v = org.admin.client(&id).unwrap();
    assert_eq!(v.owner, org.rep_a.to_string());
    assert_eq!(v.supervisor, Some(org.manager.to_string()));
    let mut m = org.device(org.manager);
    send(&org.admin, &mut m);
    m.add_note(&id, NoteKind::Note, "主管批注").unwrap();
    // An explicit supervisor (another rep) may edit too.
    org.admin.set_supervisor(&id, Some(org.rep_b)).unwrap();
    let mut b = org.device(org.rep_b);
    send(&org.admin, &mut b);
    assert_eq!(
        b.client(&id).unwrap().supervisor,
        Some(org.rep_b.to_string())
    );
    b.add_note(&id, NoteKind::Note, "监督者备注").unwrap();
}

// ----- communication history ------------------------------------------------------------

#[test]
fn notes_from_two_replicas_both_survive_a_merge() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut a = org.device(org.rep_a);
    let mut m = org.device(org.manager);
    send(&org.admin, &mut m);
    a.add_note(&id, NoteKind::Call, "A 的电话").unwrap();
    a.add_note(&id, NoteKind::Note, "A 的备注").unwrap();
    m.add_note(&id, NoteKind::Visit, "经理拜访").unwrap();
    sync(&mut a, &mut m);
    let va = a.client(&id).unwrap();
    let vm = m.client(&id).unwrap();
    assert_eq!(va, vm);
    let mut texts: Vec<&str> = va.notes.iter().map(|n| n.text.as_str()).collect();
    texts.sort();
    assert_eq!(texts, ["A 的备注", "A 的电话", "经理拜访"]);
    // Search over the merged notes works on both sides.
    assert_eq!(a.search("经理拜访").unwrap().len(), 1);
    assert_eq!(m.search("A 的电话").unwrap().len(), 1);
}

#[test]
fn every_note_created_is_kept_with_its_author_and_time() {
    let org = Org::new();
    let mut r = org.admin;
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    for i in 0..25 {
        org.clock.advance(1000);
        let kind = [NoteKind::Note, NoteKind::Call, NoteKind::Visit][i % 3];
        r.add_note(&id, kind, &format!("第{i}次沟通")).unwrap();
    }
    assert!(matches!(
        r.add_note(&id, NoteKind::Note, "  "),
        Err(Error::InvalidInput { .. })
    ));
    let v = r.client(&id).unwrap();
    assert_eq!(v.notes.len(), 25);
    for (i, n) in v.notes.iter().enumerate() {
        assert_eq!(n.text, format!("第{i}次沟通"));
        assert_eq!(n.by, r.me().to_string());
        assert_eq!(n.at, T0 + (i as i64 + 1) * 1000);
    }
}

// ----- onboarding -----------------------------------------------------------------------

#[test]
fn reaching_won_creates_the_onboarding_tasks_and_they_can_be_completed() {
    let org = Org::new();
    let mut r = org.admin;
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    walk(&org.clock, &mut r, &id, TO_NEGOTIATION);
    assert!(r.client(&id).unwrap().onboarding.is_empty());
    assert!(matches!(
        r.complete_task(&id, "kickoff"),
        Err(Error::InvalidInput { .. })
    ));
    let v = r.move_stage(&id, "won", MoveOptions::default()).unwrap();
    let keys: Vec<&str> = v.onboarding.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["kickoff", "training", "welcome_pack"]);
    assert!(v.onboarding.iter().all(|t| t.done_at.is_none()));
    org.clock.advance(HOUR_MS);
    let done_at = r.now();
    let v = r.complete_task(&id, "training").unwrap();
    let t = v.onboarding.iter().find(|t| t.key == "training").unwrap();
    assert_eq!(t.done_at, Some(done_at));
    assert_eq!(t.done_by, Some(r.me().to_string()));
    assert!(v
        .onboarding
        .iter()
        .filter(|t| t.key != "training")
        .all(|t| t.done_at.is_none()));
    assert!(matches!(
        r.complete_task(&id, "party"),
        Err(Error::InvalidInput { .. })
    ));
}

#[test]
fn concurrent_wins_on_two_replicas_yield_one_task_per_key() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    walk(&org.clock, &mut org.admin, &id, TO_NEGOTIATION);
    let mut a = org.device(org.rep_a);
    let mut m = org.device(org.manager);
    send(&org.admin, &mut a);
    send(&org.admin, &mut m);
    a.move_stage(&id, "成交", MoveOptions::default()).unwrap();
    org.advance_hours(1);
    m.move_stage(&id, "won", MoveOptions::default()).unwrap();
    m.complete_task(&id, "kickoff").unwrap();
    sync(&mut a, &mut m);
    let v = a.client(&id).unwrap();
    assert_eq!(v, m.client(&id).unwrap());
    let keys: Vec<&str> = v.onboarding.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["kickoff", "training", "welcome_pack"]);
    assert_eq!(v.onboarding[0].done_by, Some(org.manager.to_string()));
    assert_eq!(v.stage, "won");
    assert_eq!(a.report().unwrap().won, 1);
}

// ----- duplicates -----------------------------------------------------------------------

#[test]
fn a_duplicate_phone_email_or_company_is_refused_naming_the_existing_client() {
    let org = Org::new();
    let mut r = org.admin;
    let mut first = client("张三", "深圳华强科技有限公司", true);
    first
        .profile
        .insert("phone".into(), "+86 138-0013-8000".into());
    first
        .profile
        .insert("email".into(), "Zhang@HuaQiang.cn".into());
    let existing = r.create_client(first).unwrap();
    let count = r.list(&ClientFilter::default()).unwrap().len();
    let cases = [
        ("phone", "13800138000", "另一家公司"),
        ("email", "zhang@huaqiang.cn ", "又一家公司"),
        ("name", "张先生", "深圳华强科技"),
    ];
    for (field, value, company) in cases {
        let mut c = client("张先生", company, true);
        c.profile.insert(field.into(), value.into());
        match r.create_client(c).unwrap_err() {
            Error::Duplicate { matches } => {
                assert_eq!(matches.len(), 1, "{field}");
                assert_eq!(matches[0].client_id, existing.to_string());
                assert_eq!(matches[0].name, "张三");
                let expected = if field == "name" { "company" } else { field };
                assert_eq!(matches[0].matched_on, expected);
            }
            other => panic!("expected Duplicate for {field}, got {other}"),
        }
    }
    let err = r
        .create_client(client("李四", "深圳华强科技 有限公司", true))
        .unwrap_err();
    assert!(err.to_string().contains(&existing.to_string()), "{err}");
    assert_eq!(r.list(&ClientFilter::default()).unwrap().len(), count);
    // A different customer is not a duplicate.
    r.create_client(client("王五", "深圳华强电子", true))
        .unwrap();
}

#[test]
fn allow_duplicate_creates_the_client_anyway_and_duplicates_lists_both() {
    let org = Org::new();
    let mut r = org.admin;
    let first = r
        .create_client(client("张三", "Acme Co., Ltd.", true))
        .unwrap();
    let mut again = client("张三二号", "ACME", true);
    again.allow_duplicate = true;
    let second = r.create_client(again).unwrap();
    assert_ne!(first, second);
    let groups = r.duplicates().unwrap();
    assert_eq!(groups.len(), 1);
    let ids: Vec<&str> = groups[0].iter().map(|m| m.client_id.as_str()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&&*first.to_string()) && ids.contains(&&*second.to_string()));
}

#[test]
fn the_same_customer_created_offline_by_two_reps_is_surfaced_after_merge() {
    let mut org = Org::new();
    let mut a = org.device(org.rep_a);
    let mut b = org.device(org.rep_b);
    let mut ca = client("陈总", "深圳华强科技有限公司", true);
    ca.profile.insert("phone".into(), "13800138000".into());
    let mut cb = client("陈先生", "华强科技(深圳)", true);
    cb.profile
        .insert("phone".into(), "+86 138 0013 8000".into());
    let ia = a.create_client(ca).unwrap();
    let ib = b.create_client(cb).unwrap();
    assert!(a.duplicates().unwrap().is_empty());
    sync(&mut a, &mut b);
    send(&a, &mut org.admin);
    for r in [&a, &b, &org.admin] {
        let groups = r.duplicates().unwrap();
        let phone = groups
            .iter()
            .find(|g| g[0].matched_on == "phone")
            .expect("a phone group");
        let mut ids: Vec<String> = phone.iter().map(|m| m.client_id.clone()).collect();
        ids.sort();
        let mut expected = vec![ia.to_string(), ib.to_string()];
        expected.sort();
        assert_eq!(ids, expected);
        let owners: Vec<&str> = phone.iter().map(|m| m.owner.as_str()).collect();
        assert!(
            owners.contains(&&*org.rep_a.to_string()) && owners.contains(&&*org.rep_b.to_string())
        );
    }
}

// ----- merge semantics ------------------------------------------------------------------

#[test]
fn concurrent_edits_to_different_fields_both_survive() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut a = org.device(org.rep_a);
    a.edit_client(&id, &[("phone".into(), Some("13800138000".into()))])
        .unwrap();
    org.admin
        .edit_client(
            &id,
            &[
                ("email".into(), Some("zhang@example.com".into())),
                ("grade".into(), Some("A".into())),
            ],
        )
        .unwrap();
    a.tag_client(&id, &["重点".into()], &[]).unwrap();
    sync(&mut a, &mut org.admin);
    let v = a.client(&id).unwrap();
    assert_eq!(v, org.admin.client(&id).unwrap());
    assert_eq!(
        v.profile.get("phone").map(String::as_str),
        Some("13800138000")
    );
    assert_eq!(
        v.profile.get("email").map(String::as_str),
        Some("zhang@example.com")
    );
    assert_eq!(v.profile.get("grade").map(String::as_str), Some("A"));
    assert_eq!(v.tags, ["重点"]);
    assert!(v.conflicts.is_empty());
    assert!(a.conflicts().unwrap().is_empty());
}

#[test]
fn concurrent_edits_to_one_field_converge_and_the_losing_value_is_a_conflict_until_edited() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut a = org.device(org.rep_a);
    a.edit_client(&id, &[("budget_range".into(), Some("80万".into()))])
        .unwrap();
    org.admin
        .edit_client(&id, &[("budget_range".into(), Some("120万".into()))])
        .unwrap();
    sync(&mut a, &mut org.admin);
    let va = a.client(&id).unwrap();
    assert_eq!(va, org.admin.client(&id).unwrap());
    let shown = va.profile["budget_range"].clone();
    assert!(shown == "80万" || shown == "120万", "{shown}");
    let loser = if shown == "80万" { "120万" } else { "80万" };
    for r in [&a, &org.admin] {
        let conflicts = r.conflicts().unwrap();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].client_id, id.to_string());
        assert_eq!(conflicts[0].fields.len(), 1);
        let f = &conflicts[0].fields[0];
        assert_eq!(
            (f.field.as_str(), f.value.as_str()),
            ("budget_range", shown.as_str())
        );
        assert_eq!(f.other_values, [loser]);
        assert!(r.list(&ClientFilter::default()).unwrap()[0].needs_review);
    }
    // Editing the field resolves the conflict, everywhere.
    a.edit_client(&id, &[("budget_range".into(), Some("100万".into()))])
        .unwrap();
    assert!(a.conflicts().unwrap().is_empty());
    send(&a, &mut org.admin);
    assert!(org.admin.conflicts().unwrap().is_empty());
    assert_eq!(
        org.admin.client(&id).unwrap().profile["budget_range"],
        "100万"
    );
    assert!(!org.admin.list(&ClientFilter::default()).unwrap()[0].needs_review);
}

#[test]
fn concurrent_stage_moves_are_both_kept_and_one_stage_wins_everywhere() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    org.admin
        .move_stage(&id, "screening", MoveOptions::default())
        .unwrap();
    let mut a = org.device(org.rep_a);
    let mut m = org.device(org.manager);
    send(&org.admin, &mut m);
    org.advance_hours(1);
    a.move_stage(&id, "first_contact", MoveOptions::default())
        .unwrap();
    org.advance_hours(1);
    m.move_stage(&id, "lost", lost("competitor")).unwrap();
    sync(&mut a, &mut m);
    send(&a, &mut org.admin);
    let v = a.client(&id).unwrap();
    assert_eq!(v, m.client(&id).unwrap());
    assert_eq!(v, org.admin.client(&id).unwrap());
    assert_eq!(
        v.transitions.len(),
        3,
        "both concurrent moves stay in history"
    );
    assert!(v.concurrent_moves);
    let concurrent: Vec<&str> = v
        .transitions
        .iter()
        .filter(|t| t.concurrent)
        .map(|t| t.event.to.as_str())
        .collect();
    assert_eq!(concurrent, ["first_contact", "lost"]);
    assert_eq!(v.transitions.iter().filter(|t| t.effective).count(), 2);
    // The later tip wins: lost, one hour after the move to first contact.
    assert_eq!(v.stage, "lost");
    for r in [&a, &m, &org.admin] {
        let board = r.board().unwrap();
        assert_eq!(board.total, 1);
        assert_eq!(
            board
                .columns
                .iter()
                .find(|c| c.stage == "lost")
                .unwrap()
                .count,
            1
        );
        let report = r.report().unwrap();
        assert_eq!(report.concurrent_moves, 1);
        assert_eq!((report.won, report.lost), (0, 1));
        let conflicts = r.conflicts().unwrap();
        assert_eq!(conflicts.len(), 1);
        assert!(conflicts[0].concurrent_moves);
    }
    assert_eq!(a.report().unwrap(), m.report().unwrap());
}

#[test]
fn moves_made_in_the_same_millisecond_follow_one_another() {
    // A batch import or a phone whose clock stands still: every move sees the previous one.
    let org = Org::new();
    let mut r = org.admin;
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    for stage in TO_NEGOTIATION.iter().chain(&["won"]) {
        r.move_stage(&id, stage, MoveOptions::default()).unwrap();
    }
    let v = r.client(&id).unwrap();
    assert_eq!(v.stage, "won");
    assert!(!v.concurrent_moves);
    assert!(v.transitions.iter().all(|t| t.effective && !t.concurrent));
    assert_eq!(v.visits.len(), 7);
}

#[test]
fn a_move_made_on_a_phone_with_a_slow_clock_follows_the_moves_it_saw() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    // The rep's phone runs two hours behind the admin's.
    let slow = ManualClock::new(T0);
    let bundle = org.admin.provision_device(org.rep_a).unwrap();
    let mut a = Replica::join(
        &org.dir.path().join("slow.db"),
        &bundle,
        Arc::new(slow.clone()),
    )
    .unwrap();
    org.clock.set(T0 + 2 * HOUR_MS);
    org.admin
        .move_stage(&id, "screening", MoveOptions::default())
        .unwrap();
    send(&org.admin, &mut a);
    slow.set(T0 + 60_000);
    a.move_stage(&id, "first_contact", MoveOptions::default())
        .unwrap();
    slow.set(T0 + 120_000);
    a.move_stage(&id, "needs_analysis", MoveOptions::default())
        .unwrap();
    let v = a.client(&id).unwrap();
    assert_eq!(v.stage, "needs_analysis");
    assert!(
        !v.concurrent_moves,
        "sequential moves flagged as concurrent"
    );
    assert!(v.transitions.iter().all(|t| t.effective));
}

#[test]
fn handovers_made_in_the_same_millisecond_follow_one_another() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let (a, b, m) = (org.rep_a, org.rep_b, org.manager);
    for to in [b, m, a, b, m] {
        org.admin.handover(&[id], to, None).unwrap();
    }
    let v = org.admin.client(&id).unwrap();
    assert_eq!(v.owner, m.to_string());
    assert!(!v.concurrent_handovers);
    assert!(v.handovers.iter().all(|h| h.effective));
}

#[test]
fn a_handover_by_a_manager_changes_the_owner_and_keeps_the_history() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut a = org.device(org.rep_a);
    a.add_note(&id, NoteKind::Call, "初次电话").unwrap();
    a.move_stage(&id, "screening", MoveOptions::default())
        .unwrap();
    let mut m = org.device(org.manager);
    send(&a, &mut m);
    org.advance_hours(1);
    let views = m.handover(&[id], org.rep_b, Some("离职")).unwrap();
    assert_eq!(views[0].owner, org.rep_b.to_string());
    let mut b = org.device(org.rep_b);
    send(&m, &mut b);
    let v = b.client(&id).unwrap();
    assert_eq!(v.owner, org.rep_b.to_string());
    assert_eq!(v.notes.len(), 1);
    assert_eq!(v.transitions.len(), 1);
    assert_eq!(v.handovers.len(), 1);
    let h = &v.handovers[0];
    assert!(h.authorized && h.effective && !h.concurrent);
    assert_eq!(h.event.from, org.rep_a.to_string());
    assert_eq!(h.event.by, org.manager.to_string());
    assert_eq!(h.event.at, T0 + HOUR_MS);
    assert_eq!(h.event.reason.as_deref(), Some("离职"));
    assert_eq!(
        b.list(&ClientFilter {
            owner: Some(org.rep_b.to_string()),
            ..Default::default()
        })
        .unwrap()
        .len(),
        1
    );
    b.add_note(&id, NoteKind::Note, "接手").unwrap();
    // A rep cannot hand over.
    assert!(matches!(
        b.handover(&[id], org.rep_a, None),
        Err(Error::NotPermitted(_))
    ));
}

#[test]
fn handover_all_moves_every_client_of_a_departed_rep() {
    let mut org = Org::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            org.admin
                .create_client(owned_by(
                    client(&format!("客户{i}"), &format!("公司{i}号"), true),
                    org.rep_a,
                ))
                .unwrap(),
        );
    }
    let kept = org
        .admin
        .create_client(owned_by(client("别人的", "其他公司", true), org.rep_b))
        .unwrap();
    org.admin.mark_departed(org.rep_a).unwrap();
    let moved = org
        .admin
        .handover_all(org.rep_a, org.manager, Some("离职继承"))
        .unwrap();
    assert_eq!(moved.len(), 3);
    for id in &ids {
        assert_eq!(org.admin.client(id).unwrap().owner, org.manager.to_string());
    }
    assert_eq!(
        org.admin.client(&kept).unwrap().owner,
        org.rep_b.to_string()
    );
    assert!(org
        .admin
        .list(&ClientFilter {
            owner: Some(org.rep_a.to_string()),
            ..Default::default()
        })
        .unwrap()
        .is_empty());
    // Nobody hands clients to a departed rep.
    assert!(matches!(
        org.admin.handover(&[kept], org.rep_a, None),
        Err(Error::Departed(_))
    ));
}

#[test]
fn a_forged_handover_by_a_rep_is_ignored_by_the_fold() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut b = org.device(org.rep_b);
    send(&org.admin, &mut b);
    assert!(matches!(
        b.handover(&[id], org.rep_b, None),
        Err(Error::NotPermitted(_))
    ));
    let now = b.now();
    let (rep_a, rep_b, manager) = (org.rep_a, org.rep_b, org.manager);
    let forged = forge_client(&b, &id, actor_of(&b), |doc| {
        doc.append(
            EventList::Handovers,
            &new_handover(rep_a, rep_b, manager, now),
        )
        .unwrap();
    });
    for r in [&mut org.admin, &mut b] {
        r.import(&forged).unwrap();
        let v = r.client(&id).unwrap();
        assert_eq!(v.owner, rep_a.to_string());
        assert_eq!(v.handovers.len(), 1, "the forged event is kept");
        assert!(!v.handovers[0].authorized);
        assert!(!v.handovers[0].effective);
        let row = r
            .list(&ClientFilter::default())
            .unwrap()
            .into_iter()
            .find(|row| row.id == id.to_string())
            .unwrap();
        assert_eq!(row.owner, rep_a.to_string());
    }
    assert!(matches!(
        b.add_note(&id, NoteKind::Note, "我的了"),
        Err(Error::NotPermitted(_))
    ));
}

#[test]
fn concurrent_handovers_by_two_managers_converge_to_one_owner_and_are_flagged() {
    let mut org = Org::new();
    // manager2 reports to manager; rep_c reports to manager2: both managers may hand
    // rep_c's clients over.
    let manager2 = org
        .admin
        .add_user("赵经理", Role::Manager, Some(org.manager), vec![])
        .unwrap();
    let rep_c = org
        .admin
        .add_user("王五", Role::Rep, Some(manager2), vec![])
        .unwrap();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            rep_c,
        ))
        .unwrap();
    let mut m1 = org.device(org.manager);
    let mut m2 = org.device(manager2);
    send(&org.admin, &mut m1);
    send(&org.admin, &mut m2);
    m1.handover(&[id], org.rep_b, Some("m1")).unwrap();
    m2.handover(&[id], manager2, Some("m2")).unwrap();
    sync(&mut m1, &mut m2);
    send(&m1, &mut org.admin);
    let v = org.admin.client(&id).unwrap();
    assert_eq!(v, m1.client(&id).unwrap());
    assert_eq!(v, m2.client(&id).unwrap());
    assert!(
        v.owner == org.rep_b.to_string() || v.owner == manager2.to_string(),
        "{}",
        v.owner
    );
    assert!(v.concurrent_handovers);
    assert_eq!(v.handovers.len(), 2);
    assert!(v.handovers.iter().all(|h| h.authorized && h.concurrent));
    let effective: Vec<_> = v.handovers.iter().filter(|h| h.effective).collect();
    assert_eq!(effective.len(), 1);
    assert_eq!(effective[0].event.to, v.owner);
    for r in [&org.admin, &m1, &m2] {
        let rows = r.list(&ClientFilter::default()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].owner, v.owner);
        assert!(rows[0].needs_review);
        assert_eq!(r.report().unwrap().concurrent_handovers, 1);
        assert!(r.conflicts().unwrap()[0].concurrent_handovers);
    }
    // A later handover follows the winner and clears nothing of the history.
    org.advance_hours(1);
    m1.handover(&[id], org.rep_a, Some("收回")).unwrap();
    let v = m1.client(&id).unwrap();
    assert_eq!(v.owner, org.rep_a.to_string());
    assert_eq!(v.handovers.len(), 3);
}

#[test]
fn offline_edits_by_the_old_owner_are_kept_and_do_not_change_the_owner() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut a = org.device(org.rep_a);
    let mut m = org.device(org.manager);
    send(&org.admin, &mut m);
    // A works offline, not knowing about the handover.
    org.advance_hours(1);
    a.add_note(&id, NoteKind::Visit, "离职前最后一次拜访")
        .unwrap();
    a.edit_client(&id, &[("phone".into(), Some("13700137000".into()))])
        .unwrap();
    a.move_stage(&id, "screening", MoveOptions::default())
        .unwrap();
    org.advance_hours(1);
    m.handover(&[id], org.rep_b, Some("离职")).unwrap();
    sync(&mut a, &mut m);
    for r in [&a, &m] {
        let v = r.client(&id).unwrap();
        assert_eq!(v.owner, org.rep_b.to_string());
        assert_eq!(v.notes.len(), 1);
        assert_eq!(v.notes[0].by, org.rep_a.to_string());
        assert_eq!(v.profile["phone"], "13700137000");
        assert_eq!(v.stage, "screening");
        let row = r
            .list(&ClientFilter::default())
            .unwrap()
            .into_iter()
            .find(|row| row.id == id.to_string())
            .unwrap();
        assert_eq!(row.owner, org.rep_b.to_string());
    }
    // Now that A knows, A no longer edits the client.
    assert!(matches!(
        a.add_note(&id, NoteKind::Note, "还想跟进"),
        Err(Error::NotPermitted(_))
    ));
}

#[test]
fn a_handover_shows_in_lists_once_the_writers_device_registration_arrives() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    // B's phone joins before the manager's phone is registered.
    let mut b = org.device(org.rep_b);
    let mut m = org.device(org.manager);
    send(&org.admin, &mut m);
    m.handover(&[id], org.rep_b, Some("调整")).unwrap();
    // B first receives the client document alone (e.g. the client bundle arrives first).
    let full = Bundle::decode(&m.export(None).unwrap()).unwrap();
    let only_client = Bundle {
        header: full.header.clone(),
        entries: full
            .entries
            .into_iter()
            .filter(|e| e.kind == DocKind::Client)
            .collect(),
    };
    b.import(&only_client.encode()).unwrap();
    // Then the team document that registers the manager's device.
    send(&m, &mut b);
    let v = b.client(&id).unwrap();
    assert_eq!(v.owner, org.rep_b.to_string());
    let row = b
        .list(&ClientFilter::default())
        .unwrap()
        .into_iter()
        .find(|row| row.id == id.to_string())
        .unwrap();
    assert_eq!(
        row.owner, v.owner,
        "the read model must agree with the fold"
    );
    assert_eq!(
        b.list(&ClientFilter {
            owner: Some(org.rep_b.to_string()),
            ..Default::default()
        })
        .unwrap()
        .len(),
        1
    );
}

// ----- team document authority ----------------------------------------------------------

#[test]
fn a_rep_promoting_their_role_in_the_team_document_gains_no_authority() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut b = org.device(org.rep_b);
    send(&org.admin, &mut b);
    let rep_b = org.rep_b.to_string();
    let forged = forge_team(&b, |t| {
        t.members.get_mut(&rep_b).unwrap().role = "admin".into();
    });
    deliver_forged(&mut b, &forged);
    deliver_forged(&mut org.admin, &forged);
    for r in [&b, &org.admin] {
        assert_eq!(r.team().members[&rep_b].role, "rep");
    }
    assert_eq!(b.identity().role, Role::Rep);
    assert!(matches!(
        b.handover(&[id], org.rep_b, None),
        Err(Error::NotPermitted(_))
    ));
    assert!(matches!(
        b.add_user("同伙", Role::Admin, None, vec![]),
        Err(Error::NotPermitted(_))
    ));
    assert!(matches!(
        b.edit_client(&id, &[("phone".into(), Some("1".into()))]),
        Err(Error::NotPermitted(_))
    ));
    // A handover the "promoted" rep writes anyway is not believed.
    let now = b.now();
    let (rep_a, rep_bid) = (org.rep_a, org.rep_b);
    let handover = forge_client(&b, &id, actor_of(&b), |doc| {
        doc.append(
            EventList::Handovers,
            &new_handover(rep_a, rep_bid, rep_bid, now),
        )
        .unwrap();
    });
    org.admin.import(&handover).unwrap();
    let v = org.admin.client(&id).unwrap();
    assert_eq!(v.owner, org.rep_a.to_string());
    assert!(!v.handovers[0].authorized);
}

#[test]
fn a_rep_registering_an_actor_for_a_manager_gains_no_authority() {
    let mut org = Org::new();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut b = org.device(org.rep_b);
    send(&org.admin, &mut b);
    let fake = ActorId::random();
    let (fake_hex, own_hex, manager) = (
        fake.to_hex_string(),
        b.identity().actor,
        org.manager.to_string(),
    );
    let forged = forge_team(&b, |t| {
        t.actors.insert(fake_hex.clone(), manager.clone());
        t.actors.insert(own_hex.clone(), manager.clone());
    });
    deliver_forged(&mut org.admin, &forged);
    deliver_forged(&mut b, &forged);
    for r in [&org.admin, &b] {
        assert_eq!(r.team_doc().role_of_actor(&fake_hex), None);
        assert_ne!(r.team().actors.get(&own_hex), Some(&manager));
    }
    assert_eq!(b.identity().role, Role::Rep);
    // A handover written with the self-registered actor does not count.
    let now = b.now();
    let (rep_a, rep_b, m) = (org.rep_a, org.rep_b, org.manager);
    for actor in [fake, actor_of(&b)] {
        let handover = forge_client(&b, &id, actor, |doc| {
            doc.append(EventList::Handovers, &new_handover(rep_a, rep_b, m, now))
                .unwrap();
        });
        deliver_forged(&mut org.admin, &handover);
    }
    let v = org.admin.client(&id).unwrap();
    assert_eq!(v.owner, org.rep_a.to_string());
    assert!(v.handovers.iter().all(|h| !h.authorized && !h.effective));
}

#[test]
fn a_rep_granting_themselves_approval_roles_in_the_team_document_gains_no_authority() {
    let Approvers { mut org, .. } = approvers();
    let id = org
        .admin
        .create_client(owned_by(
            client("张三", "深圳华强科技有限公司", true),
            org.rep_a,
        ))
        .unwrap();
    let mut a = org.device(org.rep_a);
    let (q, _) = a.request_quote(&id, 5_000_000, 40.0).unwrap();
    let rep_a = org.rep_a.to_string();
    let team = forge_team(&a, |t| {
        t.members.get_mut(&rep_a).unwrap().approves =
            vec!["product".into(), "finance".into(), "manager".into()];
    });
    let now = a.now();
    let approvals = forge_client(&a, &id, actor_of(&a), |doc| {
        for role in ["product", "finance", "manager"] {
            doc.append(
                EventList::Approvals,
                &Approval {
                    id: uuid::Uuid::new_v4().to_string(),
                    quote: q.clone(),
                    role: role.into(),
                    decision: "approved".into(),
                    by: rep_a.clone(),
                    at: now,
                    comment: None,
                },
            )
            .unwrap();
        }
    });
    deliver_forged(&mut org.admin, &team);
    org.admin.import(&approvals).unwrap();
    let v = org.admin.client(&id).unwrap();
    assert_eq!(
        v.quotes[0].approval,
        QuoteStatus::Pending {
            waiting_for: vec!["product".into(), "finance".into(), "manager".into()]
        },
        "a rep approved their own 40% discount by editing the team document"
    );
}

#[test]
fn a_rep_rewriting_the_rules_in_the_team_document_changes_nothing() {
    let mut org = Org::new();
    let mut a = org.device(org.rep_a);
    let rules_before = org.admin.team().rules.clone();
    let pipeline_before = org.admin.team().pipeline.clone();
    let team = forge_team(&a, |t| {
        t.rules.discount_band_pct = 100.0;
        t.rules.required_lead_fields.clear();
        t.pipeline.edges.push(fieldsync_core::pipeline::Edge {
            from: "lead".into(),
            to: "won".into(),
        });
    });
    deliver_forged(&mut org.admin, &team);
    deliver_forged(&mut a, &team);
    assert_eq!(
        org.admin.team().rules,
        rules_before,
        "rules are the admin's (DESIGN §1)"
    );
    assert_eq!(
        org.admin.team().pipeline,
        pipeline_before,
        "the pipeline is the admin's (DESIGN §1)"
    );
    let id = a
        .create_client(client("张三", "深圳华强科技有限公司", false))
        .unwrap();
    assert!(matches!(
        a.move_stage(&id, "screening", MoveOptions::default()),
        Err(Error::GateRefused { .. })
    ));
}

// ----- departed users -------------------------------------------------------------------

#[test]
fn a_departed_users_replica_refuses_edits_once_it_learns_of_the_departure() {
    let mut org = Org::new();
    let mut a = org.device(org.rep_a);
    let id = a
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    send(&a, &mut org.admin);
    org.admin.mark_departed(org.rep_a).unwrap();
    assert!(org.admin.team().members[&org.rep_a.to_string()].departed);
    // Before the team change arrives, the phone works offline as usual.
    a.add_note(&id, NoteKind::Note, "离线备注").unwrap();
    send(&org.admin, &mut a);
    let before = a.client(&id).unwrap();
    assert!(
        matches!(a.add_note(&id, NoteKind::Note, "还在跟进"), Err(Error::Departed(u)) if u == org.rep_a)
    );
    assert!(matches!(
        a.edit_client(&id, &[("phone".into(), Some("13800138000".into()))]),
        Err(Error::Departed(_))
    ));
    assert!(matches!(
        a.move_stage(&id, "screening", MoveOptions::default()),
        Err(Error::Departed(_))
    ));
    assert!(matches!(
        a.create_client(client("新客户", "新公司", true)),
        Err(Error::Departed(_))
    ));
    assert!(matches!(
        a.request_quote(&id, 100, 5.0),
        Err(Error::Departed(_))
    ));
    assert_eq!(a.client(&id).unwrap(), before);
    // The note written offline before the departure was learnt is kept.
    send(&a, &mut org.admin);
    assert_eq!(org.admin.client(&id).unwrap().notes.len(), 1);
    // No new device for a departed rep.
    assert!(matches!(
        org.admin.provision_device(org.rep_a),
        Err(Error::Departed(_))
    ));
}

#[test]
fn a_departed_rep_cannot_undo_the_departure_through_the_team_document() {
    let mut org = Org::new();
    let mut a = org.device(org.rep_a);
    let id = a
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    org.admin.mark_departed(org.rep_a).unwrap();
    send(&org.admin, &mut a);
    let rep_a = org.rep_a.to_string();
    let forged = forge_team(&a, |t| {
        t.members.get_mut(&rep_a).unwrap().departed = false;
    });
    deliver_forged(&mut a, &forged);
    deliver_forged(&mut org.admin, &forged);
    assert!(
        org.admin.team().members[&rep_a].departed,
        "the admin's replica believes the rep's own un-departure"
    );
    assert!(matches!(
        a.add_note(&id, NoteKind::Note, "我又回来了"),
        Err(Error::Departed(_))
    ));
}

// ----- flow-health report ---------------------------------------------------------------

#[test]
fn the_flow_health_report_matches_a_hand_computed_scenario() {
    let org = Org::new();
    let clock = org.clock.clone();
    let mut r = org.admin;
    let at = |h: i64| clock.set(T0 + h * HOUR_MS);
    at(0);
    let c: Vec<ClientId> = (1..=7)
        .filter(|i| *i != 5)
        .map(|i| {
            r.create_client(client(&format!("客户{i}"), &format!("公司{i}号"), true))
                .unwrap()
        })
        .collect();
    let (c1, c2, c3, c4, c6, c7) = (c[0], c[1], c[2], c[3], c[4], c[5]);
    at(5);
    r.move_stage(&c3, "lost", lost("price")).unwrap();
    r.move_stage(&c6, "lost", lost("competitor")).unwrap();
    r.move_stage(&c7, "lost", lost("竞品")).unwrap();
    at(10);
    r.move_stage(&c1, "screening", MoveOptions::default())
        .unwrap();
    at(20);
    r.move_stage(&c1, "first_contact", MoveOptions::default())
        .unwrap();
    r.move_stage(&c2, "screening", MoveOptions::default())
        .unwrap();
    at(40);
    let c5 = r.create_client(client("客户5", "公司5号", true)).unwrap();
    at(48);
    r.move_stage(&c4, "won", skip("老客户直接签约")).unwrap();
    at(50);
    r.add_note(&c2, NoteKind::Call, "跟进电话").unwrap();
    at(100);
    // Hand computation, at T0+100h:
    // lead: entered by all 7; completed stays c1 10h, c2 20h, c3 5h, c4 48h, c6 5h, c7 5h;
    //       c5 still there since 40h, due 64h: overdue.
    // screening: entered by c1 and c2; c1 stayed 10h; c2 there, contacted: not overdue.
    // first_contact: c1 since 20h, due 92h: overdue.
    // won: c4 (cycle 48h = 2 days); lost: c3, c6, c7.
    let report = r.report().unwrap();
    let stage = |k: &str| report.stages.iter().find(|s| s.stage == k).unwrap().clone();
    let keys: Vec<&str> = report.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(
        keys,
        [
            "lead",
            "screening",
            "first_contact",
            "needs_analysis",
            "proposal",
            "negotiation",
            "won",
            "lost"
        ]
    );
    let lead = stage("lead");
    assert_eq!((lead.backlog, lead.entered, lead.overdue), (1, 7, 1));
    assert_eq!(lead.next_stage.as_deref(), Some("screening"));
    assert_close(lead.next_step_conversion, 2.0 / 7.0, "lead conversion");
    assert_close(lead.avg_dwell_hours, 93.0 / 6.0, "lead avg dwell");
    assert_close(lead.p90_dwell_hours, 48.0, "lead p90 dwell");
    let screening = stage("screening");
    assert_eq!(
        (screening.backlog, screening.entered, screening.overdue),
        (1, 2, 0)
    );
    assert_close(screening.next_step_conversion, 0.5, "screening conversion");
    assert_close(screening.avg_dwell_hours, 10.0, "screening avg dwell");
    assert_close(screening.p90_dwell_hours, 10.0, "screening p90 dwell");
    let first = stage("first_contact");
    assert_eq!((first.backlog, first.entered, first.overdue), (1, 1, 1));
    assert_close(first.next_step_conversion, 0.0, "first contact conversion");
    assert_eq!(first.avg_dwell_hours, None);
    assert_eq!(first.p90_dwell_hours, None);
    let needs = stage("needs_analysis");
    assert_eq!(
        (needs.backlog, needs.entered, needs.next_step_conversion),
        (0, 0, None)
    );
    let won = stage("won");
    assert_eq!((won.backlog, won.entered, won.overdue), (1, 1, 0));
    assert_eq!(stage("lost").backlog, 3);
    assert_eq!((report.won, report.lost), (1, 3));
    assert_close(report.win_rate, 0.25, "win rate");
    assert_close(report.avg_sales_cycle_days, 2.0, "sales cycle");
    assert_eq!(report.exceptions, 1);
    assert_eq!(
        report.loss_reasons,
        vec![
            ("竞品 competitor".to_string(), 2),
            ("价格 price".to_string(), 1)
        ]
    );
    let edges: Vec<(&str, &str, i64, bool)> = report
        .edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str(), e.count, e.defined))
        .collect();
    assert_eq!(
        edges,
        [
            ("lead", "lost", 3, true),
            ("lead", "screening", 2, true),
            ("lead", "won", 1, false),
            ("screening", "first_contact", 1, true),
        ]
    );
    let board = r.board().unwrap();
    let counts: Vec<(&str, i64, i64)> = board
        .columns
        .iter()
        .map(|c| (c.stage.as_str(), c.count, c.overdue))
        .collect();
    assert_eq!(
        counts,
        [
            ("lead", 1, 1),
            ("screening", 1, 0),
            ("first_contact", 1, 1),
            ("needs_analysis", 0, 0),
            ("proposal", 0, 0),
            ("negotiation", 0, 0),
            ("won", 1, 0),
            ("lost", 3, 0),
        ]
    );
    assert_eq!(board.total, 7);
    assert_eq!(board.columns[0].name, "线索获取");
    let overdue: Vec<String> = r
        .overdue()
        .unwrap()
        .into_iter()
        .flat_map(|g| g.clients)
        .map(|c| c.id)
        .collect();
    assert_eq!(overdue.len(), 2);
    assert!(overdue.contains(&c5.to_string()) && overdue.contains(&c1.to_string()));
}

#[test]
fn replicas_that_saw_the_same_changes_show_the_same_board_and_report() {
    let mut org = Org::new();
    let mut a = org.device(org.rep_a);
    let mut b = org.device(org.rep_b);
    let ia = a.create_client(client("甲", "甲公司", true)).unwrap();
    let ib = b.create_client(client("乙", "乙公司", true)).unwrap();
    org.advance_hours(3);
    walk(&org.clock, &mut a, &ia, &["screening", "first_contact"]);
    b.move_stage(&ib, "lost", lost("timing")).unwrap();
    sync(&mut a, &mut b);
    send(&a, &mut org.admin);
    org.advance_hours(30);
    for r in [&b, &org.admin] {
        assert_eq!(r.board().unwrap(), a.board().unwrap());
        assert_eq!(r.report().unwrap(), a.report().unwrap());
        assert_eq!(r.client(&ia).unwrap(), a.client(&ia).unwrap());
        assert_eq!(r.client(&ib).unwrap(), a.client(&ib).unwrap());
    }
    assert_eq!(a.board().unwrap().total, 2);
}

// ----- bundles --------------------------------------------------------------------------

fn snapshot(r: &Replica) -> (String, String, Vec<u8>, Vec<u8>) {
    (
        serde_json::to_string(&r.board().unwrap()).unwrap(),
        serde_json::to_string(&r.list(&ClientFilter::default()).unwrap()).unwrap(),
        r.export(None).unwrap(),
        r.heads().unwrap(),
    )
}

#[test]
fn importing_a_bundle_twice_changes_nothing_the_second_time() {
    let mut org = Org::new();
    let mut a = org.device(org.rep_a);
    for i in 0..3 {
        a.create_client(client(&format!("客户{i}"), &format!("公司{i}号"), true))
            .unwrap();
    }
    let bundle = a.export(None).unwrap();
    let first = org.admin.import(&bundle).unwrap();
    assert_eq!(first.new_clients, 3);
    assert!(first.changed >= 3);
    let before = snapshot(&org.admin);
    let second = org.admin.import(&bundle).unwrap();
    assert_eq!(second.changed, 0);
    assert_eq!(second.new_clients, 0);
    assert_eq!(second.documents, first.documents);
    assert_eq!(snapshot(&org.admin), before);
}

#[test]
fn a_corrupt_truncated_heads_or_foreign_bundle_is_refused_and_changes_nothing() {
    let mut org = Org::new();
    let mut a = org.device(org.rep_a);
    a.create_client(client("客户", "公司", true)).unwrap();
    org.admin
        .create_client(client("本地客户", "本地公司", true))
        .unwrap();
    let good = a.export(None).unwrap();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let truncated = good[..good.len() - 100].to_vec();
    let heads = a.heads().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let mut other = Replica::create(
        &other_dir.path().join("o.db"),
        "别的团队",
        "外人",
        Template::SevenStage,
        Arc::new(org.clock.clone()),
    )
    .unwrap();
    other
        .create_client(client("外部客户", "外部公司", true))
        .unwrap();
    let foreign = other.export(None).unwrap();
    let before = snapshot(&org.admin);
    let outbox = org.admin.outbox().unwrap();
    for (what, bytes) in [
        ("flipped byte", flipped),
        ("truncated", truncated),
        ("heads file", heads),
        ("foreign team", foreign),
        ("empty", vec![]),
        (
            "not a bundle",
            b"SQLite format 3\0 and some more bytes to be long enough".to_vec(),
        ),
    ] {
        let err = org.admin.import(&bytes).unwrap_err();
        assert!(matches!(err, Error::BadBundle(_)), "{what}: {err}");
        assert!(!err.to_string().is_empty());
        assert_eq!(snapshot(&org.admin), before, "{what} changed the replica");
        assert_eq!(org.admin.outbox().unwrap(), outbox);
    }
    // A foreign team's heads file is refused by export too.
    assert!(matches!(
        org.admin.export(Some(&other.heads().unwrap())),
        Err(Error::BadBundle(_))
    ));
    // A changes bundle is not a heads file.
    assert!(matches!(
        org.admin.export(Some(&good)),
        Err(Error::BadBundle(_))
    ));
    org.admin.import(&good).unwrap();
    assert_eq!(org.admin.list(&ClientFilter::default()).unwrap().len(), 2);
}

#[test]
fn a_bundle_with_one_bad_document_changes_nothing_at_all() {
    let mut org = Org::new();
    let mut b = org.device(org.rep_b);
    for i in 0..2 {
        org.admin
            .create_client(client(&format!("客户{i}"), &format!("公司{i}号"), true))
            .unwrap();
    }
    let mut bundle = Bundle::decode(&org.admin.export(None).unwrap()).unwrap();
    bundle.entries.push(BundleEntry {
        kind: DocKind::Client,
        doc_id: ClientId::random().to_string(),
        data: vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 5, 6, 7],
        summary: None,
    });
    let before = snapshot(&b);
    let err = b.import(&bundle.encode()).unwrap_err();
    assert!(matches!(err, Error::CorruptDocument { .. }), "{err}");
    assert_eq!(snapshot(&b), before);
    assert!(b.list(&ClientFilter::default()).unwrap().is_empty());
    // A client document filed under another client's id is refused too.
    let mut bundle = Bundle::decode(&org.admin.export(None).unwrap()).unwrap();
    let data = bundle
        .entries
        .iter()
        .find(|e| e.kind == DocKind::Client)
        .unwrap()
        .data
        .clone();
    bundle.entries.push(BundleEntry {
        kind: DocKind::Client,
        doc_id: ClientId::random().to_string(),
        data,
        summary: None,
    });
    assert!(b.import(&bundle.encode()).is_err());
    assert_eq!(snapshot(&b), before);
}

#[test]
fn an_export_against_another_replicas_heads_holds_only_what_it_lacks() {
    let mut org = Org::new();
    let mut b = org.device(org.rep_b);
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            org.admin
                .create_client(owned_by(
                    client(&format!("客户{i}"), &format!("公司{i}号"), true),
                    org.rep_b,
                ))
                .unwrap(),
        );
        for j in 0..3 {
            org.admin
                .add_note(&ids[i], NoteKind::Note, &format!("备注{i}-{j}"))
                .unwrap();
        }
    }
    send(&org.admin, &mut b);
    org.advance_hours(1);
    org.admin
        .add_note(&ids[3], NoteKind::Call, "新的电话")
        .unwrap();
    let new = org
        .admin
        .create_client(client("新客户", "新公司", true))
        .unwrap();
    let full = org.admin.export(None).unwrap();
    let delta = org.admin.export(Some(&b.heads().unwrap())).unwrap();
    assert!(
        delta.len() * 3 < full.len(),
        "delta {} vs full {}",
        delta.len(),
        full.len()
    );
    let decoded = Bundle::decode(&delta).unwrap();
    let mut doc_ids: Vec<String> = decoded.entries.iter().map(|e| e.doc_id.clone()).collect();
    doc_ids.sort();
    let mut expected = vec![ids[3].to_string(), new.to_string()];
    expected.sort();
    assert_eq!(
        doc_ids, expected,
        "only the changed and the new client travel"
    );
    let summary = b.import(&delta).unwrap();
    assert_eq!((summary.changed, summary.new_clients), (2, 1));
    for id in ids.iter().chain([&new]) {
        assert_eq!(b.client(id).unwrap(), org.admin.client(id).unwrap());
    }
    assert_eq!(b.board().unwrap(), org.admin.board().unwrap());
    assert_eq!(b.report().unwrap(), org.admin.report().unwrap());
    // Nothing is lacking any more.
    let nothing = Bundle::decode(&org.admin.export(Some(&b.heads().unwrap())).unwrap()).unwrap();
    assert!(
        nothing.entries.is_empty(),
        "{:?}",
        nothing
            .entries
            .iter()
            .map(|e| &e.doc_id)
            .collect::<Vec<_>>()
    );
}
