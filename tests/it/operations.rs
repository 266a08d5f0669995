//! Operating the daemon: metrics, health, status, graceful shutdown, standby.

use std::time::Duration;

use crate::support::{
    ChildProcess, Cluster, Receiver, TestDb, items_table, migrate, scalar, wait_until, walhook,
    walhook_run, walhook_streaming,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

fn prepare(db: &TestDb<'_>, receiver: &Receiver) {
    items_table(db, "");
    db.psql(&format!(
        "INSERT INTO walhook.subscriptions (name, url) VALUES ('demo', '{}')",
        receiver.url()
    ));
}

async fn get(process: &ChildProcess, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", process.http_addr.as_ref().unwrap());
    let response = reqwest::get(&url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The value of the sample line starting with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_health_and_status_report_the_flow() {
    let db = Cluster::shared().new_database();
    let receiver = Receiver::start().await;
    prepare(&db, &receiver);
    let daemon = walhook_streaming(&db);
    assert_eq!(get(&daemon, "/healthz").await.0, 200);
    wait_until(WAIT, "ready", || async {
        (get(&daemon, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    db.psql("INSERT INTO items SELECT generate_series(1, 3)");
    wait_until(WAIT, "three deliveries", || async {
        (receiver.count() >= 3).then_some(())
    })
    .await;
    let metrics = wait_until(WAIT, "delivery metrics", || async {
        let m = get(&daemon, "/metrics").await.1;
        (sample(&m, "walhook_deliveries_total{").unwrap_or(0.0) >= 3.0).then_some(m)
    })
    .await;
    for name in [
        "walhook_changes_received_total",
        "walhook_events_total",
        "walhook_deliveries_total",
        "walhook_delivery_duration_seconds",
        "walhook_end_to_end_latency_seconds",
        "walhook_stored_latency_seconds",
        "walhook_write_batch_duration_seconds",
        "walhook_dispatch_wait_seconds",
        "walhook_signing_duration_seconds",
        "walhook_replication_lag_bytes",
        "walhook_pending_deliveries",
        "walhook_in_flight_requests",
        "process_resident_memory_bytes",
    ] {
        assert!(
            metrics.contains(&format!("# HELP {name}"))
                || metrics.contains(&format!("# HELP walhook_{name}")),
            "{name} missing:\n{metrics}"
        );
    }
    assert_eq!(
        sample(&metrics, "walhook_events_total{type=\"item.created\"}"),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "walhook_changes_received_total{op=\"insert\",table=\"public.items\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&metrics, "walhook_end_to_end_latency_seconds_count"),
        Some(3.0)
    );
    // the stages between a commit and its request: each stored event and
    // each attempt is counted
    let stage = |name: &str| sample(&metrics, &format!("walhook_{name}_count")).unwrap_or(0.0);
    for (name, at_least) in [
        ("stored_latency_seconds", 3.0),
        ("write_batch_duration_seconds", 1.0),
        ("dispatch_wait_seconds", 3.0),
        ("signing_duration_seconds", 3.0),
    ] {
        assert!(
            stage(name) >= at_least,
            "{name} below {at_least}:\n{metrics}"
        );
    }
    // promtool (Debian package prometheus) accepts the exposition
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus; .ci/run installs it)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // JWKS is cacheable and public
    let url = format!(
        "http://{}/.well-known/jwks.json",
        daemon.http_addr.as_ref().unwrap()
    );
    let response = reqwest::get(&url).await.unwrap();
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let jwks: Value = response.json().await.unwrap();
    assert_eq!(jwks["keys"][0]["use"], "sig");
    assert!(jwks["keys"][0].get("d").is_none());
    // walhook status, as a table and as JSON
    let (ok, out, err) = walhook(&["status", "--database-url", &db.url(), "--slot", &db.slot]);
    assert!(ok.success(), "{err}");
    assert!(
        out.contains(&format!("slot {}", db.slot))
            && out.contains("active         yes")
            && out.contains("item.created"),
        "{out}"
    );
    let (ok, out, _) = walhook(&[
        "status",
        "--json",
        "--database-url",
        &db.url(),
        "--slot",
        &db.slot,
    ]);
    assert!(ok.success());
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["slot"]["active"], true);
    assert_eq!(status["pending_deliveries"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_exits_zero_and_parks_nothing_in_flight() {
    let db = Cluster::shared().new_database();
    let receiver = Receiver::start().await;
    prepare(&db, &receiver);
    let mut walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items SELECT generate_series(1, 5000)");
    wait_until(WAIT, "deliveries under way", || async {
        (receiver.count() > 500).then_some(())
    })
    .await;
    walhook.signal(libc::SIGTERM);
    let status = walhook
        .wait_exit(Duration::from_secs(30))
        .expect("exits within 30 s");
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        walhook.log()
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM walhook.deliveries WHERE lease_owner IS NOT NULL"
        )
        .await,
        0,
        "no delivery left in flight"
    );
    let _again = walhook_streaming(&db);
    wait_until(
        Duration::from_secs(60),
        "every delivery succeeded",
        || async {
            (scalar(
                &db,
                "SELECT count(*) FROM walhook.deliveries WHERE status = 'succeeded'",
            )
            .await
                == 5000)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM walhook.events").await,
        5000
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_within_ten_seconds() {
    let db = Cluster::shared().new_database();
    let receiver = Receiver::start().await;
    prepare(&db, &receiver);
    let mut active = walhook_streaming(&db);
    let standby = walhook_run(&db.url(), &db.slot, &db.publication, &[]);
    standby.wait_for_log("waiting as standby", Duration::from_secs(60));
    wait_until(WAIT, "standby ready", || async {
        let (code, body) = get(&standby, "/readyz").await;
        (code == 200 && body.contains("standby")).then_some(())
    })
    .await;
    let streaming = |metrics: String| sample(&metrics, "walhook_slot_streaming ");
    assert_eq!(streaming(get(&standby, "/metrics").await.1), Some(0.0));
    assert_eq!(streaming(get(&active, "/metrics").await.1), Some(1.0));
    let (_, out, _) = walhook(&["status", "--database-url", &db.url(), "--slot", &db.slot]);
    assert!(out.contains("active         yes"), "{out}");
    active.kill_9();
    let killed = std::time::Instant::now();
    let log_before = standby.log().matches("streaming").count();
    wait_until(Duration::from_secs(10), "takeover", || async {
        (standby.log().matches("streaming").count() > log_before).then_some(())
    })
    .await;
    assert!(killed.elapsed() < Duration::from_secs(10));
    assert_eq!(streaming(get(&standby, "/metrics").await.1), Some(1.0));
    assert_eq!(get(&standby, "/readyz").await.1, "ready: streaming\n");
    db.psql("INSERT INTO items VALUES (1)");
    wait_until(WAIT, "delivery after takeover", || async {
        (receiver.count() >= 1).then_some(())
    })
    .await;
}

/// `walhook replay` matches patterns like delivery creation does (`_` is not a
/// wildcard) and keeps each event's position in its transaction (`seq`).
#[test]
fn replay_matches_patterns_exactly_and_keeps_seq() {
    let db = Cluster::shared().database();
    migrate(&db.url());
    let ids = db.psql(
        "INSERT INTO walhook.subscriptions (name, url, events) VALUES
             ('target', 'https://receiver.example/hook', '{software_statement.*}'),
             ('other', 'https://other.example/hook', '{*}');
         INSERT INTO walhook.events (id, type, apiresource, revision, commit_lsn, commit_time, body, seq) VALUES
             ('00000000-0000-0000-0000-000000000001', 'software_statement.created', '/s/1', 10, '0/100', now(), '{}', 2),
             ('00000000-0000-0000-0000-000000000002', 'softwareXstatement.created', '/s/2', 11, '0/100', now(), '{}', 3),
             ('00000000-0000-0000-0000-000000000003', 'software_statement.updated', '/s/1', 12, '0/100', now(), '{}', NULL),
             ('00000000-0000-0000-0000-000000000004', 'software_statement.deleted', '/s/1', 99, '0/200', now(), '{}', 0);
         -- an event stored before events.seq: its seq is on its other deliveries
         INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn, seq)
              SELECT '00000000-0000-0000-0000-000000000003', id, '/s/1', '0/100', 5
                FROM walhook.subscriptions WHERE name = 'other';
         SELECT id FROM walhook.subscriptions WHERE name = 'target'",
    );
    let target = ids.trim().lines().last().unwrap().trim().to_owned();
    let (status, out, err) = walhook(&[
        "replay",
        "--subscription",
        &target,
        "--from-revision",
        "10",
        "--to-revision",
        "50",
        "--database-url",
        &db.url(),
    ]);
    assert!(status.success(), "{err}");
    assert!(out.contains("queued 2 deliveries"), "{out}");
    let queued = db.psql(&format!(
        "SELECT string_agg(right(event_id::text, 1) || ':' || seq, ',' ORDER BY event_id)
           FROM walhook.deliveries WHERE subscription_id = '{target}'"
    ));
    assert_eq!(queued.trim(), "1:2,3:5");
    let (status, _, err) = walhook(&[
        "replay",
        "--subscription",
        "00000000-0000-0000-0000-00000000dead",
        "--from-revision",
        "0",
        "--database-url",
        &db.url(),
    ]);
    assert!(!status.success());
    assert!(err.contains("no subscription"), "{err}");
}

/// The steps of an attempt are spans a log reader can follow: with
/// `RUST_LOG=debug` and `--log-format json`, an attempt's lines carry the
/// `deliver` span (with the subscription and the event) and their step's
/// own span.
#[tokio::test(flavor = "multi_thread")]
async fn an_attempts_steps_are_spans_in_the_json_log() {
    let db = Cluster::shared().new_database();
    let receiver = Receiver::start().await;
    prepare(&db, &receiver);
    let http_addr = format!("127.0.0.1:{}", crate::support::cluster::free_port());
    let mut cmd = std::process::Command::new(crate::support::process::walhook_bin());
    cmd.args(["run", "--database-url", &db.url(), "--slot", &db.slot])
        .args(["--publication", &db.publication, "--log-format", "json"])
        .args(["--http-addr", &http_addr])
        .env_remove("WALHOOK_LOG")
        .env("RUST_LOG", "debug");
    let walhook = ChildProcess::spawn(cmd);
    walhook.wait_for_log("streaming", WAIT);
    db.psql("INSERT INTO items (id) VALUES (1)");
    walhook.wait_for_log("request sent", WAIT);
    let log = walhook.log();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let spans_of = |message: &str| -> Vec<Value> {
        let line = lines
            .iter()
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no JSON line {message:?} in:\n{log}"));
        line["spans"].as_array().cloned().unwrap_or_default()
    };
    for (message, step) in [("request prepared", "prepare"), ("request sent", "send")] {
        let spans = spans_of(message);
        let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
        assert!(names.ends_with(&["deliver", step]), "{message}: {names:?}");
        let deliver = spans.iter().find(|s| s["name"] == "deliver").unwrap();
        assert!(
            deliver["subscription_id"].is_string() && deliver["event_id"].is_string(),
            "{deliver}"
        );
        assert_eq!(spans.last().unwrap()["attempt"], 1, "{message}");
    }
}
