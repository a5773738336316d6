//! The inputs of `polyarch build` beyond the main context directory
//! (`--build-context`), the flags of `docker buildx build` that polyarch
//! accepts and ignores as buildx does (`--rm`, `--compress`, ...), the
//! attestation switches it can honour only when off, and the error for a
//! buildx flag polyarch does not support.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;
use polyarch_builder::context::WorkDir as TempDir;
use polyarch_builder::context::{self as bctx, Fetched, Remote};
use polyarch_builder::fs::Spill;
use polyarch_builder::named::{NamedContext, NamedContexts, Value};
use polyarch_builder::MemFs;

use super::BuildArgs;

/// Input flags of `polyarch build`, flattened into [`super::BuildArgs`].
#[derive(Args, Debug, Default, Clone)]
pub struct InputArgs {
    /// An additional build context `NAME=VALUE` (repeatable): a directory,
    /// `docker-image://REF`, `oci-layout://PATH[:TAG|@DIGEST]`, a Git URL
    /// or an `https://` URL. It replaces the stage or image `NAME` in
    /// `FROM`, `COPY --from` and `RUN --mount=from`.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// Provenance attestations: only `false` (polyarch writes none).
    #[arg(long, value_name = "false")]
    pub provenance: Option<String>,
    /// SBOM attestations: only `false` (polyarch writes none).
    #[arg(long, value_name = "false")]
    pub sbom: Option<String>,
    /// buildx's older name of `--call`.
    #[arg(long, hide = true, value_name = "METHOD")]
    pub print: Option<String>,
    #[command(flatten)]
    ignored: Ignored,
}

/// Flags buildx keeps hidden for `docker build` compatibility and ignores
/// (some with a warning); polyarch does the same.
#[derive(Args, Debug, Default, Clone)]
struct Ignored {
    #[arg(long, hide = true)]
    compress: bool,
    #[arg(long, hide = true)]
    isolation: Option<String>,
    #[arg(long = "security-opt", hide = true)]
    security_opt: Vec<String>,
    #[arg(long, hide = true)]
    squash: bool,
    #[arg(short = 'm', long, hide = true)]
    memory: Option<String>,
    #[arg(long = "memory-swap", hide = true)]
    memory_swap: Option<String>,
    #[arg(short = 'c', long = "cpu-shares", hide = true)]
    cpu_shares: Option<i64>,
    #[arg(long = "cpu-period", hide = true)]
    cpu_period: Option<i64>,
    #[arg(long = "cpu-quota", hide = true)]
    cpu_quota: Option<i64>,
    #[arg(long = "cpuset-cpus", hide = true)]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems", hide = true)]
    cpuset_mems: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    rm: Option<String>,
    #[arg(long = "force-rm", hide = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    force_rm: Option<String>,
}

impl InputArgs {
    /// Checks the attestation switches and returns buildx's warnings for
    /// the deprecated flags that were given.
    pub fn check(&self) -> Result<Vec<&'static str>> {
        for (flag, v) in [("--provenance", &self.provenance), ("--sbom", &self.sbom)] {
            if let Some(v) = v {
                if !is_off(v) {
                    bail!(
                        "{}: polyarch writes no attestations, so only {flag}=false is accepted (got {v:?})",
                        not_supported(flag)
                    );
                }
            }
        }
        let i = &self.ignored;
        let mut warnings = Vec::new();
        if i.isolation.is_some() {
            warnings.push("isolation flag is deprecated with BuildKit.");
        }
        if !i.security_opt.is_empty() {
            warnings.push("security-opt flag is deprecated. \"RUN --security=insecure\" should be used with BuildKit.");
        }
        if i.squash {
            warnings.push(
                "experimental flag squash is removed with BuildKit. You should squash inside build using a multi-stage Dockerfile for efficiency.",
            );
        }
        Ok(warnings)
    }
}

/// The Dockerfile, its name and the context of a build, with the
/// directories that hold remote contexts until the build is done.
pub(super) struct Loaded {
    pub dockerfile: Vec<u8>,
    pub name: String,
    pub context: MemFs,
    pub named: NamedContexts,
    /// The context's `.dockerignore` patterns (already applied to it).
    pub excludes: Vec<String>,
    /// Checkouts and downloads, removed when dropped.
    pub _work: Vec<TempDir>,
}

/// Where the inputs of a build are read and kept.
pub(super) struct Load<'a> {
    pub args: &'a BuildArgs,
    pub rt: &'a tokio::runtime::Runtime,
    /// The store's `run/` directory.
    pub tmp: &'a Path,
    /// `BUILDKIT_CONTEXT_KEEP_GIT_DIR`.
    pub keep_git_dir: bool,
    /// The agent socket of `--ssh default`, for Git contexts over ssh.
    pub ssh_agent: Option<&'a Path>,
    pub debug: bool,
}

impl Load<'_> {
    /// Reads the context and the Dockerfile as buildx does: a directory,
    /// `-` (a tar archive on stdin, or a Dockerfile and no context), a Git
    /// URL or an HTTP URL (an archive is the context, any other file the
    /// Dockerfile); `-f -` reads the Dockerfile from stdin, and `-f` names
    /// a file inside a remote context unless it is an absolute path.
    pub fn load(&self) -> Result<Loaded> {
        let mut work = Vec::new();
        let (dockerfile, name, context, excludes) = self.main(&mut work)?;
        let named = self.named(&mut work)?;
        Ok(Loaded { dockerfile, name, context, named, excludes, _work: work })
    }

    fn log(&self, m: impl FnOnce() -> String) {
        if self.debug {
            eprintln!("DEBUG: {}", m());
        }
    }

    fn main(&self, work: &mut Vec<TempDir>) -> Result<Main> {
        let a = self.args;
        if a.context == "-" {
            return self.stdin_context();
        }
        // As buildx: an existing directory wins over a URL look-alike
        // (`github.com/o/r` may be both).
        let remote = match Path::new(&a.context).is_dir() {
            true => None,
            false => Remote::parse(&a.context).with_context(|| format!("the build context {}", a.context))?,
        };
        let Some(remote) = remote else {
            if !Path::new(&a.context).is_dir() {
                // As buildx: a context is a directory, `-` or a URL.
                bail!("unable to prepare context: path {:?} not found", a.context);
            }
            return dir_context(Path::new(&a.context), a.file.as_deref());
        };
        self.log(|| format!("fetching the remote context {:?}", remote));
        match self.fetch(&remote, &a.context, work)? {
            Fetched::File { content, .. } => {
                // A URL of a plain file: the Dockerfile, and no context.
                let df = content.read_all().with_context(|| format!("reading the Dockerfile from {}", a.context))?;
                Ok((df, "Dockerfile".into(), MemFs::new(), Vec::new()))
            }
            Fetched::Tree(root) => match a.file.as_deref() {
                Some("-") => {
                    let (df, name) = read_stdin_dockerfile()?;
                    let ignore = bctx::ignore_patterns(&root, None)?;
                    Ok((df, name, bctx::from_dir(&root, &ignore)?, ignore))
                }
                Some(f) if Path::new(f).is_absolute() => {
                    let (df, name) = read_dockerfile(Path::new(f))?;
                    let ignore = bctx::ignore_patterns(&root, None)?;
                    Ok((df, name, bctx::from_dir(&root, &ignore)?, ignore))
                }
                Some(f) => inside(&root, f, &a.context),
                None => inside(&root, "Dockerfile", &a.context),
            },
        }
    }

    /// `-`: a tar archive (compressed or not) is the context; anything
    /// else is the Dockerfile, with an empty context (buildx's rules).
    fn stdin_context(&self) -> Result<Main> {
        let a = self.args;
        let mut head = Vec::new();
        std::io::stdin().lock().take(1024).read_to_end(&mut head).context("reading stdin")?;
        let archive = polyarch_builder::compress::detect(&head) != polyarch_builder::compress::Format::Plain
            || polyarch_builder::compress::is_tar(&head[..]);
        let stream = std::io::Cursor::new(head).chain(std::io::stdin().lock());
        if !archive {
            if a.file.is_some() {
                bail!("ambiguous Dockerfile source: both stdin and flag correspond to Dockerfiles");
            }
            let mut df = Vec::new();
            { stream }.read_to_end(&mut df).context("reading the Dockerfile from stdin")?;
            return Ok((df, "Dockerfile".into(), MemFs::new(), Vec::new()));
        }
        if a.file.as_deref() == Some("-") {
            bail!("invalid argument: can't use stdin for both build context and dockerfile");
        }
        let spill = Spill::new(self.tmp);
        let all = bctx::from_tar_in(stream, &spill).context("reading the build context archive from stdin")?;
        let name = a.file.clone().unwrap_or_else(|| "Dockerfile".into());
        let inner = polyarch_builder::fs::clean(&name);
        let df = all.read(&inner).ok_or_else(|| anyhow!("{name}: not found in the build context archive"))?;
        let ignore = all
            .read(&format!("{inner}.dockerignore"))
            .or_else(|| all.read(".dockerignore"))
            .map(|d| polyarch_dockerfile::ignore::read_all(&String::from_utf8_lossy(&d)))
            .unwrap_or_default();
        let ctx = bctx::filter(&all, &ignore)?;
        Ok((df.to_vec(), name, ctx, ignore))
    }

    fn fetch(&self, remote: &Remote, shown: &str, work: &mut Vec<TempDir>) -> Result<Fetched> {
        let dir = bctx::work_dir(self.tmp)?;
        let got = self
            .rt
            .block_on(bctx::fetch(remote, dir.path(), self.keep_git_dir, self.ssh_agent))
            .with_context(|| format!("loading the build context {shown}"))?;
        work.push(dir);
        Ok(got)
    }

    /// `--build-context NAME=VALUE`, each read as buildx reads it.
    fn named(&self, work: &mut Vec<TempDir>) -> Result<NamedContexts> {
        let mut out = NamedContexts::new();
        for item in &self.args.inputs.build_contexts {
            let (name, value) = split_build_context(item)?;
            let what = || format!("--build-context {name}={value}");
            let ctx = match Value::parse(value).with_context(what)? {
                Value::Image(r) => NamedContext::Image(r),
                Value::Layout(layout) => NamedContext::Layout(layout),
                Value::Dir(dir) => {
                    let md = std::fs::metadata(&dir).with_context(|| format!("failed to get build context {name}"))?;
                    if !md.is_dir() {
                        bail!("failed to get build context {name}: {} is not a directory", dir.display());
                    }
                    let ignore = bctx::ignore_patterns(&dir, None)?;
                    NamedContext::Files(bctx::from_dir(&dir, &ignore)?.into())
                }
                Value::Url(url) => {
                    let remote =
                        Remote::parse(&url).with_context(what)?.ok_or_else(|| anyhow!("{}: not a URL", what()))?;
                    NamedContext::Files(self.fetch_files(&remote, &url, work).with_context(what)?.into())
                }
            };
            self.log(|| format!("build context {name}: {ctx:?}"));
            out.insert(name, ctx).with_context(what)?;
        }
        Ok(out)
    }

    /// A named remote context as files: a tree, or the one file an HTTP
    /// URL names (BuildKit's `llb.HTTP`, not unpacked).
    fn fetch_files(&self, remote: &Remote, url: &str, work: &mut Vec<TempDir>) -> Result<MemFs> {
        if let Remote::Http(u) = remote {
            let dir = bctx::work_dir(self.tmp)?;
            let spill = Spill::new(dir.path());
            let (name, content, mtime) = self.rt.block_on(bctx::download(u, &spill))?;
            work.push(dir);
            let mut fs = MemFs::new();
            let node = polyarch_builder::fs::Node::new(polyarch_builder::fs::Kind::File(content), 0o600, 0, 0, mtime);
            fs.insert(name, node);
            return Ok(fs);
        }
        match self.fetch(remote, url, work)? {
            Fetched::Tree(root) => {
                let ignore = bctx::ignore_patterns(&root, None)?;
                Ok(bctx::from_dir(&root, &ignore)?)
            }
            Fetched::File { .. } => bail!("{url}: a Git source gave no tree"),
        }
    }
}

/// A `--build-context` item, `NAME=VALUE`, as its name and value.
pub(crate) fn split_build_context(item: &str) -> Result<(&str, &str)> {
    item.split_once('=')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| anyhow!("invalid --build-context {item:?}: want NAME=VALUE"))
}

/// A local context directory; `file` is the Dockerfile (a path, `-` for
/// stdin, default `DIR/Dockerfile`).
fn dir_context(root: &Path, file: Option<&str>) -> Result<Main> {
    let df_path = match file {
        Some("-") => None,
        Some(f) => Some(PathBuf::from(f)),
        None => Some(root.join("Dockerfile")),
    };
    let (df, name) = match &df_path {
        None => read_stdin_dockerfile()?,
        Some(p) => read_dockerfile(p)?,
    };
    let ignore = bctx::ignore_patterns(root, df_path.as_deref())?;
    Ok((df, name, bctx::from_dir(root, &ignore)?, ignore))
}

/// The Dockerfile `f` inside a fetched context `root`.
fn inside(root: &Path, f: &str, shown: &str) -> Result<Main> {
    let rel = polyarch_builder::fs::clean(f);
    let path = root.join(&rel);
    let real = path.canonicalize().map_err(|_| anyhow!("{f}: not found in the build context {shown}"))?;
    if !real.starts_with(root.canonicalize()?) || !real.is_file() {
        bail!("{f}: not a file inside the build context {shown}");
    }
    let (df, name) = read_dockerfile(&real)?;
    let ignore = bctx::ignore_patterns(root, Some(&path))?;
    Ok((df, name, bctx::from_dir(root, &ignore)?, ignore))
}

/// The Dockerfile, its name, the context and its `.dockerignore` patterns.
type Main = (Vec<u8>, String, MemFs, Vec<String>);

fn read_stdin_dockerfile() -> Result<(Vec<u8>, String)> {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).context("reading the Dockerfile from stdin")?;
    Ok((buf, "Dockerfile".to_string()))
}

fn read_dockerfile(p: &Path) -> Result<(Vec<u8>, String)> {
    let bytes = std::fs::read(p).with_context(|| format!("reading the Dockerfile {}", p.display()))?;
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "Dockerfile".into());
    Ok((bytes, name))
}

/// `false`, `0`, or buildx's `disabled=true` attest form.
fn is_off(v: &str) -> bool {
    matches!(v.trim(), "false" | "0") || v.split(',').any(|kv| kv.trim() == "disabled=true")
}

/// The flags of `docker buildx build` (and buildx's root flags users pass
/// to it), long and short, as buildx v0.2x defines them.
const BUILDX_BUILD_FLAGS: &[&str] = &[
    "--add-host",
    "--allow",
    "--annotation",
    "--attest",
    "--build-arg",
    "--build-context",
    "--builder",
    "--cache-from",
    "--cache-to",
    "--call",
    "--cgroup-parent",
    "--check",
    "--debug",
    "-D",
    "--detach",
    "--file",
    "-f",
    "--iidfile",
    "--label",
    "--load",
    "--metadata-file",
    "--network",
    "--no-cache",
    "--no-cache-filter",
    "--output",
    "-o",
    "--platform",
    "--progress",
    "--provenance",
    "--pull",
    "--push",
    "--quiet",
    "-q",
    "--root",
    "--sbom",
    "--secret",
    "--server-config",
    "--shm-size",
    "--ssh",
    "--tag",
    "-t",
    "--target",
    "--ulimit",
];

/// `polyarch does not support --foo of docker buildx build`.
pub fn not_supported(flag: &str) -> String {
    format!("polyarch does not support {flag} of docker buildx build")
}

/// For a usage error of `polyarch build` about an unknown argument that is
/// a flag of `docker buildx build`: the message naming it (instead of
/// clap's tip); `None` for anything else.
pub fn unsupported_flag(args: &[String], err: &clap::Error) -> Option<String> {
    let flag = unknown_flag_of(args, err, "build")?;
    BUILDX_BUILD_FLAGS.contains(&flag.as_str()).then(|| not_supported(&flag))
}

/// The flag a usage error of polyarch's `command` is about, when it is an
/// unknown argument: `--name` without its value, or `-x` of `-xVALUE`.
pub(crate) fn unknown_flag_of(args: &[String], err: &clap::Error, command: &str) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() != ErrorKind::UnknownArgument || subcommand(args) != Some(command) {
        return None;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.split('=').next().unwrap_or(arg);
    Some(if flag.starts_with("--") { flag } else { flag.get(..2).unwrap_or(flag) }.to_string())
}

/// For any other unknown argument of `polyarch build`: a plain message
/// without clap's `-- --foo` tip, which would only mislead (a build takes
/// one context argument, never a flag after `--`).
pub fn unknown_flag(args: &[String], err: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() != ErrorKind::UnknownArgument || subcommand(args) != Some("build") {
        return None;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    Some(format!("unknown flag {arg} of polyarch build (see polyarch build --help)"))
}

/// The subcommand in `args` (the first word that is not a global flag or
/// its value).
pub(crate) fn subcommand(args: &[String]) -> Option<&str> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "--root" => {
                it.next();
            }
            s if s.starts_with('-') => {}
            s => return Some(s),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: Sub,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        Build {
            #[command(flatten)]
            inputs: InputArgs,
            context: String,
        },
    }

    fn err(args: &[&str]) -> (Vec<String>, clap::Error) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let e = Cli::try_parse_from(&args).unwrap_err();
        (args, e)
    }

    #[test]
    fn a_buildx_flag_is_named() {
        let (args, e) = err(&["polyarch", "build", "--detach", "."]);
        assert_eq!(
            unsupported_flag(&args, &e).as_deref(),
            Some("polyarch does not support --detach of docker buildx build")
        );
        let (args, e) = err(&["polyarch", "build", "--attest", "type=sbom", "."]);
        assert_eq!(
            unsupported_flag(&args, &e).as_deref(),
            Some("polyarch does not support --attest of docker buildx build")
        );
        let (args, e) = err(&["polyarch", "build", "--frobnicate", "."]);
        assert_eq!(unsupported_flag(&args, &e), None);
        assert!(unknown_flag(&args, &e).unwrap().contains("--frobnicate"));
        let words = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(subcommand(&words(&["p", "--root", "/x", "-D", "build", "."])), Some("build"));
        assert_eq!(subcommand(&words(&["p", "--config", "build", "images"])), Some("images"));
    }

    #[test]
    fn ignored_flags_parse_and_attestations_only_off() {
        let cli = Cli::try_parse_from([
            "p",
            "build",
            "--rm",
            "--force-rm=false",
            "--compress",
            "-m",
            "1g",
            "-c",
            "2",
            "--squash",
            "--provenance=false",
            "--sbom",
            "false",
            ".",
        ])
        .unwrap();
        let Sub::Build { inputs, .. } = cli.cmd;
        assert_eq!(inputs.check().unwrap().len(), 1);
        let cli = Cli::try_parse_from(["p", "build", "--provenance", "mode=max", "."]).unwrap();
        let Sub::Build { inputs, .. } = cli.cmd;
        let e = inputs.check().unwrap_err().to_string();
        assert!(e.starts_with("polyarch does not support --provenance of docker buildx build"), "{e}");
        assert!(is_off("type=provenance,disabled=true"));
    }
}
