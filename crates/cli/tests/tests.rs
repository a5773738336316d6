//! CLI tests: one binary, real registry, real images.

mod util;

mod archives;
mod build;
mod builders;
mod buildfs;
mod emu;
mod escape;
mod failures;
mod faults;
mod foreign;
mod imagetools;
mod interrupt;
mod layering;
mod leftovers;
mod localbase;
mod manifest;
mod multiplatform;
mod naming;
mod nodes;
mod progress;
mod run;
mod runstep;
mod semantics;
mod store;
mod tty;
