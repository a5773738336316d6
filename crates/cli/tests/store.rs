//! The local store commands (`pull`, `images`, `inspect`, `tag`, `push`,
//! `save`, `load`, `rmi`, `du`, `prune`) against the real registry.

use std::process::Command;

use crate::util::*;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `images --format json`, one object per line.
fn images(env: &Env) -> Vec<serde_json::Value> {
    env.ok(&["images", "--format", "json"]).lines().map(json).collect()
}

fn platforms(row: &serde_json::Value) -> Vec<String> {
    row["Platforms"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect()
}

fn du(env: &Env) -> serde_json::Value {
    json(&env.ok(&["du", "--format", "json"]))
}

/// The shared registry, a new environment and the registry's busybox.
fn setup() -> Option<(&'static Registry, Env, String)> {
    let reg = shared_registry()?;
    Some((reg, Env::new(), busybox(reg)))
}

/// The index the registry serves for busybox, as JSON, and its digest.
fn busybox_index(reg: &Registry) -> (serde_json::Value, String) {
    let raw = skopeo_raw(&busybox(reg));
    (serde_json::from_slice(&raw).unwrap(), sha256_hex(&raw))
}

fn child_digest(index: &serde_json::Value, arch: &str, variant: Option<&str>) -> String {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch && m["platform"]["variant"].as_str() == variant)
        .unwrap_or_else(|| panic!("no {arch} {variant:?} in {index}"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn pull_one_platform_then_all() {
    let Some((reg, env, src)) = setup() else { return };
    let (index, digest) = busybox_index(reg);
    let out = env.ok(&["pull", "--platform", "linux/arm64", &src]);
    assert!(out.contains(&format!("Digest: {digest}\n")), "{out}");
    assert!(out.ends_with(&format!("{src}\n")), "{out}");
    assert!(out.contains("Status: Downloaded newer image for"), "{out}");

    let rows = images(&env);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["Name"], src.as_str());
    assert_eq!(rows[0]["Repository"], format!("{}/library/busybox", reg.host).as_str());
    assert_eq!(rows[0]["Tag"], "latest");
    assert_eq!(rows[0]["Digest"], digest.as_str(), "the name points at the index, unchanged");
    assert_eq!(platforms(&rows[0]), ["linux/arm64/v8"]);
    // Index + one manifest + config + layer.
    assert_eq!(du(&env)["Blobs"], 4);

    let table = env.ok(&["images"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("REPOSITORY") && header.contains("   TAG   ") && header.ends_with("PLATFORMS"),
        "{table}"
    );
    assert!(header.contains("IMAGE ID") && header.contains("CREATED") && header.contains("SIZE"), "{table}");
    assert!(table.contains(&digest["sha256:".len()..][..12]), "{table}");
    assert_eq!(env.ok(&["images", "-q"]).trim(), &digest["sha256:".len()..][..12]);

    // Again: nothing new.
    let again = env.ok(&["pull", "--platform", "linux/arm64", &src]);
    assert!(again.contains("Status: Image is up to date for"), "{again}");

    let out = env.ok(&["pull", "--all-platforms", &src]);
    assert!(out.contains(&format!("Digest: {digest}\n")), "{out}");
    let rows = images(&env);
    assert_eq!(rows.len(), 1);
    let n = index["manifests"].as_array().unwrap().len();
    assert_eq!(platforms(&rows[0]).len(), n, "{rows:?}");
    assert!(platforms(&rows[0]).contains(&"linux/arm/v7".to_string()));
    let usage = du(&env);
    assert_eq!(usage["Blobs"], usage["ReferencedBlobs"]);
    assert_eq!(usage["ReclaimableBytes"], 0);
    assert!(env.ok(&["images", "busybox"]).lines().count() == 1, "a filter on another repository");
    assert_eq!(env.ok(&["images", &format!("{}/library/busybox", reg.host)]).lines().count(), 2);
}

#[test]
fn plain_progress_lines_when_not_a_terminal() {
    let Some(reg) = shared_registry() else { return };
    let env = Env::new();
    let out = env.run(&["pull", "--platform", "linux/riscv64", &busybox(reg)]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().any(|l| l.starts_with("pulling sha256:") && l.ends_with("B")), "{err}");
    assert!(err.lines().any(|l| l.starts_with("done sha256:")), "{err}");
    let quiet = env.run(&["pull", "-q", "--platform", "linux/riscv64", &busybox(reg)]);
    assert_eq!(String::from_utf8_lossy(&quiet.stdout), format!("{}\n", busybox(reg)));
    assert!(quiet.stderr.is_empty(), "{}", String::from_utf8_lossy(&quiet.stderr));
}

#[test]
fn inspect_picks_the_platform() {
    let Some((reg, env, src)) = setup() else { return };
    let (index, digest) = busybox_index(reg);
    env.ok(&["pull", "-q", "--all-platforms", &src]);
    let out = env.ok(&["inspect", "--platform", "linux/arm/v7", &src]);
    assert!(out.contains(r#""architecture": "arm""#), "{out}");
    assert!(out.contains(r#""variant": "v7""#), "{out}");
    let v = json(&out);
    assert_eq!(v[0]["Id"], digest.as_str());
    assert_eq!(v[0]["Architecture"], "arm");
    assert_eq!(v[0]["Variant"], "v7");
    assert_eq!(v[0]["Config"]["architecture"], "arm");
    assert_eq!(v[0]["ManifestDescriptor"]["digest"], child_digest(&index, "arm", Some("v7")).as_str());
    assert!(v[0]["Manifest"]["layers"].as_array().unwrap().len() == 1);
    assert_eq!(v[0]["RepoTags"][0], src.as_str());
    // Short names and IDs resolve too.
    let by_id = json(&env.ok(&["inspect", "--platform", "linux/s390x", &digest["sha256:".len()..][..12]]));
    assert_eq!(by_id[0]["Architecture"], "s390x");

    let err = env.fails(&["inspect", "--platform", "linux/sparc64", &src]);
    assert!(err.contains("linux/sparc64") && err.contains("library/busybox"), "{err}");
    let err = env.fails(&["inspect", "example.com/nothing:here"]);
    assert!(err.contains("no such image: example.com/nothing:here"), "{err}");
}

#[test]
fn push_all_platforms_keeps_the_index_digest() {
    let Some((reg, env, src)) = setup() else { return };
    let (index, digest) = busybox_index(reg);
    env.ok(&["pull", "-q", "--all-platforms", &src]);
    let dst = format!("{}/test/store-all:v1", reg.host);
    env.ok(&["tag", &src, &dst]);
    let rows = images(&env);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["Digest"], rows[1]["Digest"]);

    let run = env.run(&["push", "--all-platforms", &dst]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(out.starts_with(&format!("v1: digest: {digest} size: ")), "{out}");
    // Same registry: the blobs are mounted from the repository pulled from.
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.lines().any(|l| l.starts_with("mounted sha256:") && l.ends_with("from library/busybox")), "{err}");
    let pushed = skopeo_raw(&dst);
    assert_eq!(sha256_hex(&pushed), digest, "the index is pushed byte for byte");
    for m in index["manifests"].as_array().unwrap() {
        let child = format!("{}/test/store-all@{}", reg.host, m["digest"].as_str().unwrap());
        let raw = skopeo_raw(&child);
        assert_eq!(sha256_hex(&raw), m["digest"].as_str().unwrap());
        // Every blob of every child is there: skopeo reads the config.
        let out = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--config", &format!("docker://{child}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{child}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Without --all-platforms a complete index is pushed whole as well.
    let dst2 = format!("{}/test/store-all:v2", reg.host);
    env.ok(&["tag", &dst, &dst2]);
    let out = env.ok(&["push", &dst2]);
    assert!(out.starts_with(&format!("v2: digest: {digest} ")), "{out}");
}

#[test]
fn push_of_a_partial_index() {
    let Some((reg, env, src)) = setup() else { return };
    let (index, _) = busybox_index(reg);
    env.ok(&["pull", "-q", "--platform", "linux/arm64", &src]);
    let dst = format!("{}/test/store-one:v1", reg.host);
    env.ok(&["tag", &src, &dst]);
    let err = env.fails(&["push", "--all-platforms", &dst]);
    assert!(err.contains("test/store-one:v1") && err.contains("linux/amd64"), "{err}");
    assert!(err.contains("--all-platforms"), "{err}");

    // As docker: the one platform present is pushed alone, with a note.
    let arm64 = child_digest(&index, "arm64", Some("v8"));
    let out = env.run(&["push", &dst]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&format!("v1: digest: {arm64} ")), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("note: not all multi-platform content"));
    assert_eq!(sha256_hex(&skopeo_raw(&dst)), arm64);

    // A platform that is not there.
    let err = env.fails(&["push", "--platform", "linux/s390x", &dst]);
    assert!(err.contains("linux/s390x"), "{err}");
    // An image that is not stored.
    let err = env.fails(&["push", &format!("{}/test/never:v1", reg.host)]);
    assert!(err.contains("no such image") && err.contains("test/never:v1"), "{err}");
}

#[test]
fn save_oci_is_readable_by_skopeo_and_umoci() {
    let Some((reg, env, src)) = setup() else { return };
    let (_, digest) = busybox_index(reg);
    env.ok(&["pull", "-q", "--all-platforms", &src]);
    let file = env.dir.path().join("busybox-oci.tar");
    let f = file.to_str().unwrap();
    env.ok(&["save", "--format", "oci", "-o", f, &src]);
    let raw = sh(Command::new("skopeo").args(["inspect", "--raw", &format!("oci-archive:{f}")]));
    assert_eq!(sha256_hex(raw.as_bytes()), digest);
    let info = json(&sh(Command::new("skopeo").args(["inspect", &format!("oci-archive:{f}")])));
    assert_eq!(info["Os"], "linux");
    // No temp file left next to it.
    let names: Vec<_> = std::fs::read_dir(env.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!names.iter().any(|n| n.to_string_lossy().contains(".tmp-")), "{names:?}");
    if have("umoci") {
        let layout = env.dir.path().join("layout");
        std::fs::create_dir(&layout).unwrap();
        sh(Command::new("tar").arg("-xf").arg(&file).arg("-C").arg(&layout));
        let tags = sh(Command::new("umoci").arg("ls").arg("--layout").arg(&layout));
        assert!(tags.contains(&src), "{tags}");
    }
}

#[test]
fn save_docker_then_load_into_a_fresh_root() {
    let Some((_, env, src)) = setup() else { return };
    env.ok(&["pull", "-q", "--platform", "linux/arm/v7", &src]);
    let file = env.dir.path().join("busybox-docker.tar");
    let f = file.to_str().unwrap();
    env.ok(&["save", "-o", f, &src]);
    let listing = sh(Command::new("tar").arg("-tf").arg(&file));
    assert!(listing.contains("manifest.json") && listing.contains("index.json"), "{listing}");

    let fresh = Env::new();
    let out = fresh.ok(&["load", "-i", f]);
    assert_eq!(out, format!("Loaded image: {src}\n"));
    let a = json(&env.ok(&["inspect", &src]));
    let b = json(&fresh.ok(&["inspect", &src]));
    assert_eq!(a[0]["ManifestDescriptor"]["digest"], b[0]["ManifestDescriptor"]["digest"]);
    assert_eq!(a[0]["Config"], b[0]["Config"]);
    assert_eq!(b[0]["Architecture"], "arm");
    assert_eq!(platforms(&images(&fresh)[0]), ["linux/arm/v7"]);

    // A failed save leaves nothing behind.
    let bad = env.dir.path().join("bad.tar");
    let err = env.fails(&["save", "-o", bad.to_str().unwrap(), "example.com/nothing:here"]);
    assert!(err.contains("example.com/nothing:here"), "{err}");
    assert!(!bad.exists());
    let err = fresh.fails(&["load", "-i", env.dir.path().join("missing.tar").to_str().unwrap()]);
    assert!(err.contains("missing.tar"), "{err}");
}

#[test]
fn rmi_then_prune_frees_blobs() {
    let Some((reg, env, src)) = setup() else { return };
    env.ok(&["pull", "-q", "--platform", "linux/amd64", &src]);
    let other = format!("{}/test/store-rmi:v1", reg.host);
    env.ok(&["tag", &src, &other]);
    let before = du(&env);
    assert!(before["Bytes"].as_u64().unwrap() > 0);

    let out = env.ok(&["rmi", &src]);
    assert_eq!(out, format!("Untagged: {src}\n"));
    // Still referenced by the other name.
    assert_eq!(du(&env)["ReclaimableBytes"], 0);
    assert!(env.ok(&["prune"]).contains("Total reclaimed space: 0B"));
    env.ok(&["rmi", &other]);
    let after_rmi = du(&env);
    assert_eq!(after_rmi["ReclaimableBytes"], before["Bytes"]);
    let out = env.ok(&["prune"]);
    assert!(out.starts_with("Deleted blobs:\ndeleted: sha256:"), "{out}");
    assert!(out.contains("Total reclaimed space: ") && !out.contains("space: 0B"), "{out}");
    let after = du(&env);
    assert_eq!(after["Blobs"], 0);
    assert_eq!(after["Bytes"], 0);
    assert!(env.ok(&["du"]).starts_with("ID"), "buildx's table of cache records");

    let err = env.fails(&["rmi", &src]);
    assert!(err.contains("no such image") && err.contains("library/busybox"), "{err}");
}

#[test]
fn pull_errors_name_the_tag_and_the_platform() {
    let Some(reg) = shared_registry() else { return };
    let env = Env::new();
    let missing = format!("{}/library/busybox:missing", reg.host);
    let err = env.fails(&["pull", &missing]);
    assert!(err.contains("library/busybox:missing"), "{err}");

    let err = env.fails(&["pull", "--platform", "linux/sparc64", &busybox(reg)]);
    assert!(err.contains("linux/sparc64"), "{err}");
    assert!(err.contains("linux/arm64/v8") && err.contains("linux/amd64"), "lists what the index has: {err}");

    // A single-platform image for another platform.
    let amd64 = format!("{}/library/busybox:latest-amd64", reg.host);
    let err = env.fails(&["pull", "--platform", "linux/s390x", &amd64]);
    assert!(err.contains("linux/s390x") && err.contains("linux/amd64"), "{err}");

    let err = env.fails(&["pull", "--platform", "not a platform", &busybox(reg)]);
    assert!(err.contains("not a platform"), "{err}");
    assert!(images(&env).is_empty(), "nothing was tagged");
    assert_eq!(du(&env)["ReferencedBlobs"], 0);
}

#[test]
fn polyarch_root_isolates_stores() {
    let Some(reg) = shared_registry() else { return };
    let a = Env::new();
    let b = Env::new();
    a.ok(&["pull", "-q", "--platform", "linux/386", &busybox(reg)]);
    assert_eq!(images(&a).len(), 1);
    assert!(images(&b).is_empty());
    assert!(a.root().join("index.json").exists());
    assert!(a.root().join("blobs/sha256").read_dir().unwrap().count() > 0);
    // --root wins over POLYARCH_ROOT.
    let other = b.dir.path().join("elsewhere");
    let out = b.ok(&["--root", other.to_str().unwrap(), "pull", "-q", "--platform", "linux/386", &busybox(reg)]);
    assert_eq!(out.trim(), busybox(reg));
    assert!(images(&b).is_empty());
    assert!(other.join("index.json").exists());
    assert_eq!(b.ok(&["--root", other.to_str().unwrap(), "images", "-q"]).lines().count(), 1);
}

/// `history` and the `image` group, as docker's: newest entry first, the
/// image ID on the top row and `<missing>` below, one layer size per
/// non-empty entry, `--platform` for an index; `image ls|inspect|rm` are
/// the top-level commands under docker's names.
#[test]
fn history_and_the_image_group_as_docker_has_them() {
    let Some((env, _reg)) = mirrored() else { return };
    let ctx =
        context(&env, "hist", &[("Dockerfile", "FROM busybox\nENV A=1\nCOPY f /f\nCMD [\"sh\"]\n"), ("f", "x\n")]);
    env.ok(&["build", "-q", "--platform", "linux/amd64,linux/arm64", "-t", "hist:1", ctx.to_str().unwrap()]);
    let id = json(&env.ok(&["images", "--format", "json", "hist:1"]))["ID"].as_str().unwrap().to_string();

    let table = env.ok(&["history", "--platform", "linux/arm64", "hist:1"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE ") && lines[0].contains("CREATED BY") && lines[0].ends_with("COMMENT"),
        "{table}"
    );
    assert_eq!(lines.len(), 5, "header, CMD, COPY, ENV and the base's entry: {table}");
    assert!(lines[1].starts_with(&id) && lines[1].contains("CMD [\"sh\"]"), "{table}");
    assert!(lines[2].starts_with("<missing>") && lines[2].contains("COPY f /f"), "{table}");
    assert!(lines[3].contains("ENV A=1") && lines[3].contains(" 0B "), "an empty layer: {table}");
    assert!(lines[4].contains("(arm64,") || lines[4].contains("arm64"), "the arm64 base: {table}");

    let rows: Vec<serde_json::Value> = env
        .ok(&["image", "history", "--format", "json", "--no-trunc", "-H=false", "hist:1"])
        .lines()
        .map(json)
        .collect();
    assert_eq!(rows.len(), 4);
    assert!(rows[0]["ID"].as_str().unwrap().starts_with("sha256:"), "{rows:?}");
    assert_eq!(rows[1]["ID"], "<missing>");
    let copy_size: u64 = rows[1]["Size"].as_str().unwrap().parse().unwrap();
    assert!(copy_size > 0, "the COPY's layer has a size: {rows:?}");
    assert_eq!(rows[2]["Size"], "0");
    assert_eq!(rows[3]["CreatedAt"], rows[3]["CreatedSince"], "not human: a time");
    assert_eq!(
        env.ok(&["history", "-q", "hist:1"]).lines().collect::<Vec<_>>(),
        [&id[..], "<missing>", "<missing>", "<missing>"]
    );

    assert_eq!(env.ok(&["image", "ls", "--format", "json"]), env.ok(&["images", "--format", "json"]));
    assert_eq!(env.ok(&["image", "inspect", "hist:1"]), env.ok(&["inspect", "hist:1"]));
    assert_eq!(env.ok(&["inspect", "--type", "image", "hist:1"]), env.ok(&["inspect", "hist:1"]));
    let err = env.fails(&["inspect", "--type", "container", "hist:1"]);
    assert!(err.contains("polyarch inspects images only"), "{err}");
    let err = env.fails(&["image", "history", "nothing:here"]);
    assert!(err.contains("no such image: nothing:here"), "{err}");
    assert!(env.ok(&["image", "rm", "--no-prune", "hist:1"]).contains("Untagged: hist:1"));
    assert!(env.ok(&["image", "list", "-q"]).trim().is_empty());
}

/// `images --filter`, `--digests`, `--no-trunc` and `-a`, as docker's.
#[test]
fn images_filters_digests_and_full_ids_as_docker() {
    let Some((env, _reg)) = mirrored() else { return };
    for (name, team) in [("flt/a:1", "a"), ("flt/b:2", "b"), ("other/c:3", "a")] {
        let ctx = context(&env, team, &[("Dockerfile", &format!("FROM busybox\nLABEL team={team} name={name}\n"))]);
        env.ok(&["build", "-q", "-t", name, ctx.to_str().unwrap()]);
    }
    let names = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["images", "--format", "{{.Repository}}:{{.Tag}}"];
        full.extend_from_slice(args);
        env.ok(&full).lines().map(str::to_string).collect()
    };
    assert_eq!(names(&["-f", "reference=flt/*"]), ["flt/a:1", "flt/b:2"]);
    assert_eq!(names(&["--filter", "reference=*/c:3"]), ["other/c:3"]);
    assert_eq!(names(&["-f", "reference=flt/*", "-f", "label=team=a"]), ["flt/a:1"]);
    assert_eq!(names(&["-f", "label=team"]).len(), 3);
    assert!(names(&["-f", "dangling=true"]).is_empty(), "no stored image is dangling");
    assert_eq!(names(&["-a", "-f", "dangling=false"]).len(), 3);
    let err = env.fails(&["images", "-f", "colour=red"]);
    assert!(err.contains("invalid filter 'colour'"), "{err}");

    let full = env.ok(&["images", "-q", "--no-trunc", "flt/a:1"]);
    assert!(full.trim().starts_with("sha256:") && full.trim().len() == 71, "{full}");
    let short = env.ok(&["images", "-q", "flt/a:1"]);
    assert_eq!(short.trim(), &full.trim()["sha256:".len()..][..12]);
    let table = env.ok(&["images", "--digests", "flt/a:1"]);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("REPOSITORY") && header.contains(" DIGEST ") && header.contains("IMAGE ID"), "{table}");
    let digest = json(&env.ok(&["images", "--format", "json", "flt/a:1"]))["Digest"].as_str().unwrap().to_string();
    assert!(table.lines().nth(1).unwrap().contains(&digest), "{table}");
}

/// `push -a/--all-tags`, as docker's: every stored tag of the repository.
#[test]
fn push_all_tags_of_a_repository() {
    let Some((reg, env, src)) = setup() else { return };
    env.ok(&["pull", "-q", &src]);
    let repo = format!("{}/test/alltags", reg.host);
    for t in ["1", "2", "latest"] {
        env.ok(&["tag", &src, &format!("{repo}:{t}")]);
    }
    env.ok(&["tag", &src, &format!("{}/test/elsewhere:9", reg.host)]);
    let out = env.ok(&["push", "--all-tags", &repo]);
    let tags: Vec<&str> = out.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(tags, ["1", "2", "latest"], "{out}");
    for t in ["1", "2", "latest"] {
        assert!(!skopeo_raw(&format!("{repo}:{t}")).is_empty());
    }
    let err = env.fails(&["push", "-a", &format!("{repo}:1")]);
    assert!(err.contains("tag can't be used with --all-tags/-a"), "{err}");
    let err = env.fails(&["push", "-a", &format!("{}/test/none", reg.host)]);
    assert!(err.contains("has no tag in the store"), "{err}");
}
