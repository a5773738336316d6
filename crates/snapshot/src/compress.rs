//! Layer compression: the store crate's one implementation
//! ([`polyarch_store::compression`]), under the names this crate's
//! modules use.

pub use polyarch_store::compression::{decompress, detect, Compression, Encoder, Format};
