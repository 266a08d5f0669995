//! The container deployment (`Dockerfile`, `docker-compose.yml`,
//! `deploy/prometheus.yml`) checked without a Docker engine: the YAML is parsed
//! with PyYAML in the test virtualenv, the Prometheus config by `promtool`, and
//! the compose `setup` script is run for real (twice) against a throwaway
//! PostgreSQL database with the walhook binary and psql.

use crate::support::Cluster;
use crate::support::cluster::pg_bin;
use crate::support::python::venv_python;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A YAML file of the repository as JSON, parsed by PyYAML (`yaml.safe_load`).
fn yaml(path: &str) -> Value {
    let out = Command::new(venv_python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(root().join(path))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "PyYAML rejects {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("PyYAML output is JSON")
}

fn services() -> serde_json::Map<String, Value> {
    let compose = yaml("docker-compose.yml");
    compose["services"]
        .as_object()
        .expect("docker-compose.yml has a services map")
        .clone()
}

fn service(name: &str) -> Value {
    services()
        .remove(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name}"))
}

/// Compose's `${NAME:-default}` / `${NAME-default}` interpolation, with NAME unset
/// (the defaults are what a plain `docker compose up` uses), and `$$` → `$`.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body) = tail.strip_prefix("${") {
            let end = body.find('}').expect("unclosed ${ in docker-compose.yml");
            let expr = &body[..end];
            if let Some((_, default)) = expr.split_once(":-").or_else(|| expr.split_once('-')) {
                out.push_str(default);
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// A service's environment (map or `KEY=value` list form), interpolated.
fn env(service: &Value) -> BTreeMap<String, String> {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), interpolate(&text(v))))
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str()?.split_once('='))
            .map(|(k, v)| (k.to_owned(), interpolate(v)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A command or entrypoint (string or list form) as its words.
fn words(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The value after `--flag` in a command.
fn flag(command: &[String], name: &str) -> Option<String> {
    let at = command.iter().position(|w| w == name)?;
    command.get(at + 1).cloned()
}

/// The compose `setup` service's shell script.
fn setup_script() -> String {
    let setup = service("setup");
    let entrypoint = words(&setup["entrypoint"]);
    assert!(
        entrypoint.first().is_some_and(|e| e.ends_with("sh")) && entrypoint.contains(&"-ec".into()),
        "setup must run its command as a `sh -ec` script (stop at the first failure), got {entrypoint:?}"
    );
    let command = words(&setup["command"]);
    assert_eq!(command.len(), 1, "setup's command is one script");
    let text = setup["command"][0].as_str().unwrap();
    interpolate(text)
}

#[test]
fn services_exist_and_postgres_has_logical_wal() {
    let all = services();
    for name in ["postgres", "setup", "walhook", "receiver", "prometheus"] {
        assert!(
            all.contains_key(name),
            "docker-compose.yml lacks service {name}"
        );
    }
    let postgres = service("postgres");
    let image = postgres["image"].as_str().unwrap_or_default();
    assert!(image.starts_with("postgres:"), "postgres image: {image}");
    let command = words(&postgres["command"]).join(" ");
    assert!(
        command.contains("wal_level=logical"),
        "postgres must run with wal_level=logical, command: {command}"
    );
    let health = words(&postgres["healthcheck"]["test"]).join(" ");
    assert!(
        health.contains("pg_isready"),
        "postgres healthcheck: {health}"
    );
}

#[test]
fn walhook_listens_on_all_interfaces_after_setup() {
    let walhook = service("walhook");
    let vars = env(&walhook);
    assert_eq!(
        vars.get("WALHOOK_HTTP_ADDR").map(String::as_str),
        Some("0.0.0.0:9750"),
        "walhook must bind 0.0.0.0:9750 in a container"
    );
    assert_eq!(
        walhook["depends_on"]["setup"]["condition"], "service_completed_successfully",
        "walhook must start only after setup completed"
    );
    assert!(
        words(&walhook["command"]).contains(&"run".into()),
        "walhook service runs `walhook run`"
    );
    // the database user is the postgres image's superuser, which has REPLICATION
    let postgres_env = env(&service("postgres"));
    let user = &postgres_env["POSTGRES_USER"];
    for name in ["walhook", "setup"] {
        let url = env(&service(name))
            .remove("WALHOOK_DATABASE_URL")
            .unwrap_or_else(|| panic!("{name} has no WALHOOK_DATABASE_URL"));
        let parsed = url::Url::parse(&url).expect("database URL");
        assert_eq!(parsed.host_str(), Some("postgres"), "{name}: {url}");
        assert_eq!(parsed.username(), user, "{name} connects as POSTGRES_USER");
        assert_eq!(
            parsed.password(),
            postgres_env.get("POSTGRES_PASSWORD").map(String::as_str),
            "{name}'s password is POSTGRES_PASSWORD"
        );
        let db = postgres_env.get("POSTGRES_DB").unwrap_or(user);
        assert_eq!(parsed.path(), format!("/{db}"), "{name} uses POSTGRES_DB");
    }
}

#[test]
fn walhook_environment_names_are_real_options() {
    let sources = ["src/config.rs", "src/main.rs"]
        .map(|f| std::fs::read_to_string(root().join(f)).unwrap())
        .join("\n");
    for (name, svc) in services() {
        for key in env(&svc).keys().filter(|k| k.starts_with("WALHOOK_")) {
            assert!(
                sources.contains(&format!("\"{key}\"")),
                "service {name} sets {key}, which walhook does not read"
            );
        }
    }
}

#[test]
fn receiver_matches_the_setup_subscription() {
    let receiver = service("receiver");
    assert!(
        words(&receiver["entrypoint"]).contains(&"receiver".into()),
        "receiver service runs the example receiver"
    );
    assert_eq!(
        receiver["depends_on"]["walhook"]["condition"], "service_healthy",
        "the receiver loads the JWKS at start: it must wait for walhook"
    );
    let command = words(&receiver["command"]);
    let source = std::fs::read_to_string(root().join("examples/receiver.rs")).unwrap();
    for word in command.iter().filter(|w| w.starts_with("--")) {
        let field = format!("{}:", word.trim_start_matches("--").replace('-', "_"));
        assert!(source.contains(&field), "the receiver has no option {word}");
    }

    let secret = env(&receiver)
        .remove("WEBHOOK_SECRET")
        .expect("receiver secret");
    assert_eq!(
        env(&service("setup")).get("WEBHOOK_SECRET"),
        Some(&secret),
        "setup subscribes the receiver with the receiver's secret"
    );
    let raw = secret
        .strip_prefix("whsec_")
        .and_then(|b| STANDARD.decode(b).ok())
        .expect("secret is whsec_ + base64");
    assert!(
        (24..=64).contains(&raw.len()),
        "secret decodes to 24..64 bytes"
    );

    let listen = flag(&command, "--listen").expect("receiver --listen");
    assert!(
        listen.starts_with("0.0.0.0:"),
        "receiver listens on all interfaces"
    );
    let port = listen.rsplit(':').next().unwrap();
    let target = format!("http://receiver:{port}/");
    assert!(
        setup_script().contains(&target),
        "setup subscribes {target}..., the receiver's address"
    );
    let http_port = env(&service("walhook"))["WALHOOK_HTTP_ADDR"]
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        flag(&command, "--jwks-url").as_deref(),
        Some(format!("http://walhook:{http_port}/.well-known/jwks.json").as_str())
    );
}

#[test]
fn prometheus_scrapes_walhook() {
    let config = yaml("deploy/prometheus.yml");
    let targets: Vec<(String, String)> = config["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| {
            let path = job["metrics_path"]
                .as_str()
                .unwrap_or("/metrics")
                .to_owned();
            job["static_configs"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["targets"].as_array().into_iter().flatten())
                .filter_map(|t| Some((t.as_str()?.to_owned(), path.clone())))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        targets.contains(&("walhook:9750".into(), "/metrics".into())),
        "prometheus must scrape walhook:9750/metrics, targets: {targets:?}"
    );
    let volumes = words(&service("prometheus")["volumes"]);
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with("./deploy/prometheus.yml:/etc/prometheus/prometheus.yml")),
        "prometheus mounts deploy/prometheus.yml where it reads its config: {volumes:?}"
    );
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(root().join("deploy/prometheus.yml"))
        .output()
        .expect("promtool (apt-get install prometheus; .ci/run installs it)");
    assert!(
        out.status.success(),
        "promtool rejects deploy/prometheus.yml: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mounted_files_and_build_contexts_exist() {
    let compose = yaml("docker-compose.yml");
    let named = compose["volumes"].as_object().cloned().unwrap_or_default();
    let mut mounts = 0;
    for (name, svc) in services() {
        for volume in words(&svc["volumes"]) {
            let source = volume.split(':').next().unwrap();
            if source.starts_with('.') || source.starts_with('/') {
                assert!(
                    root().join(source).exists(),
                    "{name} mounts missing {source}"
                );
                mounts += 1;
            } else {
                assert!(
                    named.contains_key(source),
                    "{name} uses undeclared volume {source}"
                );
            }
        }
        let build = &svc["build"];
        let context = build.as_str().or(build["context"].as_str());
        if let Some(context) = context {
            let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
            let path = root().join(context).join(dockerfile);
            assert!(
                path.is_file(),
                "{name} builds from missing {}",
                path.display()
            );
        }
    }
    assert!(
        mounts >= 2,
        "the directory.sql and prometheus.yml mounts were checked"
    );
}

/// The Dockerfile's instructions, continuation lines joined: (stage index, line).
fn dockerfile() -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let mut stage = 0;
    let mut out = Vec::new();
    for line in joined.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("FROM ") && !out.is_empty() {
            stage += 1;
        }
        out.push((stage, line.to_owned()));
    }
    out
}

#[test]
fn dockerfile_builds_both_binaries_from_existing_sources() {
    let lines = dockerfile();
    let froms: Vec<&str> = lines
        .iter()
        .filter(|(_, l)| l.starts_with("FROM "))
        .map(|(_, l)| l.as_str())
        .collect();
    assert_eq!(froms.len(), 2, "builder + runtime stages: {froms:?}");
    assert!(
        froms[0].starts_with("FROM rust:1-bookworm AS builder"),
        "{}",
        froms[0]
    );
    assert!(
        froms[1].starts_with("FROM debian:bookworm-slim"),
        "{}",
        froms[1]
    );
    let stage = |n: usize| {
        lines
            .iter()
            .filter(move |(s, _)| *s == n)
            .map(|(_, l)| l.as_str())
    };

    let mut copied = Vec::new();
    for (_, line) in lines.iter().filter(|(_, l)| l.starts_with("COPY ")) {
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        if args.iter().any(|a| a.starts_with("--from=")) {
            continue;
        }
        let args: Vec<&str> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
        for source in &args[..args.len() - 1] {
            assert!(
                root().join(source).exists(),
                "Dockerfile copies missing {source}"
            );
            copied.push(source.trim_end_matches('/').to_owned());
        }
    }
    // the manifest, the lock (--locked), the crate, include_str!'d SQL, the
    // example, and the workspace's other member (cargo loads every member)
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "sql",
        "examples",
        "bench/walhook-bench",
    ] {
        assert!(
            copied.iter().any(|c| c == needed),
            "the builder needs {needed}"
        );
    }

    let build = stage(0)
        .find(|l| l.contains("cargo build"))
        .expect("builder runs cargo build");
    for needed in [
        "--release",
        "--locked",
        "--bin walhook",
        "--example receiver",
    ] {
        assert!(
            build.contains(needed),
            "cargo build lacks {needed}: {build}"
        );
    }
    let runtime: Vec<&str> = stage(1).collect();
    for binary in ["walhook", "receiver"] {
        assert!(
            runtime.iter().any(|l| l.starts_with("COPY --from=builder")
                && l.ends_with(&format!("/usr/local/bin/{binary}"))),
            "the runtime image lacks {binary}"
        );
    }
    let apt = runtime
        .iter()
        .find(|l| l.contains("apt-get install"))
        .expect("apt-get install");
    // https targets; psql for setup; curl for walhook's compose healthcheck
    for package in ["ca-certificates", "postgresql-client", "curl"] {
        assert!(apt.contains(package), "the runtime image lacks {package}");
    }
    let user = runtime
        .iter()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(
        !user.contains("root") && !user.contains(" 0"),
        "runs as root: {user}"
    );
    assert!(runtime.contains(&"EXPOSE 9750"), "EXPOSE 9750");
}

#[test]
fn setup_script_configures_a_real_database() {
    let db = Cluster::shared().database();
    let setup = service("setup");
    let mut script = setup_script();
    // container paths → the repository files mounted there
    for volume in words(&setup["volumes"]) {
        let mut parts = volume.split(':');
        let (source, target) = (parts.next().unwrap(), parts.next().unwrap());
        script = script.replace(target, &root().join(source).display().to_string());
    }
    let bins: Vec<PathBuf> = [PathBuf::from(env!("CARGO_BIN_EXE_walhook")), pg_bin("psql")]
        .iter()
        .map(|p| p.parent().unwrap().to_owned())
        .collect();
    let path = std::env::join_paths(bins.into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let vars = env(&setup);
    // twice: `docker compose up` runs setup on every start
    for run in 1..=2 {
        let out = Command::new("sh")
            .args(["-ec", &script])
            .envs(&vars)
            .env("WALHOOK_DATABASE_URL", db.url())
            .env("PATH", &path)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "setup run {run} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        db.psql("SELECT value FROM walhook.settings WHERE key = 'allow_insecure_targets'"),
        "true"
    );
    let routes: i64 = db
        .psql("SELECT count(*) FROM walhook.routes")
        .parse()
        .unwrap();
    assert!(routes > 0, "directory.sql's routes are loaded");
    assert_eq!(
        db.psql("SELECT count(*) FROM walhook.signing_keys"),
        "1",
        "walhook migrate made one signing key"
    );
    let subscriptions = db.psql("SELECT url || ' ' || secret FROM walhook.subscriptions");
    assert_eq!(
        subscriptions,
        format!("http://receiver:8088/webhooks {}", vars["WEBHOOK_SECRET"]),
        "exactly one subscription, the receiver's, with its secret"
    );
}
