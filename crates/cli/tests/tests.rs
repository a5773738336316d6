//! CLI tests: one binary, real registry, real images.

mod util;

mod build;
mod builders;
mod buildfs;
mod emu;
mod failures;
mod imagetools;
mod interrupt;
mod layering;
mod manifest;
mod multiplatform;
mod nodes;
mod run;
mod runstep;
mod store;
