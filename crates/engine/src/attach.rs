//! A process run in a container with its stdin, stdout and stderr on one
//! hijacked connection (`POST /containers/{id}/exec`, then
//! `POST /exec/{id}/start` answered with `101 UPGRADED` or `200` and a raw
//! stream). Without a TTY the engine sends stdout and stderr in frames of
//! an 8-byte header (stream, 0, 0, 0, big-endian length) and a payload:
//! [`Demux`] gives stdout as a plain reader and hands stderr to a callback.

use std::io::{self, Read, Write};

use serde::Deserialize;
use serde_json::json;

use crate::{encode, http, Engine, Result};

/// Where stderr payloads go.
pub type OnStderr = Box<dyn FnMut(&[u8]) + Send>;

/// A running exec: its ID, its stdout, its stdin, and a handle that ends
/// the connection.
pub struct Exec {
    pub id: String,
    pub stdout: Demux<http::Body<http::Conn>>,
    pub stdin: http::Conn,
    pub control: http::Conn,
}

/// `GET /exec/{id}/json`, the fields polyarch reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecState {
    #[serde(default)]
    pub running: bool,
    #[serde(default)]
    pub exit_code: Option<i64>,
}

impl Engine {
    /// Runs `cmd` in container `container` with stdin, stdout and stderr
    /// attached; stderr payloads go to `on_stderr`. Reads wait as long as
    /// the process is silent.
    pub fn exec(&self, container: &str, cmd: &[String], env: &[String], on_stderr: OnStderr) -> Result<Exec> {
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "Id")]
            id: String,
        }
        let create = json!({
            "AttachStdin": true, "AttachStdout": true, "AttachStderr": true,
            "Tty": false, "Cmd": cmd, "Env": env,
        });
        let path = format!("/containers/{}/exec", encode(container));
        let (status, text) = self.call("POST", &path, Some(&create))?;
        if !(200..300).contains(&status) {
            return Err(self.api_error("POST /containers/{id}/exec", status, &text));
        }
        let id = self.parse::<Created>("POST /containers/{id}/exec", &text)?.id;
        self.start_exec(id, on_stderr)
    }

    fn start_exec(&self, id: String, on_stderr: OnStderr) -> Result<Exec> {
        let call = "POST /exec/{id}/start";
        let mut conn = self.connect()?;
        let body = json!({"Detach": false, "Tty": false}).to_string();
        let head = format!(
            "POST /exec/{}/start HTTP/1.1\r\nHost: docker\r\nUser-Agent: polyarch\r\nConnection: Upgrade\r\n\
             Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            encode(&id),
            body.len()
        );
        conn.write_all(head.as_bytes()).map_err(self.io(call))?;
        let stdin = conn.try_clone().map_err(self.io(call))?;
        let control = conn.try_clone().map_err(self.io(call))?;
        control.no_read_timeout().map_err(self.io(call))?;
        let mut resp = http::read_response(conn).map_err(self.io(call))?;
        if resp.status != 101 && resp.status != 200 {
            let mut text = Vec::new();
            let _ = resp.body.by_ref().take(64 * 1024).read_to_end(&mut text);
            return Err(self.api_error(call, resp.status, &text));
        }
        Ok(Exec { id, stdout: Demux::new(resp.body, on_stderr), stdin, control })
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_state(&self, id: &str) -> Result<ExecState> {
        let (status, text) = self.call("GET", &format!("/exec/{}/json", encode(id)), None)?;
        if !(200..300).contains(&status) {
            return Err(self.api_error("GET /exec/{id}/json", status, &text));
        }
        self.parse("GET /exec/{id}/json", &text)
    }
}

/// Stdout of a multiplexed stream; stderr frames go to a callback, stdin
/// echoes (stream 0) are dropped. A header cut short is an error.
pub struct Demux<R: Read> {
    inner: R,
    /// Bytes of the current stdout frame still to read.
    left: usize,
    on_stderr: OnStderr,
}

impl<R: Read> Demux<R> {
    pub fn new(inner: R, on_stderr: OnStderr) -> Demux<R> {
        Demux { inner, left: 0, on_stderr }
    }

    /// Reads the next frame header; `None` at a clean end.
    fn header(&mut self) -> io::Result<Option<(u8, usize)>> {
        let mut h = [0u8; 8];
        let mut got = 0;
        while got < 8 {
            match self.inner.read(&mut h[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a stream frame header ended early")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if h[1..4] != [0, 0, 0] || h[0] > 2 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("not a stream frame header: {h:02x?}")));
        }
        Ok(Some((h[0], u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize)))
    }
}

impl<R: Read> Read for Demux<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.left == 0 {
            let Some((stream, size)) = self.header()? else { return Ok(0) };
            if stream == 1 {
                self.left = size;
                continue;
            }
            let mut payload = vec![0u8; size];
            self.inner.read_exact(&mut payload)?;
            if stream == 2 {
                (self.on_stderr)(&payload);
            }
        }
        let max = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a stream frame ended early"));
        }
        self.left -= n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![stream, 0, 0, 0];
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn stdout_and_stderr_are_separated() {
        let mut raw = frame(1, b"hello ");
        raw.extend(frame(2, b"oops\n"));
        raw.extend(frame(1, b""));
        raw.extend(frame(1, b"world"));
        let err = Arc::new(Mutex::new(Vec::new()));
        let e2 = err.clone();
        let mut d = Demux::new(&raw[..], Box::new(move |b| e2.lock().unwrap().extend_from_slice(b)));
        let mut out = String::new();
        d.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello world");
        assert_eq!(&*err.lock().unwrap(), b"oops\n");
    }

    /// A server on a unix socket answering one exec: the create call, then
    /// the start call hijacked, its frames sent with the head in one write;
    /// it echoes one line of stdin on stdout and says goodbye on stderr.
    fn exec_server(start_status: &'static str) -> (tempfile::TempDir, Engine) {
        use std::io::BufRead as _;
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let listener = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().take(2).enumerate() {
                let conn = conn.unwrap();
                let mut r = io::BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                r.read_exact(&mut body).unwrap();
                let mut w = conn;
                if i == 0 {
                    assert!(head.starts_with("POST /containers/c1/exec "), "{head}");
                    let b = br#"{"Id":"e1"}"#;
                    write!(w, "HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n", b.len()).unwrap();
                    w.write_all(b).unwrap();
                    continue;
                }
                assert!(head.starts_with("POST /exec/e1/start ") && head.contains("Upgrade: tcp"), "{head}");
                if start_status != "101" {
                    let b = br#"{"message":"No such exec instance: e1"}"#;
                    write!(w, "HTTP/1.1 {start_status} Not Found\r\nContent-Length: {}\r\n\r\n", b.len()).unwrap();
                    w.write_all(b).unwrap();
                    continue;
                }
                let mut answer = b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".to_vec();
                answer.extend(frame(1, b"ready\n"));
                w.write_all(&answer).unwrap();
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let mut out = frame(1, line.as_bytes());
                out.extend(frame(2, b"bye\n"));
                w.write_all(&out).unwrap();
            }
        });
        let engine = Engine::new(crate::Endpoint::Unix(sock)).with_timeout(std::time::Duration::from_secs(20));
        (dir, engine)
    }

    #[test]
    fn an_exec_streams_both_ways_over_the_hijacked_connection() {
        let (_d, engine) = exec_server("101");
        let err = Arc::new(Mutex::new(Vec::new()));
        let e2 = err.clone();
        let cmd = ["worker".to_string()];
        let mut exec =
            engine.exec("c1", &cmd, &[], Box::new(move |b| e2.lock().unwrap().extend_from_slice(b))).unwrap();
        assert_eq!(exec.id, "e1");
        let mut first = [0u8; 6];
        exec.stdout.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"ready\n", "bytes sent with the answer's head are not lost");
        exec.stdin.write_all(b"hello\n").unwrap();
        let mut rest = String::new();
        exec.stdout.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "hello\n");
        assert_eq!(&*err.lock().unwrap(), b"bye\n");
    }

    #[test]
    fn a_refused_exec_start_names_the_call_and_the_message() {
        let (_d, engine) = exec_server("404");
        let Err(e) = engine.exec("c1", &["x".to_string()], &[], Box::new(|_| {})) else { panic!("started") };
        let text = e.to_string();
        assert!(text.contains("POST /exec/{id}/start") && text.contains("No such exec instance"), "{text}");
        assert_eq!(e.kind(), crate::ErrorKind::Api);
    }

    #[test]
    fn cut_frames_are_errors() {
        let mut raw = frame(1, b"hello");
        raw.truncate(10);
        let mut d = Demux::new(&raw[..], Box::new(|_| {}));
        let mut out = Vec::new();
        assert_eq!(d.read_to_end(&mut out).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let mut d = Demux::new(&[1u8, 0, 0][..], Box::new(|_| {}));
        assert!(d.read_to_end(&mut out).is_err());
        let mut d = Demux::new(&b"HTTP/1.1 200 OK\r\n"[..], Box::new(|_| {}));
        assert_eq!(d.read_to_end(&mut out).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
