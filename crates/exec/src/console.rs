//! Terminals for containers (`docker run -t`), as containerd's shim
//! serves them: runc runs the container detached with `--console-socket`,
//! creates the pseudo-terminal inside it and sends the master side over
//! that socket (`SCM_RIGHTS`). polyarch then copies the caller's stdin to
//! the master and the master to [`ProcessIo::stdout`], applies window size
//! changes, and waits for the container's process, which becomes its
//! child when runc exits because polyarch is a child subreaper.
//!
//! [`RawMode`] puts the caller's own terminal in raw mode (as `docker run
//! -it` does), so keys reach the container's terminal unchanged.

use std::fs;
use std::io::{IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::process::{Pid, WaitOptions};
use rustix::termios::{self, OptionalActions, Termios, Winsize};

use crate::error::{Error, Result};
use crate::process::{ExitStatus, Output, ProcessIo, ProcessSpec, Sink, Terminal, WindowSize};
use crate::runc::{outcome, stdio, RuncExecutor, Stop};

/// How long runc may take to hand the terminal over once it has started
/// the container (it sends it before it exits, so it is normally there).
const HANDOVER: Duration = Duration::from_secs(5);

impl RuncExecutor {
    /// [`crate::Executor::run`] with a terminal: the bundle is prepared.
    pub(crate) fn run_with_terminal(
        &self,
        id: &str,
        bundle: &Path,
        rootfs: &Path,
        process: &ProcessSpec,
        io: ProcessIo<'_>,
    ) -> Result<ExitStatus> {
        let err =
            |what: &'static str| move |source: std::io::Error| Error::Console { id: id.to_string(), what, source };
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| err("becoming a child subreaper")(e.into()))?;
        let socket_path = bundle.join("console.sock");
        let listener = UnixListener::bind(&socket_path).map_err(err("listening on the console socket"))?;
        let log = bundle.join("log.json");
        let pid_file = bundle.join("pid");
        let mut cmd =
            self.runtime.command(["--log".as_ref(), log.as_os_str(), "--log-format".as_ref(), "json".as_ref()]);
        cmd.arg("run").arg("--detach").arg("--console-socket").arg(&socket_path);
        cmd.arg("--bundle").arg(bundle).arg("--pid-file").arg(&pid_file).arg(id);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stdio(&io.stderr));
        let ProcessIo { stdout, cancel, timeout, terminal, .. } = io;
        let terminal = terminal.unwrap_or_default();
        let mut child = cmd.spawn().map_err(|e| Error::Spawn { program: self.runtime.path().into(), source: e })?;
        let started = self.wait(&mut child, id, cancel.as_ref(), timeout)?;
        match started.stop {
            Some(Stop::Cancelled) => return Err(Error::Cancelled { id: id.to_string() }),
            Some(Stop::TimedOut) => {
                return Err(Error::TimedOut { id: id.to_string(), after: timeout.unwrap_or_default() })
            }
            None if !started.status.success() => return outcome(id, rootfs, process, &log, started.status),
            None => {}
        }
        let master = receive_master(&listener).map_err(err("receiving the terminal from the runtime"))?;
        let pid = read_pid(&pid_file).map_err(err("reading the container's pid"))?;
        let session = Session { id, master: &master, pid, terminal: &terminal };
        let status = self.serve(&session, stdout, cancel.as_ref(), timeout)?;
        outcome(id, rootfs, process, &log, status)
    }

    /// Copies between the caller and the terminal until the container's
    /// process exits; returns its status.
    fn serve(
        &self,
        session: &Session<'_>,
        stdout: Output<'_>,
        cancel: Option<&crate::Cancel>,
        timeout: Option<Duration>,
    ) -> Result<ExitStatus> {
        let Session { id, master, pid, terminal } = *session;
        let stop = AtomicBool::new(false);
        let mut exited = || -> Result<Option<ExitStatus>> {
            match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
                Ok(Some((_, st))) => Ok(Some(exit_status(st))),
                Ok(None) => Ok(None),
                Err(e) => {
                    Err(Error::Console { id: id.to_string(), what: "waiting for the container", source: e.into() })
                }
            }
        };
        let kill = || {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        };
        let mut resize = || {
            if let Some(size) = terminal.resize.take() {
                let _ = set_window_size(master.as_fd(), size);
            }
        };
        let waited = thread::scope(|s| {
            let output = s.spawn(|| copy_output(master.as_fd(), stdout));
            let input = terminal.stdin.then(|| s.spawn(|| copy_input(master.as_fd(), &stop)));
            let waited = self.wait_for(&mut exited, &kill, id, cancel, timeout, &mut resize);
            stop.store(true, Ordering::SeqCst);
            if let Some(i) = input {
                let _ = i.join();
            }
            let _ = output.join();
            waited
        })?;
        match waited.stop {
            Some(Stop::Cancelled) => Err(Error::Cancelled { id: id.to_string() }),
            Some(Stop::TimedOut) => Err(Error::TimedOut { id: id.to_string(), after: timeout.unwrap_or_default() }),
            None => Ok(waited.status),
        }
    }
}

/// A started container with a terminal.
#[derive(Clone, Copy)]
struct Session<'a> {
    id: &'a str,
    master: &'a OwnedFd,
    pid: Pid,
    terminal: &'a Terminal,
}

fn exit_status(st: rustix::process::WaitStatus) -> ExitStatus {
    match (st.exit_status(), st.terminating_signal()) {
        (Some(code), _) => ExitStatus(code),
        (None, Some(sig)) => ExitStatus(128 + sig),
        (None, None) => ExitStatus(255),
    }
}

fn read_pid(path: &Path) -> std::io::Result<Pid> {
    let text = fs::read_to_string(path)?;
    text.trim()
        .parse::<i32>()
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::other(format!("invalid pid {text:?} in {}", path.display())))
}

/// Accepts runc's connection and takes the terminal's master from it.
fn receive_master(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + HANDOVER;
    let conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    };
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(HANDOVER))?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 4096];
    recvmsg(&conn, &mut [IoSliceMut::new(&mut name)], &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let received = control.drain().find_map(|m| match m {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    });
    received.ok_or_else(|| std::io::Error::other("no file descriptor received"))
}

/// The terminal's output to `out` until the terminal closes (EIO once
/// the container's last process holding it exits).
fn copy_output(master: BorrowedFd<'_>, out: Output<'_>) {
    let mut sink: Sink<'_> = match out {
        Output::Inherit => Box::new(|b: &[u8]| {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(b).and_then(|()| o.flush());
        }),
        Output::Null => Box::new(|_: &[u8]| {}),
        Output::Callback(f) => f,
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rustix::io::read(master, &mut buf) {
            Ok(0) => return,
            Ok(n) => sink(&buf[..n]),
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

/// The caller's stdin to the terminal until EOF, an error, or `stop`.
fn copy_input(master: BorrowedFd<'_>, stop: &AtomicBool) {
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
        let tick = rustix::time::Timespec { tv_sec: 0, tv_nsec: 50_000_000 };
        match rustix::event::poll(&mut fds, Some(&tick)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        let n = match stdin.lock().read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if write_all(master, &buf[..n]).is_err() {
            return;
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> rustix::io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn set_window_size(fd: BorrowedFd<'_>, size: WindowSize) -> rustix::io::Result<()> {
    termios::tcsetwinsize(fd, Winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 })
}

/// The window size of the terminal `fd` is, if it is one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<WindowSize> {
    let w = termios::tcgetwinsize(fd).ok()?;
    (w.ws_row > 0 && w.ws_col > 0).then_some(WindowSize { rows: w.ws_row, cols: w.ws_col })
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    termios::isatty(fd)
}

/// A terminal in raw mode; its earlier settings come back on drop.
#[derive(Debug)]
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal `fd` in raw mode (no echo, no line editing, no
    /// signals from keys: the container's terminal does all that).
    pub fn enable(fd: BorrowedFd<'_>) -> std::io::Result<RawMode> {
        let fd = fd.try_clone_to_owned()?;
        let saved = termios::tcgetattr(&fd)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&fd, OptionalActions::Now, &raw)?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(&self.fd, OptionalActions::Now, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pty pair: (master, slave).
    fn pty() -> (OwnedFd, OwnedFd) {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let slave = rustix::fs::open(
            name.as_c_str(),
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        (master, slave)
    }

    #[test]
    fn raw_mode_is_restored_on_drop() {
        let (_master, slave) = pty();
        assert!(is_terminal(slave.as_fd()));
        let before = termios::tcgetattr(&slave).unwrap();
        assert!(before.local_modes.contains(termios::LocalModes::ECHO));
        let raw = RawMode::enable(slave.as_fd()).unwrap();
        let during = termios::tcgetattr(&slave).unwrap();
        assert!(!during.local_modes.contains(termios::LocalModes::ECHO | termios::LocalModes::ICANON));
        drop(raw);
        let after = termios::tcgetattr(&slave).unwrap();
        assert_eq!(after.local_modes, before.local_modes);
    }

    #[test]
    fn window_sizes_are_set_and_read() {
        let (master, slave) = pty();
        assert_eq!(window_size(slave.as_fd()), None, "a new pty is 0x0");
        set_window_size(master.as_fd(), WindowSize { rows: 40, cols: 132 }).unwrap();
        assert_eq!(window_size(slave.as_fd()), Some(WindowSize { rows: 40, cols: 132 }));
        let (r, _w) = std::io::pipe().unwrap();
        assert!(!is_terminal(r.as_fd()));
    }

    #[test]
    fn output_is_copied_until_the_terminal_closes() {
        let (master, slave) = pty();
        write_all(slave.as_fd(), b"hello\n").unwrap();
        drop(slave);
        let mut got = Vec::new();
        copy_output(master.as_fd(), Output::Callback(Box::new(|b: &[u8]| got.extend_from_slice(b))));
        assert_eq!(got, b"hello\r\n", "the terminal turns \\n into \\r\\n");
    }
}
