//! The benchmark keeps working: every scenario at tiny sizes (`--smoke`),
//! including its references (write rate with walhook stopped, the pg_recvlogical
//! ceiling, the naive Python peer) and CPU per event, and the comparison of two
//! walhook binaries in one run. Checks that each scenario produced its figures;
//! asserts nothing about speed.
//!
//! The bench is a workspace member of its own (`bench/walhook-bench`), linked
//! here as a dev-dependency and run in-process with its command line, against
//! this package's `walhook` binary.

use clap::Parser;

fn bench_options(args: &[&std::ffi::OsStr]) -> walhook_bench::Options {
    let walhook = std::ffi::OsStr::new("walhook-bench");
    walhook_bench::Options::try_parse_from(std::iter::once(walhook).chain(args.iter().copied()))
        .unwrap()
}

fn figures(out: &std::path::Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(out.join("run-1.json")).unwrap()).unwrap()
}

fn has(figures: &[serde_json::Value], walhook: &str, scenario: &str, name: &str) -> bool {
    figures.iter().any(|f| {
        f["walhook"] == walhook
            && f["scenario"] == scenario
            && f["name"] == name
            && f["value"].as_f64().unwrap() > 0.0
    })
}

// One test: the two bench runs go one after the other, each with a cluster of
// its own.
#[tokio::test(flavor = "multi_thread")]
async fn benchmark_smoke_runs() {
    benchmark_smoke_run_produces_every_figure().await;
    two_binaries_are_compared_in_one_run().await;
}

async fn benchmark_smoke_run_produces_every_figure() {
    let python = crate::support::python::venv_python();
    let out = tempfile::tempdir().unwrap();
    let options = bench_options(&[
        "--smoke".as_ref(),
        "--runs".as_ref(),
        "1".as_ref(),
        "--out".as_ref(),
        out.path().as_os_str(),
        "--walhook".as_ref(),
        env!("CARGO_BIN_EXE_walhook").as_ref(),
        "--python".as_ref(),
        python.as_os_str(),
    ]);
    let table = walhook_bench::run(&options).await.unwrap();
    let figures = figures(out.path());
    for (scenario, name) in [
        ("drain 100-row", "walhook / write rate"),
        ("drain 100-row", "walhook"),
        ("drain 100-row", "write rate (walhook stopped)"),
        ("drain 100-row", "pg_recvlogical ceiling"),
        ("drain 100-row", "naive peer"),
        ("drain 100-row", "walhook CPU per event"),
        ("drain 100-row", "PostgreSQL CPU per event"),
        ("drain 100-row", "peak RSS"),
        ("drain 1-row", "walhook"),
        ("drain 1-row", "write rate (walhook stopped)"),
        ("live 200/s", "latency p99"),
        ("live max", "PostgreSQL max rate (walhook stopped)"),
        ("live max", "latency p99"),
        ("live max", "peak RSS"),
        ("fan-out x10", "deliveries"),
        ("two instances", "deliveries"),
        ("two instances", "walhook CPU per event"),
        ("two instances", "peak RSS"),
        ("drain 100-row", "events stored"),
        ("hung neighbour", "walhook"),
        ("hung neighbour", "events stored"),
        ("hung neighbour", "stored / drain 100-row"),
        ("hung neighbour", "connections to the hung receiver"),
        ("dead receiver", "drain after outage"),
        ("1 big txn", "peak RSS"),
    ] {
        assert!(
            has(&figures, "walhook", scenario, name),
            "no {scenario} / {name} in {figures:?}"
        );
    }
    assert!(
        table.contains("| drain 100-row | walhook / ceiling |"),
        "{table}"
    );
    assert_eq!(
        table,
        std::fs::read_to_string(out.path().join("table.md")).unwrap()
    );
    let svg = std::fs::read_to_string(out.path().join("latency-run-1.svg")).unwrap();
    assert!(svg.contains("<polyline"), "latency plot has no curve");
}

async fn two_binaries_are_compared_in_one_run() {
    let out = tempfile::tempdir().unwrap();
    let walhook = env!("CARGO_BIN_EXE_walhook");
    let (before, after) = (format!("before={walhook}"), format!("after={walhook}"));
    let options = bench_options(&[
        "--smoke".as_ref(),
        "--only".as_ref(),
        "drain1".as_ref(),
        "--out".as_ref(),
        out.path().as_os_str(),
        "--walhook-bin".as_ref(),
        before.as_ref(),
        "--walhook-bin".as_ref(),
        after.as_ref(),
    ]);
    let table = walhook_bench::run(&options).await.unwrap();
    let figures = figures(out.path());
    for label in ["before", "after"] {
        assert!(
            has(&figures, label, "drain 1-row", "walhook / write rate"),
            "no {label} drain in {figures:?}"
        );
    }
    assert!(
        table.starts_with("| scenario | figure | before: median |"),
        "{table}"
    );
    assert!(table.contains("| after / before | unit |"), "{table}");
    assert!(table.contains("| drain 1-row | walhook |"), "{table}");
}
