//! The `fieldsync` binary end to end: real replica files in temporary directories, bundle
//! files exchanged between them, and `FIELDSYNC_NOW` for deterministic time.
//!
//! The binary belongs to another package, so `CARGO_BIN_EXE_fieldsync` is not available
//! here: the first test that needs it runs `cargo build -p fieldsync-cli` once (cheap when
//! it is up to date) and uses `target/<profile>/fieldsync` beside this test executable.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

const T0: i64 = 1_780_000_000_000;
const HOUR: i64 = 3_600_000;

/// `T0` plus `h` hours.
fn at(h: i64) -> i64 {
    T0 + h * HOUR
}

/// The `fieldsync` binary, built from the current sources.
fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable has a path");
        // target/<profile>/deps/e2e-<hash> → target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in target/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir
            .parent()
            .expect("target/<profile> has a parent")
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "fieldsync-cli",
                "--bin",
                "fieldsync",
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name() == Some(OsStr::new("release")) {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the fieldsync binary failed");
        let bin = profile_dir.join(format!("fieldsync{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

/// What one run of the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_os(db: &Path, now: i64, args: &[OsString]) -> Run {
    let out = Command::new(bin())
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("FIELDSYNC_DB")
        .env("FIELDSYNC_NOW", now.to_string())
        .output()
        .expect("the binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(db: &Path, now: i64, args: &[&str]) -> Run {
    run_os(
        db,
        now,
        &args.iter().map(OsString::from).collect::<Vec<_>>(),
    )
}

/// Runs a command that must succeed; returns its stdout.
fn ok(db: &Path, now: i64, args: &[&str]) -> String {
    let r = run(db, now, args);
    assert_eq!(
        r.code, 0,
        "fieldsync {args:?} failed: {}{}",
        r.stderr, r.stdout
    );
    r.stdout
}

/// Runs a command that must succeed with `--json`; returns the parsed output.
fn json(db: &Path, now: i64, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(db, now, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
}

/// Checks that a run was refused with exactly one clear line on stderr; returns it.
fn refused(r: Run, what: &str) -> String {
    assert_ne!(r.code, 0, "{what} was accepted: {}", r.stdout);
    let line = r.stderr.trim_end();
    assert_eq!(line.lines().count(), 1, "{what}: not one line: {line:?}");
    assert!(line.starts_with("fieldsync: "), "{what}: {line:?}");
    assert!(!line.contains("panicked"), "{what}: {line:?}");
    line.to_string()
}

/// A user's id, by name.
fn user_id(db: &Path, name: &str) -> String {
    let members = json(db, T0, &["user", "list"]);
    members
        .as_object()
        .and_then(|m| m.iter().find(|(_, v)| v["name"] == name))
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| panic!("no member {name}"))
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// An admin replica with a manager 李经理 and the reps 张三 and 李四 under them.
fn team(dir: &Path) -> PathBuf {
    let admin = dir.join("admin.db");
    ok(
        &admin,
        T0,
        &["init", "--team", "华南销售部", "--user", "王总"],
    );
    ok(
        &admin,
        T0,
        &[
            "user",
            "add",
            "--name",
            "李经理",
            "--role",
            "manager",
            "--approves",
            "finance,product",
        ],
    );
    for rep in ["张三", "李四"] {
        ok(
            &admin,
            T0,
            &[
                "user",
                "add",
                "--name",
                rep,
                "--role",
                "rep",
                "--manager",
                "李经理",
            ],
        );
    }
    admin
}

/// Adds a client that may leave the lead stage; returns its id.
fn complete_client(db: &Path, now: i64, name: &str, owner: &str) -> String {
    ok(
        db,
        now,
        &[
            "client",
            "add",
            "--name",
            name,
            "--company",
            name,
            "--company-size",
            "300",
            "--budget-range",
            "50-100万",
            "--decision-maker",
            "陈总",
            "--owner",
            owner,
        ],
    )
    .trim()
    .to_string()
}

/// Provisions a device for `user` and creates its replica `file` from the bundle.
fn device(admin: &Path, dir: &Path, user: &str, file: &str) -> PathBuf {
    let bundle = dir.join(format!("{file}.provision"));
    ok(
        admin,
        T0,
        &["device", "add", "--user", user, "--out", path_str(&bundle)],
    );
    let db = dir.join(format!("{file}.db"));
    ok(&db, T0, &["init", "--from", path_str(&bundle)]);
    db
}

/// Sends everything `to` lacks from `from`: heads of `to`, `export --have` on `from`.
fn send_missing(from: &Path, to: &Path, dir: &Path, now: i64, name: &str) {
    let heads = dir.join(format!("{name}.heads"));
    let bundle = dir.join(format!("{name}.bundle"));
    ok(to, now, &["heads", "--out", path_str(&heads)]);
    ok(
        from,
        now,
        &[
            "export",
            "--out",
            path_str(&bundle),
            "--have",
            path_str(&heads),
        ],
    );
    ok(to, now, &["import", path_str(&bundle)]);
}

#[test]
fn two_reps_and_a_manager_edit_offline_exchange_bundles_and_converge() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let admin = team(dir);
    let shared = complete_client(&admin, at(1), "深圳华强科技有限公司", "张三");
    ok(
        &admin,
        at(1),
        &["client", "edit", &shared[..8], "--collaborator-add", "李四"],
    );
    let b_client = complete_client(&admin, at(1), "广州白云电器设备有限公司", "李四");

    let manager = device(&admin, dir, "李经理", "manager");
    let rep_a = device(&admin, dir, "张三", "zhang");
    let rep_b = device(&admin, dir, "李四", "li");

    // Offline: different fields of one shared client, notes, stage moves.
    ok(
        &rep_a,
        at(2),
        &["client", "edit", &shared, "--set", "phone=13800138000"],
    );
    ok(
        &rep_a,
        at(3),
        &["note", "add", &shared, "--kind", "call", "张三电话沟通需求"],
    );
    ok(&rep_a, at(4), &["stage", "move", &shared, "初步筛选"]);
    ok(
        &rep_b,
        at(2),
        &["client", "edit", &shared, "--set", "email=chen@huaqiang.cn"],
    );
    ok(
        &rep_b,
        at(5),
        &[
            "note",
            "add",
            &shared,
            "--kind",
            "visit",
            "李四上门拜访陈总",
        ],
    );
    ok(
        &rep_b,
        at(6),
        &["note", "add", &b_client, "白云电器在比较竞品"],
    );
    ok(
        &manager,
        at(2),
        &["client", "edit", &shared, "--set", "grade=A"],
    );
    ok(
        &manager,
        at(7),
        &["stage", "move", &b_client, "lost", "--loss-reason", "竞品"],
    );

    // Rep A: a full export, imported twice (the second import changes nothing).
    let a_bundle = dir.join("a.bundle");
    ok(&rep_a, at(8), &["export", "--out", path_str(&a_bundle)]);
    let first = json(&admin, at(8), &["import", path_str(&a_bundle)]);
    assert!(first["changed"].as_u64().unwrap_or(0) > 0, "{first}");
    let again = json(&admin, at(8), &["import", path_str(&a_bundle)]);
    assert_eq!(
        again["changed"], 0,
        "a repeated import changed something: {again}"
    );
    // Rep B: only what the admin lacks (heads, then export --have).
    send_missing(&rep_b, &admin, dir, at(8), "b-to-admin");
    // Manager: a full export.
    let m_bundle = dir.join("m.bundle");
    ok(&manager, at(8), &["export", "--out", path_str(&m_bundle)]);
    ok(&admin, at(8), &["import", path_str(&m_bundle)]);
    // Back to every device: what each one lacks.
    for (db, name) in [
        (&rep_a, "admin-to-a"),
        (&rep_b, "admin-to-b"),
        (&manager, "admin-to-m"),
    ] {
        send_missing(&admin, db, dir, at(9), name);
    }

    let now = at(10);
    let replicas = [&admin, &manager, &rep_a, &rep_b];
    let show: Vec<Value> = replicas
        .iter()
        .map(|db| json(db, now, &["client", "show", &shared]))
        .collect();
    let profile = &show[0]["profile"];
    assert_eq!(profile["phone"], "13800138000");
    assert_eq!(profile["email"], "chen@huaqiang.cn");
    assert_eq!(profile["grade"], "A");
    assert_eq!(show[0]["stage"], "screening");
    assert_eq!(show[0]["notes"].as_array().map(Vec::len), Some(2));
    for what in [["board"], ["report"]] {
        let views: Vec<Value> = replicas.iter().map(|db| json(db, now, &what)).collect();
        for (i, v) in views.iter().enumerate() {
            assert_eq!(v, &views[0], "{what:?} of replica {i} differs");
        }
    }
    for (i, v) in show.iter().enumerate() {
        assert_eq!(v, &show[0], "client show of replica {i} differs");
    }
    let b_view = json(&rep_a, now, &["client", "show", &b_client]);
    assert_eq!(b_view["stage"], "lost");
    let report = json(&rep_b, now, &["report"]);
    assert_eq!(report["lost"], 1);
}

#[test]
fn handover_of_all_clients_of_a_departed_rep_keeps_the_notes_they_wrote_offline() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let admin = team(dir);
    let c1 = complete_client(&admin, at(1), "深圳华强科技有限公司", "张三");
    let c2 = complete_client(&admin, at(1), "东莞松山湖智能制造有限公司", "张三");
    let other = complete_client(&admin, at(1), "佛山顺德家电有限公司", "李四");
    let rep_a = device(&admin, dir, "张三", "zhang");
    let manager = device(&admin, dir, "李经理", "manager");
    let a_id = user_id(&admin, "张三");
    let b_id = user_id(&admin, "李四");

    // Rep A works offline.
    ok(
        &rep_a,
        at(2),
        &[
            "note",
            "add",
            &c1,
            "--kind",
            "call",
            "张三：华强要求下周报价",
        ],
    );
    ok(
        &rep_a,
        at(3),
        &[
            "note",
            "add",
            &c2,
            "--kind",
            "visit",
            "张三：拜访松山湖工厂",
        ],
    );
    ok(
        &rep_a,
        at(4),
        &["note", "add", &c2, "张三：离职前的交接备注"],
    );
    let a_bundle = dir.join("a.bundle");
    ok(&rep_a, at(5), &["export", "--out", path_str(&a_bundle)]);

    // The admin marks A departed; the manager, not having seen A's notes, hands everything over.
    ok(&admin, at(6), &["user", "depart", "张三"]);
    send_missing(&admin, &manager, dir, at(6), "depart");
    let handed = json(
        &manager,
        at(6),
        &[
            "handover", "--all-of", "张三", "--to", "李四", "--reason", "离职",
        ],
    );
    assert_eq!(handed.as_array().map(Vec::len), Some(2), "{handed}");
    ok(&manager, at(7), &["import", path_str(&a_bundle)]);

    let mut replicas = vec![manager.clone()];
    // The admin gets both sides too, in the other order.
    ok(&admin, at(8), &["import", path_str(&a_bundle)]);
    send_missing(&manager, &admin, dir, at(8), "m-to-admin");
    replicas.push(admin.clone());

    for db in &replicas {
        let of_a = json(db, at(9), &["client", "list", "--owner", "张三"]);
        assert_eq!(
            of_a,
            Value::Array(vec![]),
            "{}: A still owns {of_a}",
            db.display()
        );
        let of_b = json(db, at(9), &["client", "list", "--owner", &b_id]);
        let ids: Vec<&str> = of_b
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["id"].as_str()).collect())
            .unwrap_or_default();
        for c in [&c1, &c2, &other] {
            assert!(
                ids.contains(&c.as_str()),
                "{}: B does not own {c}",
                db.display()
            );
        }
        for (c, notes) in [
            (&c1, vec!["张三：华强要求下周报价"]),
            (&c2, vec!["张三：拜访松山湖工厂", "张三：离职前的交接备注"]),
        ] {
            let view = json(db, at(9), &["client", "show", c]);
            assert_eq!(view["owner"], b_id.as_str());
            let texts: Vec<(&str, &str)> = view["notes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|n| Some((n["text"].as_str()?, n["by"].as_str()?)))
                        .collect()
                })
                .unwrap_or_default();
            for n in notes {
                assert!(
                    texts.contains(&(n, a_id.as_str())),
                    "{}: lost note {n}",
                    db.display()
                );
            }
        }
    }
    // Once A's device hears about the departure it refuses further edits.
    send_missing(&admin, &rep_a, dir, at(10), "admin-to-a");
    let line = refused(
        run(&rep_a, at(10), &["note", "add", &c1, "还能写吗"]),
        "a departed rep's note",
    );
    assert!(line.contains("departed"), "{line}");
}

/// Everything a replica shows, to compare before and after a refused command.
fn state(db: &Path, dir: &Path, now: i64) -> (Vec<u8>, Value, Value) {
    let bundle = dir.join("state.bundle");
    ok(db, now, &["export", "--out", path_str(&bundle)]);
    let bytes = std::fs::read(&bundle).expect("export written");
    (
        bytes,
        json(db, now, &["board"]),
        json(db, now, &["client", "list"]),
    )
}

#[test]
fn bad_input_is_refused_with_one_clear_line_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let admin = team(dir);
    let lead = ok(
        &admin,
        at(1),
        &[
            "client",
            "add",
            "--name",
            "深圳华强科技有限公司",
            "--owner",
            "张三",
        ],
    )
    .trim()
    .to_string();
    let rep = device(&admin, dir, "张三", "zhang");
    let now = at(2);
    let admin_before = state(&admin, dir, now);
    let rep_before = state(&rep, dir, now);

    // A corrupt database file.
    let junk = dir.join("junk.db");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as u8
        })
        .collect();
    std::fs::write(&junk, &bytes).expect("write junk");
    for args in [&["board"][..], &["client", "list"], &["whoami"]] {
        let line = refused(run(&junk, now, args), "a corrupt database");
        assert!(line.contains("not a FieldSync replica"), "{line}");
    }
    assert_eq!(
        std::fs::read(&junk).expect("junk"),
        bytes,
        "the corrupt file was modified"
    );

    // A corrupt bundle (one flipped byte).
    let good = dir.join("good.bundle");
    ok(&admin, now, &["export", "--out", path_str(&good)]);
    let mut flipped = std::fs::read(&good).expect("bundle");
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let bad = dir.join("flipped.bundle");
    std::fs::write(&bad, &flipped).expect("write");
    let line = refused(
        run(&rep, now, &["import", path_str(&bad)]),
        "a corrupt bundle",
    );
    assert!(line.contains("checksum"), "{line}");

    // A bundle from another team.
    let other = dir.join("other.db");
    ok(
        &other,
        T0,
        &["init", "--team", "华北销售部", "--user", "赵总"],
    );
    ok(
        &other,
        T0,
        &["client", "add", "--name", "北京中关村软件有限公司"],
    );
    let foreign = dir.join("foreign.bundle");
    ok(&other, now, &["export", "--out", path_str(&foreign)]);
    let line = refused(
        run(&admin, now, &["import", path_str(&foreign)]),
        "another team's bundle",
    );
    assert!(line.contains("belongs to team"), "{line}");
    let line = refused(
        run(
            &dir.join("new.db"),
            now,
            &["init", "--from", path_str(&foreign)],
        ),
        "a non-provisioning bundle for init",
    );
    assert!(line.contains("provisioning"), "{line}");
    assert!(!dir.join("new.db").exists(), "a refused init left a file");

    // An unknown stage.
    let line = refused(
        run(&admin, now, &["stage", "move", &lead, "不存在的阶段"]),
        "an unknown stage",
    );
    assert!(
        line.contains("unknown stage") && line.contains("不存在的阶段"),
        "{line}"
    );

    // Missing required fields: the gate names them.
    let line = refused(
        run(&admin, now, &["stage", "move", &lead, "初步筛选"]),
        "the lead gate",
    );
    for field in ["company_size", "budget_range", "decision_maker"] {
        assert!(line.contains(field), "{line}");
    }

    // A non-UTF-8 argument.
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![
            OsString::from("client"),
            OsString::from("add"),
            OsString::from("--name"),
            OsString::from_vec(vec![0xe6, 0xb7, 0xff, 0x41]),
        ];
        let line = refused(run_os(&admin, now, &args), "a non-UTF-8 argument");
        assert!(line.contains("UTF-8"), "{line}");
    }

    // A rep trying a handover.
    let line = refused(
        run(&rep, now, &["handover", "--to", "李四", "--client", &lead]),
        "a rep's handover",
    );
    assert!(line.contains("not permitted"), "{line}");

    // An amount that is not exact to the cent.
    let line = refused(
        run(
            &admin,
            now,
            &[
                "approval",
                "request",
                &lead,
                "--amount",
                "12000.505",
                "--discount",
                "5",
            ],
        ),
        "a sub-cent amount",
    );
    assert!(line.contains("amount"), "{line}");

    assert_eq!(
        state(&admin, dir, now),
        admin_before,
        "the admin replica changed"
    );
    assert_eq!(state(&rep, dir, now), rep_before, "the rep replica changed");
}

#[test]
fn demo_runs_to_completion() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("demo");
    let r = run(
        &tmp.path().join("unused.db"),
        T0,
        &["demo", "--dir", path_str(&dir)],
    );
    assert_eq!(r.code, 0, "demo failed: {}{}", r.stderr, r.stdout);
    for expected in [
        "深圳华强科技有限公司",
        "refused",
        "conflict",
        "离职",
        "成交",
        "win rate",
    ] {
        assert!(
            r.stdout.contains(expected),
            "demo output lacks {expected}:\n{}",
            r.stdout
        );
    }
    let board = json(&dir.join("admin.db"), T0, &["board"]);
    assert_eq!(board["total"], 4);
}
