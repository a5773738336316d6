//! `polyarch save` and `polyarch load`: images to and from tar archives,
//! in the OCI layout or the `docker save` format (`docker save`,
//! `docker load`).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal as _, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use polyarch_oci::{Descriptor, Platform};
use polyarch_store::Store;
use polyarch_transfer::local;

use super::images::{familiar, lookup, open_store};
use super::GlobalArgs;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum ArchiveFormat {
    /// An OCI image layout: every platform present, indexes kept.
    Oci,
    /// `docker save`'s format (one platform per image, for `docker load`).
    Docker,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to this file (default: stdout, unless it is a terminal).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Archive format.
    #[arg(long, value_enum, default_value = "docker")]
    format: ArchiveFormat,
    /// With `--format docker`, the platform to save from an index
    /// (default: the host's, else the first present).
    #[arg(long)]
    platform: Option<String>,
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from this file (default: stdin).
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Do not print the loaded names.
    #[arg(short, long)]
    quiet: bool,
}

fn write_archive(store: &Store, a: &SaveArgs, names: &[(String, Descriptor)], w: impl Write) -> Result<()> {
    match a.format {
        ArchiveFormat::Oci => {
            let refs: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
            store.export_oci_archive(&refs, w)?;
        }
        ArchiveFormat::Docker => {
            let platform =
                a.platform.as_deref().map(|p| Platform::parse(p).map_err(anyhow::Error::from)).transpose()?;
            let mut images = Vec::new();
            for (name, desc) in names {
                let img =
                    local::image_for(store, name, desc, platform.as_ref()).with_context(|| format!("saving {name}"))?;
                images.push((name.clone(), img.descriptor));
            }
            store.export_docker_archive(&images, w)?;
        }
    }
    Ok(())
}

/// Writes `FILE` through a temp file in the same directory and a rename,
/// so a failed save leaves no partial archive behind.
fn save_atomically(path: &Path, write: impl FnOnce(&mut polyarch_store::AtomicFile) -> Result<()>) -> Result<()> {
    let mut f = polyarch_store::AtomicFile::create(path).with_context(|| format!("creating {}", path.display()))?;
    write(&mut f)?;
    f.commit().with_context(|| format!("writing {}", path.display()))
}

pub fn save(global: &GlobalArgs, a: SaveArgs) -> Result<u8> {
    let store = open_store(global)?;
    let mut names = Vec::new();
    for input in &a.images {
        names.push(lookup(&store, input)?);
    }
    match &a.output {
        Some(path) => save_atomically(path, |w| write_archive(&store, &a, &names, w))
            .with_context(|| format!("saving to {}", path.display()))?,
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("cowardly refusing to save to a terminal: use the -o flag or redirect");
            }
            let mut w = BufWriter::new(stdout.lock());
            write_archive(&store, &a, &names, &mut w)?;
            w.flush().context("writing to stdout")?;
        }
    }
    Ok(0)
}

pub fn load(global: &GlobalArgs, a: LoadArgs) -> Result<u8> {
    let store = open_store(global)?;
    let loaded = match &a.input {
        Some(path) => {
            let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            store.import_archive(BufReader::new(f)).with_context(|| format!("loading {}", path.display()))?
        }
        None => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                bail!("requested load from stdin, but stdin is empty: use -i FILE or redirect");
            }
            store.import_archive(BufReader::new(stdin.lock())).context("loading from stdin")?
        }
    };
    if !a.quiet {
        for (name, desc) in &loaded {
            if name.contains('@') {
                crate::outln!("Loaded image ID: {}", desc.digest)?;
            } else {
                crate::outln!("Loaded image: {}", familiar(name))?;
            }
        }
    }
    Ok(0)
}
