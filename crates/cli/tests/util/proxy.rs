//! A fault-injecting proxy on 127.0.0.1 in front of a real registry.
//!
//! In HTTP mode it reads each request and either forwards it or injects a
//! fault chosen by method and path: an error status (5xx, 429 with
//! `Retry-After`), a reset connection, a body cut short, a body with one
//! byte changed (a wrong digest), or no answer at all. In TCP mode (for TLS
//! registries, whose bytes it cannot read) it works per connection: resets
//! right after the client speaks, cuts a connection after some bytes went
//! downstream, holds one open without a word, or dies after some bytes went
//! upstream. Each rule fires a given number of times; its counter tells a
//! test the fault really happened.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP: answer with this status (and `Retry-After` seconds) instead of
    /// forwarding.
    Status(u16, Option<u32>),
    /// The connection is reset (RST) before any answer.
    Reset,
    /// HTTP: the response's head and only this many bytes of its body, then
    /// the connection is closed. TCP: the connection is closed once this
    /// many bytes went downstream on it.
    Truncate(usize),
    /// HTTP: the response with one byte of its body changed.
    Corrupt,
    /// No answer: the connection stays open and silent.
    Hang,
    /// TCP: once this many bytes went upstream over all connections, every
    /// connection is dropped and the proxy stops listening.
    DieAfter(usize),
    /// TCP: once this many bytes went downstream on a connection, it stays
    /// open and silent until the proxy stops (a download that stalls
    /// half-way).
    StallAfter(usize),
    /// HTTP: the request is forwarded after this many milliseconds (a slow
    /// link, so that requests a client sends at once overlap).
    Delay(u64),
}

/// A fault for the requests it matches, a number of times.
pub struct Rule {
    method: Option<&'static str>,
    path: &'static str,
    fault: Fault,
    left: AtomicUsize,
    fired: AtomicUsize,
}

impl Rule {
    /// `fault` for requests with `method` (`None`: any) whose path contains
    /// `path`, once.
    pub fn on(method: Option<&'static str>, path: &'static str, fault: Fault) -> Rule {
        Rule { method, path, fault, left: AtomicUsize::new(1), fired: AtomicUsize::new(0) }
    }

    /// `fault` for every connection (TCP mode), once.
    pub fn conn(fault: Fault) -> Rule {
        Rule::on(None, "", fault)
    }

    /// Fires `n` times.
    pub fn times(self, n: usize) -> Rule {
        self.left.store(n, Ordering::SeqCst);
        self
    }

    /// Fires every time.
    pub fn always(self) -> Rule {
        self.times(usize::MAX)
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.is_none_or(|m| m == method) && path.contains(self.path)
    }

    /// Takes one firing if any is left.
    fn take(&self) -> bool {
        let took = self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if took {
            self.fired.fetch_add(1, Ordering::SeqCst);
        }
        took
    }
}

struct Shared {
    upstream: String,
    rules: Vec<Rule>,
    stop: AtomicBool,
    upstream_bytes: AtomicUsize,
    log: Mutex<Vec<String>>,
    /// HTTP: requests read and not yet answered, and the most at once.
    inflight: AtomicUsize,
    peak: AtomicUsize,
}

/// A running proxy; stops (and drops every connection) when dropped.
pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy that reads HTTP requests and responses.
    pub fn http(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        FaultProxy::start(upstream, rules, serve_http)
    }

    /// A proxy that forwards bytes (for TLS).
    pub fn tcp(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        FaultProxy::start(upstream, rules, serve_tcp)
    }

    fn start(upstream: &str, rules: Vec<Rule>, serve: fn(TcpStream, Arc<Shared>)) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            rules,
            stop: AtomicBool::new(false),
            upstream_bytes: AtomicUsize::new(0),
            log: Mutex::default(),
            inflight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        });
        let s = shared.clone();
        thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let s = s.clone();
                        thread::spawn(move || serve(client, s));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            // The listener is dropped here: new connections are refused.
        });
        FaultProxy { port, shared }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many times rule `i` fired.
    pub fn fired(&self, i: usize) -> usize {
        self.shared.rules[i].fired.load(Ordering::SeqCst)
    }

    /// Whether the proxy stopped listening (a [`Fault::DieAfter`] fired).
    pub fn down(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    /// HTTP: the most requests that were in flight at once.
    pub fn peak_inflight(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// What went through, one line per request or connection.
    pub fn log(&self) -> String {
        self.shared.log.lock().unwrap().join("\n")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

impl Shared {
    /// The fault for a request that was read (resets were taken when it
    /// was peeked at, see [`Shared::pick_peeked`]).
    fn pick(&self, method: &str, path: &str) -> Option<Fault> {
        self.rules.iter().find(|r| r.fault != Fault::Reset && r.matches(method, path) && r.take()).map(|r| r.fault)
    }

    fn note(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Reads into `buf`, waiting out read timeouts until data, EOF or stop.
fn read_some(s: &mut TcpStream, buf: &mut [u8], shared: &Shared) -> io::Result<usize> {
    loop {
        if shared.stopped() {
            return Ok(0);
        }
        match s.read(buf) {
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Holds a connection open without a word until the proxy stops.
fn hang(mut s: TcpStream, shared: &Shared) {
    let mut buf = [0u8; 16384];
    while let Ok(n) = read_some(&mut s, &mut buf, shared) {
        if n == 0 {
            break;
        }
    }
}

/// Drops a connection with unread bytes in its receive buffer, which makes
/// the kernel answer with RST instead of FIN.
fn reset(s: TcpStream) {
    drop(s);
}

fn serve_tcp(client: TcpStream, shared: Arc<Shared>) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(50)));
    // A Truncate rule counts the cuts it made, not the connections it
    // watched: it is taken when its limit is passed.
    let fault = shared.pick_tcp();
    shared.note(format!("connection: {fault:?}"));
    match fault {
        Some((Fault::Hang, _)) => return hang(client, &shared),
        Some((Fault::Reset, _)) => {
            let mut b = [0u8; 1];
            while client.peek(&mut b).is_err() && !shared.stopped() {}
            return reset(client);
        }
        _ => {}
    }
    let Ok(server) = TcpStream::connect(&shared.upstream) else { return };
    let _ = server.set_read_timeout(Some(Duration::from_millis(50)));
    let die = match fault {
        Some((Fault::DieAfter(n), _)) => n,
        _ => usize::MAX,
    };
    let (c2, s2) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
    let sh = shared.clone();
    let up = thread::spawn(move || {
        let over = |n: usize| sh.upstream_bytes.fetch_add(n, Ordering::SeqCst) + n > die;
        if pump(c2, s2, &sh, over) {
            // Past the DieAfter limit: every connection goes down.
            sh.stop.store(true, Ordering::SeqCst);
        }
    });
    let stall = match fault {
        Some((Fault::StallAfter(n), _)) => n,
        _ => usize::MAX,
    };
    let mut down = 0usize;
    let mut watching = if fault.is_none() { shared.truncations() } else { Vec::new() };
    pump(server, client, &shared, |n| {
        down += n;
        if down > stall {
            shared.note(format!("connection stalled after {stall} bytes"));
            while !shared.stopped() {
                thread::sleep(Duration::from_millis(20));
            }
            return true;
        }
        let mut cut = false;
        watching.retain(|&(limit, i)| {
            if down <= limit || cut {
                return down <= limit;
            }
            cut = shared.rules[i].take();
            if cut {
                shared.note(format!("connection cut after {limit} bytes"));
            }
            false
        });
        cut
    });
    let _ = up.join();
}

/// Copies `from` to `to` until EOF, stop, or `over(bytes just read)` says
/// a limit is passed (then nothing more is written, both close, and the
/// result is true).
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, mut over: impl FnMut(usize) -> bool) -> bool {
    let mut buf = [0u8; 16384];
    let mut hit = false;
    loop {
        let n = match read_some(&mut from, &mut buf, shared) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if over(n) {
            hit = true;
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    hit
}

/// A parsed HTTP head and the raw bytes of the whole message.
struct Message {
    first: String,
    headers: Vec<(String, String)>,
    head: Vec<u8>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn parse_head(raw: &[u8]) -> (String, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("").to_string();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    (first, headers)
}

/// Bytes read from a socket and not used yet.
struct Input<'a> {
    s: &'a mut TcpStream,
    pending: &'a mut Vec<u8>,
    shared: &'a Shared,
}

impl Input<'_> {
    /// Reads until `pending` holds at least `want` bytes (`None` at EOF).
    fn fill(&mut self, want: usize) -> Option<()> {
        let mut buf = [0u8; 65536];
        while self.pending.len() < want {
            let n = read_some(self.s, &mut buf, self.shared).ok().filter(|n| *n > 0)?;
            self.pending.extend_from_slice(&buf[..n]);
        }
        Some(())
    }

    /// The end of the line starting at `at` (after its CRLF).
    fn line_end(&mut self, at: usize) -> Option<usize> {
        loop {
            if let Some(i) = self.pending[at..].windows(2).position(|w| w == b"\r\n") {
                return Some(at + i + 2);
            }
            self.fill(self.pending.len() + 1)?;
        }
    }

    /// The length of a chunked body at the start of `pending`: chunks of a
    /// size line, data and CRLF; the last has size 0 and a trailer that
    /// ends with an empty line.
    fn chunked_len(&mut self) -> Option<usize> {
        let mut at = 0;
        loop {
            let end = self.line_end(at)?;
            let text = String::from_utf8_lossy(&self.pending[at..end - 2]).to_string();
            let size = usize::from_str_radix(text.split(';').next().unwrap_or("").trim(), 16).ok()?;
            if size == 0 {
                let mut t = end;
                loop {
                    let next = self.line_end(t)?;
                    if next == t + 2 {
                        return Some(next);
                    }
                    t = next;
                }
            }
            self.fill(end + size + 2)?;
            at = end + size + 2;
        }
    }

    /// Everything until EOF.
    fn rest(&mut self) -> Vec<u8> {
        let mut buf = [0u8; 65536];
        while let Ok(n) = read_some(self.s, &mut buf, self.shared) {
            if n == 0 {
                break;
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
        std::mem::take(self.pending)
    }
}

/// Reads one message: its head, then (unless `no_body`, for answers to
/// HEAD) a body by `Content-Length`, by chunked framing (kept raw), or, for
/// a response with neither, until EOF.
fn read_message(s: &mut TcpStream, pending: &mut Vec<u8>, shared: &Shared, no_body: bool) -> Option<Message> {
    let mut input = Input { s, pending, shared };
    let end = loop {
        if let Some(i) = input.pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        input.fill(input.pending.len() + 1)?;
    };
    let head: Vec<u8> = input.pending.drain(..end).collect();
    let (first, headers) = parse_head(&head[..end - 4]);
    let mut m = Message { first, headers, head, body: Vec::new() };
    let chunked = m.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length = m.header("content-length").and_then(|v| v.parse::<usize>().ok());
    let len = match (no_body, chunked, length) {
        (true, _, _) => 0,
        (false, true, _) => input.chunked_len()?,
        (false, false, Some(len)) => len,
        (false, false, None) if m.first.starts_with("HTTP/") => {
            m.body = input.rest();
            return Some(m);
        }
        _ => 0,
    };
    input.fill(len)?;
    m.body = input.pending.drain(..len).collect();
    Some(m)
}

fn status_reply(code: u16, retry_after: Option<u32>) -> Vec<u8> {
    let body = format!(r#"{{"errors":[{{"code":"UNAVAILABLE","message":"injected {code}"}}]}}"#);
    let ra = retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
    format!(
        "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{ra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Waits until a whole request head can be peeked, without reading it.
fn peek_head(client: &TcpStream, shared: &Shared) -> Option<(String, String)> {
    let mut buf = vec![0u8; 16384];
    loop {
        if shared.stopped() {
            return None;
        }
        match client.peek(&mut buf) {
            Ok(0) => return None,
            Ok(_) if buf[0] == 0x16 => {
                // A TLS ClientHello: answer as a plain HTTP server does.
                return Some(("TLS".into(), String::new()));
            }
            Ok(n) => {
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") || n == buf.len() {
                    let (first, _) = parse_head(&buf[..n]);
                    let mut parts = first.split_whitespace();
                    return Some((parts.next()?.to_string(), parts.next()?.to_string()));
                }
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
}

/// What to do with a connection before its next request is read.
enum Gate {
    Read,
    Close,
    Reset,
}

/// Looks at the next request without reading it: a TLS hello is answered
/// as a plain HTTP server does, and a matching [`Fault::Reset`] resets.
fn gate(client: &mut TcpStream, shared: &Shared) -> Gate {
    let Some((method, path)) = peek_head(client, shared) else { return Gate::Close };
    if method == "TLS" {
        let _ = client.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n");
        let mut rest = [0u8; 4096];
        let _ = client.read(&mut rest);
        return Gate::Close;
    }
    if shared.pick_peeked(&method, &path).is_some() {
        shared.note(format!("{method} {path} -> reset"));
        return Gate::Reset;
    }
    Gate::Read
}

/// Sends `req` upstream (connecting on first use) and reads the answer.
fn exchange(server: &mut Option<TcpStream>, pending: &mut Vec<u8>, req: &Message, shared: &Shared) -> Option<Message> {
    if server.is_none() {
        let s = TcpStream::connect(&shared.upstream).ok()?;
        let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
        *server = Some(s);
    }
    let up = server.as_mut()?;
    up.write_all(&req.head).and_then(|_| up.write_all(&req.body)).ok()?;
    read_message(up, pending, shared, req.first.starts_with("HEAD "))
}

fn serve_http(mut client: TcpStream, shared: Arc<Shared>) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(50)));
    let mut server: Option<TcpStream> = None;
    let (mut from_client, mut from_server) = (Vec::new(), Vec::new());
    loop {
        if from_client.is_empty() {
            match gate(&mut client, &shared) {
                Gate::Read => {}
                Gate::Close => return,
                Gate::Reset => return reset(client),
            }
        }
        let Some(req) = read_message(&mut client, &mut from_client, &shared, false) else { return };
        let mut parts = req.first.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let fault = shared.pick(method, path);
        shared.note(format!("{method} {path} -> {fault:?}"));
        match fault {
            Some(Fault::Status(code, ra)) if client.write_all(&status_reply(code, ra)).is_ok() => continue,
            Some(Fault::Status(..)) => return,
            Some(Fault::Hang) => return hang(client, &shared),
            _ => {}
        }
        let now = shared.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak.fetch_max(now, Ordering::SeqCst);
        if let Some(Fault::Delay(ms)) = fault {
            thread::sleep(Duration::from_millis(ms));
        }
        let answer = exchange(&mut server, &mut from_server, &req, &shared);
        shared.inflight.fetch_sub(1, Ordering::SeqCst);
        let Some(mut resp) = answer else { return };
        let no_more = !resp.first.starts_with("HTTP/1.1")
            || resp.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match fault {
            Some(Fault::Truncate(keep)) if resp.body.len() > keep => {
                let _ = client.write_all(&resp.head).and_then(|_| client.write_all(&resp.body[..keep]));
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            Some(Fault::Corrupt) if !resp.body.is_empty() => {
                let i = resp.body.len() / 2;
                resp.body[i] ^= 0x20;
            }
            _ => {}
        }
        if client.write_all(&resp.head).and_then(|_| client.write_all(&resp.body)).is_err() || no_more {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    }
}

impl Shared {
    /// The fault for a new connection (TCP mode) and its rule: the first
    /// rule with firings left, [`Fault::Truncate`] rules aside.
    fn pick_tcp(&self) -> Option<(Fault, usize)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| !matches!(r.fault, Fault::Truncate(_)) && r.take())
            .map(|(i, r)| (r.fault, i))
    }

    /// The [`Fault::Truncate`] rules with cuts left, as (limit, rule): a
    /// connection watches them all and is cut by the first whose limit it
    /// passes while a cut is left (so the counter counts real cuts).
    fn truncations(&self) -> Vec<(usize, usize)> {
        self.rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match r.fault {
                Fault::Truncate(n) if r.left.load(Ordering::SeqCst) > 0 => Some((n, i)),
                _ => None,
            })
            .collect()
    }

    /// Takes a [`Fault::Reset`] rule matching a request that was only
    /// peeked at.
    fn pick_peeked(&self, method: &str, path: &str) -> Option<Fault> {
        self.rules.iter().find(|r| r.fault == Fault::Reset && r.matches(method, path) && r.take()).map(|r| r.fault)
    }
}
