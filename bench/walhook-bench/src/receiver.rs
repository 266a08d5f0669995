//! The benchmark's receiver: a bare hyper HTTP/1.1 server on loopback that
//! answers 204, records each distinct delivery (path and `webhook-id`) and the commit-to-receipt
//! latency of its first receipt (arrival time minus the body's
//! `updatetimestamp`, the commit time). It can refuse connections (the
//! dead-receiver scenario): stopping closes the listener AND every open
//! keep-alive connection, so walhook really sees a dead peer. A
//! [`HungReceiver`] accepts connections and never answers (the hung-neighbour
//! scenario).

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

#[derive(Default)]
struct Record {
    ids: HashSet<String>,
    latencies_ms: Vec<f64>,
}

/// Receiver on a fixed loopback port.
pub struct Receiver {
    addr: SocketAddr,
    record: Arc<Mutex<Record>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    pub async fn start() -> std::io::Result<Receiver> {
        let mut receiver = Receiver {
            addr: "127.0.0.1:0".parse().expect("literal address"),
            record: Arc::default(),
            server: None,
        };
        receiver.listen().await?;
        Ok(receiver)
    }

    /// Accept connections (again, on the same port).
    pub async fn listen(&mut self) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.addr = listener.local_addr()?;
        let record = self.record.clone();
        self.server = Some(tokio::spawn(async move {
            // dropping the set (when this task is aborted) aborts every connection
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        let record = record.clone();
                        connections.spawn(async move {
                            let service = hyper::service::service_fn(move |req| handle(record.clone(), req));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        }));
        Ok(())
    }

    /// Refuse connections and cut open ones until [`Receiver::listen`].
    pub async fn refuse(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn distinct(&self) -> usize {
        self.record.lock().expect("receiver lock").ids.len()
    }

    /// Latencies recorded so far (ms), leaving the ids in place.
    pub fn take_latencies(&self) -> Vec<f64> {
        std::mem::take(&mut self.record.lock().expect("receiver lock").latencies_ms)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A receiver that accepts every connection, reads what comes and never
/// answers: each request ends in the client's timeout. A connection is held
/// until the client closes it.
pub struct HungReceiver {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    server: tokio::task::JoinHandle<()>,
}

impl HungReceiver {
    pub async fn start() -> std::io::Result<HungReceiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let server = tokio::spawn(async move {
            // dropping the set (when this task is aborted) closes every connection
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut stream, _)) = accepted else { continue };
                        count.fetch_add(1, Ordering::Relaxed);
                        connections.spawn(async move {
                            let mut sink = [0u8; 4096];
                            while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
                        });
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        Ok(HungReceiver {
            addr,
            accepted,
            server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for HungReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(
    record: Arc<Mutex<Record>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    // one subscription per path in the fan-out scenario: a delivery is (path, id)
    let id = format!(
        "{} {}",
        req.uri().path(),
        req.headers()
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    );
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let now = chrono::Utc::now();
    let latency =
        commit_time(&body).map(|t| (now - t).num_microseconds().unwrap_or(0) as f64 / 1e3);
    {
        let mut record = record.lock().expect("receiver lock");
        if record.ids.insert(id)
            && let Some(ms) = latency
        {
            record.latencies_ms.push(ms);
        }
    }
    let mut response = Response::new(Empty::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// `updatetimestamp` of a body, found without a full parse.
fn commit_time(body: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    const KEY: &str = "\"updatetimestamp\":\"";
    let text = std::str::from_utf8(body).ok()?;
    let at = text.find(KEY)? + KEY.len();
    let end = text[at..].find('"')? + at;
    chrono::DateTime::parse_from_rfc3339(&text[at..end])
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}
