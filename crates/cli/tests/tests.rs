//! CLI tests: one binary, real registry, real images.

mod util;

mod build;
mod builders;
mod emu;
mod failures;
mod faults;
mod imagetools;
mod interrupt;
mod layering;
mod manifest;
mod multiplatform;
mod nodes;
mod run;
mod runstep;
mod store;
