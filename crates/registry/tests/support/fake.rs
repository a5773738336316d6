//! A tiny in-process HTTP/1.1 server for faults a real registry cannot
//! show: wrong digests, huge manifests, rate limits, dropped connections.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as received.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path with query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
}

/// What to answer.
pub enum Reply {
    /// A complete response (Content-Length added).
    Full { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// Headers announcing `len` bytes, then only `body`, then close.
    Cut { status: u16, headers: Vec<(String, String)>, len: usize, body: Vec<u8> },
    /// No Content-Length: the body ends when the connection closes.
    UntilClose { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
}

impl Reply {
    /// A response with a body and no extra headers.
    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full { status, headers: vec![], body: body.into() }
    }

    /// A response with headers.
    pub fn with(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.into(),
        }
    }
}

pub type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

/// A running fake server.
pub struct Fake {
    pub port: u16,
    pub log: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The requests whose route is `route`.
    pub fn requests_to(&self, route: &str) -> Vec<Req> {
        self.log.lock().unwrap().iter().filter(|r| r.route() == route).cloned().collect()
    }
}

/// Starts a server on a free loopback port.
pub async fn serve(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Arc<Mutex<Vec<Req>>> = Arc::default();
    let handler: Handler = Arc::new(handler);
    let l2 = log.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(connection(sock, handler.clone(), l2.clone()));
        }
    });
    Fake { port, log }
}

async fn connection(mut sock: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Req>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut sock, &mut buf).await else { return };
        log.lock().unwrap().push(req.clone());
        let reply = handler(&req);
        let head_only = req.method == "HEAD";
        let keep = match reply {
            Reply::Full { status, headers, body } => {
                let mut out = head(status, &headers, Some(body.len()));
                if !head_only {
                    out.extend_from_slice(&body);
                }
                sock.write_all(&out).await.is_ok()
            }
            Reply::Cut { status, headers, len, body } => {
                let mut out = head(status, &headers, Some(len));
                out.extend_from_slice(&body);
                let _ = sock.write_all(&out).await;
                false
            }
            Reply::UntilClose { status, mut headers, body } => {
                headers.push(("Connection".into(), "close".into()));
                let mut out = head(status, &headers, None);
                out.extend_from_slice(&body);
                let _ = sock.write_all(&out).await;
                false
            }
        };
        if !keep {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

fn head(status: u16, headers: &[(String, String)], len: Option<usize>) -> Vec<u8> {
    let mut s = format!("HTTP/1.1 {status} X\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(len) = len {
        s.push_str(&format!("Content-Length: {len}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Req> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.first() == Some(&0x16) {
            // A TLS ClientHello: answer like Go's HTTP server does.
            let _ = sock
                .write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
                .await;
            return None;
        }
    };
    let text = String::from_utf8_lossy(&buf[..end]).to_string();
    buf.drain(..end + 4);
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < len {
        let mut chunk = vec![0u8; 65536];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Vec<u8> = buf.drain(..len).collect();
    Some(Req { method, path, headers, body })
}
