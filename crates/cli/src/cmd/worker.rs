//! `polyarch worker`: what a build node runs on behalf of another machine's
//! polyarch. `--probe` reports the node's version and the platforms it
//! executes, as one JSON line, for `builder create --bootstrap`; `--stdio`
//! serves builds over stdin and stdout (see `polyarch_remote`), into this
//! node's store; `--idle` only waits, as a docker-container node's main
//! process.

use anyhow::{bail, Context as _, Result};
use clap::Args;
use polyarch_emu::{Arch, Status};

use super::binfmt::{host_status, outln};
use super::GlobalArgs;
use polyarch_remote::builder::{Probe, VERSION};

#[derive(Args)]
pub struct WorkerArgs {
    /// Print this node's version and native and emulated platforms as JSON.
    #[arg(long, conflicts_with = "stdio")]
    probe: bool,
    /// Serve builds for another machine's polyarch on stdin and stdout.
    #[arg(long)]
    stdio: bool,
    /// Wait for SIGTERM or SIGINT, doing nothing: the main process of a
    /// docker-container node, whose sessions are `worker --stdio` execs.
    #[arg(long, conflicts_with_all = ["stdio", "probe"])]
    idle: bool,
}

pub fn run(global: &GlobalArgs, args: WorkerArgs) -> Result<u8> {
    if args.stdio {
        return serve(global);
    }
    if args.idle {
        return idle();
    }
    if !args.probe {
        bail!("nothing to do: `polyarch worker` needs --probe or --stdio");
    }
    outln(&serde_json::to_string(&local_probe()?)?);
    Ok(0)
}

fn serve(global: &GlobalArgs) -> Result<u8> {
    let store = super::images::open_store(global).context("opening the node's store")?;
    let exec_dir = store.root().join("exec");
    let rt = super::context::runtime()?;
    let own_config = super::context::registry_config(global)?;
    let worker = polyarch_remote::worker::Worker {
        store,
        version: VERSION.to_string(),
        probe: serde_json::to_value(local_probe()?)?,
        client: Box::new(move |text, insecure| {
            let config = match text {
                Some(t) => own_config.clone().overlay(
                    &polyarch_registry::RegistryConfig::parse(t).map_err(|e| format!("the builder's config: {e}"))?,
                ),
                None => own_config.clone(),
            };
            super::context::client_with(config, insecure).map_err(|e| crate::report::Chain(&e).to_string())
        }),
        on_hangup: Box::new(move || super::build::spawn_container_killer(exec_dir.clone(), None)),
    };
    polyarch_remote::worker::serve(worker, &rt, Box::new(std::io::stdin()), Box::new(std::io::stdout()))
        .context("serving the build session")?;
    Ok(0)
}

/// Waits for a signal to end (PID 1 of a container gets no default
/// handlers, so they are installed here).
fn idle() -> Result<u8> {
    use tokio::signal::unix::{signal, SignalKind};
    writable_cgroups();
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().context("starting a runtime")?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok::<(), std::io::Error>(())
    })
    .context("waiting for a signal")?;
    Ok(0)
}

/// Makes the cgroup file systems writable where they are mounted
/// read-only (a container that is not privileged has them so), as the
/// worker's runc makes the build's cgroups below them. Best effort: a
/// mount that stays read-only fails the first RUN step with runc's word.
fn writable_cgroups() {
    use rustix::mount::{mount_remount, MountFlags};
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(opts)) = (fields.get(4), fields.get(5)) else { continue };
        let cgroup = *point == "/sys/fs/cgroup" || point.starts_with("/sys/fs/cgroup/");
        if cgroup && opts.split(',').any(|o| o == "ro") {
            let _ =
                mount_remount(*point, MountFlags::BIND, "").or_else(|_| mount_remount(*point, MountFlags::empty(), ""));
        }
    }
}

/// This machine's probe: platforms that run natively (the host's first),
/// then those that run through an emulator.
pub fn local_probe() -> Result<Probe> {
    Ok(probe_from(&host_status(None)?))
}

fn probe_from(s: &Status) -> Probe {
    let formats = |archs: Vec<Arch>| archs.into_iter().flat_map(|a| a.platforms()).map(|p| p.format()).collect();
    Probe { version: VERSION.to_string(), native: formats(s.native()), emulated: formats(s.emulated()) }
}
