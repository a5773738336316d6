//! The seccomp filter of every run: what Docker's default profile (moby
//! `profiles/seccomp/default.json`) refuses to a container without extra
//! capabilities, as a deny list over an allowing default. Kernel keyrings,
//! module loading, clocks, accounting, swap, reboot, `bpf`, `perf_event_open`,
//! `userfaultfd`, NUMA policy, `mount` and namespace creation (`unshare`,
//! `setns`, `clone` with a `CLONE_NEW*` flag) fail with `EPERM`; `clone3`
//! fails with `ENOSYS` so that C libraries fall back to `clone`, whose flags
//! can be checked, as Docker does.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator,
    LinuxSyscall, LinuxSyscallBuilder,
};

use crate::error::Result;

/// Syscalls refused with `EPERM`.
pub const DENIED: [&str; 45] = [
    "_sysctl",
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "nfsservctl",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
];

/// `CLONE_NEWNS`, `CLONE_NEWCGROUP`, `CLONE_NEWUTS`, `CLONE_NEWIPC`,
/// `CLONE_NEWUSER`, `CLONE_NEWPID`, `CLONE_NEWNET`.
pub const CLONE_NAMESPACE_FLAGS: [u64; 7] =
    [0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The architectures the filter covers on this machine: its own and the
/// compatibility ones its kernel runs (as Docker lists them).
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

fn deny(names: &[&str], errno: u32) -> Result<LinuxSyscall> {
    Ok(LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(errno)
        .build()?)
}

/// The filter.
pub fn default_profile() -> Result<LinuxSeccomp> {
    let mut syscalls = vec![deny(&DENIED, EPERM)?, deny(&["clone3"], ENOSYS)?];
    // The clone flags argument is the first on x86 and arm (the second on
    // s390x, which this list does not cover).
    for flag in CLONE_NAMESPACE_FLAGS {
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(flag)
            .value_two(flag)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()?;
        let mut rule = deny(&["clone"], EPERM)?;
        rule.set_args(Some(vec![arg]));
        syscalls.push(rule);
    }
    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(architectures())
        .syscalls(syscalls)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denies_with_eperm_and_clone3_with_enosys() {
        let v = serde_json::to_value(default_profile().unwrap()).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ALLOW");
        let rules = v["syscalls"].as_array().unwrap();
        assert_eq!(rules[0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(rules[0]["errnoRet"], 1);
        let names: Vec<&str> = rules[0]["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
        for n in ["keyctl", "unshare", "mount", "bpf", "reboot"] {
            assert!(names.contains(&n), "{n}");
        }
        assert_eq!(rules[1]["names"][0], "clone3");
        assert_eq!(rules[1]["errnoRet"], 38);
        let clone_rules: Vec<&serde_json::Value> = rules.iter().filter(|r| r["names"][0] == "clone").collect();
        assert_eq!(clone_rules.len(), 7);
        assert_eq!(clone_rules[4]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone_rules[4]["args"][0]["value"], 0x1000_0000u64);
        assert_eq!(clone_rules[4]["args"][0]["valueTwo"], 0x1000_0000u64);
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names, "kept sorted");
    }
}
