//! The admin endpoint: a minimal HTTP/1.1 responder (one request per
//! connection, `Connection: close`) for `GET /stats` (Prometheus text),
//! `GET /config` (the effective settings as JSON) and `GET /ready` (200
//! while serving, 503 while draining); `HEAD` answers like `GET` without the
//! body. Hand-written on tokio: three fixed routes do not justify an HTTP
//! server crate.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::proxy::Shared;

/// Serves until the runtime ends (it keeps answering while connections drain).
pub async fn serve(listener: TcpListener, sh: Arc<Shared>) {
    loop {
        if let Ok((s, _)) = listener.accept().await {
            let sh = sh.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), respond(s, &sh)).await;
            });
        }
    }
}

/// (status, content type, body) for a request line; `HEAD` is answered as
/// `GET` (the body is left out when it is sent).
pub fn route(method: &str, path: &str, sh: &Shared) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let path = path.split('?').next().unwrap_or(path);
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", TEXT, "only GET and HEAD\n".into());
    }
    match path {
        "/stats" | "/stats/prometheus" | "/metrics" => {
            let settings = sh.settings.load();
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                sh.stats.prometheus(&settings.clusters, settings.generation),
            )
        }
        "/config" => {
            let settings = sh.settings.load();
            match serde_json::to_string_pretty(&settings.effective()) {
                Ok(mut body) => {
                    body.push('\n');
                    ("200 OK", "application/json", body)
                }
                Err(e) => ("500 Internal Server Error", TEXT, format!("{e}\n")),
            }
        }
        "/ready" if sh.draining.load(Relaxed) => {
            ("503 Service Unavailable", TEXT, "DRAINING\n".into())
        }
        "/ready" => ("200 OK", TEXT, "LIVE\n".into()),
        _ => (
            "404 Not Found",
            TEXT,
            "not found: try /stats, /config or /ready\n".into(),
        ),
    }
}

async fn respond(mut s: TcpStream, sh: &Shared) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 16 * 1024 {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or("/"));
    let (status, ctype, body) = if method.is_empty() {
        ("400 Bad Request", "text/plain", "bad request\n".to_string())
    } else {
        route(method, path, sh)
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        if method == "HEAD" { "" } else { &body }
    );
    s.write_all(resp.as_bytes()).await?;
    s.shutdown().await
}
