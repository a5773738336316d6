//! CLI tests: one binary, real registry, real images.

mod util;

mod annotations;
mod archives;
mod build;
mod builders;
mod buildfs;
mod completion;
mod emu;
mod engine;
mod escape;
mod failures;
mod faults;
mod foreign;
mod format;
mod imagetools;
mod inputs;
mod interrupt;
mod layering;
mod leftovers;
mod localbase;
mod manifest;
mod multiplatform;
mod naming;
mod nodes;
mod pipeline;
mod plan;
mod plugin;
mod progress;
mod prune;
mod run;
mod runflags;
mod runstep;
mod semantics;
mod store;
mod tty;
