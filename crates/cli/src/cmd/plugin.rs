//! polyarch as a docker CLI plugin: installed (copied or linked) as
//! `~/.docker/cli-plugins/docker-polyarch`, `docker polyarch ARGS` runs
//! `polyarch ARGS`; installed as `docker-buildx`, buildx's command names
//! are mapped onto polyarch's (`docker buildx create` = `polyarch builder
//! create`), so scripts written for buildx run unchanged.
//!
//! The protocol (docker/cli `cli-plugins/manager`): docker runs
//! `docker-NAME docker-cli-plugin-metadata` and expects a JSON object with
//! `SchemaVersion` "0.1.0" and a `Vendor`; it runs the plugin as
//! `docker-NAME [GLOBAL OPTIONS] NAME ARGS...` with its environment
//! (`DOCKER_HOST`, `DOCKER_CONTEXT`, `DOCKER_CONFIG`) passed through.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use serde_json::json;

/// The name docker gives subcommand plugins' metadata command.
pub const METADATA: &str = "docker-cli-plugin-metadata";

/// buildx commands that are `polyarch builder` subcommands.
const BUILDX_BUILDER_COMMANDS: &[&str] = &["create", "ls", "inspect", "use", "rm", "stop"];

#[derive(Args)]
pub struct InstallArgs {
    /// The plugin name: `polyarch` (`docker polyarch ...`) or `buildx`
    /// (`docker buildx ...` and `docker build` run polyarch).
    #[arg(long = "as", default_value = "polyarch", value_name = "NAME")]
    name: String,
    /// The plugin directory (default $DOCKER_CONFIG/cli-plugins, else
    /// ~/.docker/cli-plugins).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Copy the binary instead of linking to it.
    #[arg(long)]
    copy: bool,
    /// Replace a plugin of that name that is already there.
    #[arg(short, long)]
    force: bool,
}

/// The plugin name polyarch runs as (`docker-buildx` → `buildx`), if its
/// program name is a docker plugin's.
pub fn plugin_name(argv0: &Path) -> Option<String> {
    let base = argv0.file_name()?.to_str()?;
    let name = base.strip_prefix("docker-")?;
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    valid.then(|| name.to_string())
}

/// The arguments polyarch's parser gets: as given when polyarch runs under
/// its own name; as a plugin, docker's global options before the plugin
/// name become the environment they stand for, the name is dropped and,
/// for `buildx`, the command is renamed.
pub fn argv(args: Vec<OsString>) -> Vec<OsString> {
    let Some(name) = args.first().and_then(|a| plugin_name(Path::new(a))) else { return args };
    let program = OsString::from("polyarch");
    if args.get(1).is_some_and(|a| a == METADATA) {
        return vec![program, OsString::from(METADATA)];
    }
    watch_docker();
    let rest: Vec<String> = args[1..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let start = match plugin_position(&rest, &name) {
        Some(i) => {
            docker_globals(&rest[..i]);
            i + 1
        }
        // Run directly (`docker-polyarch build ...`), not through docker.
        None => 0,
    };
    let mut out = vec![program];
    let tail = &rest[start..];
    let mapped = if name == "buildx" { buildx(tail) } else { tail.to_vec() };
    out.extend(mapped.into_iter().map(OsString::from));
    out
}

/// docker (25 and later) tells a plugin to stop by closing the socket it
/// names in DOCKER_CLI_PLUGIN_SOCKET, instead of signalling it (a `kill` of
/// `docker buildx build` would otherwise leave polyarch running). When the
/// socket closes, polyarch gets the SIGTERM its commands clean up on.
///
/// Older clients (20.10) name no socket, forward no signal and wait for
/// the plugin, so that only a `kill -9` ends them: polyarch then gets a
/// SIGTERM when the docker that ran it dies.
fn watch_docker() {
    use std::io::Read as _;
    use std::os::linux::net::SocketAddrExt as _;
    let Some(name) = std::env::var_os("DOCKER_CLI_PLUGIN_SOCKET").filter(|n| !n.is_empty()) else {
        let parent = rustix::process::getppid();
        let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
        // The parent may have died before the signal was asked for.
        if rustix::process::getppid() != parent {
            let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM);
        }
        return;
    };
    let name = name.to_string_lossy().into_owned();
    let addr = match name.strip_prefix('@') {
        Some(abs) => std::os::unix::net::SocketAddr::from_abstract_name(abs.as_bytes()),
        None => std::os::unix::net::SocketAddr::from_pathname(&name),
    };
    let Ok(mut conn) = addr.and_then(|a| std::os::unix::net::UnixStream::connect_addr(&a)) else { return };
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM);
    });
}

fn set_env(key: &str, value: &str) {
    std::env::set_var(key, value);
}

/// docker's options that take a value in the next argument.
const DOCKER_VALUE_OPTIONS: &[&str] =
    &["-H", "--host", "-c", "--context", "--config", "-l", "--log-level", "--tlscacert", "--tlscert", "--tlskey"];

/// Where the plugin name is among docker's arguments: the first argument
/// that is not an option or an option's value.
fn plugin_position(args: &[String], name: &str) -> Option<usize> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == name {
            return Some(i);
        }
        if !a.starts_with('-') {
            return None;
        }
        i += if DOCKER_VALUE_OPTIONS.contains(&a) { 2 } else { 1 };
    }
    None
}

/// docker's global options (`-H`, `--context`, `--config`) as the
/// environment variables docker itself reads them from; others are
/// docker's own (`--debug`, `--log-level`, TLS files) and are ignored.
fn docker_globals(opts: &[String]) {
    let mut it = opts.iter();
    while let Some(o) = it.next() {
        let (flag, inline) = match o.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (o.as_str(), None),
        };
        let var = match flag {
            "-H" | "--host" => "DOCKER_HOST",
            "-c" | "--context" => "DOCKER_CONTEXT",
            "--config" => "DOCKER_CONFIG",
            f if DOCKER_VALUE_OPTIONS.contains(&f) => {
                if inline.is_none() {
                    it.next();
                }
                continue;
            }
            _ => continue,
        };
        if let Some(v) = inline.or_else(|| it.next().cloned()) {
            set_env(var, &v);
        }
    }
}

/// buildx's command line as polyarch's: `--builder NAME` before the
/// command becomes POLYARCH_BUILDER (as BUILDX_BUILDER does), and
/// `create/ls/inspect/use/rm/stop` become `builder ...`.
fn buildx(args: &[String]) -> Vec<String> {
    if let Ok(b) = std::env::var("BUILDX_BUILDER") {
        if !b.is_empty() && std::env::var_os("POLYARCH_BUILDER").is_none() {
            set_env("POLYARCH_BUILDER", &b);
        }
    }
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--builder" if i + 1 < args.len() => {
                set_env("POLYARCH_BUILDER", &args[i + 1]);
                i += 2;
            }
            s if s.starts_with("--builder=") => {
                set_env("POLYARCH_BUILDER", &s["--builder=".len()..]);
                i += 1;
            }
            "-D" | "--debug" => i += 1,
            _ => break,
        }
    }
    let mut out = Vec::with_capacity(args.len() + 1);
    match args.get(i).map(String::as_str) {
        Some("b") => out.push("build".to_string()),
        Some(c) if BUILDX_BUILDER_COMMANDS.contains(&c) => {
            out.push("builder".to_string());
            out.push(c.to_string());
        }
        Some(c) => out.push(c.to_string()),
        None => {}
    }
    out.extend(args.iter().skip(i + 1).cloned());
    out
}

/// `docker-NAME docker-cli-plugin-metadata`: what docker lists in
/// `docker --help` and `docker info`.
pub fn metadata() -> Result<u8> {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let description = match plugin_name(Path::new(&argv0)).as_deref() {
        Some("buildx") => "Docker Buildx (polyarch: multi-platform builds with no daemon)",
        _ => "Build, assemble, check and ship multi-architecture images, with no daemon",
    };
    let v = json!({
        "SchemaVersion": "0.1.0",
        "Vendor": "polyarch",
        "Version": super::version::version(),
        "ShortDescription": description,
    });
    super::images::emit(&format!("{v}\n"))?;
    Ok(0)
}

/// The directory docker looks for plugins in.
fn plugin_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("cli-plugins"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context("HOME is not set: give --dir")?;
    Ok(PathBuf::from(home).join(".docker/cli-plugins"))
}

/// `polyarch install-plugin [--as buildx]`: links (or copies) this binary
/// as `docker-NAME` in docker's plugin directory.
pub fn install(a: InstallArgs) -> Result<u8> {
    if plugin_name(Path::new(&format!("docker-{}", a.name))).is_none() {
        bail!(
            "invalid plugin name {:?}: docker takes only lowercase letters and digits, starting with a letter",
            a.name
        );
    }
    let dir = match a.dir {
        Some(d) => d,
        None => plugin_dir()?,
    };
    let exe = std::env::current_exe().context("finding the polyarch binary")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = dir.join(format!("docker-{}", a.name));
    if target.symlink_metadata().is_ok() && !a.force {
        bail!("{} exists: pass --force to replace it", target.display());
    }
    // Made beside the target and renamed over it, so docker never sees half a plugin.
    let tmp = dir.join(format!(".docker-{}.tmp-{}", a.name, std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let made = if a.copy { std::fs::copy(&exe, &tmp).map(|_| ()) } else { std::os::unix::fs::symlink(&exe, &tmp) };
    made.and_then(|()| std::fs::rename(&tmp, &target)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("installing {}", target.display()))
    })?;
    crate::outln!("installed {} -> {}", target.display(), exe.display())?;
    let cmd =
        if a.name == "polyarch" { "docker polyarch version".to_string() } else { format!("docker {} version", a.name) };
    crate::outln!("try: {cmd}")?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Vec<String> {
        argv(args.iter().map(OsString::from).collect()).into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn names() {
        assert_eq!(plugin_name(Path::new("/home/u/.docker/cli-plugins/docker-buildx")).as_deref(), Some("buildx"));
        assert_eq!(plugin_name(Path::new("docker-polyarch")).as_deref(), Some("polyarch"));
        assert_eq!(plugin_name(Path::new("/usr/bin/polyarch")), None);
        assert_eq!(plugin_name(Path::new("docker-Bad")), None);
    }

    #[test]
    fn plain_runs_are_untouched() {
        assert_eq!(run(&["polyarch", "build", "."]), ["polyarch", "build", "."]);
    }

    #[test]
    fn plugin_name_is_stripped() {
        assert_eq!(run(&["/p/docker-polyarch", "polyarch", "images"]), ["polyarch", "images"]);
        assert_eq!(run(&["/p/docker-polyarch", METADATA]), ["polyarch", METADATA]);
        assert_eq!(run(&["/p/docker-polyarch", "--debug", "polyarch", "version"]), ["polyarch", "version"]);
        assert_eq!(run(&["/p/docker-polyarch", "-l", "polyarch", "polyarch", "images"]), ["polyarch", "images"]);
        // Run directly, not through docker: the arguments are polyarch's.
        assert_eq!(run(&["/p/docker-polyarch", "images", "polyarch"]), ["polyarch", "images", "polyarch"]);
    }

    #[test]
    fn docker_global_options_become_the_environment() {
        // The only test that sets these variables in this process.
        let out = run(&["/p/docker-polyarch", "-H", "tcp://127.0.0.1:2375", "--context=ctx1", "-D", "polyarch", "du"]);
        assert_eq!(out, ["polyarch", "du"]);
        assert_eq!(std::env::var("DOCKER_HOST").unwrap(), "tcp://127.0.0.1:2375");
        assert_eq!(std::env::var("DOCKER_CONTEXT").unwrap(), "ctx1");
    }

    #[test]
    fn buildx_commands_are_mapped() {
        let b = |a: &[&str]| {
            let mut full = vec!["/p/docker-buildx", "buildx"];
            full.extend_from_slice(a);
            run(&full)
        };
        assert_eq!(b(&["build", "--push", "."]), ["polyarch", "build", "--push", "."]);
        assert_eq!(b(&["b", "."]), ["polyarch", "build", "."]);
        assert_eq!(b(&["create", "--name", "x"]), ["polyarch", "builder", "create", "--name", "x"]);
        assert_eq!(b(&["ls"]), ["polyarch", "builder", "ls"]);
        assert_eq!(b(&["inspect", "--bootstrap"]), ["polyarch", "builder", "inspect", "--bootstrap"]);
        assert_eq!(b(&["use", "x"]), ["polyarch", "builder", "use", "x"]);
        assert_eq!(b(&["rm", "x"]), ["polyarch", "builder", "rm", "x"]);
        assert_eq!(b(&["stop"]), ["polyarch", "builder", "stop"]);
        assert_eq!(b(&["imagetools", "inspect", "r"]), ["polyarch", "imagetools", "inspect", "r"]);
        assert_eq!(b(&["du"]), ["polyarch", "du"]);
        assert_eq!(b(&["prune", "-f"]), ["polyarch", "prune", "-f"]);
        assert_eq!(b(&["version"]), ["polyarch", "version"]);
    }
}
