//! A real HTTP receiver on loopback for tests: records every request and answers
//! as scripted (a queue of statuses, then a default; or hang; or redirect).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("receiver got JSON")
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    StatusWithHeader(u16, &'static str, String),
    /// This status with these body bytes, as they are (not necessarily UTF-8).
    StatusWithBody(u16, Vec<u8>),
    Hang,
    /// 500 while the request's `webhook-attempt` is below the given number,
    /// then 204: every event fails the same number of times, whatever the
    /// interleaving of concurrent deliveries.
    FailBeforeAttempt(u32),
}

#[derive(Default)]
struct Script {
    queue: VecDeque<Reply>,
    default: Option<Reply>,
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Start on 127.0.0.1 with a free port; answers 204 by default.
    pub async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// [`Receiver::start`], answering every request with `reply` until told
    /// otherwise.
    pub async fn replying(reply: Reply) -> Receiver {
        let receiver = Self::start().await;
        receiver.set_default(reply);
        receiver
    }

    async fn start_on(addr: SocketAddr) -> Receiver {
        let shared = Shared {
            received: Arc::default(),
            script: Arc::default(),
        };
        Self::serve(addr, shared).await
    }

    async fn serve(addr: SocketAddr, shared: Shared) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.addr.port())
    }

    /// Answer the next requests with these, in order.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().queue.extend(replies);
    }

    pub fn set_default(&self, reply: Reply) {
        self.shared.script.lock().unwrap().default = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    /// How many distinct `webhook-id`s (events) the requests so far carry;
    /// panics on a request without one.
    pub fn distinct_ids(&self) -> usize {
        self.received()
            .iter()
            .map(|r| r.header("webhook-id").expect("a webhook-id header"))
            .collect::<std::collections::HashSet<_>>()
            .len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let attempt: u32 = headers
        .get("webhook-attempt")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    shared.received.lock().unwrap().push(Received {
        method,
        uri,
        headers,
        body,
        at: Instant::now(),
    });
    let reply = {
        let mut script = shared.script.lock().unwrap();
        script.queue.pop_front().or_else(|| script.default.clone())
    };
    match reply.unwrap_or(Reply::Status(204)) {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Reply::StatusWithHeader(code, name, value) => {
            (StatusCode::from_u16(code).unwrap(), [(name, value)]).into_response()
        }
        Reply::StatusWithBody(code, body) => {
            (StatusCode::from_u16(code).unwrap(), body).into_response()
        }
        Reply::FailBeforeAttempt(n) if attempt < n => {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Reply::FailBeforeAttempt(_) => StatusCode::NO_CONTENT.into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::NO_CONTENT.into_response()
        }
    }
}
