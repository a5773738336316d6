//! File system snapshots and layers for the image builder: applying OCI
//! layers onto directories safely ([`unpack`]), turning file system
//! changes into deterministic layer blobs ([`diff`], [`layer`]), and
//! snapshotters that stack trees the way containerd's do ([`snapshot`]).

#![warn(missing_docs)]

pub mod compress;
pub mod diff;
pub mod error;
mod fsmeta;
pub mod layer;
pub mod mount;
pub mod rooted;
pub mod snapshot;
#[cfg(test)]
mod testutil;
pub mod unpack;

pub use compress::{decompress, Compression};
pub use diff::{changes_dirs, changes_overlay_upper, diff_dirs, diff_overlay_upper, write_changes, Change};
pub use error::{Error, ErrorKind, Result};
pub use layer::{store_layer, FileSource, LayerBuilder, LayerInfo, LayerOptions, Meta};
pub use mount::{Mount, MountGuard};
pub use rooted::{Root, Slot};
pub use snapshot::{apply_layer, chain_id, Info, Kind, NaiveSnapshotter, OverlaySnapshotter, Snapshotter, Usage};
pub use unpack::{pax_xattr, unpack, unpack_compressed, IdMap, UnpackOptions, UnpackStats, WhiteoutMode, XattrRecord};

#[cfg(test)]
mod tests {
    /// Snapshots sit above the store and the model only (as ggcr's
    /// depcheck_test.go guards).
    #[test]
    fn depends_only_on_the_store_and_the_model() {
        let manifest = include_str!("../Cargo.toml");
        let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
        let ours: Vec<&str> =
            deps.lines().filter(|l| l.starts_with("polyarch-")).map(|l| l.split(['.', ' ']).next().unwrap()).collect();
        assert_eq!(ours, ["polyarch-oci", "polyarch-store"]);
    }
}
