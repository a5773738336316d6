//! Multi-platform indexes: the local manifest lists of `polyarch manifest`,
//! merging sources into one index for `polyarch imagetools create`, and
//! publishing an index so that every child exists before the index does.

pub mod annotation;
pub mod error;
pub mod lists;
pub mod merge;
pub mod publish;
pub mod resolve;

pub use error::{Error, ErrorKind};
pub use lists::{ListEntry, ListStore, LocalList};
pub use merge::{Annotation, AnnotationTarget, IndexFormat, MergeOptions, Merged, Source};
