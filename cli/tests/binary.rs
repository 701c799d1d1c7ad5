//! The built `fieldsync` binary: help, refusals and the demo (the team scenarios are in
//! the workspace's e2e tests).

use std::process::Command;

fn fieldsync(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fieldsync"))
        .current_dir(dir)
        .env_remove("FIELDSYNC_DB")
        .env("FIELDSYNC_NOW", "1780000000000")
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn help_lists_every_command_and_exits_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = fieldsync(dir.path(), &["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "init",
        "client",
        "stage",
        "handover",
        "export",
        "import",
        "demo",
        "FIELDSYNC_NOW",
    ] {
        assert!(text.contains(cmd), "help lacks {cmd}");
    }
}

#[test]
fn a_missing_replica_is_one_line_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = fieldsync(dir.path(), &["board"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("fieldsync: ") && err.contains("fieldsync init"),
        "{err}"
    );
    assert!(!dir.path().join("fieldsync.db").exists());
}

#[test]
fn an_empty_file_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("fieldsync.db"), b"").expect("write");
    let out = fieldsync(dir.path(), &["board"]);
    assert!(!out.status.success());
    let len = std::fs::metadata(dir.path().join("fieldsync.db"))
        .map(|m| m.len())
        .ok();
    assert_eq!(len, Some(0));
}

#[test]
fn a_bad_fieldsync_now_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_fieldsync"))
        .current_dir(dir.path())
        .env("FIELDSYNC_NOW", "2026-05-01")
        .args(["init", "--team", "t", "--user", "u"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FIELDSYNC_NOW"));
    assert!(!dir.path().join("fieldsync.db").exists());
}

#[test]
fn the_demo_finishes_quickly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = fieldsync(dir.path(), &["demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("成交"));
}
