//! Git sources: references read as BuildKit's `gitutil.ParseGitRef` reads
//! them (`https://host/repo.git#ref:subdir`, `git://...`, `ssh://...`,
//! `user@host:repo#ref`, `github.com/owner/repo`), and checkouts of one
//! ref with the `git` program.
//!
//! Submodules are checked out as well, as BuildKit's git source does.
//!
//! A repository reached over ssh (`ssh://`, `user@host:path`) is fetched
//! as BuildKit's git source fetches it: with the agent of `--ssh default`
//! only (none is an error naming the repository, as BuildKit's "no SSH key
//! forwarded"), no ssh config and no key file of the user, and the host's
//! keys scanned first (`ssh-keyscan`, BuildKit's best-effort
//! `KnownSSHHosts`) then required to match; a host whose keys cannot be
//! scanned is not checked. The user's `known_hosts` is neither read nor
//! written.
//!
//! An `http(s)` URL is a Git reference only when its path ends in `.git`,
//! as in BuildKit; any other URL is an HTTP source. The fragment is
//! `REF[:SUBDIR]`: a branch, a tag, a full commit id or a `refs/...` name,
//! and the directory inside the repository that becomes the context.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// A parsed Git reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// The repository URL given to `git`, without the fragment.
    pub remote: String,
    /// The branch, tag or commit (`None`: the remote's HEAD).
    pub reference: Option<String>,
    /// The directory inside the repository (`None`: its root).
    pub subdir: Option<String>,
}

impl GitRef {
    /// Parses `s`, or `None` when it is not a Git reference.
    pub fn parse(s: &str) -> Option<GitRef> {
        let (url, fragment) = match s.split_once('#') {
            Some((u, f)) => (u, Some(f)),
            None => (s, None),
        };
        let remote = if let Some(rest) = url.strip_prefix("github.com/") {
            format!("https://github.com/{rest}")
        } else if let Some((scheme, rest)) = url.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            let path = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
            let path = path.split('?').next().unwrap_or(path);
            match scheme.as_str() {
                "http" | "https" if path.ends_with(".git") => url.to_string(),
                "git" | "ssh" => url.to_string(),
                _ => return None,
            }
        } else if is_scp_style(url) {
            url.to_string()
        } else {
            return None;
        };
        let (reference, subdir) = match fragment {
            None => (None, None),
            Some(f) => {
                let (r, d) = f.split_once(':').unwrap_or((f, ""));
                (
                    Some(r).filter(|r| !r.is_empty()).map(String::from),
                    Some(d).filter(|d| !d.is_empty()).map(String::from),
                )
            }
        };
        Some(GitRef { remote, reference, subdir })
    }

    /// The URL as given, fragment included, for messages.
    pub fn display(&self) -> String {
        match (&self.reference, &self.subdir) {
            (None, None) => self.remote.clone(),
            (r, d) => {
                let r = r.as_deref().unwrap_or("");
                match d {
                    Some(d) => format!("{}#{r}:{d}", self.remote),
                    None => format!("{}#{r}", self.remote),
                }
            }
        }
    }

    /// Whether git reaches the repository over ssh.
    pub fn is_ssh(&self) -> bool {
        self.remote.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("ssh://")) || is_scp_style(&self.remote)
    }

    /// The host (and port) of an ssh remote.
    fn ssh_host(&self) -> Option<(String, Option<u16>)> {
        let url = self.remote.get(6..).filter(|_| self.remote[..6].eq_ignore_ascii_case("ssh://"));
        let Some(rest) = url else {
            // `user@host:path`
            let (_, after) = self.remote.split_once('@')?;
            return after.split_once(':').map(|(h, _)| (h.to_string(), None));
        };
        let authority = rest.split('/').next()?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = match host_port.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6.split_once(']')?;
                (h, after.strip_prefix(':'))
            }
            None => match host_port.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (host_port, None),
            },
        };
        Some((host.to_string(), port.and_then(|p| p.parse().ok()))).filter(|(h, _)| !h.is_empty())
    }

    /// Checks the reference out into the empty directory `dest` and
    /// returns the context directory (`dest`, or its subdirectory). The
    /// `.git` directory is removed unless `keep_git_dir` (BuildKit's
    /// `BUILDKIT_CONTEXT_KEEP_GIT_DIR`). `agent` is the socket of `--ssh
    /// default`, which an ssh remote needs.
    pub fn checkout(&self, dest: &Path, keep_git_dir: bool, agent: Option<&Path>) -> Result<PathBuf> {
        self.checkout_commit(dest, keep_git_dir, agent).map(|(dir, _)| dir)
    }

    /// [`GitRef::checkout`], with the commit checked out.
    pub fn checkout_commit(&self, dest: &Path, keep_git_dir: bool, agent: Option<&Path>) -> Result<(PathBuf, String)> {
        let subdir = self.subdir_path()?;
        let access = self.access(agent)?;
        let git = Git { r: self, env: &access.env };
        git.fetch_checkout(dest, keep_git_dir, subdir)
    }

    /// How git reaches the remote: for ssh, the agent, the ssh command and
    /// the scanned host keys (kept while the checkout runs).
    fn access(&self, agent: Option<&Path>) -> Result<Access> {
        if !self.is_ssh() {
            return Ok(Access::default());
        }
        let Some(agent) = agent else {
            return Err(self.error(
                "no SSH key \"default\" forwarded from the client: an ssh repository needs --ssh default".into(),
            ));
        };
        let known = self.ssh_host().and_then(|(host, port)| scan_host_keys(&host, port));
        // Only the forwarded agent's keys: no config file, no key file of
        // the user (an IdentityFile given, one that cannot exist, turns
        // the default ones off).
        let mut command =
            "ssh -F /dev/null -o IdentityFile=/dev/null/none -o BatchMode=yes -o LogLevel=ERROR".to_string();
        match &known {
            Some(f) => command.push_str(&format!(" -o UserKnownHostsFile={}", f.path().display())),
            None => command.push_str(" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"),
        }
        let env = vec![("GIT_SSH_COMMAND", OsString::from(command)), ("SSH_AUTH_SOCK", agent.as_os_str().to_owned())];
        Ok(Access { env, _known_hosts: known })
    }

    /// The subdirectory, refused when it leaves the repository.
    fn subdir_path(&self) -> Result<Option<PathBuf>> {
        let Some(d) = &self.subdir else { return Ok(None) };
        let mut out = PathBuf::new();
        for c in Path::new(d).components() {
            match c {
                std::path::Component::Normal(n) => out.push(n),
                std::path::Component::CurDir | std::path::Component::RootDir => {}
                _ => return Err(self.error(format!("subdirectory {d:?} leaves the repository"))),
            }
        }
        Ok(Some(out).filter(|p| !p.as_os_str().is_empty()))
    }

    fn error(&self, message: String) -> Error {
        Error::Git { url: self.display(), message }
    }
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
        self.r.error(message)
    }

    fn fetch_checkout(&self, dest: &Path, keep_git_dir: bool, subdir: Option<PathBuf>) -> Result<(PathBuf, String)> {
        self.git(dest, &["init", "-q"])?;
        self.git(dest, &["remote", "add", "origin", &self.r.remote])?;
        let want = self.r.reference.as_deref().unwrap_or("HEAD");
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
        self.git(dest, &["-c", "advice.detachedHead=false", "checkout", "-q", "--detach", &target])
            .map_err(|e| self.error(format!("checking out {want}: {e}")))?;
        let commit = self.git_out(dest, &["rev-parse", "HEAD"])?.trim().to_string();
        if dest.join(".gitmodules").is_file() {
            // As BuildKit's git source: submodules too, at the commits the
            // checkout records.
            self.git(dest, &["submodule", "update", "-q", "--init", "--recursive", "--depth=1"])
                .or_else(|_| self.git(dest, &["submodule", "update", "-q", "--init", "--recursive"]))?;
        }
        if !keep_git_dir {
            remove_dot_git(dest)?;
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

    /// [`GitRef::git`], returning its standard output.
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

/// `user@host:path`, as `sshutil.ParseSCPStyleURL` reads it.
fn is_scp_style(s: &str) -> bool {
    let Some((user, rest)) = s.split_once('@') else { return false };
    let Some((host, path)) = rest.split_once(':') else { return false };
    let user_ok = !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    user_ok && host_ok && !path.is_empty()
}

/// A full hexadecimal commit id (SHA-1 or SHA-256).
fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(remote: &str, reference: Option<&str>, subdir: Option<&str>) -> Option<GitRef> {
        Some(GitRef { remote: remote.into(), reference: reference.map(Into::into), subdir: subdir.map(Into::into) })
    }

    #[test]
    fn parses_as_buildkit() {
        assert_eq!(GitRef::parse("https://h/o/r.git"), r("https://h/o/r.git", None, None));
        assert_eq!(GitRef::parse("https://h/o/r.git#main"), r("https://h/o/r.git", Some("main"), None));
        assert_eq!(GitRef::parse("https://h/o/r.git#v1:sub/dir"), r("https://h/o/r.git", Some("v1"), Some("sub/dir")));
        assert_eq!(GitRef::parse("https://h/o/r.git#:sub"), r("https://h/o/r.git", None, Some("sub")));
        assert_eq!(GitRef::parse("git://127.0.0.1:9418/r#dev"), r("git://127.0.0.1:9418/r", Some("dev"), None));
        assert_eq!(GitRef::parse("git@github.com:o/r.git#x"), r("git@github.com:o/r.git", Some("x"), None));
        assert_eq!(GitRef::parse("ssh://git@h/r"), r("ssh://git@h/r", None, None));
        assert_eq!(GitRef::parse("github.com/o/r"), r("https://github.com/o/r", None, None));
        // Not Git: a plain URL, a path, another scheme.
        assert_eq!(GitRef::parse("https://h/ctx.tar.gz"), None);
        assert_eq!(GitRef::parse("./dir"), None);
        assert_eq!(GitRef::parse("ftp://h/r.git"), None);
        assert_eq!(GitRef::parse("/abs/path"), None);
        assert_eq!(GitRef::parse("https://h/o/r.git#v1:sub").unwrap().display(), "https://h/o/r.git#v1:sub");
    }

    #[test]
    fn ssh_remotes_and_their_hosts() {
        let host = |s: &str| GitRef::parse(s).and_then(|g| g.is_ssh().then(|| g.ssh_host()).flatten());
        assert_eq!(host("git@github.com:o/r.git#x"), Some(("github.com".into(), None)));
        assert_eq!(host("ssh://git@h:2222/r.git"), Some(("h".into(), Some(2222))));
        assert_eq!(host("SSH://h/r"), Some(("h".into(), None)));
        assert_eq!(host("ssh://u@[::1]:22/r"), Some(("::1".into(), Some(22))));
        assert_eq!(host("https://h/o/r.git"), None, "not ssh");
        assert_eq!(host("git://h/r"), None, "not ssh");
    }

    #[test]
    fn an_ssh_remote_needs_the_default_agent() {
        let g = GitRef::parse("ssh://git@127.0.0.1:1/r.git#main").unwrap();
        let d = tempfile::tempdir().unwrap();
        let e = g.checkout(d.path(), false, None).unwrap_err().to_string();
        assert!(
            e.contains("no SSH key \"default\" forwarded") && e.contains("ssh://git@127.0.0.1:1/r.git#main"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "nothing fetched");
    }

    #[test]
    fn subdir_cannot_leave_the_repository() {
        let g = GitRef::parse("git://h/r#main:../../etc").unwrap();
        let e = g.subdir_path().unwrap_err().to_string();
        assert!(e.contains("leaves the repository") && e.contains("git://h/r#main:../../etc"), "{e}");
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(!is_commit_id("main"));
    }
}
