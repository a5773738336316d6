//! Hostile images and archives: layers whose symlinks point out of the
//! tree (absolute, and climbing with `..`) followed by entries written
//! through them, hard links to host files, and `..` names. Whatever the
//! command (a build with RUN on either snapshotter, `-o type=local`, ADD of
//! a tar, `polyarch run`, `save`/`load`), nothing may be created or changed
//! in the "host" directory the links point at; the command succeeds with
//! the entries placed inside the tree or fails with a clear error. Also:
//! a lower layer's symlinked directory stays a symlink under an upper
//! layer writing through it, with both snapshotters.

use std::path::{Path, PathBuf};

use crate::util::hostile::{push_hostile, snapshot, tar, Entry};
use crate::util::*;

/// A directory the hostile links aim at, with a file to overwrite.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::Builder::new().prefix("host-").tempdir().unwrap();
        std::fs::write(dir.path().join("victim"), "host").unwrap();
        Host { dir }
    }

    fn path(&self) -> &str {
        s(self.dir.path())
    }

    /// The host directory by a relative path that climbs from any depth.
    fn climbing(&self) -> String {
        format!("{}{}", "../".repeat(24), &self.path()[1..])
    }

    /// Checks that nothing under the host directory changed.
    fn assert_untouched(&self, before: &std::collections::BTreeMap<PathBuf, (bool, Vec<u8>)>, what: &str) {
        assert_eq!(&snapshot(self.dir.path()), before, "{what}: the host directory changed");
    }
}

/// Symlinks out of the tree and writes through them.
fn escaping_layer(host: &Host) -> Vec<u8> {
    let victim = format!("{}/victim", host.path());
    let climbing = host.climbing();
    tar(&[
        Entry::Symlink("esc", host.path()),
        Entry::File("esc/pwned", "pwned"),
        Entry::Symlink("up", &climbing),
        Entry::File("up/pwned2", "pwned"),
        Entry::Dir("d/"),
        Entry::Symlink("d/vic", &victim),
        Entry::File("d/vic", "overwritten"),
        Entry::File("d/../../../victim", "dots"),
    ])
}

fn hostile_image(reg: &Registry, host: &Host, repo: &str) -> String {
    push_hostile(reg, &[escaping_layer(host)], repo)
}

/// Runs `polyarch build` with `args`; on failure the error must say what
/// failed. Returns whether it succeeded.
fn build_either(env: &Env, args: &[&str]) -> bool {
    let mut full = vec!["build", "--progress", "plain"];
    full.extend_from_slice(args);
    let out = env.run(&full);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("error"), "a failure says why: {stderr}");
    }
    assert_clean_root(&env.root());
    out.status.success()
}

/// Nothing in `dest` is a symlink that was followed on the way out: the
/// links are still links, with their targets as text.
fn assert_links_kept(dest: &Path, host: &Host) {
    assert_eq!(std::fs::read_link(dest.join("esc")).unwrap(), Path::new(host.path()));
    assert!(std::fs::symlink_metadata(dest.join("up")).unwrap().file_type().is_symlink());
}

fn run_build_on_hostile_base(snapshotter: &str) {
    let Some((env, reg)) = mirrored_for_run() else { return };
    let host = Host::new();
    let image = hostile_image(reg, &host, &format!("hostile/run-{snapshotter}"));
    let before = snapshot(host.dir.path());
    let ctx = context(&env, "ctx", &[("Dockerfile", &format!("FROM {image}\nRUN echo ran > /ran && ls /esc/\n"))]);
    let dest = env.dir.path().join("out");
    let spec = format!("type=local,dest={}", s(&dest));
    let ok = build_either(&env, &["--snapshotter", snapshotter, "-o", &spec, s(&ctx)]);
    host.assert_untouched(&before, snapshotter);
    assert!(ok, "{snapshotter}: the build places the entries inside the tree");
    assert_eq!(std::fs::read_to_string(dest.join("ran")).unwrap(), "ran\n");
    assert_links_kept(&dest, &host);
}

#[test]
fn naive_build_with_run_on_a_hostile_base_writes_nothing_outside() {
    run_build_on_hostile_base("naive");
}

#[test]
fn overlay_build_with_run_on_a_hostile_base_writes_nothing_outside() {
    run_build_on_hostile_base("overlay");
}

#[test]
fn local_export_of_a_hostile_image_stays_in_dest() {
    let Some((env, reg)) = mirrored() else { return };
    let host = Host::new();
    let image = hostile_image(reg, &host, "hostile/local");
    let before = snapshot(host.dir.path());
    let ctx = context(&env, "ctx", &[("Dockerfile", &format!("FROM {image}\n"))]);
    let dest = env.dir.path().join("out");
    let ok = build_either(&env, &["-o", &format!("type=local,dest={}", s(&dest)), s(&ctx)]);
    host.assert_untouched(&before, "type=local");
    assert!(ok);
    assert_links_kept(&dest, &host);
    assert!(dest.join("bin/busybox").exists());
}

#[test]
fn add_of_a_hostile_tar_then_local_export_stays_in_dest() {
    let env = Env::new();
    let host = Host::new();
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\nADD evil.tar /x/\n")]);
    std::fs::write(ctx.join("evil.tar"), escaping_layer(&host)).unwrap();
    let before = snapshot(host.dir.path());
    let dest = env.dir.path().join("out");
    build_either(&env, &["-o", &format!("type=local,dest={}", s(&dest)), s(&ctx)]);
    host.assert_untouched(&before, "ADD then type=local");
    // The local writer alone, with a tree from the same archive.
    let tree = polyarch_builder::fs::MemFs::from_tar(&escaping_layer(&host)[..]).unwrap();
    let direct = env.dir.path().join("direct");
    let _ = tree.write_to_dir(&direct);
    host.assert_untouched(&before, "writing the tar's tree");
}

#[test]
fn run_of_a_hostile_image_places_entries_inside() {
    let Some((env, reg)) = mirrored_for_run() else { return };
    let host = Host::new();
    let image = hostile_image(reg, &host, "hostile/run");
    let before = snapshot(host.dir.path());
    for snapshotter in ["naive", "overlay"] {
        let out = env.ok(&["run", "--snapshotter", snapshotter, &image, "cat", "/esc/pwned", "/up/pwned2"]);
        assert_eq!(out, "pwnedpwned", "{snapshotter}");
        let victim = env.ok(&["run", "--snapshotter", snapshotter, &image, "cat", "/d/vic", "/victim"]);
        assert_eq!(victim, "overwrittendots", "{snapshotter}");
        host.assert_untouched(&before, snapshotter);
        assert_no_mounts_or_containers(&env.root());
    }
}

#[test]
fn hard_links_to_host_files_are_refused_or_kept_inside() {
    let Some((env, reg)) = mirrored() else { return };
    let host = Host::new();
    let victim = format!("{}/victim", host.path());
    let climbing = format!("{}/victim", host.climbing());
    let layer = tar(&[
        Entry::Symlink("esc", host.path()),
        Entry::Link("hl", &victim),
        Entry::Link("hl2", &climbing),
        Entry::Link("hl3", "esc/victim"),
    ]);
    let image = push_hostile(reg, &[layer], "hostile/links");
    let before = snapshot(host.dir.path());
    let ctx = context(&env, "ctx", &[("Dockerfile", &format!("FROM {image}\n"))]);
    let dest = env.dir.path().join("out");
    build_either(&env, &["-o", &format!("type=local,dest={}", s(&dest)), s(&ctx)]);
    host.assert_untouched(&before, "hard links");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(host.dir.path().join("victim")).unwrap().nlink(), 1);
    let out = env.run(&["run", "--snapshotter", "naive", &image, "true"]);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("hard link") && err.contains("hl"), "names the entry: {err}");
    }
    host.assert_untouched(&before, "run");
    assert_eq!(std::fs::metadata(host.dir.path().join("victim")).unwrap().nlink(), 1);
}

#[test]
fn save_and_load_of_hostile_images_and_archives() {
    let Some((env, reg)) = mirrored() else { return };
    let host = Host::new();
    let image = hostile_image(reg, &host, "hostile/save");
    env.ok(&["pull", &image]);
    let before = snapshot(host.dir.path());
    for format in ["docker", "oci"] {
        let archive = env.dir.path().join(format!("{format}.tar"));
        env.ok(&["save", "--format", format, "-o", s(&archive), &image]);
        let other = Env::new();
        other.ok(&["load", "-i", s(&archive)]);
        host.assert_untouched(&before, format);
    }
    // An archive whose own names and links aim out of the store.
    let victim = format!("{}/victim", host.path());
    let archive = tar(&[
        Entry::Symlink("blobs", host.path()),
        Entry::File("blobs/sha256/x.json", "{}"),
        Entry::File("../../../../x.tar", "x"),
        Entry::Symlink("index.json", &victim),
        Entry::File("index.json", "{\"schemaVersion\":2,\"manifests\":[]}"),
    ]);
    let path = env.dir.path().join("evil.tar");
    std::fs::write(&path, archive).unwrap();
    let out = env.run(&["load", "-i", s(&path)]);
    if !out.status.success() {
        assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty());
    }
    host.assert_untouched(&before, "load of a hostile archive");
    assert_eq!(std::fs::read_to_string(host.dir.path().join("victim")).unwrap(), "host");
}

#[test]
fn a_lower_symlinked_dir_stays_a_symlink_with_both_snapshotters() {
    let Some((env, reg)) = mirrored_for_run() else { return };
    let lower = tar(&[
        Entry::Dir("pusr/"),
        Entry::Dir("pusr/lib/"),
        Entry::File("pusr/lib/libc.so", "libc"),
        Entry::Symlink("plib", "pusr/lib"),
        Entry::Dir("etc2/"),
        Entry::File("etc2/a", "a"),
    ]);
    let upper = tar(&[
        Entry::File("plib/newfile", "new"),
        Entry::File("plib/.wh.gone", ""),
        Entry::Dir("etc2/"),
        Entry::File("etc2/.wh..wh..opq", ""),
        Entry::File("etc2/b", "b"),
    ]);
    let image = push_hostile(reg, &[lower, upper], "hostile/lib-link");
    let script = "ls -l /plib | cut -c1; ls /plib/ /pusr/lib/ /etc2/; cat /plib/libc.so";
    let ctx = context(&env, "ctx", &[("Dockerfile", &format!("FROM {image}\nRUN ({script}) > /out\n"))]);
    let mut outs = Vec::new();
    for snapshotter in ["overlay", "naive"] {
        let dest = env.dir.path().join(format!("out-{snapshotter}"));
        let spec = format!("type=local,dest={}", s(&dest));
        assert!(build_either(&env, &["--snapshotter", snapshotter, "-o", &spec, s(&ctx)]), "{snapshotter}");
        let out = std::fs::read_to_string(dest.join("out")).unwrap();
        assert!(out.starts_with("l\n"), "{snapshotter}: /plib is still a symlink: {out}");
        assert!(out.contains("libc.so") && out.contains("newfile") && out.ends_with("libc"), "{snapshotter}: {out}");
        assert!(!out.contains("\na\n"), "{snapshotter}: the opaque directory hides the lower's files: {out}");
        outs.push(out);
        let run = env.ok(&["run", "--snapshotter", snapshotter, &image, "sh", "-c", script]);
        outs.push(run);
    }
    assert!(outs.windows(2).all(|w| w[0] == w[1]), "builds and runs agree: {outs:?}");
}

/// Entries of the tar at `path` (compressed or not, read by GNU tar)
/// lying below a symlink the same tar holds.
fn entries_below_symlinks(path: &Path) -> Vec<String> {
    let list = sh(std::process::Command::new("tar").arg("-tvf").arg(path));
    let mut links = Vec::new();
    let mut below = Vec::new();
    for line in list.lines() {
        // mode, owner, size, date, time, then the name (spaces and all).
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            rest = &rest[rest.find(' ').unwrap_or(rest.len())..];
        }
        let name = rest.trim_start();
        let name = name.split(" -> ").next().unwrap().trim_end_matches('/').trim_start_matches("./");
        if links.iter().any(|l: &String| name.starts_with(&format!("{l}/"))) {
            below.push(name.to_string());
        }
        if line.starts_with('l') {
            links.push(name.to_string());
        }
    }
    below
}

/// The layer blobs of the one image in the OCI layout tar `archive`,
/// unpacked into `dir`.
fn oci_layers(archive: &Path, dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    sh(std::process::Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(dir));
    let blob = |d: &str| dir.join("blobs").join(d.replacen(':', "/", 1));
    let read = |p: PathBuf| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()).unwrap();
    let index = read(dir.join("index.json"));
    let manifest = read(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    manifest["layers"].as_array().unwrap().iter().map(|l| blob(l["digest"].as_str().unwrap())).collect()
}

#[test]
fn exports_of_steps_through_hostile_links_hold_no_entry_below_a_symlink() {
    let Some((env, reg)) = mirrored_for_run() else { return };
    let host = Host::new();
    let image = hostile_image(reg, &host, "hostile/steps");
    let before = snapshot(host.dir.path());
    let df = format!(
        "FROM {image} AS h\nFROM {image}\nCOPY --from=h /esc/ /c1/\nCOPY --from=h /up /c2\nWORKDIR /esc/../..\n\
         RUN pwd > /pwd && echo w > /esc/w && echo u > /up/u\n\
         RUN --mount=type=bind,from=h,source=/esc,target=/m ls /m > /mls\n\
         RUN --mount=type=cache,target=/up/cache echo c > /up/cache/f && ls /up > /upls\n"
    );
    let ctx = context(&env, "ctx", &[("Dockerfile", &df)]);
    for snapshotter in ["naive", "overlay"] {
        let tar = env.dir.path().join(format!("tree-{snapshotter}.tar"));
        let oci = env.dir.path().join(format!("oci-{snapshotter}.tar"));
        for spec in [format!("type=tar,dest={}", s(&tar)), format!("type=oci,dest={}", s(&oci))] {
            let args = ["--no-cache", "--snapshotter", snapshotter, "-o", &spec, s(&ctx)];
            assert!(build_either(&env, &args), "{snapshotter} {spec}");
            host.assert_untouched(&before, &spec);
        }
        assert_eq!(entries_below_symlinks(&tar), Vec::<String>::new(), "{snapshotter}: the exported tree");
        let tree = crate::util::hostile::files(&std::fs::read(&tar).unwrap());
        assert_eq!(tree["pwd"], b"/\n", "{snapshotter}: WORKDIR stays in the root");
        assert_eq!(tree["mls"], b"pwned\npwned2\n", "{snapshotter}");
        let in_root = &host.path()[1..];
        assert_eq!(tree[&format!("{in_root}/w")], b"w\n", "{snapshotter}: written inside, where the link leads");
        assert_eq!(tree[&format!("{in_root}/u")], b"u\n", "{snapshotter}");
        assert!(tree.contains_key("c1/pwned") && tree.contains_key("c2/pwned2"), "{snapshotter}: {:?}", tree.keys());
        let layers = oci_layers(&oci, &env.dir.path().join(format!("oci-{snapshotter}")));
        // The base's two layers are the image's own; every later one is written here.
        assert!(entries_below_symlinks(&layers[1]).contains(&"esc/pwned".to_string()), "the check sees them");
        for layer in &layers[2..] {
            assert_eq!(entries_below_symlinks(layer), Vec::<String>::new(), "{snapshotter}: {}", layer.display());
        }
    }
}
