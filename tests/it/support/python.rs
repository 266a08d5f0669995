//! The Python virtualenv with the independent verifiers' packages
//! (tests/py/requirements.txt), created once at `target/test-venv`.
//!
//! An atomic `mkdir` lock keeps concurrent test binaries from installing it
//! twice, and a stamp file written after `pip install` succeeds tells the others
//! the venv is complete (the interpreter exists long before the packages do).
//! The stamp holds the requirements it was made from, so a venv made before a
//! requirement was added gets it installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub fn venv_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/test-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join(".walhook-ready");
    let lock = root.join("target/test-venv.lock");
    let requirements = std::fs::read_to_string(root.join("tests/py/requirements.txt"))
        .expect("read tests/py/requirements.txt");
    let deadline = Instant::now() + Duration::from_secs(900);
    while std::fs::read_to_string(&stamp).ok().as_ref() != Some(&requirements) {
        std::fs::create_dir_all(root.join("target")).expect("create target/");
        if std::fs::create_dir(&lock).is_ok() {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success())
                && Command::new(venv.join("bin/pip"))
                    .args(["install", "-q", "--disable-pip-version-check", "-r"])
                    .arg(root.join("tests/py/requirements.txt"))
                    .status()
                    .is_ok_and(|s| s.success())
                && std::fs::write(&stamp, &requirements).is_ok();
            let _ = std::fs::remove_dir(&lock);
            assert!(
                ok,
                "could not create {} (python3 -m venv + pip install -r tests/py/requirements.txt); check python3 and network access",
                venv.display()
            );
        } else {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {} (stale lock?)",
                lock.display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    python
}

/// Run `tests/py/<script>` with `input` as JSON on stdin; Err(stderr) when it
/// rejects the input.
pub fn verify(script: &str, input: &serde_json::Value) -> Result<String, String> {
    use std::io::Write;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(venv_python())
        .arg(root.join("tests/py").join(script))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python verifier");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
