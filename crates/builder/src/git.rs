//! Checkouts of Git references ([`GitRef`], parsed by
//! `polyarch_dockerfile::gitref` for the frontend and the builder alike)
//! with the `git` program: one ref, fetched shallow where the server
//! allows, its submodules too (unless `submodules=false`), as BuildKit's
//! git source does; a `checksum` (`ADD --checksum`, `?checksum=`) must be
//! a prefix of the commit's id, or of the annotated tag's.
//!
//! A repository reached over ssh (`ssh://`, `user@host:path`) is fetched
//! as BuildKit's git source fetches it: with the agent of `--ssh default`
//! only (none is an error naming the repository, as BuildKit's "no SSH key
//! forwarded"), no ssh config and no key file of the user, and the host's
//! keys scanned first (`ssh-keyscan`, BuildKit's best-effort
//! `KnownSSHHosts`) then required to match; a host whose keys cannot be
//! scanned is not checked. The user's `known_hosts` is neither read nor
//! written.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use polyarch_dockerfile::gitref::GitRef;

use crate::error::{Error, Result};

/// Parses `s` as a Git reference: `None` when it is none, an error naming
/// it when its query is not valid.
pub fn parse(s: &str) -> Result<Option<GitRef>> {
    GitRef::parse(s).map_err(|message| Error::Git { url: s.to_string(), message })
}

/// Checkouts of a [`GitRef`].
pub trait Checkout {
    /// Checks the reference out into the empty directory `dest` and
    /// returns the context directory (`dest`, or its subdirectory). The
    /// `.git` directory is removed unless `keep_git_dir` (BuildKit's
    /// `BUILDKIT_CONTEXT_KEEP_GIT_DIR`, or the reference's own
    /// `keep-git-dir`). `agent` is the socket of `--ssh default`, which an
    /// ssh remote needs.
    fn checkout(&self, dest: &Path, keep_git_dir: bool, agent: Option<&Path>) -> Result<PathBuf> {
        self.checkout_commit(dest, keep_git_dir, agent).map(|(dir, _)| dir)
    }

    /// [`Checkout::checkout`], with the commit checked out.
    fn checkout_commit(&self, dest: &Path, keep_git_dir: bool, agent: Option<&Path>) -> Result<(PathBuf, String)>;
}

impl Checkout for GitRef {
    fn checkout_commit(&self, dest: &Path, keep_git_dir: bool, agent: Option<&Path>) -> Result<(PathBuf, String)> {
        let subdir = subdir_path(self)?;
        if let Some(sum) = &self.checksum {
            if sum.is_empty() || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(error(self, format!("invalid checksum {sum} for Git URL, expected hex commit hash")));
            }
        }
        let access = access(self, agent)?;
        let git = Git { r: self, env: &access.env };
        git.fetch_checkout(dest, keep_git_dir || self.keep_git_dir == Some(true), subdir)
    }
}

/// How git reaches the remote: for ssh, the agent, the ssh command and
/// the scanned host keys (kept while the checkout runs).
fn access(g: &GitRef, agent: Option<&Path>) -> Result<Access> {
    if !g.is_ssh() {
        return Ok(Access::default());
    }
    let Some(agent) = agent else {
        return Err(error(
            g,
            "no SSH key \"default\" forwarded from the client: an ssh repository needs --ssh default".into(),
        ));
    };
    let known = g.ssh_host().and_then(|(host, port)| scan_host_keys(&host, port));
    // Only the forwarded agent's keys: no config file, no key file of the
    // user (an IdentityFile given, one that cannot exist, turns the
    // default ones off).
    let mut command = "ssh -F /dev/null -o IdentityFile=/dev/null/none -o BatchMode=yes -o LogLevel=ERROR".to_string();
    match &known {
        Some(f) => command.push_str(&format!(" -o UserKnownHostsFile={}", f.path().display())),
        None => command.push_str(" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"),
    }
    let env = vec![("GIT_SSH_COMMAND", OsString::from(command)), ("SSH_AUTH_SOCK", agent.as_os_str().to_owned())];
    Ok(Access { env, _known_hosts: known })
}

/// The subdirectory, refused when it leaves the repository.
fn subdir_path(g: &GitRef) -> Result<Option<PathBuf>> {
    let Some(d) = &g.subdir else { return Ok(None) };
    let mut out = PathBuf::new();
    for c in Path::new(d).components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::CurDir | std::path::Component::RootDir => {}
            _ => return Err(error(g, format!("subdirectory {d:?} leaves the repository"))),
        }
    }
    Ok(Some(out).filter(|p| !p.as_os_str().is_empty()))
}

fn error(g: &GitRef, message: String) -> Error {
    Error::Git { url: g.display(), message }
}

/// The environment git runs with for one checkout.
#[derive(Default)]
struct Access {
    env: Vec<(&'static str, OsString)>,
    _known_hosts: Option<tempfile::NamedTempFile>,
}

/// The host keys of `host` as `ssh-keyscan` gets them (a few seconds at
/// most), in a known-hosts file; `None` when none could be had.
fn scan_host_keys(host: &str, port: Option<u16>) -> Option<tempfile::NamedTempFile> {
    let mut cmd = Command::new("ssh-keyscan");
    cmd.args(["-T", "5"]);
    if let Some(p) = port {
        cmd.args(["-p", &p.to_string()]);
    }
    let out = cmd.arg("--").arg(host).stdin(std::process::Stdio::null()).output().ok()?;
    if !out.status.success() || out.stdout.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let mut f = tempfile::NamedTempFile::new().ok()?;
    std::io::Write::write_all(&mut f, &out.stdout).ok()?;
    Some(f)
}

/// `git` for one checkout of a reference.
struct Git<'a> {
    r: &'a GitRef,
    env: &'a [(&'static str, OsString)],
}

impl Git<'_> {
    fn error(&self, message: String) -> Error {
        error(self.r, message)
    }

    fn fetch_checkout(&self, dest: &Path, keep_git_dir: bool, subdir: Option<PathBuf>) -> Result<(PathBuf, String)> {
        self.git(dest, &["init", "-q"])?;
        self.git(dest, &["remote", "add", "origin", &self.r.remote])?;
        let mut want = self.r.reference.as_deref().unwrap_or("HEAD");
        if self.r.fetch_by_commit {
            // BuildKit's fetch-by-commit: the checksum is the commit, fetched
            // itself, the ref not looked up.
            match self.r.checksum.as_deref() {
                None => return Err(self.error("fetch-by-commit requires a checksum or a commit SHA ref".into())),
                Some(sum) if !is_commit_id(sum) => {
                    return Err(self.error(format!("fetch-by-commit requires a full commit SHA checksum, got {sum:?}")))
                }
                Some(sum) => want = sum,
            }
        }
        if let Some(sum) = &self.r.checksum {
            // A ref that is a commit id is checked before anything is fetched.
            if is_commit_id(want) && !want.to_ascii_lowercase().starts_with(&sum.to_ascii_lowercase()) {
                return Err(self.error(format!("expected checksum to match {sum}, got {want}")));
            }
        }
        // Shallow first; servers without shallow support (dumb HTTP) get
        // a plain fetch of the ref; a commit id the server does not serve
        // by itself, the whole history.
        let shallow = self.git(dest, &["fetch", "-q", "--depth=1", "--no-tags", "origin", want]);
        let target = match shallow.or_else(|_| self.git(dest, &["fetch", "-q", "--no-tags", "origin", want])) {
            Ok(()) => "FETCH_HEAD".to_string(),
            Err(e) if !is_commit_id(want) => return Err(e),
            Err(_) => {
                self.git(dest, &["fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"])?;
                want.to_string()
            }
        };
        // The object fetched: an annotated tag's own id, else the commit's.
        let fetched = self.git_out(dest, &["rev-parse", &target]).map(|o| o.trim().to_string()).unwrap_or_default();
        self.git(dest, &["-c", "advice.detachedHead=false", "checkout", "-q", "--detach", &target])
            .map_err(|e| self.error(format!("checking out {want}: {e}")))?;
        let commit = self.git_out(dest, &["rev-parse", "HEAD"])?.trim().to_string();
        if let Some(sum) = &self.r.checksum {
            let sum = sum.to_ascii_lowercase();
            if !commit.starts_with(&sum) && !fetched.starts_with(&sum) {
                let got =
                    if fetched.is_empty() || fetched == commit { commit } else { format!("{commit} or {fetched}") };
                return Err(self.error(format!("expected checksum to match {sum}, got {got}")));
            }
        }
        if dest.join(".gitmodules").is_file() && self.r.submodules != Some(false) {
            // As BuildKit's git source: submodules too, at the commits the
            // checkout records.
            self.git(dest, &["submodule", "update", "-q", "--init", "--recursive", "--depth=1"])
                .or_else(|_| self.git(dest, &["submodule", "update", "-q", "--init", "--recursive"]))?;
        }
        // The commit's time, read while `.git` is there.
        let commit_time = if self.r.mtime_commit {
            let out = self.git_out(dest, &["log", "-1", "--format=%ct", "HEAD"])?;
            Some(out.trim().parse::<i64>().map_err(|e| self.error(format!("reading the commit time: {e}")))?)
        } else {
            None
        };
        if !keep_git_dir {
            remove_dot_git(dest)?;
        }
        if let Some(t) = commit_time {
            set_times(dest, t).map_err(|e| self.error(format!("setting file times to the commit's: {e}")))?;
        }
        let Some(sub) = subdir else { return Ok((dest.to_path_buf(), commit)) };
        let dir = dest.join(&sub);
        let real = dir.canonicalize().map_err(|_| self.error(format!("subdirectory {} not found", sub.display())))?;
        let root = dest.canonicalize().map_err(|e| Error::io(dest, e))?;
        if !real.starts_with(&root) || !real.is_dir() {
            return Err(self.error(format!("subdirectory {} is not a directory inside the repository", sub.display())));
        }
        Ok((real, commit))
    }

    /// Runs `git ARGS` in `dir`: no prompts, no hooks, no system config.
    fn git(&self, dir: &Path, args: &[&str]) -> Result<()> {
        self.git_out(dir, args).map(drop)
    }

    /// [`Git::git`], returning its standard output.
    fn git_out(&self, dir: &Path, args: &[&str]) -> Result<String> {
        let out = Command::new("git")
            .args(["-c", "core.hooksPath=/dev/null", "-c", "protocol.file.allow=never"])
            .args(args)
            .current_dir(dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .map_err(|e| self.error(format!("running git: {e} (is git installed?)")))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("; ");
        Err(self.error(format!("git {}: {}", args.first().copied().unwrap_or(""), err.trim())))
    }
}

/// Removes every `.git` below `dir` (the repository's, and the files
/// submodules point to it with); git tracks no file of that name, so each
/// is git's own. Symbolic links are not followed.
fn remove_dot_git(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if entry.file_name() == ".git" {
            let removed = if kind.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed.map_err(|e| Error::io(&path, e))?;
        } else if kind.is_dir() {
            remove_dot_git(&path)?;
        }
    }
    Ok(())
}

/// Sets the times of everything below `dir` (and of `dir`) to `secs`,
/// links themselves not followed, directories after what they hold, as
/// BuildKit's `mtime=commit`.
fn set_times(dir: &Path, secs: i64) -> std::io::Result<()> {
    use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};
    let t = Timespec { tv_sec: secs, tv_nsec: 0 };
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            set_times(&e.path(), secs)?;
        } else {
            let ts = Timestamps { last_access: t, last_modification: t };
            utimensat(CWD, e.path(), &ts, AtFlags::SYMLINK_NOFOLLOW)?;
        }
    }
    let ts = Timestamps { last_access: t, last_modification: t };
    utimensat(CWD, dir, &ts, AtFlags::SYMLINK_NOFOLLOW).map_err(std::io::Error::from)
}

/// A full hexadecimal commit id (SHA-1 or SHA-256).
fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ssh_remote_needs_the_default_agent() {
        let g = parse("ssh://git@127.0.0.1:1/r.git#main").unwrap().unwrap();
        let d = tempfile::tempdir().unwrap();
        let e = g.checkout(d.path(), false, None).unwrap_err().to_string();
        assert!(
            e.contains("no SSH key \"default\" forwarded") && e.contains("ssh://git@127.0.0.1:1/r.git#main"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "nothing fetched");
    }

    #[test]
    fn a_checksum_is_hex() {
        let mut g = parse("git://127.0.0.1:1/r#main").unwrap().unwrap();
        g.checksum = Some("v1".into());
        let d = tempfile::tempdir().unwrap();
        let e = g.checkout(d.path(), false, None).unwrap_err().to_string();
        assert!(e.contains("invalid checksum v1 for Git URL, expected hex commit hash"), "{e}");
        let e = parse("https://h/r.git?depth=1").unwrap_err().to_string();
        assert!(e.contains("https://h/r.git?depth=1") && e.contains("unexpected query \"depth\""), "{e}");
    }

    #[test]
    fn subdir_cannot_leave_the_repository() {
        let g = parse("git://h/r#main:../../etc").unwrap().unwrap();
        let e = subdir_path(&g).unwrap_err().to_string();
        assert!(e.contains("leaves the repository") && e.contains("git://h/r#main:../../etc"), "{e}");
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(!is_commit_id("main"));
    }
}
