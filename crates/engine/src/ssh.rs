//! `ssh://[user@]host[:port][/socket]` engines, as the docker CLI reaches
//! them: `ssh [-l user] [-p port] -- host docker system dial-stdio`, HTTP
//! over the process's stdin and stdout. The ssh program is `POLYARCH_SSH`
//! (split on white space) when set, as for ssh builder nodes. The process
//! is killed and reaped when the last clone of the stream drops. Replies
//! are bounded in time as on a socket: a thread reads the process's output
//! and a read waits for it at most the timeout.

use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// At most this much of ssh's standard error is kept for messages.
const MAX_STDERR: usize = 8 * 1024;

/// The ssh command: `POLYARCH_SSH` (split on white space) or `ssh`.
pub fn ssh_command() -> Vec<String> {
    let words: Vec<String> =
        std::env::var("POLYARCH_SSH").unwrap_or_default().split_whitespace().map(String::from).collect();
    if words.is_empty() {
        vec!["ssh".to_string()]
    } else {
        words
    }
}

/// The argument vector that dials the engine at `host` (options as the
/// docker CLI gives them).
pub fn dial_command(user: Option<&str>, host: &str, port: Option<u16>, socket: Option<&str>) -> Vec<String> {
    let mut argv = ssh_command();
    argv.extend(["-o", "ConnectTimeout=30", "-T"].map(String::from));
    if let Some(u) = user {
        argv.extend(["-l".to_string(), u.to_string()]);
    }
    if let Some(p) = port {
        argv.extend(["-p".to_string(), p.to_string()]);
    }
    argv.extend(["--".to_string(), host.to_string(), "docker".to_string()]);
    if let Some(s) = socket {
        argv.push(format!("--host=unix://{s}"));
    }
    argv.extend(["system", "dial-stdio"].map(String::from));
    argv
}

/// ssh (or `docker system dial-stdio` behind it) ended with an error.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` {status}{}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
pub struct DialError {
    pub command: String,
    pub status: String,
    pub stderr: String,
}

/// The process and its pipes; clones of the stream share it.
struct Proc {
    child: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    stdout: Mutex<Output>,
    /// How long a read waits (none: as long as it takes).
    timeout: Mutex<Option<Duration>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    command: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The process's output as the reader thread hands it over.
struct Output {
    chunks: Receiver<io::Result<Vec<u8>>>,
    /// What a short read left of the last chunk.
    rest: Vec<u8>,
    done: bool,
}

/// Reads `from` in chunks into a channel until its end (an empty chunk).
fn pump(mut from: impl Read + Send + 'static) -> Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::sync_channel(4);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let chunk = from.read(&mut buf).map(|n| buf[..n].to_vec());
            let end = !matches!(&chunk, Ok(c) if !c.is_empty());
            if tx.send(chunk).is_err() || end {
                break;
            }
        }
    });
    rx
}

/// HTTP over a `docker system dial-stdio` process.
#[derive(Clone)]
pub struct SshStream {
    proc: Arc<Proc>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SshStream {
    /// Starts `argv`; a read waits at most `timeout` for output.
    pub fn spawn(argv: &[String], timeout: Duration) -> io::Result<SshStream> {
        let (program, args) = argv.split_first().ok_or_else(|| io::Error::other("empty ssh command"))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("running {program}: {e}")))?;
        let (Some(stdin), Some(stdout), Some(mut err)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("ssh started without its pipes"));
        };
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut kept = lock(&sink);
                let room = MAX_STDERR.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        });
        let proc = Proc {
            child: Mutex::new(child),
            stdin: Mutex::new(Some(stdin)),
            stdout: Mutex::new(Output { chunks: pump(stdout), rest: Vec::new(), done: false }),
            timeout: Mutex::new(Some(timeout)),
            stderr,
            command: argv.join(" "),
        };
        Ok(SshStream { proc: Arc::new(proc) })
    }

    /// How long a read waits for output (none: as long as it takes).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) {
        *lock(&self.proc.timeout) = timeout;
    }

    /// Ends the process: both directions of the stream.
    pub fn shutdown_both(&self) {
        lock(&self.proc.stdin).take();
        let _ = lock(&self.proc.child).kill();
    }

    /// Closes the process's standard input.
    pub fn shutdown_write(&self) {
        lock(&self.proc.stdin).take();
    }

    /// The process's exit status, waiting up to `wait` for it to end.
    fn status(&self, wait: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(s)) = lock(&self.proc.child).try_wait() {
                return Some(s);
            }
            if t0.elapsed() >= wait {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The error to report when the process ended unsuccessfully.
    fn failure(&self) -> Option<io::Error> {
        let status = self.status(Duration::from_secs(2)).filter(|s| !s.success())?;
        // The stderr reader ends with the process; let it catch up.
        std::thread::sleep(Duration::from_millis(50));
        let stderr = String::from_utf8_lossy(&lock(&self.proc.stderr)).trim().replace('\n', "; ");
        let status = match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => format!("ended by {status}"),
        };
        let e = DialError { command: self.proc.command.clone(), status, stderr };
        Some(io::Error::new(io::ErrorKind::ConnectionRefused, e))
    }
}

impl SshStream {
    fn read_output(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut out = lock(&self.proc.stdout);
        if out.rest.is_empty() && !out.done && !buf.is_empty() {
            let timeout = *lock(&self.proc.timeout);
            let got = match timeout {
                Some(t) => out.chunks.recv_timeout(t),
                None => out.chunks.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match got {
                Ok(Ok(chunk)) => {
                    out.done = chunk.is_empty();
                    out.rest = chunk;
                }
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Disconnected) => out.done = true,
                Err(RecvTimeoutError::Timeout) => {
                    let secs = timeout.unwrap_or_default().as_secs_f64();
                    return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer in {secs} s")));
                }
            }
        }
        let n = buf.len().min(out.rest.len());
        buf[..n].copy_from_slice(&out.rest[..n]);
        out.rest.drain(..n);
        Ok(n)
    }
}

impl Read for SshStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_output(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(e) = self.failure() {
                return Err(e);
            }
        }
        Ok(n)
    }
}

impl Write for SshStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut stdin = lock(&self.proc.stdin);
        let Some(w) = stdin.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the request side is closed"));
        };
        match w.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                drop(stdin);
                Err(self.failure().unwrap_or(e))
            }
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match lock(&self.proc.stdin).as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_argv() {
        let argv = dial_command(Some("root"), "h", Some(2222), None);
        let tail: Vec<&str> = argv.iter().map(String::as_str).skip_while(|a| *a != "-l").collect();
        assert_eq!(tail, ["-l", "root", "-p", "2222", "--", "h", "docker", "system", "dial-stdio"]);
        let argv = dial_command(None, "h", None, Some("/run/d.sock"));
        assert!(argv
            .ends_with(&["--", "h", "docker", "--host=unix:///run/d.sock", "system", "dial-stdio"].map(String::from)));
    }

    #[test]
    fn a_failing_process_names_itself_and_its_stderr() {
        let argv: Vec<String> =
            ["sh", "-c", "echo 'ssh: Could not resolve hostname far' >&2; exit 255"].map(String::from).to_vec();
        let mut s = SshStream::spawn(&argv, Duration::from_secs(20)).unwrap();
        let mut buf = Vec::new();
        let e = s.read_to_end(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        let msg = e.to_string();
        assert!(msg.contains("status 255") && msg.contains("Could not resolve hostname far"), "{msg}");
    }

    #[test]
    fn speaks_over_the_pipes_and_is_reaped_on_drop() {
        let argv: Vec<String> = ["sh", "-c", "read line; echo \"got $line\"; exec sleep 30"].map(String::from).to_vec();
        let mut s = SshStream::spawn(&argv, Duration::from_secs(20)).unwrap();
        s.write_all(b"ping\n").unwrap();
        let mut buf = [0u8; 8];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"got ping");
        let pid = lock(&s.proc.child).id();
        drop(s);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "the process {pid} is left");
    }

    #[test]
    fn a_silent_process_times_out() {
        let argv: Vec<String> = ["sh", "-c", "exec sleep 30"].map(String::from).to_vec();
        let mut s = SshStream::spawn(&argv, Duration::from_millis(200)).unwrap();
        let t0 = Instant::now();
        let e = s.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
