//! CLI tests: one binary, real registry, real images.

mod util;

mod manifest;
mod imagetools;
mod failures;
mod store;
mod build;
mod emu;
mod run;
