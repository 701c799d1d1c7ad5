//! The replica file (DESIGN.md §5): refusal of foreign or newer files, migrations,
//! compaction, durability and the read model's transaction.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use fieldsync_core::bundle::Bundle;
use fieldsync_core::client::NoteKind;
use fieldsync_core::pipeline::Template;
use fieldsync_core::store::documents::{self, COMPACT_AFTER};
use fieldsync_core::store::read_model::{self, ClientFilter};
use fieldsync_core::store::schema::SCHEMA_VERSION;
use fieldsync_core::{ClientId, Error, ManualClock, MoveOptions, NewClient, Replica};

const T0: i64 = 1_780_000_000_000;
const HOUR: i64 = 3_600_000;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0))
}

fn new_replica(path: &Path, clock: &Arc<ManualClock>) -> Replica {
    Replica::create(
        path,
        "华南销售部",
        "王总",
        Template::SevenStage,
        clock.clone(),
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
        c.profile.insert("decision_maker".into(), "李总".into());
    }
    c
}

/// A replica with a few clients in several stages, closed again.
fn populated(path: &Path, clock: &Arc<ManualClock>) -> Vec<ClientId> {
    let mut r = new_replica(path, clock);
    let a = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    let b = r
        .create_client(client("李四", "广州白云电器", false))
        .unwrap();
    let c = r
        .create_client(client("王五", "北京中关村软件", true))
        .unwrap();
    clock.advance(HOUR);
    r.add_note(&a, NoteKind::Call, "首次电话，客户对华南方案感兴趣")
        .unwrap();
    r.move_stage(&a, "screening", MoveOptions::default())
        .unwrap();
    r.move_stage(
        &c,
        "lost",
        MoveOptions {
            loss_reason: Some("price".into()),
            ..Default::default()
        },
    )
    .unwrap();
    r.tag_client(&b, &["重点".into()], &[]).unwrap();
    vec![a, b, c]
}

/// What each schema version added, newest first, as SQL that takes it away again.
const UNDO: &[(i64, &str)] = &[
    (
        4,
        "ALTER TABLE documents DROP COLUMN heads; ALTER TABLE doc_changes DROP COLUMN base;",
    ),
    (
        3,
        "DROP TABLE change_log; DROP TABLE peer_heads; DROP TABLE doc_actors;
         DROP INDEX stage_visits_stage;",
    ),
    (2, "DROP TABLE client_search;"),
];

/// Turns a current replica file into one of schema `version`, as an older release left it.
fn downgrade(path: &Path, version: i64) {
    assert_eq!(UNDO[0].0, SCHEMA_VERSION, "UNDO lacks the newest version");
    let conn = rusqlite::Connection::open(path).unwrap();
    for (_, sql) in UNDO.iter().filter(|(v, _)| *v > version) {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", version).unwrap();
}

fn schema(path: &Path) -> Vec<(String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

fn user_version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

fn expect_storage_error(result: Result<Replica, Error>, what: &str) -> String {
    match result {
        Err(Error::Storage(msg)) => {
            assert!(!msg.is_empty());
            msg
        }
        Err(other) => panic!("{what}: expected Error::Storage, got {other}"),
        Ok(_) => panic!("{what}: the file was opened as a replica"),
    }
}

#[test]
fn a_file_of_random_bytes_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    let bytes: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let msg = expect_storage_error(Replica::open(&path, clock()), "random bytes");
    assert!(msg.contains("not a FieldSync replica"), "{msg}");
    assert!(
        std::fs::read(&path).unwrap() == bytes,
        "the file bytes changed"
    );
}

#[test]
fn an_sqlite_file_of_another_application_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other-app.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE recipes (id INTEGER PRIMARY KEY, title TEXT);
             INSERT INTO recipes(title) VALUES ('麻婆豆腐'), ('宫保鸡丁');",
        )
        .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    let msg = expect_storage_error(Replica::open(&path, clock()), "another app's database");
    assert!(msg.contains("not a FieldSync replica"), "{msg}");
    assert!(
        std::fs::read(&path).unwrap() == bytes,
        "opening another application's database must not modify it (journal mode, tables)"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let titles: i64 = conn
        .query_row("SELECT count(*) FROM recipes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(titles, 2);
}

#[test]
fn an_sqlite_file_of_another_application_with_a_user_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other-app-v1.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let before = schema(&path);
    expect_storage_error(
        Replica::open(&path, clock()),
        "another app's database at version 1",
    );
    assert_eq!(
        schema(&path),
        before,
        "no FieldSync table was added to another app's file"
    );
    assert_eq!(user_version(&path), 1);
}

#[test]
fn an_empty_file_is_refused_and_left_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    expect_storage_error(Replica::open(&path, clock()), "empty file");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_replica_from_a_newer_schema_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    let clock = clock();
    populated(&path, &clock);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let before = schema(&path);
    let msg = expect_storage_error(Replica::open(&path, clock.clone()), "newer schema");
    assert!(msg.contains("newer"), "{msg}");
    assert_eq!(user_version(&path), SCHEMA_VERSION + 1);
    assert_eq!(schema(&path), before);
}

#[test]
fn a_missing_file_is_refused_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.db");
    expect_storage_error(Replica::open(&path, clock()), "missing file");
    assert!(!path.exists());
}

#[test]
fn create_refuses_to_overwrite_an_existing_replica() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let clock = clock();
    let ids = populated(&path, &clock);
    let err = Replica::create(
        &path,
        "另一个团队",
        "李总",
        Template::FiveStage,
        clock.clone(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err}");
    let r = Replica::open(&path, clock).unwrap();
    assert_eq!(r.team().name, "华南销售部");
    assert_eq!(r.list(&ClientFilter::default()).unwrap().len(), ids.len());
}

#[test]
fn a_version_1_replica_is_upgraded_and_search_works_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let fresh = dir.path().join("fresh.db");
    new_replica(&fresh, &clock);
    let old = dir.path().join("old.db");
    let ids = populated(&old, &clock);
    // Turn the replica into a version-1 file: no search index.
    downgrade(&old, 1);
    assert_eq!(user_version(&old), 1);
    assert!(schema(&old)
        .iter()
        .all(|(_, name, _)| !name.starts_with("client_search")));
    let r = Replica::open(&old, clock.clone()).unwrap();
    assert_eq!(user_version(&old), SCHEMA_VERSION);
    // The index was refilled from the documents: profiles, tags and notes.
    let hit =
        |q: &str| -> Vec<String> { r.search(q).unwrap().into_iter().map(|row| row.id).collect() };
    assert_eq!(hit("华强"), [ids[0].to_string()]);
    assert_eq!(hit("华南方案"), [ids[0].to_string()]);
    assert_eq!(hit("重点"), [ids[1].to_string()]);
    assert_eq!(hit("中关村软件"), [ids[2].to_string()]);
    assert!(hit("上海").is_empty());
    assert_eq!(schema(&old), schema(&fresh));
    drop(r);
    // The rebuild happens once: the marker is gone and reopening changes nothing.
    let conn = rusqlite::Connection::open(&old).unwrap();
    let marker: i64 = conn
        .query_row(
            "SELECT count(*) FROM meta WHERE key = 'search_needs_rebuild'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(marker, 0);
    drop(conn);
    let r = Replica::open(&old, clock).unwrap();
    assert_eq!(r.search("华强").unwrap().len(), 1);
}

#[test]
fn a_version_1_fixture_built_from_the_old_schema_sql_opens_as_an_empty_upgraded_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(fieldsync_core::store::schema::v1_sql())
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    // The schema upgrades; the file has no team yet, which is reported clearly.
    let msg = expect_storage_error(Replica::open(&path, clock()), "v1 fixture without a team");
    assert!(msg.contains("not initialised"), "{msg}");
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let fresh = dir.path().join("fresh.db");
    new_replica(&fresh, &clock());
    assert_eq!(schema(&path), schema(&fresh));
}

#[test]
fn compaction_keeps_chunks_below_the_limit_and_every_note() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let clock = clock();
    let mut r = new_replica(&path, &clock);
    let id = r
        .create_client(client("张三", "深圳华强科技有限公司", true))
        .unwrap();
    let edits = COMPACT_AFTER as usize * 2 + 5;
    for i in 0..edits {
        clock.advance(1000);
        r.add_note(&id, NoteKind::Note, &format!("第{i}条"))
            .unwrap();
        let chunks = documents::change_chunks(r.store().conn(), &id.to_string()).unwrap();
        assert!(
            chunks < COMPACT_AFTER,
            "{chunks} chunks after {} edits",
            i + 1
        );
    }
    let doc = documents::load(r.store().conn(), &id.to_string())
        .unwrap()
        .unwrap();
    let view = fieldsync_core::fold::fold(
        &fieldsync_core::client::ClientDoc::from_doc(doc, None).unwrap(),
        r.team_doc(),
        r.now(),
    )
    .unwrap();
    assert_eq!(view.notes.len(), edits);
    drop(r);
    let r = Replica::open(&path, clock).unwrap();
    let notes = r.client(&id).unwrap().notes;
    assert_eq!(notes.len(), edits);
    assert_eq!(notes.last().unwrap().text, format!("第{}条", edits - 1));
}

#[test]
fn nothing_acknowledged_is_lost_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let clock = clock();
    let ids = populated(&path, &clock);
    let r = Replica::open(&path, clock.clone()).unwrap();
    let views: Vec<String> = ids
        .iter()
        .map(|id| serde_json::to_string(&r.client(id).unwrap()).unwrap())
        .collect();
    let board = r.board().unwrap();
    let report = r.report().unwrap();
    let list = r.list(&ClientFilter::default()).unwrap();
    let outbox = r.outbox().unwrap();
    let export = r.export(None).unwrap();
    // Every acknowledged operation is visible in the views we compare against.
    assert_eq!(r.client(&ids[0]).unwrap().stage, "screening");
    assert_eq!(r.client(&ids[0]).unwrap().notes.len(), 1);
    assert_eq!(r.client(&ids[2]).unwrap().stage, "lost");
    assert_eq!(report.lost, 1);
    drop(r);
    let r = Replica::open(&path, clock).unwrap();
    for (id, json) in ids.iter().zip(&views) {
        assert_eq!(
            &serde_json::to_string(&r.client(id).unwrap()).unwrap(),
            json
        );
    }
    assert_eq!(r.board().unwrap(), board);
    assert_eq!(r.report().unwrap(), report);
    assert_eq!(r.list(&ClientFilter::default()).unwrap(), list);
    assert_eq!(r.outbox().unwrap(), outbox);
    assert_eq!(r.export(None).unwrap(), export);
}

/// Everything an operation could have touched: the document rows, the outbox and the
/// read-model tables.
fn file_state(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut out = Vec::new();
    for sql in [
        "SELECT doc_id, kind, hex(snapshot), updated_at FROM documents ORDER BY doc_id",
        "SELECT doc_id, seq, hex(data) FROM doc_changes ORDER BY doc_id, seq",
        "SELECT doc_id, changed_at FROM outbox ORDER BY doc_id",
        "SELECT * FROM clients ORDER BY id",
        "SELECT * FROM stage_visits ORDER BY client_id, seq",
        "SELECT * FROM transitions ORDER BY client_id, id",
        "SELECT rowid, body FROM client_search ORDER BY rowid",
    ] {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let cols: Vec<String> = (0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect();
                Ok(cols.join("|"))
            })
            .unwrap();
        out.push(format!(
            "{sql}\n{}",
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .unwrap()
                .join("\n")
        ));
    }
    out
}

#[test]
fn a_refused_operation_leaves_document_outbox_and_read_model_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let clock = clock();
    let ids = populated(&path, &clock);
    let mut r = Replica::open(&path, clock.clone()).unwrap();
    clock.advance(HOUR);
    let before = file_state(&path);
    // ids[1] lacks the lead-quality fields.
    assert!(matches!(
        r.move_stage(&ids[1], "screening", MoveOptions::default()),
        Err(Error::GateRefused { .. })
    ));
    assert!(matches!(
        r.create_client(client("张三丰", "深圳华强科技", true)),
        Err(Error::Duplicate { .. })
    ));
    assert!(matches!(
        r.move_stage(&ids[0], "lost", MoveOptions::default()),
        Err(Error::LossReasonRequired { .. })
    ));
    assert!(r
        .edit_client(&ids[0], &[("grade".into(), Some("Z".into()))])
        .is_err());
    assert_eq!(file_state(&path), before);
}

#[test]
fn a_failure_inside_the_write_rolls_back_document_and_read_model_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let clock = clock();
    let ids = populated(&path, &clock);
    // The outbox write, the last step of every operation's transaction, fails.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER outbox_full BEFORE INSERT ON outbox
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END;
             CREATE TRIGGER outbox_full_update BEFORE UPDATE ON outbox
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();
    }
    let mut r = Replica::open(&path, clock.clone()).unwrap();
    clock.advance(HOUR);
    let before = file_state(&path);
    let err = r
        .add_note(&ids[0], NoteKind::Visit, "拜访记录不应半途写入")
        .unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err}");
    let err = r
        .create_client(client("新客户", "全新公司", true))
        .unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err}");
    assert_eq!(file_state(&path), before);
    assert!(r.search("半途").unwrap().is_empty());
    assert_eq!(r.client(&ids[0]).unwrap().notes.len(), 1);
    // Once the disk has room again the same operation goes through.
    drop(r);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("DROP TRIGGER outbox_full; DROP TRIGGER outbox_full_update;")
            .unwrap();
    }
    let mut r = Replica::open(&path, clock).unwrap();
    r.add_note(&ids[0], NoteKind::Visit, "拜访记录").unwrap();
    assert_eq!(r.client(&ids[0]).unwrap().notes.len(), 2);
    assert_eq!(r.search("拜访记录").unwrap().len(), 1);
}

#[test]
fn a_version_2_replica_gains_a_change_log_with_every_document() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let old = dir.path().join("old.db");
    let ids = populated(&old, &clock);
    downgrade(&old, 2);
    let r = Replica::open(&old, clock.clone()).unwrap();
    assert_eq!(user_version(&old), SCHEMA_VERSION);
    // Every client plus the team document, each once, numbered 1..=n.
    let changed = r.changed_since(0, 1000).unwrap();
    assert_eq!(changed.len(), ids.len() + 1);
    let seqs: Vec<u64> = changed.iter().map(|(_, _, s)| *s).collect();
    assert_eq!(seqs, (1..=changed.len() as u64).collect::<Vec<_>>());
    assert_eq!(r.change_seq().unwrap(), changed.len() as u64);
    // And the actor index is refilled: every client was written by the admin's device.
    let actor = r.identity().actor;
    let written =
        fieldsync_core::store::documents::docs_by_actors(r.store().conn(), &[actor]).unwrap();
    assert_eq!(written.len(), ids.len());
}

/// An admin's replica with a few clients (see [`populated`]), reopened.
fn admin_replica() -> (tempfile::TempDir, Arc<ManualClock>, Replica, Vec<ClientId>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let path = dir.path().join("admin.db");
    let ids = populated(&path, &clock);
    let admin = Replica::open(&path, clock.clone()).unwrap();
    (dir, clock, admin, ids)
}

/// Everything a phone shows from its read model, and every client opened from its document.
fn read_model_of(r: &Replica, ids: &[ClientId]) -> String {
    let opened: Vec<_> = ids.iter().map(|id| r.client(id).unwrap()).collect();
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        r.list(&ClientFilter::default()).unwrap(),
        r.board().unwrap(),
        r.report().unwrap(),
        r.search("华强").unwrap(),
        r.search("感兴趣").unwrap(),
        r.duplicates().unwrap(),
        opened,
    )
}

/// The same provisioning bundle without its summaries: every document loaded and folded.
fn without_summaries(bundle: &[u8]) -> Vec<u8> {
    let mut b = Bundle::decode(bundle).unwrap();
    assert!(b.entries.iter().skip(1).all(|e| e.summary.is_some()));
    for e in &mut b.entries {
        e.summary = None;
    }
    b.encode()
}

#[test]
fn a_phone_joined_from_summaries_shows_what_folding_every_document_shows() {
    let (dir, clock, mut admin, ids) = admin_replica();
    let me = admin.identity().user_id.parse().unwrap();
    let bundle = admin.provision_device(me).unwrap();
    let fast = Replica::join(&dir.path().join("fast.db"), &bundle, clock.clone()).unwrap();
    let full = Replica::join(
        &dir.path().join("full.db"),
        &without_summaries(&bundle),
        clock.clone(),
    )
    .unwrap();
    assert_eq!(read_model_of(&fast, &ids), read_model_of(&full, &ids));
    assert_eq!(read_model_of(&fast, &ids), read_model_of(&admin, &ids));
    assert_eq!(fast.heads().unwrap(), full.heads().unwrap());
    // Written with a rollback journal, back in WAL mode for everything after.
    let mode: String = fast
        .store()
        .conn()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // The stored documents load and take edits like any other.
    let mut fast = fast;
    fast.add_note(&ids[1], NoteKind::Call, "回访：白云电器要报价")
        .unwrap();
    assert_eq!(fast.search("白云电器要报价").unwrap().len(), 1);
}

#[test]
fn a_version_3_replica_provisions_devices_from_documents_stored_without_heads() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let old = dir.path().join("old.db");
    let ids = populated(&old, &clock);
    downgrade(&old, 3);
    let mut admin = Replica::open(&old, clock.clone()).unwrap();
    assert_eq!(user_version(&old), SCHEMA_VERSION);
    let me = admin.identity().user_id.parse().unwrap();
    let bundle = admin.provision_device(me).unwrap();
    let phone = Replica::join(&dir.path().join("phone.db"), &bundle, clock.clone()).unwrap();
    assert_eq!(read_model_of(&phone, &ids), read_model_of(&admin, &ids));
    assert_eq!(phone.heads().unwrap(), admin.heads().unwrap());
}

#[test]
fn a_summary_that_describes_another_client_is_refused_and_leaves_no_file() {
    let (dir, clock, mut admin, _) = admin_replica();
    let me = admin.identity().user_id.parse().unwrap();
    let mut b = Bundle::decode(&admin.provision_device(me).unwrap()).unwrap();
    let other = b.entries[2].summary.clone();
    b.entries[1].summary = other;
    let phone = dir.path().join("phone.db");
    let err = Replica::join(&phone, &b.encode(), clock.clone()).unwrap_err();
    assert!(matches!(err, Error::BadBundle(_)), "{err}");
    assert!(!phone.exists());
}

#[test]
fn a_provisioning_bundle_altered_at_its_end_leaves_no_replica_behind() {
    let (dir, clock, mut admin, _) = admin_replica();
    let me = admin.identity().user_id.parse().unwrap();
    let mut bytes = admin.provision_device(me).unwrap();
    // The last byte of the checksum: every entry reads and is written before the
    // mismatch shows, and the transaction is rolled back.
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let phone = dir.path().join("phone.db");
    let err = Replica::join_from(&phone, &bytes[..], clock.clone()).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    assert!(!phone.exists());
    // Cut short, as a dropped connection would.
    let bytes = admin.provision_device(me).unwrap();
    let err = Replica::join_from(&phone, &bytes[..bytes.len() / 2], clock.clone()).unwrap_err();
    assert!(matches!(err, Error::BadBundle(_)), "{err}");
    assert!(!phone.exists());
}

#[test]
fn writing_a_clients_rows_again_writes_only_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let path = dir.path().join("r.db");
    let ids = populated(&path, &clock);
    let r = Replica::open(&path, clock.clone()).unwrap();
    let conn = r.store().conn();
    let id = ids[0].to_string();
    let rows = read_model::read(conn, &id).unwrap().unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    let written = |rows: &read_model::ClientRows| {
        let before = conn.total_changes();
        read_model::write(&tx, rows).unwrap();
        assert_eq!(&read_model::read(conn, &id).unwrap().unwrap(), rows);
        conn.total_changes() - before
    };
    // The same rows: nothing is written.
    assert_eq!(written(&rows), 0);
    // A new note: only the search text (its index row out, the new one in).
    let mut noted = rows.clone();
    noted.search.push_str("\n回访：客户要求下周演示");
    let search_only = written(&noted);
    assert!(search_only > 0);
    // A stage move: the client row too, and its stays, on top of the search text.
    let mut moved = rows.clone();
    moved.stage = "first_contact".into();
    moved
        .visits
        .push(("first_contact".into(), T0 + 2 * HOUR, None));
    assert!(written(&moved) > search_only);
    assert_eq!(r.search("客户要求下周演示").unwrap().len(), 0);
}

#[test]
fn what_a_document_gained_since_given_heads_is_read_from_its_stored_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let path = dir.path().join("r.db");
    let ids = populated(&path, &clock);
    let mut r = Replica::open(&path, clock.clone()).unwrap();
    let id = ids[1].to_string();
    let stored = |r: &Replica| documents::stored_heads(r.store().conn(), &id).unwrap();
    let before = stored(&r).expect("heads are stored with the document");
    r.add_note(&ids[1], NoteKind::Call, "第一次回访").unwrap();
    r.add_note(&ids[1], NoteKind::Visit, "上门拜访").unwrap();
    let chunks = documents::changes_since(r.store().conn(), &id, &before)
        .unwrap()
        .expect("the chunks start at those heads");
    // The chunks bring a copy at `before` to exactly the document's heads.
    let mut full = documents::load(r.store().conn(), &id).unwrap().unwrap();
    let mut copy = full.fork_at(&before).unwrap();
    copy.load_incremental(&chunks).unwrap();
    assert_eq!(copy.get_heads(), full.get_heads());
    assert_eq!(Some(full.get_heads()), stored(&r));
    // Heads no chunk starts at: the caller loads the document.
    let unknown = [automerge::ChangeHash([7; 32])];
    assert_eq!(
        documents::changes_since(r.store().conn(), &id, &unknown).unwrap(),
        None
    );
    // After compaction the chunks are gone: loading again.
    for i in 0..COMPACT_AFTER {
        r.add_note(&ids[1], NoteKind::Call, &format!("回访 {i}"))
            .unwrap();
    }
    assert_eq!(
        documents::changes_since(r.store().conn(), &id, &before).unwrap(),
        None
    );
    let (heads, changes) = r.changes_for_peer(&id, &before).unwrap().unwrap();
    let mut copy = full.fork_at(&before).unwrap();
    copy.load_incremental(&changes).unwrap();
    full = documents::load(r.store().conn(), &id).unwrap().unwrap();
    assert_eq!(copy.get_heads(), full.get_heads());
    assert_eq!(heads, full.get_heads());
}
