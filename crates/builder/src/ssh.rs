//! SSH agent forwarding for `RUN --mount=type=ssh` (`--ssh`), as buildx's
//! `sshprovider`: an id is served by an agent socket (`$SSH_AUTH_SOCK`
//! for `default` or an id without paths, or a socket path given) or by a
//! private agent holding the key files given (buildx loads them into an
//! in-process keyring; here a private `ssh-agent` is started and the keys
//! added to it). [`Agents`] lives for the build; each RUN step gets a
//! [`Proxy`]: a socket of its own, with the mount's owner and mode, that
//! forwards every connection to the agent, removed when the step ends.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::{Error, Result};

/// One `--ssh` value: `default`, `ID`, or `ID=PATH[,PATH...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSpec {
    /// The id `RUN --mount=type=ssh,id=` names.
    pub id: String,
    /// Agent sockets or private key files; none means `$SSH_AUTH_SOCK`.
    pub paths: Vec<PathBuf>,
}

impl SshSpec {
    /// Parses buildx's syntax.
    pub fn parse(value: &str) -> std::result::Result<SshSpec, String> {
        let (id, paths) = match value.split_once('=') {
            Some((id, p)) => (id, p.split(',').filter(|p| !p.is_empty()).map(PathBuf::from).collect()),
            None => (value, Vec::new()),
        };
        if id.is_empty() {
            return Err(format!("invalid ssh spec {value:?}: no id"));
        }
        Ok(SshSpec { id: id.to_string(), paths })
    }
}

/// The agents of a build, by id; private agents are stopped and their
/// sockets removed on drop.
#[derive(Debug, Default)]
pub struct Agents {
    sockets: BTreeMap<String, PathBuf>,
    private: Vec<PrivateAgent>,
}

#[derive(Debug)]
struct PrivateAgent {
    child: Child,
    _dir: TempDir,
}

impl Drop for PrivateAgent {
    fn drop(&mut self) {
        // The agent is the child of the command it runs (`cat`); stop it
        // first, then the command.
        for pid in children_of(self.child.id()) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pids whose parent is `parent` (from `/proc/PID/stat`).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // `PID (COMM) STATE PPID ...`; COMM may hold spaces and parentheses.
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent)
        })
        .collect()
}

impl Agents {
    /// Finds or starts the agent of every spec; private agents keep their
    /// sockets in a new directory below `tmp`.
    pub fn start(specs: &[SshSpec], tmp: &Path) -> Result<Agents> {
        let mut out = Agents::default();
        for spec in specs {
            let fail = |reason: String| Error::Ssh { id: spec.id.clone(), reason };
            let socket = if spec.paths.is_empty() {
                match std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
                    Some(s) => PathBuf::from(s),
                    None => return Err(fail("invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set".into())),
                }
            } else {
                let sockets: Vec<&PathBuf> = spec.paths.iter().filter(|p| is_socket(p)).collect();
                match (sockets.as_slice(), spec.paths.len()) {
                    ([one], 1) => one.to_path_buf(),
                    ([], _) => {
                        let agent = PrivateAgent::start(&spec.paths, tmp).map_err(fail)?;
                        let sock = agent._dir.path().join("agent.sock");
                        out.private.push(agent);
                        sock
                    }
                    _ => return Err(fail("give one agent socket, or key files only, per id".into())),
                }
            };
            out.sockets.insert(spec.id.clone(), socket);
        }
        Ok(out)
    }

    /// The agent socket of each id, for [`crate::settings::RunSettings::ssh`].
    pub fn sockets(&self) -> BTreeMap<String, PathBuf> {
        self.sockets.clone()
    }
}

/// The longest socket path the kernel takes (`sun_path`), less room for
/// the file name.
const MAX_SOCKET_DIR: usize = 90;

/// A new directory for a socket: below `tmp` (named as
/// the store's temporary directories are named, so that a sweep after a
/// kill removes it), or below the system's temporary directory when that
/// path would be too long for a socket.
pub fn socket_dir(tmp: &Path) -> Result<TempDir> {
    let dir = crate::materialize::temp_in(tmp)?;
    if dir.path().as_os_str().len() <= MAX_SOCKET_DIR {
        return Ok(dir);
    }
    let sys = std::env::temp_dir();
    tempfile::Builder::new().prefix("polyarch-ssh-").tempdir_in(&sys).map_err(|e| Error::io(&sys, e))
}

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

impl PrivateAgent {
    /// `ssh-agent -a SOCKET cat`, then `ssh-add KEYS...` without a prompt.
    /// The agent lives as long as its command, `cat` reading a pipe that
    /// only this process holds open: when polyarch ends, even killed, `cat`
    /// sees the end of its input and exits, and the agent with it (it
    /// checks its command every 10 seconds). The death signal of `prctl`
    /// cannot serve: Debian's ssh-agent is set-gid, whose exec clears it.
    fn start(keys: &[PathBuf], tmp: &Path) -> std::result::Result<PrivateAgent, String> {
        for k in keys {
            std::fs::metadata(k).map_err(|e| format!("{}: {e}", k.display()))?;
        }
        let dir = socket_dir(tmp).map_err(|e| e.to_string())?;
        let sock = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-a")
            .arg(&sock)
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting ssh-agent for the key files: {e}"))?;
        let agent = PrivateAgent { child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_socket(&sock) {
            if Instant::now() > deadline {
                return Err("ssh-agent did not create its socket".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = Command::new("ssh-add")
            .args(keys)
            .env("SSH_AUTH_SOCK", &sock)
            .env("SSH_ASKPASS_REQUIRE", "never")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("running ssh-add: {e}"))?;
        if !out.status.success() {
            let names: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(format!("loading the keys {}: {why}", names.join(", ")));
        }
        Ok(agent)
    }
}

/// A step's agent socket: connections to it are forwarded to the agent.
/// Stops accepting and removes its socket on drop.
pub struct Proxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens at `path` (owned by `owner`, with `mode`) for `agent`.
    pub fn start(agent: &Path, path: &Path, owner: (u32, u32), mode: u32) -> Result<Proxy> {
        use std::os::unix::fs::PermissionsExt;
        let listener = UnixListener::bind(path).map_err(|e| Error::io(path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io(path, e))?;
        if crate::fs::is_root() {
            std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1)).map_err(|e| Error::io(path, e))?;
        }
        listener.set_nonblocking(true).map_err(|e| Error::io(path, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, agent) = (stop.clone(), agent.to_path_buf());
        let thread = std::thread::spawn(move || accept_loop(&listener, &agent, &flag));
        Ok(Proxy { path: path.to_path_buf(), stop, thread: Some(thread) })
    }

    /// The socket.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: &UnixListener, agent: &Path, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let agent = agent.to_path_buf();
                std::thread::spawn(move || {
                    let _ = forward(client, &agent);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Copies both ways between a client and a new connection to the agent.
fn forward(client: UnixStream, agent: &Path) -> io::Result<()> {
    client.set_nonblocking(false)?;
    let upstream = UnixStream::connect(agent)?;
    let (mut c_read, mut u_write) = (client.try_clone()?, upstream.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream, client);
    let _ = io::copy(&mut u_read, &mut c_write);
    let _ = c_write.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn specs_as_buildx() {
        assert_eq!(SshSpec::parse("default").unwrap(), SshSpec { id: "default".into(), paths: vec![] });
        let s = SshSpec::parse("git=/k/a,/k/b").unwrap();
        assert_eq!((s.id.as_str(), s.paths.len()), ("git", 2));
        assert!(SshSpec::parse("=/x").is_err());
    }

    #[test]
    fn a_proxy_forwards_and_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let agent_path = t.path().join("agent");
        let agent = UnixListener::bind(&agent_path).unwrap();
        let echo = std::thread::spawn(move || {
            let (mut c, _) = agent.accept().unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).unwrap();
            c.write_all(&buf).unwrap();
        });
        let path = t.path().join("step.sock");
        let proxy = Proxy::start(&agent_path, &path, (0, 0), 0o600).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let mut c = UnixStream::connect(proxy.path()).unwrap();
        c.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        echo.join().unwrap();
        drop(proxy);
        assert!(!path.exists(), "the step's socket is gone");
    }

    #[test]
    fn default_needs_ssh_auth_sock_or_a_socket() {
        let t = tempfile::tempdir().unwrap();
        let not_socket = t.path().join("plain");
        std::fs::write(&not_socket, b"x").unwrap();
        let sock = t.path().join("s");
        let _l = UnixListener::bind(&sock).unwrap();
        let spec = SshSpec { id: "a".into(), paths: vec![sock.clone()] };
        assert_eq!(Agents::start(&[spec], t.path()).unwrap().sockets()["a"], sock);
        let mixed = SshSpec { id: "m".into(), paths: vec![sock, not_socket] };
        let e = Agents::start(&[mixed], t.path()).unwrap_err().to_string();
        assert!(e.starts_with("--ssh m:"), "{e}");
    }
}
