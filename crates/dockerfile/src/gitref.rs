//! Git references as BuildKit's `dfgitutil.ParseGitRef` reads them:
//! `https://host/repo.git#ref:subdir`, `git://...`, `ssh://...`,
//! `user@host:repo#ref`, `github.com/owner/repo`, and the query form
//! `URL?ref=...&tag=...&branch=...&subdir=...&checksum=...` (also
//! `commit=`, `keep-git-dir`, `submodules`, `mtime=checkout|commit`,
//! `fetch-by-commit`). An `http(s)` URL is a Git
//! reference only when its path ends in `.git`; any other URL is an HTTP
//! source. Used by the frontend (the plan) and the builder (checkouts)
//! alike, so both tell a Git source from a download the same way.

/// A parsed Git reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitRef {
    /// The repository URL given to `git`, without fragment or query.
    pub remote: String,
    /// The branch, tag or commit (`None`: the remote's HEAD); `tag=` and
    /// `branch=` give `refs/tags/...` and `refs/heads/...`.
    pub reference: Option<String>,
    /// The directory inside the repository (`None`: its root).
    pub subdir: Option<String>,
    /// `checksum=` / `commit=`: a prefix (or all) of the commit's id in
    /// hex that the checkout must have.
    pub checksum: Option<String>,
    /// `keep-git-dir=`, when given.
    pub keep_git_dir: Option<bool>,
    /// `submodules=`, when given (default: submodules are checked out).
    pub submodules: Option<bool>,
    /// `mtime=commit`: every file's time is the commit's, not the
    /// checkout's.
    pub mtime_commit: bool,
    /// `fetch-by-commit`: the commit of `checksum` (a full id) is fetched
    /// itself, not looked up through the ref.
    pub fetch_by_commit: bool,
}

impl GitRef {
    /// Parses `s`: `Ok(None)` when it is no Git reference, an error (with
    /// BuildKit's wording) when it is one with a query that is not valid.
    pub fn parse(s: &str) -> Result<Option<GitRef>, String> {
        let (url, fragment) = match s.split_once('#') {
            Some((u, f)) => (u, Some(f)),
            None => (s, None),
        };
        let (url, query) = match url.split_once('?') {
            Some((u, q)) => (u, Some(q)),
            None => (url, None),
        };
        let remote = if let Some(rest) = url.strip_prefix("github.com/") {
            format!("https://github.com/{rest}")
        } else if let Some((scheme, rest)) = url.split_once("://") {
            let path = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
            match scheme.to_ascii_lowercase().as_str() {
                "http" | "https" if path.ends_with(".git") => url.to_string(),
                "git" | "ssh" => url.to_string(),
                _ => return Ok(None),
            }
        } else if is_scp_style(url) {
            url.to_string()
        } else {
            return Ok(None);
        };
        let mut g = GitRef { remote, ..GitRef::default() };
        if let Some(f) = fragment {
            let (r, d) = f.split_once(':').unwrap_or((f, ""));
            g.reference = Some(r).filter(|r| !r.is_empty()).map(String::from);
            g.subdir = Some(d).filter(|d| !d.is_empty()).map(String::from);
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            g.load_query(q)?;
        }
        Ok(Some(g))
    }

    /// The reference with ADD's `--checksum` and `--keep-git-dir` flags
    /// merged in; as in BuildKit's frontend, they must agree with the
    /// URL's own query.
    pub fn with_flags(mut self, checksum: Option<&str>, keep_git_dir: bool) -> Result<GitRef, String> {
        if let Some(flag) = checksum {
            if let Some(q) = self.checksum.as_deref().filter(|q| *q != flag) {
                return Err(format!("checksum mismatch {flag:?} != {q:?}"));
            }
            self.checksum = Some(flag.to_string());
        }
        if keep_git_dir {
            if self.keep_git_dir == Some(false) {
                return Err("inconsistent keep-git-dir configuration".into());
            }
            self.keep_git_dir = Some(true);
        }
        Ok(self)
    }

    /// Whether `s` is a Git reference (a valid one or not).
    pub fn is_git(s: &str) -> bool {
        !matches!(GitRef::parse(s), Ok(None))
    }

    fn load_query(&mut self, query: &str) -> Result<(), String> {
        let mut seen: Vec<&str> = Vec::new();
        let (mut tag, mut branch) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            if seen.contains(&k) {
                return Err(format!("query {k:?} has multiple values"));
            }
            seen.push(k);
            let flag = |name: &str| -> Result<bool, String> {
                match v.as_str() {
                    "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
                    _ => Err(format!("invalid {name} value: {v:?}")),
                }
            };
            if v.is_empty() && !matches!(k, "submodules" | "keep-git-dir" | "fetch-by-commit") {
                return Err(format!("query {k:?} has no value"));
            }
            match k {
                "ref" => set(&mut self.reference, v, "ref")?,
                "tag" => tag = Some(v),
                "branch" => branch = Some(v),
                "subdir" => set(&mut self.subdir, v, "subdir")?,
                "checksum" | "commit" => self.checksum = Some(v),
                "keep-git-dir" => self.keep_git_dir = Some(flag("keep-git-dir")?),
                "submodules" => self.submodules = Some(flag("submodules")?),
                "fetch-by-commit" => self.fetch_by_commit = flag("fetch-by-commit")?,
                "mtime" => match v.as_str() {
                    "checkout" => self.mtime_commit = false,
                    "commit" => self.mtime_commit = true,
                    _ => return Err(format!("invalid mtime value: {v:?} (must be \"checkout\" or \"commit\")")),
                },
                other => return Err(format!("unexpected query {other:?}")),
            }
        }
        if let Some(t) = tag {
            let t = if t.starts_with("refs/tags/") { t } else { format!("refs/tags/{t}") };
            set(&mut self.reference, t, "ref")?;
        }
        if let Some(b) = branch {
            if seen.contains(&"tag") {
                return Err("branch conflicts with tag".into());
            }
            let b = if b.starts_with("refs/heads/") { b } else { format!("refs/heads/{b}") };
            set(&mut self.reference, b, "ref")?;
        }
        Ok(())
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
    pub fn ssh_host(&self) -> Option<(String, Option<u16>)> {
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
}

/// Sets `slot` to `v` unless it holds another value already.
fn set(slot: &mut Option<String>, v: String, what: &str) -> Result<(), String> {
    match slot {
        Some(old) if *old != v => Err(format!("{what} conflicts: {old:?} vs {v:?}")),
        _ => {
            *slot = Some(v);
            Ok(())
        }
    }
}

/// `%XX` escapes and `+` of a query value, as Go's `url.ParseQuery`
/// (a `%` not followed by two hex digits is kept).
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex =
            b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `user@host:path`, as `sshutil.ParseSCPStyleURL` reads it.
pub fn is_scp_style(s: &str) -> bool {
    let Some((user, rest)) = s.split_once('@') else { return false };
    let Some((host, path)) = rest.split_once(':') else { return false };
    let user_ok = !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    user_ok && host_ok && !path.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(remote: &str, reference: Option<&str>, subdir: Option<&str>) -> Result<Option<GitRef>, String> {
        Ok(Some(GitRef {
            remote: remote.into(),
            reference: reference.map(Into::into),
            subdir: subdir.map(Into::into),
            ..GitRef::default()
        }))
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
        for not in ["https://h/ctx.tar.gz", "https://h/x.tar?a=b.git", "./dir", "ftp://h/r.git", "/abs/path"] {
            assert_eq!(GitRef::parse(not), Ok(None), "{not}");
            assert!(!GitRef::is_git(not));
        }
        assert_eq!(GitRef::parse("https://h/o/r.git#v1:sub").unwrap().unwrap().display(), "https://h/o/r.git#v1:sub");
    }

    #[test]
    fn query_form_as_buildkit() {
        let g = GitRef::parse("https://h/o/r.git?tag=v1&subdir=a/b&checksum=abc1&keep-git-dir&submodules=false")
            .unwrap()
            .unwrap();
        assert_eq!(g.remote, "https://h/o/r.git");
        assert_eq!(g.reference.as_deref(), Some("refs/tags/v1"));
        assert_eq!(g.subdir.as_deref(), Some("a/b"));
        assert_eq!(g.checksum.as_deref(), Some("abc1"));
        assert_eq!((g.keep_git_dir, g.submodules), (Some(true), Some(false)));
        let g = GitRef::parse("git@h:o/r.git?branch=dev&commit=ff").unwrap().unwrap();
        assert_eq!((g.remote.as_str(), g.reference.as_deref()), ("git@h:o/r.git", Some("refs/heads/dev")));
        assert_eq!(GitRef::parse("https://h/r.git?ref=main#main").unwrap().unwrap().reference.as_deref(), Some("main"));
        let g = GitRef::parse("https://h/r.git?mtime=commit&fetch-by-commit&commit=ab").unwrap().unwrap();
        assert!(g.mtime_commit && g.fetch_by_commit);
        assert_eq!(GitRef::parse("https://h/r.git?subdir=a%2Fb+c").unwrap().unwrap().subdir.as_deref(), Some("a/b c"));
        for (bad, why) in [
            ("https://h/r.git?ref=a#b", "ref conflicts: \"b\" vs \"a\""),
            ("https://h/r.git?tag=a&branch=b", "branch conflicts with tag"),
            ("https://h/r.git?ref=", "query \"ref\" has no value"),
            ("https://h/r.git?ref=a&ref=b", "query \"ref\" has multiple values"),
            ("https://h/r.git?depth=1", "unexpected query \"depth\""),
            ("https://h/r.git?submodules=maybe", "invalid submodules value"),
            ("https://h/r.git?mtime=now", "invalid mtime value: \"now\" (must be \"checkout\" or \"commit\")"),
        ] {
            let e = GitRef::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(GitRef::is_git(bad));
        }
    }

    #[test]
    fn flags_merge_with_the_query() {
        let g = GitRef::parse("https://h/r.git?checksum=ab").unwrap().unwrap();
        assert_eq!(g.clone().with_flags(Some("ab"), true).unwrap().keep_git_dir, Some(true));
        assert_eq!(g.clone().with_flags(Some("ac"), false).unwrap_err(), "checksum mismatch \"ac\" != \"ab\"");
        let g = GitRef::parse("https://h/r.git?keep-git-dir=false").unwrap().unwrap();
        assert_eq!(g.clone().with_flags(Some("ff"), false).unwrap().checksum.as_deref(), Some("ff"));
        assert_eq!(g.with_flags(None, true).unwrap_err(), "inconsistent keep-git-dir configuration");
    }

    #[test]
    fn ssh_remotes_and_their_hosts() {
        let host = |s: &str| GitRef::parse(s).ok().flatten().and_then(|g| g.is_ssh().then(|| g.ssh_host()).flatten());
        assert_eq!(host("git@github.com:o/r.git#x"), Some(("github.com".into(), None)));
        assert_eq!(host("ssh://git@h:2222/r.git"), Some(("h".into(), Some(2222))));
        assert_eq!(host("SSH://h/r"), Some(("h".into(), None)));
        assert_eq!(host("ssh://u@[::1]:22/r"), Some(("::1".into(), Some(22))));
        assert_eq!(host("https://h/o/r.git"), None, "not ssh");
        assert_eq!(host("git://h/r"), None, "not ssh");
    }
}
