//! `polyarch run -t/-i/-it` with a real pseudo-terminal opened here: the
//! process gets a terminal of its own (`/dev/pts/0`), typed input reaches
//! it, the window size is passed on (and kept in step on SIGWINCH), the
//! exit code is kept, and the caller's terminal leaves raw mode again.
//! These need root, runc and the registry fixture.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::termios::{self, LocalModes, Winsize};

use crate::foreign::{aarch64_handler, run};
use crate::util::{busybox, have, is_root, require, shared_registry, Env};

fn setup() -> Option<(Env, String)> {
    let reg = shared_registry()?;
    if !require(is_root(), "running as root") || !require(have("runc"), "runc (apt-get install runc)") {
        return None;
    }
    let env = Env::new();
    let img = busybox(reg);
    env.ok(&["pull", "-q", &img]);
    Some((env, img))
}

/// A pty pair (master, slave) with the slave's window `rows`x`cols`.
fn pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let flags = rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC;
    let slave = rustix::fs::open(name.as_c_str(), flags, rustix::fs::Mode::empty()).unwrap();
    resize(&master, rows, cols);
    (master, slave)
}

fn resize(master: &OwnedFd, rows: u16, cols: u16) {
    termios::tcsetwinsize(master, Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 }).unwrap();
}

/// What the caller's terminal shows, read on a thread.
struct Screen {
    rx: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Screen {
    fn new(master: &OwnedFd) -> Screen {
        let mut reader = std::fs::File::from(master.try_clone().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Screen { rx, seen: String::new() }
    }

    /// Waits until the screen shows `text` after what was waited for before.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(i) = self.seen.find(text) {
                self.seen.drain(..i + text.len());
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(b) => self.seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("the terminal never showed {text:?}; it shows {:?}", self.seen),
            }
        }
    }
}

/// `polyarch run ARGS` with stdin, stdout and stderr on the pty `slave`.
fn spawn_on(env: &Env, slave: &OwnedFd, args: &[&str]) -> Child {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let io = || Stdio::from(slave.try_clone().unwrap());
    env.cmd(&all).stdin(io()).stdout(io()).stderr(io()).spawn().unwrap()
}

fn wait_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("polyarch run did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_it_gives_the_process_a_terminal_and_takes_typed_input() {
    let Some((env, img)) = setup() else { return };
    let (master, slave) = pty(40, 132);
    let before = termios::tcgetattr(&slave).unwrap();
    let mut screen = Screen::new(&master);
    let mut keys = std::fs::File::from(master.try_clone().unwrap());
    let mut child = spawn_on(&env, &slave, &["--rm", "-it", &img, "sh"]);
    screen.wait_for("# ");
    // Raw mode on the caller's side: what is typed is echoed by the
    // container's terminal only, once.
    let during = termios::tcgetattr(&slave).unwrap();
    assert!(!during.local_modes.intersects(LocalModes::ECHO | LocalModes::ICANON), "{:?}", during.local_modes);
    keys.write_all(b"tty; echo typed-$((6*7))\n").unwrap();
    screen.wait_for("/dev/pts/0\r\n");
    screen.wait_for("typed-42\r\n");
    keys.write_all(b"stty size\n").unwrap();
    screen.wait_for("40 132\r\n");
    // A resize reaches the container's terminal on SIGWINCH.
    resize(&master, 50, 100);
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::WINCH).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    keys.write_all(b"stty size\n").unwrap();
    screen.wait_for("50 100\r\n");
    keys.write_all(b"exit 3\n").unwrap();
    assert_eq!(wait_exit(&mut child), 3, "the exit code is kept; the screen showed {:?}", screen.seen);
    let after = termios::tcgetattr(&slave).unwrap();
    assert_eq!(after.local_modes, before.local_modes, "the caller's terminal is restored");
    crate::util::assert_no_mounts_or_containers(&env.root());
}

#[test]
fn run_t_without_i_and_i_without_t() {
    let Some((env, img)) = setup() else { return };
    // -t alone: a terminal, even with stdout a pipe; the process's stderr
    // is the terminal too.
    let (code, out, err) = run(&env, &["-t", &img, "sh", "-c", "tty; echo out; echo err >&2"]);
    assert_eq!((code, out.as_str()), (0, "/dev/pts/0\r\nout\r\nerr\r\n"), "{err}");
    assert!(!err.contains("err"), "{err}");
    // -i alone: stdin is passed on, with no terminal.
    let mut child = env
        .cmd(&["run", "-i", &img, "sh", "-c", "tty || true; cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"from-stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "not a tty\nfrom-stdin\n");
    // -it with stdin not a terminal fails as docker does.
    let (code, _, err) = run(&env, &["-it", &img, "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("the input device is not a TTY"), "{err}");
    // Exit codes with a terminal, and a foreign platform's process.
    assert_eq!(run(&env, &["-t", &img, "sh", "-c", "exit 5"]).0, 5);
    if aarch64_handler() {
        let (code, out, err) = run(&env, &["-t", "--platform", "linux/arm64", &img, "uname", "-m"]);
        assert_eq!((code, out.as_str()), (0, "aarch64\r\n"), "{err}");
    }
    crate::util::assert_no_mounts_or_containers(&env.root());
}

#[test]
fn a_stopped_or_killed_terminal_run_leaves_nothing_behind() {
    let Some((env, img)) = setup() else { return };
    // SIGTERM: the container is stopped, the caller's terminal restored.
    let (master, slave) = pty(24, 80);
    let before = termios::tcgetattr(&slave).unwrap();
    let mut screen = Screen::new(&master);
    let script = "trap 'echo stopping; exit 3' TERM; echo up; while :; do sleep 0.1; done";
    let mut child = spawn_on(&env, &slave, &["-it", &img, "sh", "-c", script]);
    screen.wait_for("up\r\n");
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert_eq!(wait_exit(&mut child), 130);
    screen.wait_for("stopping\r\n");
    assert_eq!(termios::tcgetattr(&slave).unwrap().local_modes, before.local_modes);
    crate::util::assert_no_mounts_or_containers(&env.root());
    // SIGKILL: the detached container outlives polyarch until the next run.
    let mut child = env.cmd(&["run", "-t", &img, "sleep", "600"]).stdout(Stdio::null()).spawn().unwrap();
    crate::run::wait_for_container(&env.root());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(run(&env, &[&img, "true"]).0, 0);
    crate::util::assert_no_mounts_or_containers(&env.root());
}
