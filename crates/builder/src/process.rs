//! What RUN steps need besides the instruction: secrets given to the
//! build, how the root file system is made, cache-mount directories kept
//! under the store root, the command line BuildKit would run and the
//! process's output as events.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use polyarch_dockerfile::instructions::CmdLine;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::{Event, EventSink, Stream, Vertex};
pub use polyarch_dockerfile::values::{chomp, is_lone_heredoc};

/// How many lines of output a failure shows.
const TAIL: usize = 6;

/// Where a secret's value comes from (`--secret id=ID,src=FILE|env=VAR`).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file on the host.
    File(PathBuf),
    /// An environment variable of the builder.
    Env(String),
    /// The value itself, held in memory: a secret the client of a builder
    /// node read and sent with the build. Never shown by `Debug`.
    Value(Vec<u8>),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(p) => f.debug_tuple("File").field(p).finish(),
            SecretSource::Env(v) => f.debug_tuple("Env").field(v).finish(),
            SecretSource::Value(v) => write!(f, "Value(<{} bytes>)", v.len()),
        }
    }
}

impl SecretSource {
    /// The largest secret a build takes, as BuildKit's secrets provider.
    pub const MAX_SIZE: u64 = 500 * 1024;

    /// Parses the value of `--secret`: `id=ID` with `src=`/`source=` or
    /// `env=`; with neither, the environment variable named like the id
    /// when it is set, else the file named like it, as buildx does.
    /// Returns the id and the source.
    pub fn parse(spec: &str) -> std::result::Result<(String, SecretSource), String> {
        Self::parse_with(spec, |name| std::env::var_os(name).is_some())
    }

    /// [`SecretSource::parse`] with `has_env` telling which environment
    /// variables are set.
    pub fn parse_with(
        spec: &str,
        has_env: impl Fn(&str) -> bool,
    ) -> std::result::Result<(String, SecretSource), String> {
        let mut id = None;
        let mut src = None;
        for field in polyarch_dockerfile::values::csv_fields(spec) {
            let (k, v) = field.split_once('=').ok_or_else(|| format!("invalid secret field {field:?}"))?;
            match k.trim().to_ascii_lowercase().as_str() {
                "id" => id = Some(v.to_string()),
                "src" | "source" => src = Some(SecretSource::File(PathBuf::from(v))),
                "env" => src = Some(SecretSource::Env(v.to_string())),
                "type" if v == "file" || v == "env" => {}
                other => return Err(format!("unexpected key {other:?} in secret {spec:?}")),
            }
        }
        let id = id.filter(|i| !i.is_empty()).ok_or_else(|| format!("secret {spec:?} has no id"))?;
        let src = src.unwrap_or_else(|| {
            if has_env(&id) {
                SecretSource::Env(id.clone())
            } else {
                SecretSource::File(PathBuf::from(&id))
            }
        });
        Ok((id, src))
    }

    /// Checks, before a build starts, that a file source exists and is at
    /// most [`SecretSource::MAX_SIZE`] bytes, as BuildKit's secrets store
    /// does when it is made (an environment variable is read when used).
    pub fn check(&self, id: &str) -> std::result::Result<(), String> {
        let SecretSource::File(path) = self else { return Ok(()) };
        let meta = std::fs::metadata(path).map_err(|e| format!("failed to stat {}: {e}", path.display()))?;
        if meta.len() > Self::MAX_SIZE {
            return Err(format!("secret {id} too big. max size 500KB ({} is {} bytes)", path.display(), meta.len()));
        }
        Ok(())
    }

    /// The secret's bytes.
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            SecretSource::File(p) => std::fs::read(p),
            SecretSource::Env(v) => std::env::var(v).map(String::into_bytes).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("environment variable {v} unset"))
            }),
            SecretSource::Value(v) => Ok(v.clone()),
        }
    }
}

/// How a RUN step's root file system is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SnapshotterKind {
    /// Overlay when the store's file system allows it, else naive.
    #[default]
    Auto,
    /// An overlay of the stage's layers, each unpacked once under the
    /// store root; the changes are read from the upper directory.
    Overlay,
    /// The tree is written to a directory and compared after the run.
    Naive,
}

impl std::str::FromStr for SnapshotterKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<SnapshotterKind, String> {
        match s {
            "auto" => Ok(SnapshotterKind::Auto),
            "overlay" | "overlayfs" => Ok(SnapshotterKind::Overlay),
            "naive" | "native" => Ok(SnapshotterKind::Naive),
            other => Err(format!("unsupported snapshotter {other:?} (want auto, overlay or naive)")),
        }
    }
}

/// The arguments BuildKit runs for a RUN command line: exec form as is,
/// shell form after `shell` (default `/bin/sh -c`).
pub fn command_args(cmd: &CmdLine, shell: &[String], script: Option<String>) -> Vec<String> {
    let args = match script {
        Some(s) => vec![s],
        None => cmd.args.clone(),
    };
    if !cmd.prepend_shell {
        return args;
    }
    let mut out: Vec<String> = if shell.is_empty() { vec!["/bin/sh".into(), "-c".into()] } else { shell.to_vec() };
    out.push(args.join(" "));
    out
}

/// A cache mount's directory under the store root, by id: kept across
/// builds. Created with `mode`, owned by `uid:gid`, when new.
pub fn cache_dir(store_root: &Path, id: &str, owner: (u64, u64), mode: u32) -> Result<PathBuf> {
    made_cache_dir(store_root, id, mode, |dir| {
        if crate::fs::is_root() {
            std::os::unix::fs::chown(dir, Some(owner.0 as u32), Some(owner.1 as u32)).map_err(|e| Error::io(dir, e))?;
        }
        Ok(())
    })
}

/// The cache-mount directory of `id` that starts as a copy of `seed`
/// (its top directory with `mode`), made once, like [`cache_dir`].
pub fn seeded_cache_dir(store_root: &Path, id: &str, seed: &crate::MemFs, mode: u32) -> Result<PathBuf> {
    made_cache_dir(store_root, id, mode, |dir| seed.write_to_dir(dir))
}

/// The cache-mount directory of `id`; a new one is filled by `fill` in a
/// temporary directory, given `mode`, and renamed into place (a build
/// that made it first wins).
fn made_cache_dir(store_root: &Path, id: &str, mode: u32, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let parent = store_root.join("cache-mounts");
    let dir = parent.join(hex::encode(Sha256::digest(id.as_bytes())));
    if !dir.exists() {
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let tmp = tempfile::TempDir::new_in(&parent).map_err(|e| Error::io(&parent, e))?;
        fill(tmp.path())?;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(tmp.path(), e))?;
        let made = tmp.keep();
        if std::fs::rename(&made, &dir).is_err() {
            // Another build made it first.
            let _ = std::fs::remove_dir_all(&made);
        }
    }
    Ok(dir)
}

/// An exclusive lock on a cache mount (`sharing=locked`), held until
/// dropped.
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

impl CacheLock {
    /// Waits for the lock of the cache directory `dir`.
    pub fn acquire(dir: &Path) -> Result<CacheLock> {
        let path = dir.with_extension("lock");
        let f =
            File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        f.lock().map_err(|e| Error::io(&path, e))?;
        Ok(CacheLock { _file: f })
    }

    /// Takes the lock if free.
    pub fn try_acquire(dir: &Path) -> Result<Option<CacheLock>> {
        let path = dir.with_extension("lock");
        let f =
            File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        match f.try_lock() {
            Ok(()) => Ok(Some(CacheLock { _file: f })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

/// Splits a process's output into lines, sends each as an event and keeps
/// the last few for an error message.
#[derive(Clone)]
pub(crate) struct Output {
    inner: Arc<Mutex<OutputState>>,
}

struct OutputState {
    events: EventSink,
    vertex: Vertex,
    /// What came after the last newline, of stdout and of stderr.
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
}

impl Output {
    pub(crate) fn new(events: EventSink, vertex: Vertex) -> Output {
        let state = OutputState { events, vertex, partial: [Vec::new(), Vec::new()], tail: VecDeque::new() };
        Output { inner: Arc::new(Mutex::new(state)) }
    }

    pub(crate) fn push(&self, stream: Stream, bytes: &[u8]) {
        let Ok(mut s) = self.inner.lock() else { return };
        let k = stream as usize;
        s.partial[k].extend_from_slice(bytes);
        while let Some(i) = s.partial[k].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = s.partial[k].drain(..=i).collect();
            s.line(stream, &line[..line.len() - 1]);
        }
    }

    pub(crate) fn flush(&self) {
        let Ok(mut s) = self.inner.lock() else { return };
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut s.partial[stream as usize]);
            if !rest.is_empty() {
                s.line(stream, &rest);
            }
        }
    }

    pub(crate) fn tail(&self) -> Vec<String> {
        self.inner.lock().map(|s| s.tail.iter().cloned().collect()).unwrap_or_default()
    }
}

impl OutputState {
    fn line(&mut self, stream: Stream, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw).trim_end_matches('\r').to_string();
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(text.clone());
        let (vertex, at) = (self.vertex.clone(), std::time::SystemTime::now());
        (self.events)(Event::Log { vertex, at, stream, line: text });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str], shell: bool) -> CmdLine {
        CmdLine { args: args.iter().map(|s| s.to_string()).collect(), prepend_shell: shell, files: Vec::new() }
    }

    #[test]
    fn command_lines() {
        assert_eq!(command_args(&cmd(&["echo hi"], true), &[], None), ["/bin/sh", "-c", "echo hi"]);
        let bash = vec!["/bin/bash".to_string(), "-xc".to_string()];
        assert_eq!(command_args(&cmd(&["echo hi"], true), &bash, None), ["/bin/bash", "-xc", "echo hi"]);
        assert_eq!(command_args(&cmd(&["ls", "-l"], false), &bash, None), ["ls", "-l"]);
        assert_eq!(command_args(&cmd(&["<<EOF"], true), &[], Some("echo a\n".into())), ["/bin/sh", "-c", "echo a\n"]);
    }

    #[test]
    fn heredoc_markers() {
        assert!(is_lone_heredoc("<<EOF"));
        assert!(is_lone_heredoc("<<-\"EOT\""));
        assert!(!is_lone_heredoc("cat <<EOF"));
        assert!(!is_lone_heredoc("<<EOF > /x"));
        assert_eq!(chomp("\t\techo\n\tx"), "echo\nx");
    }

    #[test]
    fn secret_specs() {
        assert_eq!(SecretSource::parse("id=a,src=/f").unwrap(), ("a".into(), SecretSource::File("/f".into())));
        assert_eq!(SecretSource::parse("id=a,env=V").unwrap(), ("a".into(), SecretSource::Env("V".into())));
        let set = |name: &str| name == "TOKEN";
        assert_eq!(
            SecretSource::parse_with("id=TOKEN", set).unwrap(),
            ("TOKEN".into(), SecretSource::Env("TOKEN".into()))
        );
        // No such variable: the file named like the id.
        assert_eq!(
            SecretSource::parse_with("id=key.pem", set).unwrap(),
            ("key.pem".into(), SecretSource::File("key.pem".into()))
        );
        assert_eq!(
            SecretSource::parse("id=a,\"src=/dir,with comma/f\"").unwrap(),
            ("a".into(), SecretSource::File("/dir,with comma/f".into()))
        );
        assert!(SecretSource::parse("src=/f").is_err());
        assert!(SecretSource::parse("id=a,bogus=1").is_err());
    }

    #[test]
    fn secret_files_are_checked_up_front() {
        let d = tempfile::tempdir().unwrap();
        let small = d.path().join("small");
        std::fs::write(&small, b"s3cr3t").unwrap();
        assert!(SecretSource::File(small).check("a").is_ok());
        let big = d.path().join("big");
        std::fs::write(&big, vec![0u8; 500 * 1024 + 1]).unwrap();
        let e = SecretSource::File(big).check("b").unwrap_err();
        assert!(e.starts_with("secret b too big. max size 500KB"), "{e}");
        let e = SecretSource::File(d.path().join("gone")).check("c").unwrap_err();
        assert!(e.starts_with("failed to stat ") && e.contains("gone: No such file"), "{e}");
        assert!(SecretSource::Env("PA_NOT_SET_ANYWHERE".into()).check("d").is_ok(), "read when used");
    }

    #[test]
    fn cache_dirs_persist() {
        let d = tempfile::tempdir().unwrap();
        let a = cache_dir(d.path(), "/root/.cache", (0, 0), 0o755).unwrap();
        std::fs::write(a.join("f"), b"1").unwrap();
        let b = cache_dir(d.path(), "/root/.cache", (0, 0), 0o755).unwrap();
        assert_eq!(a, b);
        assert!(b.join("f").exists());
        assert_ne!(cache_dir(d.path(), "other", (0, 0), 0o755).unwrap(), a);
        let l = CacheLock::acquire(&a).unwrap();
        assert!(CacheLock::try_acquire(&a).unwrap().is_none());
        drop(l);
        assert!(CacheLock::try_acquire(&a).unwrap().is_some());
    }

    #[test]
    fn output_is_split_into_lines_and_keeps_a_tail() {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let s2 = seen.clone();
        let sink: EventSink = Arc::new(move |e| {
            if let Event::Log { line, vertex, stream, .. } = e {
                assert_eq!(vertex.id, 4);
                s2.lock().unwrap().push(format!("{}{line}", if stream == Stream::Stderr { "!" } else { "" }));
            }
        });
        let out = Output::new(sink, Vertex { id: 4, ..Vertex::default() });
        out.push(Stream::Stdout, b"a\nb");
        out.push(Stream::Stderr, b"oops");
        out.push(Stream::Stdout, b"c\r\n");
        for i in 0..10 {
            out.push(Stream::Stdout, format!("{i}\n").as_bytes());
        }
        out.push(Stream::Stdout, b"end");
        out.flush();
        let got = seen.lock().unwrap().clone();
        assert_eq!(&got[..3], ["a", "bc", "0"]);
        assert_eq!(&got[got.len() - 2..], ["end", "!oops"], "each stream keeps its own partial line");
        assert_eq!(out.tail(), ["6", "7", "8", "9", "end", "oops"]);
    }
}
