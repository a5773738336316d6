//! The default image of a docker-container node, made from this machine:
//! the running polyarch binary, `runc`, the shared libraries both load
//! (as `ldd` lists them), the QEMU emulators the registered `binfmt_misc`
//! handlers name, and the CA certificates. One uncompressed layer with
//! fixed owners and times, so the same files give the same layer; the tag
//! is `polyarch/worker:<version>-<first 12 hex of the layer digest>`, and
//! an engine that has the tag is not sent the image again.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use polyarch_engine::Engine;
use sha2::{Digest as _, Sha256};

use crate::docker_container::STATE_DIR;
use crate::error::{Error, NodeId};

/// The worker's program in the image.
pub const WORKER_BIN: &str = "/usr/bin/polyarch";

/// One file of the image: where it is read, where it goes, its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub source: PathBuf,
    pub dest: String,
    pub mode: u32,
}

/// The program `name` on PATH (or in the sbin directories).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The libraries `ldd` names for `program` (absolute paths, the loader
/// included).
fn libraries(program: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| format!("running ldd {}: {e} (install libc-bin)", program.display()))?;
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, right)) => right.trim(),
                None => l,
            };
            path.split_whitespace().next().filter(|p| p.starts_with('/')).map(PathBuf::from)
        })
        .collect()
}

/// The interpreters of the registered `qemu-*` handlers.
fn emulators(binfmt: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(binfmt) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("qemu-"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| t.lines().find_map(|l| l.strip_prefix("interpreter ").map(|p| PathBuf::from(p.trim()))))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every file of the worker image made from this machine.
pub fn contents() -> Result<Vec<Item>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding the running polyarch binary: {e}"))?;
    let runc = which("runc").ok_or("runc is not installed here (apt-get install runc), and the worker needs it")?;
    let mut items = vec![
        Item { source: exe.clone(), dest: WORKER_BIN.into(), mode: 0o755 },
        Item { source: runc.clone(), dest: runc.to_string_lossy().into_owned(), mode: 0o755 },
    ];
    let mut add = |source: PathBuf, mode: u32| {
        let dest = source.to_string_lossy().into_owned();
        if !items.iter().any(|i| i.dest == dest) {
            items.push(Item { source, dest, mode });
        }
    };
    for lib in libraries(&exe)?.into_iter().chain(libraries(&runc)?) {
        add(lib, 0o755);
    }
    for qemu in emulators(Path::new("/proc/sys/fs/binfmt_misc")) {
        add(qemu, 0o755);
    }
    let certs = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
    if certs.is_file() {
        add(certs, 0o644);
    }
    Ok(items)
}

/// A writer that hashes what passes through.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(kind);
    h
}

/// Writes the layer: directories, the files (links followed), `/etc`
/// basics; returns its sha256 hex.
fn write_layer(items: &[Item], w: impl Write) -> io::Result<String> {
    let mut tar = tar::Builder::new(Hashing { inner: w, hash: Sha256::new() });
    let mut dirs = std::collections::BTreeSet::new();
    for d in ["tmp/", "root/", "run/", "etc/", &format!("{}/", STATE_DIR.trim_start_matches('/'))] {
        dirs.insert(d.to_string());
    }
    for i in items {
        let rel = i.dest.trim_start_matches('/');
        let mut prefix = String::new();
        for part in rel.split('/').collect::<Vec<_>>().split_last().map(|(_, p)| p.to_vec()).unwrap_or_default() {
            prefix.push_str(part);
            prefix.push('/');
            dirs.insert(prefix.clone());
        }
    }
    for d in &dirs {
        let mode = if d == "tmp/" { 0o1777 } else { 0o755 };
        tar.append_data(&mut header(0, mode, tar::EntryType::Directory), d, io::empty())?;
    }
    let etc: [(&str, &[u8]); 2] = [("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", b"root:x:0:\n")];
    for (path, data) in etc {
        tar.append_data(&mut header(data.len() as u64, 0o644, tar::EntryType::Regular), path, data)?;
    }
    for i in items {
        let f = std::fs::File::open(&i.source)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", i.source.display())))?;
        let size = f.metadata()?.len();
        let mut h = header(size, i.mode, tar::EntryType::Regular);
        tar.append_data(&mut h, i.dest.trim_start_matches('/'), f.take(size))?;
    }
    let hashing = tar.into_inner()?;
    Ok(hex::encode(hashing.hash.finalize()))
}

/// Makes the worker image from this machine unless `engine` has it; its
/// tag. `node` names the node in errors.
pub fn ensure(
    node: &NodeId,
    engine: &Engine,
    version: &str,
    platform: &polyarch_oci::Platform,
) -> Result<String, Error> {
    let items = contents().map_err(|why| Error::WorkerImage { node: node.clone(), why })?;
    let engine_err = |source| Error::engine(node, source);
    let layer_err = |e: io::Error| Error::WorkerImage { node: node.clone(), why: format!("writing its layer: {e}") };
    let mut layer = tempfile::tempfile().map_err(layer_err)?;
    let hex = write_layer(&items, io::BufWriter::new(&mut layer)).map_err(layer_err)?;
    let tag = format!("polyarch/worker:{}-{}", version.trim_start_matches('v'), &hex[..12]);
    if engine.image_exists(&tag).map_err(engine_err)? {
        return Ok(tag);
    }
    let config = serde_json::json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "variant": platform.variant,
        "config": {
            "Entrypoint": [WORKER_BIN, "worker", "--idle"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{hex}")]},
    })
    .to_string();
    let config_name = format!("{}.json", hex::encode(Sha256::digest(config.as_bytes())));
    let manifest = serde_json::json!([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).to_string();
    let load = engine.load(|w| {
        write_archive(w, &mut layer, &config_name, &config, &manifest).map_err(|e| polyarch_engine::Error::Io {
            endpoint: engine.endpoint().to_string(),
            call: "POST /images/load".into(),
            source: e,
        })
    });
    load.map_err(engine_err)?;
    Ok(tag)
}

/// The `docker save` archive: the layer, the config, `manifest.json`.
fn write_archive(
    w: &mut dyn Write,
    layer: &mut std::fs::File,
    config_name: &str,
    config: &str,
    manifest: &str,
) -> io::Result<()> {
    use std::io::Seek as _;
    let size = layer.seek(io::SeekFrom::End(0))?;
    layer.seek(io::SeekFrom::Start(0))?;
    let mut tar = tar::Builder::new(w);
    tar.append_data(&mut header(size, 0o644, tar::EntryType::Regular), "layer.tar", layer.take(size))?;
    tar.append_data(&mut header(config.len() as u64, 0o644, tar::EntryType::Regular), config_name, config.as_bytes())?;
    tar.append_data(
        &mut header(manifest.len() as u64, 0o644, tar::EntryType::Regular),
        "manifest.json",
        manifest.as_bytes(),
    )?;
    tar.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_absolute_paths() {
        let text =
            "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibseccomp.so.2 => /lib/x86_64-linux-gnu/libseccomp.so.2 (0x7f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n\
                    \tlibgone.so => not found\n";
        assert_eq!(
            parse_ldd(text),
            ["/lib/x86_64-linux-gnu/libseccomp.so.2", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
                .map(PathBuf::from)
        );
    }

    #[test]
    fn the_same_files_give_the_same_layer() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("prog");
        std::fs::write(&f, b"#!/bin/true\n").unwrap();
        let items = vec![Item { source: f.clone(), dest: "/usr/bin/prog".into(), mode: 0o755 }];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let ha = write_layer(&items, &mut a).unwrap();
        let hb = write_layer(&items, &mut b).unwrap();
        assert_eq!((ha.clone(), &a), (hb, &b));
        assert_eq!(ha, hex::encode(Sha256::digest(&a)));
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(&a[..]);
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            names.push((e.path().unwrap().to_string_lossy().into_owned(), e.header().mode().unwrap()));
        }
        assert!(names.contains(&("usr/bin/prog".into(), 0o755)), "{names:?}");
        assert!(names.contains(&("tmp/".into(), 0o1777)), "{names:?}");
        assert!(names.contains(&("var/lib/polyarch/".into(), 0o755)), "{names:?}");
        std::fs::write(&f, b"#!/bin/false\n").unwrap();
        assert_ne!(write_layer(&items, &mut Vec::new()).unwrap(), ha, "other content, another layer");
    }

    #[test]
    fn emulators_are_the_interpreters_of_qemu_handlers() {
        let d = tempfile::tempdir().unwrap();
        let q = d.path().join("qemu-x-static");
        std::fs::write(&q, b"").unwrap();
        std::fs::write(d.path().join("qemu-x"), format!("enabled\ninterpreter {}\nflags: POCF\n", q.display()))
            .unwrap();
        std::fs::write(d.path().join("python3"), "enabled\ninterpreter /usr/bin/python3\n").unwrap();
        std::fs::write(d.path().join("qemu-gone"), "enabled\ninterpreter /nonexistent/qemu\n").unwrap();
        assert_eq!(emulators(d.path()), vec![q]);
    }
}
