//! The `/v1` API served in-process on loopback for a test database, with a
//! token made by `walhook api-tokens create`, and a small JSON client.

use reqwest::Method;
use serde_json::Value;

use super::{TestDb, migrate, walhook};

pub struct ApiServer {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A response: status and JSON body (Null when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The `param`s of a 400's details.
    pub fn params(&self) -> Vec<String> {
        self.body["details"]
            .as_array()
            .map(|d| {
                d.iter()
                    .map(|e| e["param"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts an error in the API's shape with this status and a detail for `param`.
    pub fn assert_error(&self, status: u16, param: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        for key in ["code", "type", "message"] {
            assert!(self.body[key].is_string(), "{key} missing: {}", self.body);
        }
        assert!(
            self.params().iter().any(|p| p == param),
            "no detail for {param}: {}",
            self.body
        );
        for detail in self.body["details"].as_array().unwrap() {
            for key in ["value", "msg", "param", "location"] {
                assert!(detail.get(key).is_some(), "detail without {key}: {detail}");
            }
        }
    }
}

/// `walhook api-tokens ARGS --database-url URL`: (status, stdout, stderr).
pub fn api_tokens(url: &str, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut all = vec!["api-tokens"];
    all.extend_from_slice(args);
    all.extend(["--database-url", url]);
    walhook(&all)
}

/// `walhook api-tokens create --name NAME`: the token (the last stdout line).
pub fn create_token(url: &str, name: &str) -> String {
    let (status, out, err) = api_tokens(url, &["create", "--name", name]);
    assert!(status.success(), "api-tokens create failed: {out}\n{err}");
    out.lines().last().expect("a token line").trim().to_owned()
}

impl ApiServer {
    /// Migrate `db`, create a token and serve the API router on 127.0.0.1.
    pub async fn start(db: &TestDb<'_>) -> ApiServer {
        migrate(&db.url());
        let token = create_token(&db.url(), "tester");
        let database = walhook::tls::ConnectConfig::parse(&db.url()).expect("database url");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = walhook::api::router(database);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ApiServer {
            base: format!("http://{addr}"),
            token,
            http: reqwest::Client::new(),
            task: Some(task),
        }
    }

    /// A client of an API served elsewhere (a `walhook run` child).
    pub fn connect(base: String, token: String) -> ApiServer {
        ApiServer {
            base,
            token,
            http: reqwest::Client::new(),
            task: None,
        }
    }

    /// A request with this server's token.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_as(Some(&self.token), method, path, body).await
    }

    /// A request with the given token (or none).
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("api request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        Reply { status, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// `POST /v1/webhooks` with `body`, which must answer 201: the webhook.
    pub async fn create_webhook(&self, body: Value) -> Value {
        let created = self.post("/v1/webhooks", body).await;
        assert_eq!(created.status, 201, "{}", created.body);
        created.body
    }

    /// [`ApiServer::create_webhook`]: its id.
    pub async fn create_webhook_id(&self, body: Value) -> String {
        let created = self.create_webhook(body).await;
        created["id"].as_str().expect("a webhook id").to_owned()
    }

    /// Every item of a paginated list, following `nextCursor`; (items, pages).
    pub async fn all_pages(&self, path: &str, limit: usize) -> (Vec<Value>, usize) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut url = format!("{path}{sep}limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&url).await;
            assert_eq!(page.status, 200, "{}", page.body);
            let data = page.body["data"].as_array().unwrap().clone();
            assert!(data.len() <= limit);
            items.extend(data);
            pages += 1;
            match page.body["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return (items, pages),
            }
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
