//! Resource limits: names as Docker's `--ulimit` spells them, and clamping
//! to the caller's hard limits. A process without `CAP_SYS_RESOURCE`
//! (root in many CI containers) cannot raise a hard limit; asking the
//! runtime to do so makes it fail with "setrlimit: Operation not
//! permitted", as podman's defaults do on such hosts.

use oci_spec::runtime::PosixRlimitType;

use crate::process::Rlimit;
use crate::sys::Syscalls;

/// A resource limit (`RLIMIT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Resource {
    Cpu,
    Fsize,
    Data,
    Stack,
    Core,
    Rss,
    Nproc,
    Nofile,
    Memlock,
    As,
    Locks,
    Sigpending,
    Msgqueue,
    Nice,
    Rtprio,
    Rttime,
}

const ALL: [(Resource, &str); 16] = [
    (Resource::Cpu, "cpu"),
    (Resource::Fsize, "fsize"),
    (Resource::Data, "data"),
    (Resource::Stack, "stack"),
    (Resource::Core, "core"),
    (Resource::Rss, "rss"),
    (Resource::Nproc, "nproc"),
    (Resource::Nofile, "nofile"),
    (Resource::Memlock, "memlock"),
    (Resource::As, "as"),
    (Resource::Locks, "locks"),
    (Resource::Sigpending, "sigpending"),
    (Resource::Msgqueue, "msgqueue"),
    (Resource::Nice, "nice"),
    (Resource::Rtprio, "rtprio"),
    (Resource::Rttime, "rttime"),
];

impl Resource {
    /// Parses Docker's `--ulimit` name (`nofile`, `nproc`, ...).
    pub fn from_name(name: &str) -> Option<Resource> {
        ALL.iter().find(|(_, n)| *n == name).map(|(r, _)| *r)
    }

    /// Docker's `--ulimit` name.
    pub fn name(self) -> &'static str {
        ALL.iter().find(|(r, _)| *r == self).map(|(_, n)| *n).unwrap_or("?")
    }

    pub(crate) fn oci(self) -> PosixRlimitType {
        use PosixRlimitType as T;
        match self {
            Resource::Cpu => T::RlimitCpu,
            Resource::Fsize => T::RlimitFsize,
            Resource::Data => T::RlimitData,
            Resource::Stack => T::RlimitStack,
            Resource::Core => T::RlimitCore,
            Resource::Rss => T::RlimitRss,
            Resource::Nproc => T::RlimitNproc,
            Resource::Nofile => T::RlimitNofile,
            Resource::Memlock => T::RlimitMemlock,
            Resource::As => T::RlimitAs,
            Resource::Locks => T::RlimitLocks,
            Resource::Sigpending => T::RlimitSigpending,
            Resource::Msgqueue => T::RlimitMsgqueue,
            Resource::Nice => T::RlimitNice,
            Resource::Rtprio => T::RlimitRtprio,
            Resource::Rttime => T::RlimitRttime,
        }
    }

    pub(crate) fn rustix(self) -> rustix::process::Resource {
        use rustix::process::Resource as R;
        match self {
            Resource::Cpu => R::Cpu,
            Resource::Fsize => R::Fsize,
            Resource::Data => R::Data,
            Resource::Stack => R::Stack,
            Resource::Core => R::Core,
            Resource::Rss => R::Rss,
            Resource::Nproc => R::Nproc,
            Resource::Nofile => R::Nofile,
            Resource::Memlock => R::Memlock,
            Resource::As => R::As,
            Resource::Locks => R::Locks,
            Resource::Sigpending => R::Sigpending,
            Resource::Msgqueue => R::Msgqueue,
            Resource::Nice => R::Nice,
            Resource::Rtprio => R::Rtprio,
            Resource::Rttime => R::Rttime,
        }
    }
}

/// The limits every container gets unless the process asks otherwise:
/// containerd's default spec (`RLIMIT_NOFILE` 1024:1024).
pub const DEFAULT: [Rlimit; 1] = [Rlimit { resource: Resource::Nofile, soft: 1024, hard: 1024 }];

/// The limits to put in config.json: the defaults overridden by `wanted`
/// (the last entry per resource wins), each lowered to the caller's hard
/// limit so that the runtime never needs to raise one.
pub fn effective(wanted: &[Rlimit], sys: &dyn Syscalls) -> Vec<Rlimit> {
    let mut out: Vec<Rlimit> = Vec::new();
    for r in DEFAULT.iter().chain(wanted) {
        match out.iter_mut().find(|o| o.resource == r.resource) {
            Some(o) => *o = *r,
            None => out.push(*r),
        }
    }
    out.iter().map(|r| clamp(*r, sys.hard_limit(r.resource))).collect()
}

/// Lowers `r` to the hard limit `ceiling` (`None` = unlimited), keeping
/// soft ≤ hard.
pub fn clamp(r: Rlimit, ceiling: Option<u64>) -> Rlimit {
    let hard = ceiling.map_or(r.hard, |c| r.hard.min(c));
    Rlimit { resource: r.resource, soft: r.soft.min(hard), hard }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Recording;

    #[test]
    fn clamping_never_exceeds_the_hard_limit() {
        let r = Rlimit { resource: Resource::Nofile, soft: 1_048_576, hard: 1_048_576 };
        assert_eq!(clamp(r, Some(20_000)), Rlimit { resource: Resource::Nofile, soft: 20_000, hard: 20_000 });
        assert_eq!(clamp(r, None), r);
        let low = Rlimit { resource: Resource::Nproc, soft: 100, hard: 200 };
        assert_eq!(clamp(low, Some(150)), Rlimit { resource: Resource::Nproc, soft: 100, hard: 150 });
        assert_eq!(clamp(low, Some(50)), Rlimit { resource: Resource::Nproc, soft: 50, hard: 50 });
    }

    #[test]
    fn defaults_are_overridden_and_clamped() {
        let sys = Recording::new().with_hard_limit(Resource::Nofile, 512).with_hard_limit(Resource::Nproc, 4096);
        let got = effective(&[Rlimit { resource: Resource::Nproc, soft: 8192, hard: 8192 }], &sys);
        assert_eq!(
            got,
            [
                Rlimit { resource: Resource::Nofile, soft: 512, hard: 512 },
                Rlimit { resource: Resource::Nproc, soft: 4096, hard: 4096 },
            ]
        );
        let over = effective(&[Rlimit { resource: Resource::Nofile, soft: 64, hard: 128 }], &sys);
        assert_eq!(over, [Rlimit { resource: Resource::Nofile, soft: 64, hard: 128 }]);
        assert!(sys.calls().iter().any(|c| c == "getrlimit nofile"), "{:?}", sys.calls());
    }

    #[test]
    fn names_round_trip() {
        for (r, n) in ALL {
            assert_eq!(Resource::from_name(n), Some(r));
            assert_eq!(r.name(), n);
            assert_eq!(format!("RLIMIT_{}", n.to_uppercase()), r.oci().to_string());
        }
        assert_eq!(Resource::from_name("files"), None);
    }
}
