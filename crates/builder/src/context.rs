//! The build context: a local directory, a tar stream, or a URL (a Git
//! repository, an HTTP archive), filtered by `.dockerignore` as BuildKit's
//! local source does (an excluded directory is still walked when some `!`
//! pattern could re-include a path below it).

use std::io::Read;
use std::path::{Path, PathBuf};

use polyarch_dockerfile::ignore::{read_all, PatternMatcher};

use crate::error::{Error, Result};
use crate::fs::{Content, MemFs, Spill};
use crate::git::GitRef;

/// Reads the ignore patterns for a Dockerfile: `<Dockerfile>.dockerignore`
/// beside it wins over `.dockerignore` at the context root.
pub fn ignore_patterns(context: &Path, dockerfile: Option<&Path>) -> Result<Vec<String>> {
    if let Some(df) = dockerfile {
        let mut name = df.as_os_str().to_owned();
        name.push(".dockerignore");
        let specific = std::path::PathBuf::from(name);
        if specific.is_file() {
            let text = std::fs::read_to_string(&specific).map_err(|e| Error::io(&specific, e))?;
            return Ok(read_all(&text));
        }
    }
    let p = context.join(".dockerignore");
    match std::fs::read_to_string(&p) {
        Ok(text) => Ok(read_all(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(&p, e)),
    }
}

fn matcher(patterns: &[String]) -> Result<PatternMatcher> {
    PatternMatcher::new(patterns).map_err(|e| Error::Option(format!("invalid .dockerignore: {e}")))
}

/// Loads a context directory, leaving out what `patterns` exclude.
pub fn from_dir(root: &Path, patterns: &[String]) -> Result<MemFs> {
    let pm = matcher(patterns)?;
    let keep = |path: &str, is_dir: bool| {
        let excluded = !pm.patterns().is_empty() && pm.matches_or_parent_matches(path);
        (!excluded, is_dir && (!excluded || pm.exclusions()))
    };
    let md = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
    if !md.is_dir() {
        return Err(Error::Option(format!("build context {} is not a directory", root.display())));
    }
    MemFs::from_dir(root, &keep)
}

/// Loads a context sent as a tar stream (compressed or not). The whole
/// archive is returned; apply [`filter`] once the ignore file is read.
/// File contents are spilled to the system's temporary directory.
pub fn from_tar(reader: impl Read) -> Result<MemFs> {
    from_tar_in(reader, &Spill::temp())
}

/// As [`from_tar`], file contents spilled to `spill` (under the store's
/// `run/`).
pub fn from_tar_in(reader: impl Read, spill: &Spill) -> Result<MemFs> {
    let fs = MemFs::from_tar_in(reader, spill)?;
    Ok(normalize_owners(fs))
}

fn normalize_owners(fs: MemFs) -> MemFs {
    let mut out = MemFs::new();
    for (p, n) in fs.iter() {
        let mut n = n.clone();
        n.uid = 0;
        n.gid = 0;
        out.insert(p.clone(), n);
    }
    out
}

/// Drops what `patterns` exclude.
pub fn filter(fs: &MemFs, patterns: &[String]) -> Result<MemFs> {
    if patterns.is_empty() {
        return Ok(fs.clone());
    }
    let pm = matcher(patterns)?;
    let mut out = MemFs::new();
    for (p, n) in fs.iter() {
        if !pm.matches_or_parent_matches(p) {
            out.insert(p.clone(), n.clone());
        }
    }
    Ok(out)
}

/// A context given as a URL, as buildx tells them apart: a Git
/// reference ([`GitRef::parse`]) or another `http(s)://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// A Git repository, ref and subdirectory.
    Git(GitRef),
    /// An HTTP(S) URL: a tar archive (compressed or not) is a context, any
    /// other file a Dockerfile.
    Http(String),
}

impl Remote {
    /// `s` as a remote context, or `None` for a local path; a Git
    /// reference whose query is not valid is an error naming it.
    pub fn parse(s: &str) -> Result<Option<Remote>> {
        if let Some(g) = crate::git::parse(s)? {
            return Ok(Some(Remote::Git(g)));
        }
        Ok((s.starts_with("http://") || s.starts_with("https://")).then(|| Remote::Http(s.to_string())))
    }
}

/// What a remote context holds.
#[derive(Debug)]
pub enum Fetched {
    /// A tree on disk: a checkout, or an archive unpacked.
    Tree(PathBuf),
    /// A downloaded file that is not an archive, named from its URL.
    File {
        /// The last segment of the URL's path.
        name: String,
        /// Its bytes.
        content: Content,
    },
}

/// A directory that holds a remote context, removed when dropped.
pub type WorkDir = tempfile::TempDir;

/// A fresh directory in `dir` (the store's `run/`) for a remote context,
/// removed when dropped, or by the next command if this one is killed.
pub fn work_dir(dir: &Path) -> Result<WorkDir> {
    crate::materialize::temp_in(dir)
}

/// Downloads `url` into `spill`: the file's name (the URL's last path
/// segment), its bytes and `Last-Modified` (0 without one), as BuildKit's
/// HTTP source gives a file.
pub async fn download(url: &str, spill: &Spill) -> Result<(String, Content, i64)> {
    let got = crate::remote::fetch(url, spill).await?;
    Ok((got.name, got.data, got.mtime.unwrap_or(0)))
}

/// Fetches `remote` into the empty directory `work`: a Git checkout (the
/// `.git` directory kept only with `keep_git_dir`), or a download that is
/// unpacked, when it is a tar archive, with the snapshot crate's rooted
/// unpacking (nothing lands outside `work`). `agent` is the socket of
/// `--ssh default`, for a repository reached over ssh.
pub async fn fetch(remote: &Remote, work: &Path, keep_git_dir: bool, agent: Option<&Path>) -> Result<Fetched> {
    match remote {
        Remote::Git(g) => {
            let tree = work.join("git");
            std::fs::create_dir(&tree).map_err(|e| Error::io(&tree, e))?;
            Ok(Fetched::Tree(crate::git::Checkout::checkout(g, &tree, keep_git_dir, agent)?))
        }
        Remote::Http(url) => {
            let spill = Spill::new(work.join("download"));
            let got = crate::remote::fetch(url, &spill).await?;
            let archive = got.data.open().map(crate::compress::is_tar).unwrap_or(false);
            if !archive {
                return Ok(Fetched::File { name: got.name, content: got.data });
            }
            let tree = work.join("tree");
            std::fs::create_dir(&tree).map_err(|e| Error::io(&tree, e))?;
            let reader = crate::compress::decompress(got.data.open()?)?;
            polyarch_snapshot::unpack(reader, &tree, &polyarch_snapshot::UnpackOptions::new()).map_err(|e| {
                Error::Http { url: url.clone(), message: format!("unpacking the context archive: {e}") }
            })?;
            Ok(Fetched::Tree(tree))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_with_exceptions() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("logs/keep")).unwrap();
        std::fs::write(r.join("logs/a.log"), "x").unwrap();
        std::fs::write(r.join("logs/keep/k.log"), "x").unwrap();
        std::fs::write(r.join("main.go"), "x").unwrap();
        std::fs::write(r.join("Dockerfile"), "FROM scratch").unwrap();
        std::fs::write(r.join(".dockerignore"), "logs\n!logs/keep\n").unwrap();
        std::fs::write(r.join("Dockerfile.dockerignore"), "*.go\n").unwrap();
        let pats = ignore_patterns(r, None).unwrap();
        let fs = from_dir(r, &pats).unwrap();
        let paths: Vec<&String> = fs.iter().map(|(k, _)| k).collect();
        assert_eq!(
            paths,
            [
                ".dockerignore",
                "Dockerfile",
                "Dockerfile.dockerignore",
                "logs",
                "logs/keep",
                "logs/keep/k.log",
                "main.go"
            ]
        );
        let pats = ignore_patterns(r, Some(&r.join("Dockerfile"))).unwrap();
        assert_eq!(pats, ["*.go"]);
        let fs = from_dir(r, &pats).unwrap();
        assert!(fs.get("main.go").is_none());
        assert!(fs.get("logs/a.log").is_some());
    }

    #[test]
    fn remote_contexts_as_buildx_tells_them() {
        assert!(matches!(Remote::parse("https://h/r.git#main:sub"), Ok(Some(Remote::Git(_)))));
        assert!(matches!(Remote::parse("git://127.0.0.1/r"), Ok(Some(Remote::Git(_)))));
        assert_eq!(Remote::parse("http://h/ctx.tar.gz").unwrap(), Some(Remote::Http("http://h/ctx.tar.gz".into())));
        assert_eq!(Remote::parse("ctx").unwrap(), None);
        assert_eq!(Remote::parse("/abs/ctx").unwrap(), None);
        assert!(Remote::parse("https://h/r.git?nope=1").unwrap_err().to_string().contains("unexpected query"));
    }

    #[test]
    fn an_archive_unpacks_inside_its_directory() {
        // `../escape` and an absolute symlink target stay inside the tree.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h.clone(), "ok.txt", &b"ok"[..]).unwrap();
        let name = b"../escape.txt";
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &b"no"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("t/tree");
        std::fs::create_dir_all(&tree).unwrap();
        let r = crate::compress::decompress(&data[..]).unwrap();
        polyarch_snapshot::unpack(r, &tree, &polyarch_snapshot::UnpackOptions::new()).unwrap();
        assert_eq!(std::fs::read(tree.join("ok.txt")).unwrap(), b"ok");
        assert!(tree.join("escape.txt").exists());
        assert!(!d.path().join("t/escape.txt").exists());
    }
}
