//! The benchmark keeps working: every scenario at tiny sizes (`--smoke`),
//! including the pg_recvlogical ceiling and the naive Python peer. Checks that
//! each scenario produced its figures; asserts nothing about speed.

mod support;

use std::process::Command;

#[test]
fn benchmark_smoke_run_produces_every_figure() {
    let python = support::python::venv_python();
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_walhook-bench"))
        .args(["--smoke", "--runs", "1", "--out"])
        .arg(out.path())
        .arg("--walhook")
        .arg(env!("CARGO_BIN_EXE_walhook"))
        .arg("--python")
        .arg(&python)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "walhook-bench failed:\n{stderr}");
    let figures: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("run-1.json")).unwrap())
            .unwrap();
    let has = |scenario: &str, name: &str| {
        figures.iter().any(|f| {
            f["scenario"] == scenario && f["name"] == name && f["value"].as_f64().unwrap() > 0.0
        })
    };
    for (scenario, name) in [
        ("drain 100-row", "walhook"),
        ("drain 100-row", "pg_recvlogical ceiling"),
        ("drain 100-row", "naive peer"),
        ("drain 1-row", "walhook"),
        ("live max", "latency p99"),
        ("fan-out x10", "deliveries"),
        ("dead receiver", "drain after outage"),
        ("1 big txn", "peak RSS"),
    ] {
        assert!(has(scenario, name), "no {scenario} / {name} in {figures:?}");
    }
    let table = std::fs::read_to_string(out.path().join("table.md")).unwrap();
    assert!(
        table.contains("| drain 100-row | walhook / ceiling |"),
        "{table}"
    );
    let svg = std::fs::read_to_string(out.path().join("latency-run-1.svg")).unwrap();
    assert!(svg.contains("<polyline"), "latency plot has no curve");
}
