//! A real sshd on 127.0.0.1 for tests of ssh builder nodes.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, have, require, sh};

/// An sshd on 127.0.0.1 that accepts one generated key; stopped on drop.
pub struct Sshd {
    child: Child,
    pid_file: PathBuf,
    pub port: u16,
    key: PathBuf,
}

impl Sshd {
    pub fn start(dir: &Path) -> Option<Sshd> {
        Self::start_with(dir, "")
    }

    /// An sshd with more `sshd_config` lines (e.g. `SetEnv DOCKER_HOST=...`).
    pub fn start_with(dir: &Path, extra_config: &str) -> Option<Sshd> {
        if !require(Path::new("/usr/sbin/sshd").exists(), "/usr/sbin/sshd (apt-get install openssh-server)")
            || !require(have("ssh-keygen") && have("ssh"), "ssh and ssh-keygen (apt-get install openssh-client)")
            || !require(polyarch_emu::host::is_root(), "root (sshd logs in as root)")
        {
            return None;
        }
        let key = dir.join("id_ed25519");
        for (k, comment) in [(dir.join("host_ed25519"), "host"), (key.clone(), "client")] {
            sh(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"]).arg(&k));
        }
        std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        // sshd needs its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let pid_file = dir.join("sshd.pid");
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\nPidFile {}\n{}",
                dir.join("host_ed25519").display(),
                dir.join("authorized_keys").display(),
                pid_file.display(),
                extra_config
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .args(["-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .expect("starting sshd");
        let sshd = Sshd { child, pid_file, port, key };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(sshd)
    }

    /// The `ssh` command line (for POLYARCH_SSH) that logs in with the key.
    pub fn ssh_command(&self) -> String {
        format!(
            "ssh -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            self.key.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
