//! `walhook dev --once`: the README's first command, end to end, and its
//! cleanup; and the message when no PostgreSQL binaries exist.

use std::process::Command;
use std::time::{Duration, Instant};

const SAMPLE_EVENTS: [(&str, usize); 7] = [
    ("organisation.created", 1),
    ("authorisation_server.created", 1),
    ("software_statement.created", 1),
    ("certificate.created", 2),
    ("organisation.updated", 1),
    ("software_statement.suspended", 1),
    ("certificate.disabled", 2),
];

fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

/// `walhook dev --once` with `args` after `dev`: its stdout, once it exited 0.
fn dev_once(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_walhook"))
        .arg("dev")
        .args(args)
        .args(["--once", "--http-addr", "127.0.0.1:0"])
        .env_remove("WALHOOK_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn dev_once_delivers_and_verifies_every_sample_event_then_cleans_up() {
    let stdout = dev_once(&[]);
    let verified: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("signatures ok"))
        .collect();
    for (event_type, n) in SAMPLE_EVENTS {
        let got = verified
            .iter()
            .filter(|l| l.split_whitespace().next() == Some(event_type))
            .count();
        assert_eq!(got, n, "{event_type} verified {got} times:\n{stdout}");
    }
    assert!(
        verified
            .iter()
            .any(|l| l.starts_with("  software_statement.suspension_lifted ")),
        "{stdout}"
    );
    assert_eq!(verified.len(), 10, "{stdout}");
    assert!(!stdout.contains("NOT VERIFIED"), "{stdout}");
    assert!(stdout.contains("all 10 sample events delivered and verified"));

    // the cluster's folder is gone and nothing started from it is left running
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("stopping PostgreSQL and removing "))
        .expect("names its folder")
        .trim()
        .to_owned();
    assert!(dir.contains("walhook-dev-"), "{dir}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_mentioning(&dir);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left running: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dev_example_iam_once_delivers_every_event_name_of_the_vocabulary() {
    let stdout = dev_once(&["--example", "iam"]);
    assert!(stdout.contains("(sql/examples/iam.sql)"), "{stdout}");
    let verified: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("signatures ok"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for event_type in crate::support::IAM_VOCABULARY {
        assert!(
            verified.contains(event_type),
            "{event_type} not verified:\n{stdout}"
        );
    }
    // bob and carol went in one transaction: one bulk event, alice's own delete
    assert_eq!(
        verified
            .iter()
            .filter(|t| **t == "user.bulk_deleted")
            .count(),
        1
    );
    assert_eq!(verified.iter().filter(|t| **t == "user.deleted").count(), 1);
    assert_eq!(verified.len(), 33, "{stdout}");
    assert!(!stdout.contains("NOT VERIFIED"), "{stdout}");
    assert!(stdout.contains("all 33 sample events delivered and verified"));
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("stopping PostgreSQL and removing "))
        .expect("names its folder")
        .trim();
    assert!(!std::path::Path::new(dir).exists(), "{dir} left behind");
}

#[test]
fn dev_refuses_an_unknown_example_naming_the_known_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_walhook"))
        .args(["dev", "--example", "shop", "--once"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("directory") && stderr.contains("iam"),
        "{stderr}"
    );
}

#[test]
fn dev_without_postgres_binaries_says_how_to_get_them() {
    let out = Command::new(env!("CARGO_BIN_EXE_walhook"))
        .args(["dev", "--once", "--http-addr", "127.0.0.1:0"])
        .env("PG_BIN", "/nonexistent/postgresql/bin")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
    assert!(stderr.contains("docker compose up"), "{stderr}");
}

#[test]
fn killed_dev_leaves_no_cluster_behind() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_walhook"))
        .args(["dev", "--http-addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut dir = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.split("under ").nth(1) {
            dir = Some(rest.trim_end_matches(')').to_owned());
        }
        if line.contains("make more changes by hand") {
            break;
        }
    }
    let dir = dir.expect("names its folder");
    assert!(std::path::Path::new(&dir).exists());
    child.kill().unwrap(); // SIGKILL: no cleanup code of ours runs
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !processes_mentioning(&dir).is_empty() || std::path::Path::new(&dir).exists() {
        assert!(
            Instant::now() < deadline,
            "after SIGKILL, still there: {dir} {:?}",
            processes_mentioning(&dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readme_first_command_names_no_binary_so_walhook_is_the_default_run() {
    // README: `cargo run --release -- dev`; with walhook-bench a default member,
    // cargo needs `default-run` to know which binary that is.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(readme.contains("cargo run --release -- dev"));
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    assert!(
        manifest
            .lines()
            .any(|l| l.trim() == r#"default-run = "walhook""#),
        "Cargo.toml must set default-run = \"walhook\""
    );
}
