//! `fieldsync demo`: a guided tour on real replica files. An admin creates a Chinese sales
//! team with the 7-stage pipeline, provisions a manager's and two reps' devices, the reps
//! work offline, replicas exchange bundle files, a concurrent edit shows up as a conflict,
//! a departed rep's clients are handed over, and the board and the report are printed.
//!
//! Everything runs in-process on the core API with one manual clock that moves forward
//! between steps, so the demo is fast and its dwell times are meaningful.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fieldsync_core::client::NoteKind;
use fieldsync_core::clock::HOUR_MS;
use fieldsync_core::pipeline::Template;
use fieldsync_core::team::Role;
use fieldsync_core::{ClientId, ManualClock, MoveOptions, NewClient, Replica};

use crate::commands::{write_file, Ctx, Failure, Result};
use crate::output;

struct Demo {
    dir: PathBuf,
    clock: ManualClock,
    step: usize,
    keep: bool,
}

impl Demo {
    fn say(&mut self, text: &str) {
        self.step += 1;
        println!("{:>2}. {text}", self.step);
    }

    fn hours(&self, h: i64) {
        self.clock.advance(h * HOUR_MS);
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Sends what `to` lacks from `from` as a bundle file (heads, then `export --have`).
    fn sync(&mut self, from: &Replica, from_name: &str, to: &mut Replica, to_name: &str) -> Result {
        let heads = to.heads()?;
        let bundle = from.export(Some(&heads))?;
        let file = self.path(&format!("{from_name}-to-{to_name}.bundle"));
        write_file(&file, &bundle)?;
        let s = to.import(&bundle)?;
        self.say(&format!(
            "sync {from_name} → {to_name}: {} ({} bytes), {} document(s) changed, {} new client(s)",
            file.file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default(),
            bundle.len(),
            s.changed,
            s.new_clients
        ));
        Ok(())
    }
}

fn client(profile: &[(&str, &str)]) -> NewClient {
    NewClient {
        profile: profile
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect()
}

/// Runs the demo in `dir` (created if needed) or in a temporary directory.
pub fn run(ctx: &Ctx, dir: Option<PathBuf>) -> Result {
    let temp;
    let keep = dir.is_some();
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)
                .map_err(|e| Failure(format!("cannot create {}: {e}", d.display())))?;
            d
        }
        None => {
            temp = tempfile::tempdir()
                .map_err(|e| Failure(format!("cannot create a temporary directory: {e}")))?;
            temp.path().to_path_buf()
        }
    };
    for name in ["admin.db", "manager.db", "zhangwei.db", "liufang.db"] {
        if dir.join(name).exists() {
            return Err(Failure(format!(
                "{} already exists; run the demo in an empty directory",
                dir.join(name).display()
            )));
        }
    }
    // Start thirty days ago so that the demo's hours and days lie in the past.
    let clock = ManualClock::new(ctx.clock.now_ms() - 30 * 24 * HOUR_MS);
    let mut d = Demo {
        dir,
        clock,
        step: 0,
        keep,
    };
    tour(&mut d)
}

fn tour(d: &mut Demo) -> Result {
    let clock = Arc::new(d.clock.clone());
    println!("FieldSync demo in {}\n", d.dir.display());

    // --- the team --------------------------------------------------------------------
    let mut admin = Replica::create(
        &d.path("admin.db"),
        "华南大区销售部",
        "王总",
        Template::SevenStage,
        clock.clone(),
    )?;
    d.say("王总 creates the team 华南大区销售部 with the 7-stage pipeline (线索获取 → … → 成交 / 失败归档)");
    let li = admin.add_user(
        "李经理",
        Role::Manager,
        None,
        vec!["finance".into(), "product".into()],
    )?;
    let zhang = admin.add_user("张伟", Role::Rep, Some(li), vec![])?;
    let liu = admin.add_user("刘芳", Role::Rep, Some(li), vec![])?;
    d.say(
        "王总 adds the manager 李经理 (signs for finance and product) and the reps 张伟 and 刘芳",
    );

    let mut devices = Vec::new();
    for (user, file) in [(li, "manager"), (zhang, "zhangwei"), (liu, "liufang")] {
        let bundle = admin.provision_device(user)?;
        let bundle_file = d.path(&format!("{file}.provision"));
        write_file(&bundle_file, &bundle)?;
        devices.push(Replica::join(
            &d.path(&format!("{file}.db")),
            &bundle,
            clock.clone(),
        )?);
    }
    let [mut manager, mut zw, mut lf]: [Replica; 3] = devices
        .try_into()
        .map_err(|_| Failure("demo: device setup failed".into()))?;
    d.say("王总 provisions three devices; each replica is created from its bundle (init --from)");

    // --- offline work in the field ---------------------------------------------------
    d.hours(1);
    let huaqiang = zw.create_client(client(&[
        ("name", "深圳华强科技有限公司"),
        ("company", "深圳华强科技有限公司"),
        ("phone", "+86 138-0013-8000"),
        ("source", "展会 trade fair"),
    ]))?;
    let dongguan = zw.create_client(client(&[
        ("name", "东莞松山湖智能制造有限公司"),
        ("company", "东莞松山湖智能制造有限公司"),
        ("phone", "0769-22880000"),
    ]))?;
    d.say("张伟 (offline) adds 深圳华强科技有限公司 and 东莞松山湖智能制造有限公司");
    let baiyun = lf.create_client(client(&[
        ("name", "广州白云电器设备有限公司"),
        ("company", "广州白云电器设备有限公司"),
        ("company_size", "500"),
        ("budget_range", "20-50万"),
        ("decision_maker", "赵总"),
    ]))?;
    let shunde = lf.create_client(client(&[
        ("name", "佛山顺德家电有限公司"),
        ("company", "佛山顺德家电有限公司"),
    ]))?;
    d.say("刘芳 (offline) adds 广州白云电器设备有限公司 and 佛山顺德家电有限公司");

    d.hours(2);
    match zw.move_stage(&huaqiang, "初步筛选", MoveOptions::default()) {
        Err(e) => d.say(&format!(
            "张伟 tries to move 华强 to 初步筛选 — refused: {e}"
        )),
        Ok(_) => return Err(Failure("demo: the lead gate should have refused".into())),
    }
    zw.edit_client(
        &huaqiang,
        &fields(&[
            ("company_size", "300"),
            ("budget_range", "50-100万"),
            ("decision_maker", "陈总 采购总监"),
        ]),
    )?;
    zw.add_note(&huaqiang, NoteKind::Call, "电话沟通：需要MES系统升级方案")?;
    zw.move_stage(&huaqiang, "初步筛选", MoveOptions::default())?;
    d.say(
        "张伟 fills in company size, budget and decision maker, logs a call, and the move succeeds",
    );

    d.hours(20);
    zw.add_note(
        &huaqiang,
        NoteKind::Visit,
        "上门拜访陈总，老客户转介绍，要求尽快报价",
    )?;
    zw.move_stage(
        &huaqiang,
        "方案报价",
        MoveOptions {
            reason: Some("老客户转介绍，直接报价 referral, straight to proposal".into()),
            skip: true,
            loss_reason: None,
        },
    )?;
    d.say(
        "张伟 visits 华强 and skips 初步筛选 → 方案报价 through the green channel, with a reason",
    );
    let (quote, _) = zw.request_quote(&huaqiang, 12_800_000, 15.0)?;
    d.say("张伟 requests a quote of 128000.00 at 15% discount: beyond the 10% band, it needs product, finance and manager approval");
    zw.add_note(&dongguan, NoteKind::Call, "首次电话，对方在比较方案")?;
    d.say("张伟 logs a first call with 东莞松山湖 (meets the 24-hour first-contact SLA)");

    d.hours(3);
    lf.move_stage(&baiyun, "screening", MoveOptions::default())?;
    d.hours(30);
    lf.move_stage(
        &baiyun,
        "lost",
        MoveOptions {
            loss_reason: Some("竞品".into()),
            ..Default::default()
        },
    )?;
    d.say("刘芳 screens 白云电器, then archives it as lost with the reason 竞品 competitor");
    lf.add_note(&shunde, NoteKind::Note, "朋友介绍，下周联系")?;
    d.say("刘芳 notes 佛山顺德 for next week (a note is not a contact: its SLA keeps running)");

    // --- exchange -----------------------------------------------------------------------
    d.hours(2);
    d.sync(&zw, "张伟", &mut admin, "王总")?;
    d.sync(&lf, "刘芳", &mut admin, "王总")?;
    d.sync(&admin, "王总", &mut manager, "李经理")?;

    for role in ["product", "finance", "manager"] {
        manager.decide_quote(&huaqiang, &quote, role, true, Some("同意 approved"))?;
    }
    d.say("李经理 approves the quote for product, finance and manager, offline");
    d.sync(&manager, "李经理", &mut admin, "王总")?;
    d.sync(&admin, "王总", &mut zw, "张伟")?;
    d.sync(&admin, "王总", &mut lf, "刘芳")?;

    d.hours(48);
    zw.move_stage(&huaqiang, "跟进谈判", MoveOptions::default())?;
    d.hours(24);
    let won = zw.move_stage(&huaqiang, "成交", MoveOptions::default())?;
    d.say(&format!(
        "张伟 negotiates and wins 华强 (成交): onboarding tasks created: {}",
        won.onboarding
            .iter()
            .map(|t| t.title.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    zw.complete_task(&huaqiang, "kickoff")?;
    d.say("张伟 marks the kick-off call done");

    // --- a concurrent edit ------------------------------------------------------------
    d.hours(1);
    zw.edit_client(&dongguan, &fields(&[("phone", "0769-22881111")]))?;
    manager.edit_client(&dongguan, &fields(&[("phone", "138-2690-0000")]))?;
    d.say("offline, 张伟 and 李经理 both change 东莞松山湖's phone to different numbers");
    d.sync(&zw, "张伟", &mut admin, "王总")?;
    d.sync(&manager, "李经理", &mut admin, "王总")?;
    for c in admin.conflicts()? {
        for f in &c.fields {
            d.say(&format!(
                "conflict on {} field {}: every replica shows {:?}, the concurrent value {:?} is kept for review",
                c.name,
                f.field,
                f.value,
                f.other_values.join(", ")
            ));
        }
    }

    // --- a rep leaves -------------------------------------------------------------------
    d.hours(4);
    admin.mark_departed(zhang)?;
    let handed = admin.handover_all(zhang, liu, Some("离职 left the company"))?;
    d.say(&format!(
        "张伟 leaves (离职): 王总 marks him departed and hands his {} client(s) to 刘芳; history and notes stay",
        handed.len()
    ));
    d.sync(&admin, "王总", &mut zw, "张伟")?;
    match zw.add_note(&dongguan, NoteKind::Note, "离职后的记录") {
        Err(e) => d.say(&format!(
            "张伟's device, synced, now refuses his edits: {e}"
        )),
        Ok(_) => d.say("张伟's device accepted an edit after departure (unexpected)"),
    }
    d.sync(&admin, "王总", &mut lf, "刘芳")?;
    let owners_ok = [huaqiang, dongguan]
        .iter()
        .all(|id: &ClientId| lf.client(id).is_ok_and(|v| v.owner == liu.to_string()));
    d.say(&format!(
        "刘芳's device now owns 华强 and 东莞松山湖: {}",
        if owners_ok { "yes" } else { "no" }
    ));

    // --- the manager's view -----------------------------------------------------------
    println!("\n看板 board ({}):", admin.team().name);
    print!("{}", output::board(&admin.board()?));
    println!("\n流程健康 flow-health report:");
    print!("{}", output::report(admin.team(), &admin.report()?));
    if d.keep {
        println!(
            "\nreplicas and bundles are in {} (try `fieldsync --db {} board`)",
            d.dir.display(),
            Path::new(&d.dir).join("admin.db").display()
        );
    }
    Ok(())
}
