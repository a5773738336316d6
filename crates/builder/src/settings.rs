//! How RUN processes are set up beyond the Dockerfile: `docker buildx
//! build`'s `--add-host`, `--ulimit`, `--shm-size`, `--cgroup-parent`,
//! `--allow` and `--ssh`, with their parsers (buildx's and Docker's
//! syntax and messages). Each setting reaches every RUN step's process and
//! its cache key, as BuildKit puts them in the ExecOp.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use polyarch_exec::{Resource, Rlimit};

/// The address `host-gateway` stands for in `--add-host`: RUN steps share
/// the host's network by default, where the host is the loopback address
/// (Docker's default bridge gateway has no counterpart without a daemon).
pub const HOST_GATEWAY: &str = "127.0.0.1";

/// RUN settings of a build (`BuildOptions::run`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSettings {
    /// `--add-host`: extra `/etc/hosts` entries, name and address.
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// `--ulimit`: resource limits (the default `nofile` 1024:1024 is
    /// replaced by a `nofile` given here).
    pub ulimits: Vec<Rlimit>,
    /// `--shm-size`: the size of `/dev/shm` in bytes (default 64 MiB).
    pub shm_size: Option<u64>,
    /// `--cgroup-parent`: the cgroup RUN containers are made below.
    pub cgroup_parent: Option<String>,
    /// `--allow`: entitlements granted to the build.
    pub allow: Entitlements,
    /// `--ssh`: ssh-agent sockets by id, for `RUN --mount=type=ssh`
    /// (see [`crate::ssh::Agents`]).
    pub ssh: BTreeMap<String, PathBuf>,
}

impl RunSettings {
    /// The resource limits as the exec op of a RUN step holds them.
    pub fn op_ulimits(&self) -> Vec<polyarch_solver::op::Ulimit> {
        self.ulimits
            .iter()
            .map(|r| polyarch_solver::op::Ulimit { name: r.resource.name().into(), soft: r.soft, hard: r.hard })
            .collect()
    }
}

/// Entitlements (`--allow`), as BuildKit's `entitlements.Set`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entitlements {
    /// `network.host`: `RUN --network=host`.
    pub network_host: bool,
    /// `security.insecure`: `RUN --security=insecure`.
    pub security_insecure: bool,
}

impl Entitlements {
    /// Grants the entitlements of one `--allow` value (a comma list).
    pub fn grant(&mut self, value: &str) -> Result<(), String> {
        for e in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match e {
                "network.host" => self.network_host = true,
                "security.insecure" => self.security_insecure = true,
                other => return Err(format!("unknown entitlement {other}")),
            }
        }
        Ok(())
    }
}

/// Parses `--add-host` as buildx does: `NAME:ADDRESS` or `NAME=ADDRESS`
/// (split at the first `=`, else the first `:`), an IPv6 address
/// optionally in brackets, `host-gateway` for [`HOST_GATEWAY`].
pub fn parse_add_host(value: &str) -> Result<(String, IpAddr), String> {
    let invalid = || format!("invalid host {value}");
    let (name, ip) = value.split_once('=').or_else(|| value.split_once(':')).ok_or_else(invalid)?;
    if name.is_empty() || ip.is_empty() {
        return Err(invalid());
    }
    let ip = if ip == "host-gateway" { HOST_GATEWAY } else { ip };
    let ip = ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')).unwrap_or(ip);
    let addr = ip.parse::<IpAddr>().map_err(|_| invalid())?;
    Ok((name.to_string(), addr))
}

/// Parses `--ulimit` as Docker does: `NAME=SOFT[:HARD]` (hard = soft when
/// missing; `-1` is unlimited), with Docker's names.
pub fn parse_ulimit(value: &str) -> Result<Rlimit, String> {
    let (name, limits) = value.split_once('=').ok_or_else(|| format!("invalid ulimit argument: {value}"))?;
    let resource = Resource::from_name(name)
        .filter(|r| *r != Resource::As)
        .ok_or_else(|| format!("invalid ulimit type: {name}"))?;
    let parts: Vec<&str> = limits.split(':').collect();
    if parts.len() > 2 {
        return Err(format!("too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`"));
    }
    let number = |s: &str| -> Result<(i64, u64), String> {
        let n: i64 = s.parse().map_err(|_| format!("invalid ulimit argument: {value}"))?;
        match n {
            -1 => Ok((n, u64::MAX)),
            n if n < 0 => Err(format!("invalid ulimit argument: {value}")),
            n => Ok((n, n as u64)),
        }
    };
    let (soft_n, soft) = number(parts[0])?;
    let (hard_n, hard) = match parts.get(1) {
        Some(h) => number(h)?,
        None => (soft_n, soft),
    };
    if soft > hard {
        return Err(format!("ulimit soft limit must be less than or equal to hard limit: {soft_n} > {hard_n}"));
    }
    Ok(Rlimit { resource, soft, hard })
}

/// Parses a size as Docker's `RAMInBytes` (`--shm-size 128m`): a number
/// with an optional binary unit `b`, `k`, `m`, `g`, `t`, `p` (any case,
/// an optional `i`/`b` after it).
pub fn parse_mem_bytes(value: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size: '{value}'");
    let s = value.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| invalid())?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(invalid()),
    };
    if !n.is_finite() || n < 0.0 {
        return Err(invalid());
    }
    Ok((n * (1u64 << shift) as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_as_buildx() {
        assert_eq!(parse_add_host("db:10.0.0.5").unwrap(), ("db".into(), "10.0.0.5".parse().unwrap()));
        assert_eq!(parse_add_host("db=10.0.0.5").unwrap().0, "db");
        assert_eq!(parse_add_host("v6:::1").unwrap().1, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(parse_add_host("v6=[fd00::1]").unwrap().1, "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(parse_add_host("gw:host-gateway").unwrap().1, HOST_GATEWAY.parse::<IpAddr>().unwrap());
        for bad in ["db", "db:", ":1.2.3.4", "db:not-an-ip", "db:1.2.3"] {
            assert_eq!(parse_add_host(bad).unwrap_err(), format!("invalid host {bad}"));
        }
    }

    #[test]
    fn ulimits_as_docker() {
        let r = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((r.resource, r.soft, r.hard), (Resource::Nofile, 1024, 2048));
        let r = parse_ulimit("nproc=512").unwrap();
        assert_eq!((r.soft, r.hard), (512, 512));
        assert_eq!(parse_ulimit("memlock=-1:-1").unwrap().hard, u64::MAX);
        assert_eq!(parse_ulimit("files=1").unwrap_err(), "invalid ulimit type: files");
        assert_eq!(
            parse_ulimit("nofile=2048:1024").unwrap_err(),
            "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"
        );
        assert!(parse_ulimit("nofile=1:2:3").unwrap_err().contains("too many limit value arguments"));
        assert_eq!(parse_ulimit("nofile").unwrap_err(), "invalid ulimit argument: nofile");
        assert_eq!(parse_ulimit("nofile=x").unwrap_err(), "invalid ulimit argument: nofile=x");
    }

    #[test]
    fn sizes_as_docker() {
        assert_eq!(parse_mem_bytes("128m").unwrap(), 128 << 20);
        assert_eq!(parse_mem_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_mem_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_mem_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_mem_bytes("1.5k").unwrap(), 1536);
        assert_eq!(parse_mem_bytes("12x").unwrap_err(), "invalid size: '12x'");
        assert!(parse_mem_bytes("").is_err() && parse_mem_bytes("m").is_err());
    }

    #[test]
    fn entitlements_as_buildkit() {
        let mut e = Entitlements::default();
        e.grant("network.host").unwrap();
        assert_eq!(e, Entitlements { network_host: true, security_insecure: false });
        e.grant("security.insecure,network.host").unwrap();
        assert!(e.security_insecure);
        assert_eq!(e.grant("device").unwrap_err(), "unknown entitlement device");
    }
}
