//! A client whose wall clock runs hours ahead of the NATS server's: what must still hold.
//!
//! - **a batch reusing a stored id is refused by name**: JetStream refuses an atomic batch one
//!   of whose ids is stored (10201) without saying which; the store then looks for the holder
//!   among the messages of the duplicate window. That window is measured on the server's clock
//!   (back from the stream's last message), so a client clock that runs ahead still finds the
//!   holder, and the save fails with [`StoreError::EventIdReused`] naming the other actor and
//!   version. Measured on the client's clock, the scan started after every stored message and
//!   the save failed with a `Backend` error instead.
//!
//! How: the test binary re-runs itself (the ignored [`CHILD`] test) with libfaketime preloaded
//! (`FAKETIME=+2h`), which moves the child's `SystemTime` (libc `clock_gettime` on the
//! realtime clock) but not its monotonic clock (tokio's timers); `nats-server` runs in the
//! parent, on the real clock. The child checks that its clock is ahead of the server's by more
//! than the scan window before it saves, so the test cannot pass on an unskewed clock.
//!
//! Linux only (`LD_PRELOAD`). Needs libfaketime (Debian/Ubuntu: `apt-get install -y faketime`;
//! `scripts/test.sh` installs it) and `nats-server` ≥ 2.12; fails (never skips) with the
//! install command when either is missing.

#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aether_core::{ActorId, Event, EventStore, Namespace, StoreError};
use aether_nats::{JetStreamConfig, JetStreamEventStore};
use aether_testkit::nats_server::NatsServer;

/// The child half, run only by the parent test (with a skewed clock).
const CHILD: &str = "skewed_child_saves_a_batch_reusing_a_stored_id";
/// The NATS URL handed to the child.
const URL_ENV: &str = "AETHER_CLOCK_SKEW_NATS_URL";
/// Where libfaketime is, if not in a usual place (`scripts/test.sh` sets it).
const LIBFAKETIME_ENV: &str = "AETHER_LIBFAKETIME";
/// How far ahead the child's wall clock runs: far more than the holder scan's window
/// (the default duplicate window, 2 min, plus 5 s).
const SKEW: &str = "+2h";
/// The child's whole run (connect, two saves, a scan) takes seconds; past this it is stuck.
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// libfaketime's shared object: `$AETHER_LIBFAKETIME`, else the usual install places.
fn libfaketime() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(LIBFAKETIME_ENV) {
        return Some(PathBuf::from(path));
    }
    let arch = std::env::consts::ARCH;
    [
        format!("/usr/lib/{arch}-linux-gnu/faketime"),
        "/usr/lib/faketime".to_owned(),
        "/usr/lib64/faketime".to_owned(),
        "/usr/local/lib/faketime".to_owned(),
    ]
    .iter()
    .map(|dir| PathBuf::from(dir).join("libfaketime.so.1"))
    .find(|path| path.is_file())
}

#[test]
fn a_batch_reusing_a_stored_id_is_refused_by_name_with_the_client_clock_hours_ahead() {
    let library = libfaketime().unwrap_or_else(|| {
        panic!(
            "libfaketime not found (looked in /usr/lib/<arch>-linux-gnu/faketime, \
             /usr/lib/faketime, /usr/lib64/faketime, /usr/local/lib/faketime); install it with \
             `apt-get install -y faketime` (or point {LIBFAKETIME_ENV} at libfaketime.so.1)"
        )
    });
    assert!(
        library.is_file(),
        "{LIBFAKETIME_ENV}={} is not a file; install libfaketime with \
         `apt-get install -y faketime`",
        library.display()
    );
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let exe = std::env::current_exe().expect("path of the test binary");
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            CHILD,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(URL_ENV, server.url())
        .env("LD_PRELOAD", &library)
        .env("FAKETIME", SKEW)
        // tokio's timers need the real monotonic clock.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the skewed child");
    let started = Instant::now();
    while child.try_wait().expect("poll the child").is_none() {
        if started.elapsed() > CHILD_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the skewed child did not finish within {CHILD_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("the child's output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "the skewed child ({CHILD}, FAKETIME={SKEW}) failed: {}\n--- stdout ---\n{stdout}\n\
         --- stderr ---\n{stderr}",
        output.status
    );
    drop(server);
}

/// The child half: a wall clock [`SKEW`] ahead of the server's. Stores an event of one actor,
/// then saves a batch of another whose second event reuses that event's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child half of the clock-skew test, which runs it with a skewed clock"]
async fn skewed_child_saves_a_batch_reusing_a_stored_id() {
    let url = std::env::var(URL_ENV).unwrap_or_else(|_| {
        panic!(
            "{URL_ENV} is not set: this test is run by \
             a_batch_reusing_a_stored_id_is_refused_by_name_with_the_client_clock_hours_ahead"
        )
    });
    let namespace =
        Namespace::new(format!("skew-{}", uuid::Uuid::now_v7().simple())).expect("namespace");
    let config = JetStreamConfig::default();
    let scan_window = config.duplicate_window + Duration::from_secs(5);
    let store = JetStreamEventStore::connect_with(&url, namespace, config)
        .await
        .unwrap_or_else(|e| panic!("open store at {url}: {e}"));

    let (a, b) = (
        ActorId::new("cart-a").expect("actor"),
        ActorId::new("cart-b").expect("actor"),
    );
    let taken = Event::new(b.clone(), "Opened", 1);
    store.save_event(taken.clone()).await.expect("b v1");

    // The skew must be real, and larger than the scan window, or this test proves nothing.
    let js = async_nats::jetstream::new(store.client().clone());
    let mut stream = js
        .get_stream(store.stream_name())
        .await
        .unwrap_or_else(|e| panic!("get stream: {e}"));
    let server_time = stream
        .info()
        .await
        .unwrap_or_else(|e| panic!("stream info: {e}"))
        .state
        .last_timestamp;
    let ahead = time::OffsetDateTime::now_utc() - server_time;
    assert!(
        ahead > time::Duration::try_from(scan_window).expect("window"),
        "this process's clock is only {ahead} ahead of the server's (last message at \
         {server_time}), not more than the scan window {scan_window:?}: is libfaketime preloaded \
         (LD_PRELOAD, FAKETIME={SKEW})?"
    );
    println!("client clock {ahead} ahead of the server's");

    let mut reusing = Event::new(a.clone(), "Added", 2);
    reusing.id = taken.id.clone();
    let batch = vec![Event::new(a.clone(), "Opened", 1), reusing];
    let result = store.save_events(batch).await;
    match result {
        Err(StoreError::EventIdReused {
            id,
            existing_actor,
            existing_version,
        }) => {
            assert_eq!(
                (id, existing_actor, existing_version),
                (taken.id.clone(), b.clone(), 1)
            );
        }
        other => panic!("expected EventIdReused naming {b} v1, got {other:?}"),
    }
    let history = store.events(&a, 0).await.expect("replay a");
    assert!(history.is_empty(), "the refused batch stored {history:?}");
}
