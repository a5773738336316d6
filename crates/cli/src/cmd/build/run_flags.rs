//! The flags of `docker buildx build` that set up RUN processes, with
//! buildx's names and syntax: `--add-host`, `--ulimit`, `--shm-size`,
//! `--cgroup-parent`, `--allow` and `--ssh`. Parsed by the builder's
//! [`polyarch_builder::settings`] and [`polyarch_builder::ssh`].

use std::path::Path;

use anyhow::{Context as _, Result};
use clap::Args;
use polyarch_builder::settings::{self, RunSettings};
use polyarch_builder::ssh::{Agents, SshSpec};

#[derive(Args, Debug, Default, Clone)]
pub struct RunFlags {
    /// Add a custom host-to-IP mapping to /etc/hosts of RUN steps
    /// (`HOST:IP` or `HOST=IP`; `host-gateway` is this machine, 127.0.0.1;
    /// repeatable).
    #[arg(long = "add-host", value_name = "HOST:IP")]
    add_host: Vec<String>,
    /// A resource limit of RUN steps, as Docker's (`nofile=1024:2048`;
    /// repeatable).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    ulimit: Vec<String>,
    /// The size of /dev/shm in RUN steps (`128m`; default 64m).
    #[arg(long = "shm-size", value_name = "BYTES")]
    shm_size: Option<String>,
    /// The parent cgroup of RUN containers (cgroupfs path).
    #[arg(long = "cgroup-parent", value_name = "CGROUP")]
    cgroup_parent: Option<String>,
    /// Extra privileged entitlements: `network.host` (RUN --network=host),
    /// `security.insecure` (RUN --security=insecure); repeatable or comma list.
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    allow: Vec<String>,
    /// An SSH agent socket or keys for RUN --mount=type=ssh:
    /// `default|ID[=SOCKET|KEY[,KEY]]` (repeatable).
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET|KEY[,KEY]]")]
    ssh: Vec<String>,
}

impl RunFlags {
    /// The builder's RUN settings, and the agents behind `--ssh` (private
    /// ones keep their sockets under `tmp`), which must live as long as
    /// the build. `--network host` grants `network.host`, as buildx does.
    pub fn settings(&self, network: &str, tmp: &Path) -> Result<(RunSettings, Agents)> {
        let (mut s, specs) = self.parsed(network)?;
        let agents = Agents::start(&specs, tmp)?;
        s.ssh = agents.sockets();
        Ok((s, agents))
    }

    /// The RUN settings but the ssh agents (checked, not started): what
    /// `debug plan` needs of them.
    pub fn process_settings(&self, network: &str) -> Result<RunSettings> {
        Ok(self.parsed(network)?.0)
    }

    /// Every flag read: the settings without agents, and the `--ssh` specs.
    fn parsed(&self, network: &str) -> Result<(RunSettings, Vec<SshSpec>)> {
        let mut s = RunSettings::default();
        // A comma list too, as buildx's string-slice flag takes it.
        for h in self.add_host.iter().flat_map(|h| h.split(',')).filter(|h| !h.is_empty()) {
            s.extra_hosts.push(settings::parse_add_host(h).map_err(anyhow::Error::msg).context("--add-host")?);
        }
        for u in &self.ulimit {
            s.ulimits.push(settings::parse_ulimit(u).map_err(anyhow::Error::msg).context("--ulimit")?);
        }
        if let Some(v) = &self.shm_size {
            // 0 is the default, as Docker's.
            let bytes = settings::parse_mem_bytes(v).map_err(anyhow::Error::msg).context("--shm-size")?;
            s.shm_size = Some(bytes).filter(|b| *b > 0);
        }
        s.cgroup_parent = self.cgroup_parent.clone().filter(|c| !c.is_empty());
        for a in &self.allow {
            s.allow.grant(a).map_err(anyhow::Error::msg).context("--allow")?;
        }
        if network == "host" {
            s.allow.network_host = true;
        }
        let specs = self
            .ssh
            .iter()
            .map(|v| SshSpec::parse(v).map_err(anyhow::Error::msg).context("--ssh"))
            .collect::<Result<Vec<_>>>()?;
        Ok((s, specs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunFlags,
    }

    #[test]
    fn flags_as_buildx() {
        let t = tempfile::tempdir().unwrap();
        let cli = Cli::parse_from([
            "x",
            "--add-host",
            "db:10.0.0.5",
            "--add-host=v6=[::1],other:10.0.0.6",
            "--ulimit",
            "nofile=1024:2048",
            "--shm-size",
            "128m",
            "--cgroup-parent",
            "ci",
            "--allow",
            "security.insecure",
        ]);
        let (s, _agents) = cli.run.settings("default", t.path()).unwrap();
        assert_eq!(s.extra_hosts.len(), 3);
        assert_eq!(s.extra_hosts[2].0, "other");
        assert_eq!((s.ulimits[0].soft, s.ulimits[0].hard), (1024, 2048));
        assert_eq!(s.shm_size, Some(128 << 20));
        assert_eq!(s.cgroup_parent.as_deref(), Some("ci"));
        assert!(s.allow.security_insecure && !s.allow.network_host);
        let (s, _) = Cli::parse_from(["x", "--shm-size", "0"]).run.settings("host", t.path()).unwrap();
        assert!(s.allow.network_host, "--network host grants network.host");
        assert_eq!(s.shm_size, None, "0 is the default size");
        let e = Cli::parse_from(["x", "--add-host", "db"]).run.settings("default", t.path()).unwrap_err();
        assert_eq!(format!("{e:#}"), "--add-host: invalid host db");
        let e = Cli::parse_from(["x", "--allow", "device"]).run.settings("default", t.path()).unwrap_err();
        assert_eq!(format!("{e:#}"), "--allow: unknown entitlement device");
    }
}
