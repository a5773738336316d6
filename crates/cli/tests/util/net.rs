//! A tiny fake registry for answers a real registry can't be made to give
//! (faults in front of a real one are [`super::proxy::FaultProxy`]'s job).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;

/// A fake registry that answers every manifest request with `body` under
/// `content_type`, whatever was asked.
pub fn fake_registry(body: Vec<u8>, content_type: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let body = Arc::new(body);
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let body = body.clone();
            thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = conn.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    // A TLS ClientHello: answer like a plain HTTP server would.
                    if req.is_empty() && buf[0] == 0x16 {
                        let _ = conn.write_all(
                            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
                        );
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                    while let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&req[..end]).to_string();
                        req.drain(..end + 4);
                        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                        let head_only = head.starts_with("HEAD");
                        let (status, payload): (&str, &[u8]) =
                            if path.contains("/manifests/") { ("200 OK", &body) } else { ("200 OK", b"{}") };
                        let mut resp = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nDocker-Distribution-API-Version: registry/2.0\r\n\r\n",
                            if path.contains("/manifests/") { content_type } else { "application/json" },
                            payload.len()
                        )
                        .into_bytes();
                        if !head_only {
                            resp.extend_from_slice(payload);
                        }
                        if conn.write_all(&resp).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}
