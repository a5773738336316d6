//! One connection kept between calls to an engine over ssh, where each new
//! connection is a new ssh session (a handshake, a login, a process): a
//! `/_ping` and an `/info` then share the session of the load or save that
//! follows, as the docker CLI's keep-alive connections do. A kept
//! connection older than [`FRESH`] is not reused; a GET that fails on one
//! is sent again on a new connection.

use std::fmt;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{http, Endpoint, Engine, ErrorKind, Result};

/// How long a kept connection is reused.
const FRESH: Duration = Duration::from_secs(5);

/// The kept connection, shared by clones of an [`Engine`].
#[derive(Clone, Default)]
pub(crate) struct Idle(Arc<Mutex<Option<(http::Conn, Instant)>>>);

impl fmt::Debug for Idle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Idle")
    }
}

impl Idle {
    fn take(&self) -> Option<http::Conn> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        kept.filter(|(_, since)| since.elapsed() < FRESH).map(|(c, _)| c)
    }

    fn put(&self, conn: http::Conn) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((conn, Instant::now()));
    }
}

impl Engine {
    /// Whether connections are kept between calls.
    fn keeps(&self) -> bool {
        matches!(self.endpoint, Endpoint::Ssh { .. })
    }

    /// The kept connection, if there is a fresh one.
    pub(crate) fn kept(&self) -> Option<http::Conn> {
        self.keeps().then(|| self.idle.take()).flatten()
    }

    /// `GET path`, the body read whole (at most `max` bytes); over ssh the
    /// connection is kept for the next call.
    pub(crate) fn get_whole(&self, path: &str, max: u64) -> Result<Vec<u8>> {
        let call = format!("GET {}", path.split('?').next().unwrap_or(path));
        if let Some(conn) = self.kept() {
            match self.exchange(conn, path, &call, max) {
                Err(e) if e.kind() != ErrorKind::Api => {}
                done => return done,
            }
        }
        let conn = self.open()?;
        self.exchange(conn, path, &call, max)
    }

    fn exchange(&self, mut conn: http::Conn, path: &str, call: &str, max: u64) -> Result<Vec<u8>> {
        let keep = self.keeps();
        http::write_head_with(&mut conn, "GET", path, None, false, keep).map_err(self.io(call))?;
        let resp = http::read_response(conn).map_err(self.io(call))?;
        let mut resp = self.check(call, resp)?;
        let mut body = Vec::new();
        resp.body.by_ref().take(max).read_to_end(&mut body).map_err(self.io(call))?;
        if keep && resp.keep_alive {
            if let Some(conn) = resp.body.into_complete() {
                self.idle.put(conn);
            }
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An "ssh" that serves HTTP on its standard input and output (`OK`
    /// for `/_ping`, `{}` else, keep-alive unless asked to close) and counts
    /// its starts in `count`.
    fn fake_ssh(dir: &std::path::Path) -> String {
        let script = dir.join("ssh.sh");
        let count = dir.join("count");
        std::fs::write(
            &script,
            format!(
                r#"echo start >> {count}
while :; do
  first=""; got=0; close=0
  while IFS= read -r line; do
    l=$(printf %s "$line" | tr -d '\r'); got=1
    [ -z "$first" ] && first=$l
    case "$l" in Connection:\ close) close=1 ;; esac
    [ -z "$l" ] && break
  done
  [ $got = 1 ] || exit 0
  case "$first" in *_ping*) body=OK ;; *) body='{{}}' ;; esac
  printf 'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s' ${{#body}} "$body"
  [ $close = 1 ] && exit 0
done
"#,
                count = count.display()
            ),
        )
        .unwrap();
        format!("sh {}", script.display())
    }

    #[test]
    fn calls_over_ssh_share_one_session() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("POLYARCH_SSH", fake_ssh(dir.path()));
        let e = Engine::new(Endpoint::Ssh { user: None, host: "h".into(), port: None, socket: None })
            .with_timeout(Duration::from_secs(20));
        e.ping().unwrap();
        e.clone().info().unwrap();
        e.ping().unwrap();
        // A call that closes (the last one) takes the kept connection.
        let mut resp = e.get("GET", "/version").unwrap();
        let mut s = String::new();
        resp.body.read_to_string(&mut s).unwrap();
        assert_eq!(s, "{}");
        drop(resp);
        e.ping().unwrap();
        std::env::remove_var("POLYARCH_SSH");
        let starts = std::fs::read_to_string(dir.path().join("count")).unwrap();
        assert_eq!(starts.lines().count(), 2, "{starts}");
    }
}
