//! The `aether` binary on an embedded data directory: JSON shapes, errors a person can act on
//! (missing directory, unknown namespace, invalid ids) with a non-zero exit code, and reading
//! while the application holds the directory open (`--follow` sees its new events).

#[path = "support/fixture.rs"]
mod fixture;
#[path = "support/run.rs"]
mod run;

use std::time::Duration;

use aether_core::{ActorId, Event, EventStore, Namespace};
use run::{aether, json_of};

fn fixture_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(fixture::write_data_dir(dir.path()));
    dir
}

#[test]
fn namespaces_json_lists_counts_per_namespace() {
    let dir = fixture_dir();
    let out = aether(&[
        "--data",
        dir.path().to_str().unwrap(),
        "--json",
        "namespaces",
    ]);
    assert!(out.ok(), "{out}");
    let doc = json_of(&out.stdout);
    let namespaces = doc["namespaces"].as_array().expect("an array");
    let names: Vec<&str> = namespaces
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bank", "shop"]);
    assert_eq!(namespaces[0]["events"], 4);
    assert_eq!(namespaces[0]["actors"], 2);
    assert_eq!(namespaces[1]["events"], 1);
    assert_eq!(namespaces[1]["actors"], 1);
    assert!(namespaces[0]["bytes"].as_u64().unwrap() > 4 * 100, "{doc}");
}

#[test]
fn events_json_lines_are_the_stored_events() {
    let dir = fixture_dir();
    let data = dir.path().to_str().unwrap();
    let out = aether(&["--data", data, "--json", "events", "bank", "acct-1"]);
    assert!(out.ok(), "{out}");
    let lines: Vec<Event> = out
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is an event"))
        .collect();
    let expected: Vec<Event> = fixture::events()
        .into_iter()
        .filter(|(ns, e)| ns.as_str() == "bank" && e.actor_id.as_str() == "acct-1")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(lines, expected);

    let out = aether(&[
        "--data", data, "--json", "events", "bank", "acct-1", "--from", "3",
    ]);
    let versions: Vec<u64> = out
        .stdout
        .lines()
        .map(|l| json_of(l)["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [3]);
}

#[test]
fn actor_json_has_versions_snapshot_and_last_event() {
    let dir = fixture_dir();
    let out = aether(&[
        "--data",
        dir.path().to_str().unwrap(),
        "--json",
        "actor",
        "bank",
        "acct-1",
    ]);
    assert!(out.ok(), "{out}");
    let doc = json_of(&out.stdout);
    assert_eq!(doc["namespace"], "bank");
    assert_eq!(doc["actor"], "acct-1");
    assert_eq!(doc["version"], 3);
    assert_eq!(doc["snapshot_version"], 2);
    assert_eq!(
        doc["snapshot_bytes"].as_u64().unwrap(),
        fixture::snapshot().encoded_len() as u64
    );
    assert_eq!(doc["last_event_time"], "2026-01-05T09:33:00.000Z");
    assert_eq!(doc["last_event_type"], "Withdrew");
    assert!(doc["cluster"].is_null(), "no cluster on a data directory");
}

#[test]
fn an_unknown_namespace_lists_the_existing_ones() {
    let dir = fixture_dir();
    let out = aether(&[
        "--data",
        dir.path().to_str().unwrap(),
        "events",
        "banc",
        "acct-1",
    ]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("namespace \"banc\" does not exist")
            && out.stderr.contains("existing namespaces: bank, shop"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
}

#[test]
fn a_missing_data_directory_is_named_and_not_created() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("nope");
    let out = aether(&["--data", missing.to_str().unwrap(), "namespaces"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("no Aether data directory at") && out.stderr.contains("nope"),
        "{out}"
    );
    assert!(!missing.exists(), "a reader creates nothing");
}

#[test]
fn invalid_ids_get_the_typed_validation_message() {
    let dir = fixture_dir();
    let data = dir.path().to_str().unwrap();
    for (args, says) in [
        (
            vec!["events", "bank", "has space"],
            "invalid actor id \"has space\"",
        ),
        (vec!["actor", "", "acct-1"], "invalid namespace \"\""),
        (
            vec!["events", "bank", "orders..42"],
            "invalid actor id \"orders..42\"",
        ),
    ] {
        let mut all = vec!["--data", data];
        all.extend(args);
        let out = aether(&all);
        assert_eq!(out.code, Some(1), "{out}");
        assert!(out.stderr.contains(says), "{out}");
        assert!(!out.stderr.contains("panicked"), "{out}");
    }
}

#[test]
fn without_a_source_the_error_says_what_to_give() {
    let out = aether(&["namespaces"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("--nats <URL>") && out.stderr.contains("--data <DIR>"),
        "{out}"
    );
}

#[test]
fn nats_only_commands_refuse_a_data_directory() {
    let dir = fixture_dir();
    let out = aether(&["--data", dir.path().to_str().unwrap(), "cluster", "status"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("needs NATS"), "{out}");
}

/// The application keeps the directory open (and locked) and writes; the CLI reads it all the
/// same, and `--follow` prints the new event.
#[test]
fn reads_and_follows_while_the_application_holds_the_directory() {
    let dir = fixture_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let database =
        aether_sqlite::SqliteDatabase::open(dir.path(), aether_sqlite::SqliteConfig::default())
            .expect("the application opens its directory");
    assert!(
        aether_sqlite::SqliteDatabase::open(dir.path(), aether_sqlite::SqliteConfig::default())
            .is_err(),
        "the directory is locked by the application"
    );
    let out = aether(&[
        "--data",
        dir.path().to_str().unwrap(),
        "--json",
        "namespaces",
    ]);
    assert!(out.ok(), "{out}");

    let mut follow = run::spawn(&[
        "--data",
        dir.path().to_str().unwrap(),
        "--json",
        "events",
        "bank",
        "acct-2",
        "--follow",
        "--poll-ms",
        "50",
    ]);
    let first = follow
        .next_line(Duration::from_secs(60))
        .expect("the stored event");
    assert_eq!(json_of(&first)["version"], 1);
    let bank = database.store(Namespace::new("bank").unwrap()).unwrap();
    runtime
        .block_on(bank.save_event(Event::new(ActorId::new("acct-2").unwrap(), "Deposited", 2)))
        .unwrap();
    let second = follow
        .next_line(Duration::from_secs(60))
        .expect("the new event");
    let doc = json_of(&second);
    assert_eq!(
        (doc["version"].as_u64(), doc["eventType"].as_str()),
        (Some(2), Some("Deposited"))
    );
    follow.stop();
}

/// A record that is not an event (written by another tool) is named on stderr, the events
/// around it are printed, and `--follow`, which reads it again on every poll, names it once.
#[test]
fn an_undecodable_record_is_named_once_even_when_followed() {
    let dir = fixture_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let database =
        aether_sqlite::SqliteDatabase::open(dir.path(), aether_sqlite::SqliteConfig::default())
            .unwrap();
    let bank = database.store(Namespace::new("bank").unwrap()).unwrap();
    runtime
        .block_on(bank.write_raw_record(&ActorId::new("acct-2").unwrap(), b"garbage".to_vec()))
        .unwrap();
    let data = dir.path().to_str().unwrap();

    let out = aether(&["--data", data, "--json", "events", "bank", "acct-2"]);
    assert!(out.ok(), "{out}");
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    assert_eq!(
        out.stderr.matches("does not decode as an event").count(),
        1,
        "{out}"
    );

    let mut follow = run::spawn(&[
        "--data",
        data,
        "--json",
        "events",
        "bank",
        "acct-2",
        "--follow",
        "--poll-ms",
        "20",
    ]);
    follow
        .next_line(Duration::from_secs(60))
        .expect("the stored event");
    // A new event seen proves at least one poll after the first read, which re-read the record.
    runtime
        .block_on(bank.save_event(Event::new(ActorId::new("acct-2").unwrap(), "Deposited", 2)))
        .unwrap();
    follow
        .next_line(Duration::from_secs(60))
        .expect("the new event");
    let warnings = follow.error_lines_so_far();
    assert_eq!(
        warnings
            .iter()
            .filter(|l| l.contains("does not decode"))
            .count(),
        1,
        "{warnings:?}"
    );
    follow.stop();
}
