//! The build context: a local directory or a tar stream, filtered by
//! `.dockerignore` as BuildKit's local source does (an excluded directory
//! is still walked when some `!` pattern could re-include a path below it).

use std::io::Read;
use std::path::Path;

use polyarch_dockerfile::ignore::{read_all, PatternMatcher};

use crate::error::{Error, Result};
use crate::fs::{MemFs, Spill};

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
}
