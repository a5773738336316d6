//! CLI tests: one binary, real registry, real images.

mod util;

mod manifest;
mod imagetools;
mod failures;
mod layering;
mod store;
mod build;
mod emu;
mod run;
mod runstep;
mod interrupt;
mod multiplatform;
mod builders;
