//! CLI tests: one binary, real registry, real images.

mod util;

mod build;
mod builders;
mod emu;
mod failures;
mod faults;
mod foreign;
mod imagetools;
mod interrupt;
mod layering;
mod localbase;
mod manifest;
mod multiplatform;
mod nodes;
mod run;
mod runstep;
mod store;
mod tty;
