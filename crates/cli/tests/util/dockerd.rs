//! A Docker engine of the test's own: Debian's `dockerd` on a unix socket
//! in a fresh directory (and optionally `tcp://127.0.0.1:PORT`), with no
//! iptables and no bridge, stopped and removed when the guard drops, also
//! when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{have, is_root, require};

pub struct Dockerd {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// `tcp://127.0.0.1:PORT` when started with [`Dockerd::start_tcp`].
    pub tcp: Option<String>,
}

impl Dockerd {
    /// Root and dockerd present (a failure under CI, else a skip).
    fn prerequisites() -> bool {
        require(is_root(), "root (dockerd)")
            && require(have("dockerd") || Path::new("/usr/sbin/dockerd").exists(), "dockerd (Debian's docker.io)")
            && require(have("docker"), "the docker client")
    }

    /// An engine on a unix socket; `None` to skip.
    pub fn start() -> Option<Dockerd> {
        Self::start_with(false)
    }

    /// An engine on a unix socket and `tcp://127.0.0.1:PORT`.
    pub fn start_tcp() -> Option<Dockerd> {
        Self::start_with(true)
    }

    /// An engine on a unix socket and `tcp://127.0.0.1:PORT` with
    /// `--tlsverify`: its certificate from `ca`, clients need one of `ca`'s.
    pub fn start_tls(ca: &super::certs::Ca) -> Option<Dockerd> {
        let (cert, key) = ca.issue("dockerd", true);
        let mut tls = vec!["--tlsverify".into(), "--tlscacert".into(), ca.cert()];
        tls.extend(["--tlscert".into(), cert, "--tlskey".into(), key]);
        Self::start_args(true, &tls)
    }

    fn start_with(tcp: bool) -> Option<Dockerd> {
        Self::start_args(tcp, &[])
    }

    fn start_args(tcp: bool, extra: &[PathBuf]) -> Option<Dockerd> {
        if !Self::prerequisites() {
            return None;
        }
        // A short path: a unix socket path has at most 107 bytes.
        let dir = tempfile::Builder::new().prefix("pa-dockerd-").tempdir_in("/tmp").expect("tempdir");
        let d = dir.path();
        let mut cmd = Command::new("dockerd");
        cmd.arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .arg("--host")
            .arg(format!("unix://{}", d.join("sock").display()))
            .args(["--iptables=false", "--bridge=none", "--ip-forward=false", "--ip-masq=false"]);
        let tcp = tcp.then(|| format!("tcp://127.0.0.1:{}", super::free_port()));
        if let Some(t) = &tcp {
            cmd.arg("--host").arg(t);
        }
        cmd.args(extra);
        let log = std::fs::File::create(d.join("log")).expect("log");
        cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log).env_remove("DOCKER_HOST");
        let child = cmd.spawn().expect("starting dockerd");
        let mut me = Dockerd { dir, child: Some(child), tcp };
        me.wait_ready();
        Some(me)
    }

    fn wait_ready(&mut self) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("dockerd exited ({status}):\n{}", self.log());
                }
            }
            let ok =
                self.docker(&["version", "--format", "{{.Server.Version}}"]).output().is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("dockerd did not answer in 60 s:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// `unix://DIR/sock`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The docker client against this engine.
    pub fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", self.host()).env("DOCKER_CONFIG", self.dir.path().join("client")).args(args);
        c
    }

    /// Runs the docker client; returns (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.docker(args).output().expect("running docker");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs the docker client, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "docker {args:?} failed:\n{out}{err}\ndockerd log:\n{}", self.log());
        out
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Whatever the engine left mounted below its directories.
        let root = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut left: Vec<&str> =
            mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| m.starts_with(&root)).collect();
        left.reverse();
        for m in left {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}
