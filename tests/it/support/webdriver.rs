//! A tiny W3C WebDriver client: headless Chromium through `chromedriver`, for
//! the console's browser tests. Only what those tests use: open a page, find
//! by CSS selector, click, type, read text, run a script, take a screenshot.
//!
//! `Browser::start` returns None (the test then skips, saying why) only when
//! no chromedriver is installed and `WALHOOK_REQUIRE_BROWSER` is not set; CI
//! sets it, so there a missing browser fails the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The key of an element reference in WebDriver responses.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

impl Browser {
    /// A headless Chromium session, or None when chromedriver is absent and
    /// the browser is not required.
    pub async fn start() -> Option<Browser> {
        let Some(driver_bin) = find_program(&["chromedriver"]) else {
            assert!(
                std::env::var_os("WALHOOK_REQUIRE_BROWSER").is_none(),
                "WALHOOK_REQUIRE_BROWSER is set but chromedriver is not installed: \
                 run .ci/browser.sh (apt-get install chromium chromium-driver)"
            );
            eprintln!(
                "SKIPPED: chromedriver not found; install chromium and chromium-driver \
                 (.ci/browser.sh) to run the console's browser tests"
            );
            return None;
        };
        let port = crate::support::cluster::free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = browser
                .http
                .get(format!("{}/status", browser.base))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,900".to_owned(),
        ];
        args.push(format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        ));
        let mut options = json!({ "args": args });
        if let Some(binary) = find_program(&["chromium", "chromium-browser"]) {
            options["binary"] = json!(binary);
        }
        let created = browser
            .raw(
                reqwest::Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome", "goog:chromeOptions": options,
                    "goog:loggingPrefs": {"browser": "ALL"}}}})),
            )
            .await;
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_owned();
        browser.base = format!("{}/session/{session}", browser.base);
        Some(browser)
    }

    async fn raw(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("a WebDriver request");
        response.json().await.expect("a WebDriver JSON reply")
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let reply = self.raw(method, path, body).await;
        let value = reply["value"].clone();
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            panic!("WebDriver {path}: {error}: {}", value["message"]);
        }
        value
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The element matching `css`, if any now.
    async fn find(&self, css: &str) -> Option<String> {
        let reply = self
            .raw(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        reply["value"][ELEMENT].as_str().map(str::to_owned)
    }

    /// The element matching `css`, waiting up to `timeout` for it.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(id) = self.find(css).await {
                return id;
            }
            if Instant::now() > deadline {
                panic!("no element {css:?} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Click the element matching `css`, finding it again if the page
    /// replaced it meanwhile (the console refreshes its lists).
    pub async fn click(&self, css: &str) {
        for _ in 0..20 {
            let id = self.wait_for(css, Duration::from_secs(10)).await;
            let reply = self
                .raw(
                    reqwest::Method::POST,
                    &format!("/element/{id}/click"),
                    Some(json!({})),
                )
                .await;
            match reply["value"].get("error").and_then(Value::as_str) {
                None => return,
                Some("stale element reference") => continue,
                Some(error) => panic!("click {css:?}: {error}: {}", reply["value"]["message"]),
            }
        }
        panic!("{css:?} kept being replaced");
    }

    /// Clear the field matching `css` and type `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.wait_for(css, Duration::from_secs(10)).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The rendered text of the element matching `css` ("" if none).
    pub async fn text(&self, css: &str) -> String {
        let Some(id) = self.find(css).await else {
            return String::new();
        };
        let reply = self
            .raw(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await;
        reply["value"].as_str().unwrap_or_default().to_owned()
    }

    /// Wait until the text of `css` contains `needle`; returns the text.
    pub async fn wait_text(&self, css: &str, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text(css).await;
            if text.contains(needle) {
                return text;
            }
            if Instant::now() > deadline {
                panic!("{css:?} did not show {needle:?} within {timeout:?}; it shows {text:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        let reply = self
            .raw(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        reply["value"].as_array().map(Vec::len).unwrap_or(0)
    }

    /// Run `script` (a function body) in the page; its return value.
    pub async fn execute(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// The browser console's messages since the last call (Chromium's log
    /// endpoint): `(level, message)`, e.g. a CSP violation or a script error
    /// at `SEVERE`.
    pub async fn console_log(&self) -> Vec<(String, String)> {
        let entries = self
            .command(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await;
        entries
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        let text = |key: &str| e[key].as_str().unwrap_or_default().to_owned();
                        (text("level"), text("message"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Resize the window (CSS pixels).
    pub async fn resize(&self, width: u32, height: u32) {
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Save a PNG of the viewport and the page's HTML beside it.
    pub async fn screenshot(&self, path: &Path) {
        let reply = self.raw(reqwest::Method::GET, "/screenshot", None).await;
        let png = reply["value"]
            .as_str()
            .and_then(|png| base64::engine::general_purpose::STANDARD.decode(png).ok());
        if let Some(bytes) = png {
            let _ = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")));
            let _ = std::fs::write(path, bytes);
        }
        let source = self.raw(reqwest::Method::GET, "/source", None).await;
        if let Some(html) = source["value"].as_str() {
            let _ = std::fs::write(path.with_extension("html"), html);
        }
    }

    pub async fn quit(mut self) {
        let _ = self.raw(reqwest::Method::DELETE, "", None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver ends its Chromium when it exits
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
