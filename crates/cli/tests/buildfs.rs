//! What builds do with file trees: archives whose entries go through
//! symlinks, copies into destinations below symlinks, device nodes,
//! FIFOs, hard links and xattrs through FROM, RUN, COPY --from and outputs.
//! Layers are read back with Python's tarfile.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::build_ok as build;
use crate::util::*;

/// Every entry of every layer of the only image in an OCI layout, as
/// `(layer index, name, type)` (tarfile types: `0` file, `2` symlink, `3`
/// char device, `5` directory, `6` FIFO), and whether any entry is below
/// a symlink or a file of its own layer.
fn layers(layout: &Path) -> (Vec<(usize, String, String)>, Vec<String>) {
    let script = r#"
import json, os, sys, tarfile
root = sys.argv[1]
blob = lambda d: os.path.join(root, "blobs", "sha256", d.split(":")[1])
index = json.load(open(os.path.join(root, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
out, bad = [], []
for i, l in enumerate(manifest["layers"]):
    leaves = set()
    with tarfile.open(blob(l["digest"]), "r:*") as t:
        for m in t.getmembers():
            name = m.name.rstrip("/")
            parts = name.split("/")
            for k in range(1, len(parts)):
                if "/".join(parts[:k]) in leaves:
                    bad.append(f"layer {i}: {name}")
            if not m.isdir():
                leaves.add(name)
            out.append([i, name, m.type.decode()])
print(json.dumps([out, bad]))
"#;
    let json = sh(Command::new("python3").arg("-c").arg(script).arg(layout));
    serde_json::from_str(&json).unwrap()
}

/// Where [`build_to_files`] wrote a build's outputs.
struct FileOutputs {
    layout: PathBuf,
    local: PathBuf,
    tar: PathBuf,
    docker: Option<PathBuf>,
}

/// Builds `ctx` into an OCI layout, a local directory and a tar at once,
/// and a docker archive (tagged `tag`) when `tag` is given.
fn build_to_files(env: &Env, ctx: &Path, tag: Option<&str>) -> FileOutputs {
    let (layout, spec) = oci_dir(env);
    let out = FileOutputs {
        layout,
        local: env.dir.path().join("local"),
        tar: env.dir.path().join("rootfs.tar"),
        docker: tag.map(|_| env.dir.path().join("docker.tar")),
    };
    let mut specs =
        vec![spec, format!("type=local,dest={}", out.local.display()), format!("type=tar,dest={}", out.tar.display())];
    let mut args: Vec<&str> = Vec::new();
    if let (Some(tag), Some(docker)) = (tag, &out.docker) {
        specs.push(format!("type=docker,dest={}", docker.display()));
        args.extend(["-t", tag]);
    }
    for spec in &specs {
        args.extend(["-o", spec.as_str()]);
    }
    args.push(s(ctx));
    build(env, &args);
    out
}

fn oci_dir(env: &Env) -> (PathBuf, String) {
    let dest = env.dir.path().join("layout");
    let spec = format!("type=oci,tar=false,dest={}", dest.display());
    (dest, spec)
}

/// A tar whose entries go through symlinks: `link -> /etc` then
/// `link/file`, `up -> ../..` then `up/f2`.
fn hostile_tar(path: &Path) {
    let script = r#"
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.GNU_FORMAT) as t:
    def link(name, target):
        i = tarfile.TarInfo(name); i.type = tarfile.SYMTYPE; i.linkname = target; t.addfile(i)
    def file(name, data):
        i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
    link("link", "/etc"); file("link/file", b"one\n")
    link("up", "../.."); file("up/f2", b"two\n")
"#;
    sh(Command::new("python3").arg("-c").arg(script).arg(path));
}

#[test]
fn add_of_an_archive_through_symlinks_stays_in_its_destination() {
    let Some((env, _reg)) = mirrored() else { return };
    if !require(have("python3"), "python3") {
        return;
    }
    let ctx =
        context(&env, "ctx", &[("Dockerfile", "FROM scratch\nCOPY etc /etc\nADD evil.tar /x/\n"), ("etc/keep", "k")]);
    hostile_tar(&ctx.join("evil.tar"));
    let (layout, spec) = oci_dir(&env);
    let local = env.dir.path().join("local");
    build(&env, &["-o", &spec, "-o", &format!("type=local,dest={}", local.display()), s(&ctx)]);
    let (entries, bad) = layers(&layout);
    assert!(bad.is_empty(), "entries below a symlink: {bad:?}");
    let names: Vec<&str> = entries.iter().filter(|e| e.0 == 1).map(|e| e.1.as_str()).collect();
    assert_eq!(names, ["x", "x/etc", "x/etc/file", "x/f2", "x/link", "x/up"]);
    assert_eq!(std::fs::read_to_string(local.join("x/etc/file")).unwrap(), "one\n");
    assert_eq!(std::fs::read_to_string(local.join("x/f2")).unwrap(), "two\n");
    assert!(!local.join("etc/file").exists() && !local.join("f2").exists(), "nothing outside /x");
}

#[test]
fn copy_into_a_destination_below_a_lower_symlink_follows_it() {
    let Some((env, _reg)) = mirrored_for_run() else { return };
    if !require(have("python3"), "python3") {
        return;
    }
    let df = "FROM busybox\nRUN mkdir -p /opt/real && ln -s /opt/real /app\nCOPY tree/ /\nCOPY f /app/sub/\n\
              RUN cat /opt/real/sub/f /opt/real/t > /seen\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df), ("f", "f\n"), ("tree/app/t", "t\n")]);
    let (layout, spec) = oci_dir(&env);
    build(&env, &["-o", &spec, s(&ctx)]);
    let (entries, bad) = layers(&layout);
    assert!(bad.is_empty(), "entries below a symlink: {bad:?}");
    // Layers: busybox, RUN, COPY tree/, COPY f, RUN.
    let has = |layer: usize, name: &str| entries.iter().any(|e| e.0 == layer && e.1 == name);
    assert!(has(2, "opt/real/t") && has(3, "opt/real/sub/f"), "{entries:?}");
    assert!(!entries.iter().any(|e| e.1.starts_with("app/")), "{entries:?}");
    assert!(has(4, "seen"), "the RUN read both files: {entries:?}");
}

#[test]
fn devices_and_fifos_survive_run_copy_from_and_outputs() {
    let Some((env, _reg)) = mirrored_for_run() else { return };
    if !require(have("python3"), "python3") {
        return;
    }
    let df = "FROM busybox AS make\nRUN mknod /null2 c 1 3 && mknod /blk b 7 9 && mkfifo /pipe && mkdir /d && mknod /d/zero c 1 5\n\
              FROM busybox\nCOPY --from=make /null2 /blk /pipe /out/\nCOPY --from=make /d /d/\n\
              RUN test -c /out/null2 && test -b /out/blk && test -p /out/pipe && test -c /d/zero && echo ok > /checked\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let FileOutputs { layout, local, tar: tarout, .. } = build_to_files(&env, &ctx, None);
    let (entries, _) = layers(&layout);
    let kind = |name: &str| entries.iter().rev().find(|e| e.1 == name).map(|e| e.2.clone());
    assert_eq!(kind("out/null2").as_deref(), Some("3"), "{entries:?}");
    assert_eq!(kind("out/blk").as_deref(), Some("4"));
    assert_eq!(kind("out/pipe").as_deref(), Some("6"));
    assert_eq!(kind("d/zero").as_deref(), Some("3"));
    assert!(local.join("checked").exists(), "the RUN saw them");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::symlink_metadata(local.join("out/null2")).unwrap();
    assert!(md.file_type().is_char_device() && md.rdev() == rustix_dev(1, 3), "{md:?}");
    let md = std::fs::symlink_metadata(local.join("out/blk")).unwrap();
    assert!(md.file_type().is_block_device() && md.rdev() == rustix_dev(7, 9), "{md:?}");
    assert!(std::fs::symlink_metadata(local.join("out/pipe")).unwrap().file_type().is_fifo());
    let listing = sh(Command::new("tar").arg("-tvf").arg(&tarout));
    let line =
        |p: &str| listing.lines().find(|l| l.ends_with(p)).unwrap_or_else(|| panic!("{p}: {listing}")).to_string();
    assert!(line(" out/null2").starts_with('c'), "{listing}");
    assert!(line(" out/blk").starts_with('b'), "{listing}");
    assert!(line(" out/pipe").starts_with('p'), "{listing}");
}

/// A tar of `d/` holding a char device (1,5), a block device (7,9), a FIFO,
/// a file with a `user.note` xattr and a hard link to it.
fn special_tar(path: &Path) {
    let script = r#"
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    def node(name, kind, **kw):
        i = tarfile.TarInfo(name); i.type = kind
        for k, v in kw.items(): setattr(i, k, v)
        t.addfile(i)
    node("d", tarfile.DIRTYPE, mode=0o755)
    node("d/zero2", tarfile.CHRTYPE, devmajor=1, devminor=5, mode=0o666)
    node("d/loop9", tarfile.BLKTYPE, devmajor=7, devminor=9, mode=0o660)
    node("d/pipe", tarfile.FIFOTYPE, mode=0o644)
    i = tarfile.TarInfo("d/file"); i.size = 6; i.mode = 0o644
    i.pax_headers = {"SCHILY.xattr.user.note": "kept"}
    t.addfile(i, io.BytesIO(b"hello\n"))
    node("d/hard", tarfile.LNKTYPE, linkname="d/file", mode=0o644)
"#;
    sh(Command::new("python3").arg("-c").arg(script).arg(path));
}

/// What the last layer naming each entry below `prefix` holds, over the
/// layers of the only image of an OCI layout (`oci`), of a docker archive
/// (`docker`) or a plain tar (`tar`): `name type major,minor [link]
/// [xattr]` lines, sorted. A hard link's xattr is left out: tar writers
/// may or may not repeat its target's.
fn special_entries(kind: &str, archive: &Path, prefix: &str) -> String {
    let script = r#"
import io, json, os, sys, tarfile
kind, path, prefix = sys.argv[1:4]
seen = {}
def read(t):
    for m in t.getmembers():
        if m.name.startswith(prefix) and m.name != prefix.rstrip("/"):
            x = "" if m.islnk() else m.pax_headers.get("SCHILY.xattr.user.note", "")
            seen[m.name] = f"{m.name} {m.type.decode()} {m.devmajor},{m.devminor} {m.linkname} {x}".rstrip()
if kind == "oci":
    blob = lambda d: os.path.join(path, "blobs", "sha256", d.split(":")[1])
    index = json.load(open(os.path.join(path, "index.json")))
    for l in json.load(open(blob(index["manifests"][0]["digest"])))["layers"]:
        with tarfile.open(blob(l["digest"]), "r:*") as t: read(t)
elif kind == "docker":
    with tarfile.open(path) as outer:
        for l in json.load(outer.extractfile("manifest.json"))[0]["Layers"]:
            with tarfile.open(fileobj=io.BytesIO(outer.extractfile(l).read())) as t: read(t)
else:
    with tarfile.open(path) as t: read(t)
print("\n".join(sorted(seen.values())))
"#;
    sh(Command::new("python3").arg("-c").arg(script).arg(kind).arg(archive).arg(prefix)).trim_end().to_string()
}

/// A base image pulled from a registry whose layer holds a char device, a
/// block device, a FIFO, a hard link and an xattr: all of them reach a RUN
/// of a stage `FROM` it, a `COPY --from` of it, and every file output
/// (OCI layout, docker archive, local directory, tar).
#[test]
fn special_files_of_a_base_image_survive_from_run_copy_from_and_outputs() {
    let Some((env, reg)) = mirrored_for_run() else { return };
    if !require(have("python3"), "python3") {
        return;
    }
    let base_ctx = context(&env, "base", &[("Dockerfile", "FROM busybox\nADD special.tar /\n")]);
    special_tar(&base_ctx.join("special.tar"));
    let base = format!("{}/buildfs/special:1", reg.host);
    build(&env, &["--push", "-t", &base, s(&base_ctx)]);
    // The next build pulls the base from the registry, not from the store.
    std::fs::remove_dir_all(env.root()).unwrap();
    let df = format!(
        "FROM {base} AS b\n\
         RUN test -c /d/zero2 && test -b /d/loop9 && test -p /d/pipe && test /d/file -ef /d/hard && echo b > /d/ran\n\
         FROM busybox\nCOPY --from=b /d/ /x/\n\
         RUN test -c /x/zero2 && test -b /x/loop9 && test -p /x/pipe && test /x/file -ef /x/hard && echo x > /x/ran2\n"
    );
    let ctx = context(&env, "ctx", &[("Dockerfile", &df)]);
    let out = build_to_files(&env, &ctx, Some("buildfs/special-out:1"));
    let want = "x/file 0 0,0  kept\nx/hard 1 0,0 x/file\nx/loop9 4 7,9\nx/pipe 6 0,0\nx/ran 0 0,0\nx/ran2 0 0,0\nx/zero2 3 1,5";
    assert_eq!(special_entries("oci", &out.layout, "x/"), want, "OCI layout");
    assert_eq!(special_entries("docker", out.docker.as_ref().unwrap(), "x/"), want, "docker archive");
    assert_eq!(special_entries("tar", &out.tar, "x/"), want, "tar output");
    let local = out.local;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = |n: &str| std::fs::symlink_metadata(local.join("x").join(n)).unwrap();
    assert!(md("zero2").file_type().is_char_device() && md("zero2").rdev() == rustix_dev(1, 5));
    assert!(md("loop9").file_type().is_block_device() && md("loop9").rdev() == rustix_dev(7, 9));
    assert!(md("pipe").file_type().is_fifo());
    assert_eq!(md("file").ino(), md("hard").ino(), "the hard link stays one file");
    let note = sh(Command::new("python3")
        .arg("-c")
        .arg("import os, sys; print(os.getxattr(sys.argv[1], 'user.note').decode())")
        .arg(local.join("x/file")));
    assert_eq!(note.trim(), "kept");
    assert!(local.join("x/ran").exists() && local.join("x/ran2").exists());
}

/// `makedev` as glibc encodes it.
fn rustix_dev(major: u64, minor: u64) -> u64 {
    ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
}

/// Peak resident memory of `polyarch ARGS` in KiB, from GNU time.
fn peak_rss_kib(env: &Env, args: &[&str]) -> u64 {
    let pa = env.cmd(args);
    let report = env.dir.path().join("time.txt");
    let mut time = Command::new("/usr/bin/time");
    time.arg("-v").arg("-o").arg(&report).arg(pa.get_program()).args(pa.get_args());
    for (k, v) in pa.get_envs() {
        match v {
            Some(v) => time.env(k, v),
            None => time.env_remove(k),
        };
    }
    let out = time.output().unwrap();
    assert!(out.status.success(), "polyarch {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&report).unwrap();
    let line = text.lines().find(|l| l.contains("Maximum resident set size")).unwrap_or_else(|| panic!("{text}"));
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

/// A COPY of a file much larger than the bound, ADD of an archive holding
/// one, and a COPY --from the image holding it: no file is ever held whole
/// in memory (before, each of these held it two or three times).
#[test]
fn large_files_are_streamed_not_held_in_memory() {
    if !require(have("/usr/bin/time"), "GNU time (/usr/bin/time)") {
        return;
    }
    let Some((env, reg)) = mirrored() else { return };
    const SIZE: u64 = 64 << 20;
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\nCOPY big.bin /\nADD big.tar /t/\n")]);
    std::fs::File::create(ctx.join("big.bin")).unwrap().set_len(SIZE).unwrap();
    sh(Command::new("tar").arg("-cf").arg(ctx.join("big.tar")).arg("-C").arg(&ctx).arg("big.bin"));
    let image = format!("{}/streamed/big:1", reg.host);
    let kib = peak_rss_kib(&env, &["build", "--progress", "quiet", "-t", &image, "--push", s(&ctx)]);
    assert!(kib < 48 << 10, "peak RSS {kib} KiB for a {SIZE}-byte file");
    let df = format!("FROM scratch\nCOPY --from={image} /t/big.bin /again\n");
    let from = context(&env, "from", &[("Dockerfile", &df)]);
    std::fs::remove_dir_all(env.root()).unwrap();
    let local = env.dir.path().join("local");
    let kib = peak_rss_kib(
        &env,
        &["build", "--progress", "quiet", "-o", &format!("type=local,dest={}", local.display()), s(&from)],
    );
    assert!(kib < 48 << 10, "peak RSS {kib} KiB copying a {SIZE}-byte file from an image");
    assert_eq!(std::fs::metadata(local.join("again")).unwrap().len(), SIZE);
}

/// ADD of a gzip bomb from the context (a few hundred KiB unpacking to
/// 256 MiB of zeros): unpacked as a stream in bounded memory, and fast
/// enough that a debug build gets through it in seconds.
#[test]
fn add_of_a_compressed_bomb_is_streamed_in_bounded_memory() {
    if !require(have("/usr/bin/time"), "GNU time (/usr/bin/time)") {
        return;
    }
    let env = Env::new();
    const SIZE: u64 = 256 << 20;
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\nADD bomb.tar.gz /x/\n")]);
    let zeros = env.dir.path().join("zeros");
    std::fs::File::create(&zeros).unwrap().set_len(SIZE).unwrap();
    let script = format!("tar -cf - -C {} zeros | gzip -9 > {}", s(env.dir.path()), s(&ctx.join("bomb.tar.gz")));
    sh(Command::new("sh").arg("-c").arg(&script));
    std::fs::remove_file(&zeros).unwrap();
    assert!(std::fs::metadata(ctx.join("bomb.tar.gz")).unwrap().len() < 1 << 20);
    let out = env.dir.path().join("out.tar");
    let start = std::time::Instant::now();
    let spec = format!("type=tar,dest={}", s(&out));
    let kib = peak_rss_kib(&env, &["build", "--progress", "quiet", "-o", &spec, s(&ctx)]);
    let took = start.elapsed();
    assert!(kib < 48 << 10, "peak RSS {kib} KiB unpacking {SIZE} bytes");
    assert!(took < std::time::Duration::from_secs(60), "{took:?} to unpack {SIZE} bytes");
    let listing = sh(Command::new("tar").arg("-tvf").arg(&out));
    assert!(listing.lines().any(|l| l.contains(&SIZE.to_string()) && l.ends_with(" x/zeros")), "{listing}");
    std::fs::remove_file(&out).unwrap();
}
