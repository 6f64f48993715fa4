//! The command line on a database the test builds: snapshot, list, show, and
//! the errors an operator meets.

mod common;

use std::path::Path;
use std::process::Output;

use common::bin;

use rocksnap::format::{Lsn, PartitionId};
use rocksnap::PartitionStore;

fn rocksnap(args: &[&str]) -> Output {
    bin::output(&mut bin::command(args))
}

fn ok_json(args: &[&str]) -> serde_json::Value {
    bin::ok_json(&mut bin::command(args))
}

/// `rocksnap snapshot` of partition 7 of `db` into `repo`; its JSON outcome.
fn snapshot_7(db: &str, repo: &str) -> serde_json::Value {
    snapshot_7_with(db, repo, &[])
}

/// The same, with `extra` options.
fn snapshot_7_with(db: &str, repo: &str, extra: &[&str]) -> serde_json::Value {
    let base = [
        "snapshot",
        "--db",
        db,
        "--partition",
        "7",
        "--to",
        repo,
        "--json",
    ];
    ok_json(&[&base[..], extra].concat())
}

fn fails_clearly(args: &[&str], expect: &str) {
    bin::fails_clearly(&mut bin::command(args), expect);
}

fn build_db(path: &Path) {
    let store = PartitionStore::open(path, &[PartitionId(7)]).unwrap();
    for lsn in 1..=5u64 {
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..100)
            .map(|i| (common::key(lsn, i), common::value(lsn, i, 256)))
            .collect();
        store.apply(PartitionId(7), Lsn(lsn), records).unwrap();
    }
    // A column family written without rocksnap: no stored LSN.
    store
        .db()
        .create_cf("events", &rocksdb::Options::default())
        .unwrap();
    let cf = store.db().cf_handle("events").unwrap();
    store.db().put_cf(&cf, b"e1", b"payload").unwrap();
}

#[test]
fn snapshot_then_list_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    build_db(&db);
    let repo = dir.path().join("repo");
    let (db_s, repo_s) = (db.to_str().unwrap(), repo.to_str().unwrap());

    let outcome = snapshot_7(db_s, repo_s);
    assert_eq!(outcome["partition_id"], 7);
    assert_eq!(outcome["min_applied_lsn"], 5);
    let id = outcome["snapshot_id"].as_str().unwrap().to_string();

    // A foreign column family, published as partition 8 at a given LSN.
    let url = format!("file://{repo_s}");
    let other = ok_json(&[
        "snapshot",
        "--db",
        db_s,
        "--partition",
        "8",
        "--cf",
        "events",
        "--lsn",
        "1234",
        "--to",
        &url,
        "--json",
    ]);
    assert_eq!(other["min_applied_lsn"], 1234);

    let list = ok_json(&["list", "--from", repo_s, "--json"]);
    let parts = list.as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["partition_id"], 7);
    assert_eq!(parts[0]["latest"]["snapshot_id"], id.as_str());
    let snaps = parts[0]["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["complete"], true);
    assert_eq!(snaps[0]["latest"], true);
    assert_eq!(snaps[0]["bytes"], outcome["bytes"]);
    assert_eq!(parts[1]["partition_id"], 8);

    let only = ok_json(&["list", "--from", &url, "--partition", "8", "--json"]);
    assert_eq!(only.as_array().unwrap().len(), 1);

    let show = ok_json(&["show", "--from", repo_s, "--partition", "7", "--json"]);
    assert_eq!(show["snapshot_id"], id.as_str());
    assert_eq!(show["version"], "V1");
    assert_eq!(
        show["files"].as_array().unwrap().len() as u64,
        outcome["files"].as_u64().unwrap()
    );
    let by_id = ok_json(&[
        "show",
        "--from",
        repo_s,
        "--partition",
        "7",
        "--snapshot",
        &id,
        "--json",
    ]);
    assert_eq!(by_id, show);

    // The human views work too.
    let out = rocksnap(&["list", "--from", repo_s]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));

    // Two more snapshots: `--limit` shows the newest and counts the rest.
    let mut newer = Vec::new();
    for _ in 0..2 {
        let o = snapshot_7(db_s, repo_s);
        newer.push(o["snapshot_id"].as_str().unwrap().to_string());
    }
    let list_7 = |limit: &str| {
        ok_json(&[
            "list",
            "--from",
            repo_s,
            "--partition",
            "7",
            "--limit",
            limit,
            "--json",
        ])
    };
    let limited = list_7("2");
    let shown: Vec<&str> = limited[0]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot_id"].as_str().unwrap())
        .collect();
    assert_eq!(shown, [newer[0].as_str(), newer[1].as_str()]);
    assert_eq!(limited[0]["older_not_shown"], 1);
    let all = list_7("0");
    assert_eq!(all[0]["snapshots"].as_array().unwrap().len(), 3);
    assert_eq!(all[0]["older_not_shown"], 0);
    let text =
        String::from_utf8_lossy(&rocksnap(&["list", "--from", repo_s, "--limit", "1"]).stdout)
            .to_string();
    assert!(text.contains("2 older snapshots not shown"), "{text}");
}

#[test]
fn operator_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    build_db(&db);
    let repo = dir.path().join("repo");
    let (db_s, repo_s) = (db.to_str().unwrap(), repo.to_str().unwrap());

    fails_clearly(
        &["snapshot", "--db", db_s, "--partition", "9", "--to", repo_s],
        "no column family \"data-9\"",
    );
    let missing = dir.path().join("nothing");
    fails_clearly(
        &[
            "snapshot",
            "--db",
            missing.to_str().unwrap(),
            "--partition",
            "7",
            "--to",
            repo_s,
        ],
        "no RocksDB database",
    );
    fails_clearly(
        &[
            "snapshot",
            "--db",
            db_s,
            "--partition",
            "7",
            "--to",
            "ftp://x/y",
        ],
        "unknown scheme",
    );
    fails_clearly(
        &[
            "snapshot",
            "--db",
            db_s,
            "--partition",
            "7",
            "--to",
            "s3://b/p?region=x",
        ],
        "query",
    );
    fails_clearly(&["list", "--from", missing.to_str().unwrap()], "nothing");
    fails_clearly(
        &["show", "--from", db_s, "--partition", "7"],
        "no latest.json",
    );

    // A malformed pointer: list reports it, show refuses it, nothing is changed.
    snapshot_7(db_s, repo_s);
    let pointer = repo.join("7").join("latest.json");
    std::fs::write(&pointer, b"not json").unwrap();
    let list = ok_json(&["list", "--from", repo_s, "--json"]);
    assert!(list[0]["latest_error"]
        .as_str()
        .unwrap()
        .contains("malformed"));
    fails_clearly(&["show", "--from", repo_s, "--partition", "7"], "malformed");
    fails_clearly(
        &["snapshot", "--db", db_s, "--partition", "7", "--to", repo_s],
        "latest.json is malformed",
    );
    assert_eq!(std::fs::read(&pointer).unwrap(), b"not json");
}

#[test]
fn restore_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    build_db(&db);
    let repo = dir.path().join("repo");
    let restored = dir.path().join("restored");
    let (db_s, repo_s, restored_s) = (
        db.to_str().unwrap(),
        repo.to_str().unwrap(),
        restored.to_str().unwrap(),
    );
    let snap = snapshot_7(db_s, repo_s);

    let report = ok_json(&[
        "verify",
        "--from",
        repo_s,
        "--partition",
        "7",
        "--deep",
        "--json",
    ]);
    assert_eq!(report["snapshot_id"], snap["snapshot_id"]);
    assert_eq!(report["deep"], true);

    let outcome = ok_json(&[
        "restore",
        "--from",
        repo_s,
        "--partition",
        "7",
        "--db",
        restored_s,
        "--json",
    ]);
    assert_eq!(outcome["restored_lsn"], 5);
    assert_eq!(outcome["snapshot_id"], snap["snapshot_id"]);
    let source = PartitionStore::open_existing(&db).unwrap();
    let target = PartitionStore::open_existing(&restored).unwrap();
    let all = |s: &PartitionStore| s.entries("data-7").unwrap();
    assert_eq!(all(&source), all(&target));
    drop((source, target));

    // A corrupt file: one line naming it, and the restored database is left alone.
    let folder = format!("lsn_{:020}-{}", 5, snap["snapshot_id"].as_str().unwrap());
    let sst = std::fs::read_dir(repo.join("7").join(&folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .unwrap();
    let mut bytes = std::fs::read(&sst).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&sst, bytes).unwrap();
    let name = sst.file_name().unwrap().to_str().unwrap();
    fails_clearly(&["verify", "--from", repo_s, "--partition", "7"], name);
    fails_clearly(
        &[
            "restore",
            "--from",
            repo_s,
            "--partition",
            "7",
            "--db",
            restored_s,
        ],
        name,
    );
    fails_clearly(
        &[
            "restore",
            "--from",
            repo_s,
            "--partition",
            "7",
            "--db",
            restored_s,
            "--snapshot",
            "snap_01J0000000000000000000000A",
        ],
        "has no snapshot",
    );
    fails_clearly(
        &[
            "restore",
            "--from",
            repo_s,
            "--partition",
            "7",
            "--db",
            restored_s,
            "--min-lsn",
            "6",
        ],
        "LSN 6 or above",
    );
    let target = PartitionStore::open_existing(&restored).unwrap();
    let source = PartitionStore::open_existing(&db).unwrap();
    assert_eq!(all(&source), all(&target));
}

#[test]
fn incremental_snapshots_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    build_db(&db);
    let repo = dir.path().join("repo");
    let (db_s, repo_s) = (db.to_str().unwrap(), repo.to_str().unwrap());
    let snap = |lsn: &str| {
        snapshot_7_with(
            db_s,
            repo_s,
            &["--format", "V2", "--keep", "1", "--lsn", lsn],
        )
    };
    let first = snap("10");
    assert_eq!(first["uploaded_bytes"], first["bytes"]);
    // Compacted: every file is new, and the first snapshot falls out of retention.
    {
        let store = PartitionStore::open_existing(&db).unwrap();
        let cf = store.db().cf_handle("data-7").unwrap();
        store
            .db()
            .compact_range_cf(&cf, None::<&[u8]>, None::<&[u8]>);
    }
    snap("11");
    let unchanged = snap("12");
    assert_eq!(
        unchanged["uploaded_bytes"], 0,
        "nothing changed, nothing is sent"
    );

    let before = common::files_below(&repo);
    let dry = ok_json(&[
        "prune",
        "--from",
        repo_s,
        "--grace",
        "0s",
        "--dry-run",
        "--json",
    ]);
    assert!(!dry[0]["deleted"].as_array().unwrap().is_empty(), "{dry}");
    assert_eq!(
        common::files_below(&repo),
        before,
        "a dry run deleted something"
    );
    let pruned = ok_json(&["prune", "--from", repo_s, "--grace", "0s", "--json"]);
    assert_eq!(pruned[0]["deleted"], dry[0]["deleted"]);
    let first_folder = format!("lsn_{:020}-{}", 10, first["snapshot_id"].as_str().unwrap());
    assert!(!repo.join("7").join(first_folder).exists());
    let restored = dir.path().join("restored");
    let out = ok_json(&[
        "restore",
        "--from",
        repo_s,
        "--partition",
        "7",
        "--db",
        restored.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out["snapshot_id"], unchanged["snapshot_id"]);
    let a = PartitionStore::open_existing(&db)
        .unwrap()
        .entries("data-7")
        .unwrap();
    let b = PartitionStore::open_existing(&restored)
        .unwrap()
        .entries("data-7")
        .unwrap();
    assert!(a == b);
}

/// Logs that reach a file or a pipe are plain text: no ANSI colour codes,
/// whether or not `NO_COLOR` is set.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    build_db(&db);
    let repo = dir.path().join("repo");
    for no_color in [None, Some("1")] {
        let mut cmd = bin::command(&[
            "snapshot",
            "--db",
            db.to_str().unwrap(),
            "--partition",
            "7",
            "--to",
            repo.to_str().unwrap(),
        ]);
        cmd.env("RUST_LOG", "rocksnap=debug");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = bin::output(&mut cmd);
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("DEBUG"), "logs were written: {stderr}");
        assert!(
            !stderr.contains('\x1b'),
            "colour codes in a pipe: {stderr:?}"
        );
    }
}

/// Output cut short by the reader (`rocksnap list | head -1`) ends the
/// command quietly, with no panic on stderr.
#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    build_db(&db);
    let repo = dir.path().join("repo");
    for p in ["7", "8"] {
        let out = rocksnap(&[
            "snapshot",
            "--db",
            db.to_str().unwrap(),
            "--partition",
            p,
            "--cf",
            if p == "7" { "data-7" } else { "events" },
            "--lsn",
            "1",
            "--to",
            repo.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `list` prints more than one pipe write's worth once the reader is gone.
    let mut child = bin::command(&["list", "--from", repo.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `rekey` over every partition rewraps those that have snapshots and says
/// which it passed over and why (here a partition holding an object but no
/// `latest.json`, as a failed first snapshot leaves), instead of stopping
/// there; one named with `--partition` is still an error.
#[test]
fn rekey_over_every_partition_passes_over_one_without_a_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    build_db(&db);
    let repo = dir.path().join("repo");
    let old = dir.path().join("old.keys");
    std::fs::write(&old, rocksnap::crypto::Keyring::generate_line("old")).unwrap();
    let (db_s, repo_s) = (db.to_str().unwrap(), repo.to_str().unwrap());
    snapshot_7_with(db_s, repo_s, &["--keyring", old.to_str().unwrap()]);
    // Partition 3: an object, no pointer (it sorts before 7).
    std::fs::create_dir_all(repo.join("3")).unwrap();
    std::fs::write(
        repo.join("3").join("stray.sst"),
        b"left by a failed snapshot",
    )
    .unwrap();
    let both = dir.path().join("both.keys");
    std::fs::write(
        &both,
        format!(
            "{}\n{}",
            rocksnap::crypto::Keyring::generate_line("new"),
            std::fs::read_to_string(&old).unwrap()
        ),
    )
    .unwrap();
    let both_s = both.to_str().unwrap();

    let out = rocksnap(&["rekey", "--from", repo_s, "--keyring", both_s, "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("partition 3: skipped: partition 3 has no snapshot"),
        "{stderr}"
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["partition_id"], 7);
    assert_eq!(reports[0]["rekeyed"].as_array().unwrap().len(), 1);

    fails_clearly(
        &[
            "rekey",
            "--from",
            repo_s,
            "--keyring",
            both_s,
            "--partition",
            "3",
        ],
        "partition 3 has no snapshot",
    );
}
