//! Hostile layers and images for the escape tests: a tar writer that takes
//! any name and link target, and an image made from a stored busybox with
//! one such layer on top, loaded into a store and pushed to the registry.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{s, Env, Registry};

/// One tar entry, written as given.
pub enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a str),
    Symlink(&'a str, &'a str),
    Link(&'a str, &'a str),
}

/// An uncompressed tar of `entries`, names and targets unchecked (each at
/// most 100 bytes).
pub fn tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (name, kind, data, link, mode) = match e {
            Entry::Dir(n) => (*n, tar::EntryType::Directory, "", None, 0o755),
            Entry::File(n, d) => (*n, tar::EntryType::Regular, *d, None, 0o644),
            Entry::Symlink(n, t) => (*n, tar::EntryType::Symlink, "", Some(*t), 0o777),
            Entry::Link(n, t) => (*n, tar::EntryType::Link, "", Some(*t), 0o644),
        };
        let mut h = tar::Header::new_ustar();
        let old = h.as_old_mut();
        assert!(name.len() <= 100 && link.is_none_or(|l| l.len() <= 100), "{name}: too long for a plain header");
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// The regular files of a tar by name.
pub fn files(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(archive);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(name, data);
    }
    out
}

fn blob_name(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": super::sha256_hex(bytes), "size": bytes.len()})
}

/// The OCI layout tar `base` (one image manifest, as `polyarch save
/// --format oci` writes a single-platform image) with `layer` added on top,
/// named `name`.
pub fn with_layer(base: &[u8], layer: &[u8], name: &str) -> Vec<u8> {
    let mut blobs = files(base);
    let index: Value = serde_json::from_slice(&blobs["index.json"]).unwrap();
    let top = &index["manifests"][0];
    assert_eq!(top["mediaType"], "application/vnd.oci.image.manifest.v1+json", "a single image: {index}");
    let mut manifest: Value = serde_json::from_slice(&blobs[&blob_name(top["digest"].as_str().unwrap())]).unwrap();
    let mut config: Value =
        serde_json::from_slice(&blobs[&blob_name(manifest["config"]["digest"].as_str().unwrap())]).unwrap();
    config["rootfs"]["diff_ids"].as_array_mut().unwrap().push(json!(super::sha256_hex(layer)));
    if let Some(h) = config["history"].as_array_mut() {
        h.push(json!({"created_by": "hostile layer"}));
    }
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"] = descriptor(manifest["config"]["mediaType"].as_str().unwrap(), &config_bytes);
    manifest["layers"].as_array_mut().unwrap().push(descriptor("application/vnd.oci.image.layer.v1.tar", layer));
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let mut entry = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest_bytes);
    entry["annotations"] = json!({
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": name.rsplit(':').next().unwrap(),
    });
    let index =
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]});
    for bytes in [layer.to_vec(), config_bytes, manifest_bytes] {
        blobs.insert(blob_name(&super::sha256_hex(&bytes)), bytes);
    }
    blobs.insert("index.json".into(), serde_json::to_vec(&index).unwrap());
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in &blobs {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// The host's architecture as the fixture's per-platform tags name it.
pub fn host_tag_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("unexpected host {other}"),
    }
}

/// Pushes `reg`'s busybox for this host with `layers` on top as
/// `REGISTRY/repo:latest` (through a scratch environment); returns the name.
pub fn push_hostile(reg: &Registry, layers: &[Vec<u8>], repo: &str) -> String {
    let env = Env::new();
    let base = format!("{}/library/busybox:latest-{}", reg.host, host_tag_arch());
    env.ok(&["pull", &base]);
    let saved = env.dir.path().join("base.tar");
    env.ok(&["save", "--format", "oci", "-o", s(&saved), &base]);
    let name = format!("{}/{repo}:latest", reg.host);
    let hostile: PathBuf = env.dir.path().join("hostile.tar");
    let mut image = std::fs::read(&saved).unwrap();
    for l in layers {
        image = with_layer(&image, l, &name);
    }
    std::fs::write(&hostile, image).unwrap();
    env.ok(&["load", "-i", s(&hostile)]);
    env.ok(&["push", &name]);
    name
}

/// Everything under `dir`: path → (is a dir, content), symlinks read.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (bool, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let data = if md.is_file() {
                std::fs::read(&p).unwrap()
            } else if md.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes()
            } else {
                Vec::new()
            };
            out.insert(p.clone(), (md.is_dir(), data));
            if md.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}
