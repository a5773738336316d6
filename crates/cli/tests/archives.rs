//! `polyarch load` checks an archive before it names anything: layers must
//! unpack to their config's diff_ids (in the `docker save` and the OCI
//! form), and repo tags must be references; a refused archive leaves
//! nothing in the store.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::util::*;

/// A saved busybox (`--format docker` or `oci`), unpacked into a directory.
fn saved(format: &str) -> Option<(Env, PathBuf)> {
    let reg = shared_registry()?;
    let env = Env::new();
    let src = format!("{}/library/busybox:latest", reg.host);
    env.ok(&["pull", "-q", "--platform", "linux/amd64", &src]);
    let file = env.dir.path().join("saved.tar");
    env.ok(&["save", "--format", format, "--platform", "linux/amd64", "-o", s(&file), &src]);
    let dir = env.dir.path().join("saved");
    std::fs::create_dir(&dir).unwrap();
    sh(Command::new("tar").arg("-xf").arg(&file).arg("-C").arg(&dir));
    Some((env, dir))
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn write_json(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_vec(v).unwrap()).unwrap();
}

/// Packs `dir` into an archive next to it.
fn pack(dir: &Path, name: &str) -> PathBuf {
    let out = dir.parent().unwrap().join(name);
    sh(Command::new("tar").arg("-cf").arg(&out).arg("-C").arg(dir).arg("."));
    out
}

/// A valid layer tar that is not busybox's.
fn other_layer(env: &Env) -> PathBuf {
    let src = env.dir.path().join("other");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("evil"), "not the layer the config names\n").unwrap();
    let tar = env.dir.path().join("other.tar");
    sh(Command::new("tar").arg("-cf").arg(&tar).arg("-C").arg(&src).arg("evil"));
    tar
}

/// `load` in a fresh root fails; the message holds every one of `want`,
/// and the store holds no image and no blob.
fn refused(archive: &Path, want: &[&str]) {
    let fresh = Env::new();
    let err = fresh.fails(&["load", "-i", s(archive)]);
    for w in want {
        assert!(err.contains(w), "the error should name {w}: {err}");
    }
    assert_eq!(fresh.ok(&["images", "-q"]).trim(), "", "an image was named");
    let du: Value = serde_json::from_str(fresh.ok(&["du", "--format", "json"]).trim()).unwrap();
    assert_eq!(du["Blobs"], 0, "blobs of a refused archive stay: {du}");
}

#[test]
fn load_refuses_a_docker_archive_whose_layer_is_not_its_diff_id() {
    let Some((env, dir)) = saved("docker") else { return };
    // As a classic `docker save` archive: names and layers from manifest.json.
    std::fs::remove_file(dir.join("index.json")).unwrap();
    let mut manifest = read_json(&dir.join("manifest.json"));
    let config = read_json(&dir.join(manifest[0]["Config"].as_str().unwrap()));
    let diff_id = config["rootfs"]["diff_ids"][0].as_str().unwrap().to_string();
    let evil = other_layer(&env);
    std::fs::create_dir(dir.join("evil")).unwrap();
    std::fs::copy(&evil, dir.join("evil/layer.tar")).unwrap();
    manifest[0]["Layers"][0] = "evil/layer.tar".into();
    write_json(&dir.join("manifest.json"), &manifest);
    let layer = sha256_hex(&std::fs::read(&evil).unwrap());
    refused(&pack(&dir, "tampered.tar"), &[&layer, &diff_id]);
}

#[test]
fn load_refuses_an_oci_archive_whose_layer_is_not_its_diff_id() {
    let Some((env, dir)) = saved("oci") else { return };
    let evil = std::fs::read(other_layer(&env)).unwrap();
    let layer = sha256_hex(&evil);
    let blob = |d: &str| dir.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    std::fs::write(blob(&layer), &evil).unwrap();
    // Point the image's manifest at the other layer, and what points at
    // it (the stored index, then index.json) at the edited manifest.
    let put = |v: &Value| {
        let bytes = serde_json::to_vec(v).unwrap();
        let digest = sha256_hex(&bytes);
        std::fs::write(blob(&digest), &bytes).unwrap();
        (digest, bytes.len())
    };
    let mut top = read_json(&dir.join("index.json"));
    let mut outer = read_json(&blob(top["manifests"][0]["digest"].as_str().unwrap()));
    let child = outer["manifests"]
        .as_array()
        .and_then(|m| m.iter().position(|d| blob(d["digest"].as_str().unwrap()).exists()))
        .expect("the saved index has its amd64 image");
    let mut manifest = read_json(&blob(outer["manifests"][child]["digest"].as_str().unwrap()));
    let config = read_json(&blob(manifest["config"]["digest"].as_str().unwrap()));
    let diff_id = config["rootfs"]["diff_ids"][0].as_str().unwrap().to_string();
    manifest["layers"][0]["digest"] = layer.clone().into();
    manifest["layers"][0]["size"] = evil.len().into();
    manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
    let (digest, size) = put(&manifest);
    outer["manifests"][child]["digest"] = digest.into();
    outer["manifests"][child]["size"] = size.into();
    let (digest, size) = put(&outer);
    top["manifests"][0]["digest"] = digest.into();
    top["manifests"][0]["size"] = size.into();
    write_json(&dir.join("index.json"), &top);
    refused(&pack(&dir, "tampered.tar"), &[&layer, &diff_id]);
}

#[test]
fn load_refuses_repo_tags_that_are_no_references() {
    let Some((_env, dir)) = saved("docker") else { return };
    std::fs::remove_file(dir.join("index.json")).unwrap();
    let original = read_json(&dir.join("manifest.json"));
    for bad in ["../../../x:1", "UPPER:x", "white space:1"] {
        let mut manifest = original.clone();
        manifest[0]["RepoTags"] = serde_json::json!(["fine:1", bad]);
        write_json(&dir.join("manifest.json"), &manifest);
        refused(&pack(&dir, "badtag.tar"), &[&format!("{bad:?}")]);
    }
}

#[test]
fn load_refuses_oci_image_names_that_are_no_references() {
    let Some((_env, dir)) = saved("oci") else { return };
    let original = read_json(&dir.join("index.json"));
    for (key, bad) in [
        ("io.containerd.image.name", "../../../x:1"),
        ("io.containerd.image.name", "UPPER:x"),
        ("org.opencontainers.image.ref.name", "../../x"),
    ] {
        let mut index = original.clone();
        let ann = index["manifests"][0]["annotations"].as_object_mut().unwrap();
        ann.remove("io.containerd.image.name");
        ann.insert(key.into(), bad.into());
        write_json(&dir.join("index.json"), &index);
        refused(&pack(&dir, "badname.tar"), &[&format!("{bad:?}")]);
    }
}
