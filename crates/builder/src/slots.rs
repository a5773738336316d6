//! How much work of each kind runs at once, shared by every platform of a
//! build: one limit per [`Class`] of the solver (with its defaults), not
//! one for all work, so that a step that waits on emulation or the network
//! does not hold a slot a core could use (issue 12). A RUN step of this
//! machine's architecture and COPY/ADD count against [`Class::Cpu`], a RUN
//! step under QEMU against [`Class::Emulated`], pulls of base images
//! against [`Class::Io`]. `--jobs N` sets `N` CPU slots, `N` emulated
//! slots and `2N` (at least 4) I/O slots.

use std::sync::Arc;

use polyarch_oci::Platform;
pub use polyarch_solver::Class;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits, and the slots taken against them; clones share the slots.
#[derive(Debug, Clone)]
pub struct Slots {
    native: Platform,
    /// Other architectures this machine runs without an emulator (386 on
    /// amd64 when no handler claims it): their RUN steps are CPU work.
    /// Looked up on the first foreign RUN step, not when slots are made.
    compat: Arc<std::sync::OnceLock<Vec<String>>>,
    limits: [usize; 3],
    slots: [Arc<Semaphore>; 3],
}

/// A slot held until dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
}

fn at(class: Class) -> usize {
    match class {
        Class::Cpu => 0,
        Class::Emulated => 1,
        Class::Io => 2,
    }
}

impl Slots {
    /// The solver's default limits for `jobs` CPU slots, on this machine.
    pub fn new(jobs: usize) -> Slots {
        let limits = [Class::Cpu, Class::Emulated, Class::Io].map(|c| c.default_limit(jobs));
        Slots {
            native: Platform::host(),
            compat: Arc::default(),
            limits,
            slots: limits.map(|n| Arc::new(Semaphore::new(n))),
        }
    }

    /// Sets the limit of `class` (at least one), with new slots.
    pub fn with_limit(mut self, class: Class, limit: usize) -> Slots {
        self.limits[at(class)] = limit.max(1);
        self.slots[at(class)] = Arc::new(Semaphore::new(limit.max(1)));
        self
    }

    /// The limit of `class`.
    pub fn limit(&self, class: Class) -> usize {
        self.limits[at(class)]
    }

    /// The class of running a program of `platform` here.
    pub fn exec_class(&self, platform: &Platform) -> Class {
        match Class::of_exec(platform, &self.native) {
            Class::Emulated
                if platform.os == self.native.os
                    && self.compat.get_or_init(compat_architectures).contains(&platform.normalize().architecture) =>
            {
                Class::Cpu
            }
            class => class,
        }
    }

    /// Waits for a slot of `class`.
    pub async fn acquire(&self, class: Class) -> Slot {
        Slot { _permit: self.slots[at(class)].clone().acquire_owned().await.ok() }
    }

    /// How many slots of `class` are free now.
    pub fn free(&self, class: Class) -> usize {
        self.slots[at(class)].available_permits()
    }
}

/// The architectures other than the host's that run here natively, as
/// platform architecture names (`386`).
fn compat_architectures() -> Vec<String> {
    let Some(host) = polyarch_emu::Arch::host() else { return Vec::new() };
    let binfmt = polyarch_emu::BinfmtMisc::default();
    polyarch_emu::Arch::ALL
        .iter()
        .filter(|a| **a != host && a.runs_natively_on(host, &binfmt))
        .filter_map(|a| a.platforms().into_iter().next().map(|p| p.architecture))
        .collect()
}

impl Default for Slots {
    /// [`Slots::new`] with [`crate::multi::default_jobs`].
    fn default() -> Slots {
        Slots::new(crate::multi::default_jobs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limits_are_the_solvers() {
        let s = Slots::new(2);
        assert_eq!((s.limit(Class::Cpu), s.limit(Class::Emulated), s.limit(Class::Io)), (2, 2, 4));
        let s = Slots::new(3).with_limit(Class::Emulated, 6);
        assert_eq!((s.limit(Class::Cpu), s.limit(Class::Emulated), s.limit(Class::Io)), (3, 6, 6));
        assert_eq!(Slots::new(0).limit(Class::Cpu), 1);
    }

    #[test]
    fn foreign_programs_are_emulated() {
        let s = Slots::new(1);
        let host = Platform::host();
        assert_eq!(s.exec_class(&host), Class::Cpu);
        let foreign = if host.architecture == "s390x" { "linux/arm64" } else { "linux/s390x" };
        assert_eq!(s.exec_class(&Platform::parse(foreign).unwrap()), Class::Emulated);
    }

    #[test]
    fn a_compat_architecture_the_kernel_runs_is_cpu_work() {
        let s = Slots { compat: Arc::new(vec!["386".to_string()].into()), ..Slots::new(1) };
        let host = Platform::host();
        if host.architecture == "amd64" {
            assert_eq!(s.exec_class(&Platform::parse("linux/386").unwrap()), Class::Cpu);
        }
        let foreign = if host.architecture == "s390x" { "linux/arm64" } else { "linux/s390x" };
        assert_eq!(s.exec_class(&Platform::parse(foreign).unwrap()), Class::Emulated);
    }

    #[tokio::test]
    async fn an_emulated_step_does_not_hold_a_cpu_slot() {
        let s = Slots::new(1);
        let emulated = s.acquire(Class::Emulated).await;
        let io = s.acquire(Class::Io).await;
        let cpu = tokio::time::timeout(Duration::from_secs(5), s.acquire(Class::Cpu)).await;
        assert!(cpu.is_ok(), "a CPU slot is free while an emulated step runs");
        assert_eq!(s.free(Class::Cpu), 0);
        let second = tokio::time::timeout(Duration::from_millis(50), s.acquire(Class::Emulated)).await;
        assert!(second.is_err(), "one emulated slot");
        drop((emulated, io));
        assert_eq!(s.free(Class::Emulated), 1);
        let shared = s.clone();
        drop(cpu);
        assert_eq!(shared.free(Class::Cpu), 1, "clones share the slots");
    }
}
