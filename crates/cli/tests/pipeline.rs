//! One pipeline from pull to push, against the real registry: a build's
//! base layers are mounted from the repository they were pulled from
//! instead of uploaded, blobs go up several at a time, the index only
//! after every child, and a large layer is pushed as a stream in bounded
//! memory.

use std::process::Command;

use crate::util::api;
use crate::util::proxy::{Fault, FaultProxy, Rule};
use crate::util::*;

/// Position of the first line of `log` that contains every one of `parts`.
fn line_of(log: &[&str], parts: &[&str]) -> Option<usize> {
    log.iter().position(|l| parts.iter().all(|p| l.contains(p)))
}

#[test]
fn multi_platform_push_mounts_base_layers_and_uploads_in_parallel() {
    let Some(reg) = shared_registry() else { return };
    // Every upload is slow, so uploads sent at once overlap at the proxy.
    let proxy = FaultProxy::http(&reg.host, vec![Rule::on(Some("PUT"), "/blobs/uploads/", Fault::Delay(400)).always()]);
    let env = Env::new();
    let dockerfile =
        format!("FROM {}/library/busybox\nARG TARGETARCH\nCOPY <<EOF /arch\n$TARGETARCH\nEOF\n", proxy.host());
    let ctx = context(&env, "ctx", &[("Dockerfile", &dockerfile)]);
    let target = format!("{}/pipeline/mounted:1", proxy.host());
    build_ok(&env, &["--platform", "linux/amd64,linux/arm64,linux/arm/v7", "-t", &target, "--push", s(&ctx)]);

    let index: serde_json::Value = serde_json::from_slice(&skopeo_raw(&target)).unwrap();
    let children = index["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 3);
    let text = proxy.log();
    let log: Vec<&str> = text.lines().collect();
    let mut uploads = 0;
    for child in children {
        let digest = child["digest"].as_str().unwrap();
        let m: serde_json::Value =
            serde_json::from_slice(&skopeo_raw(&format!("{}/pipeline/mounted@{digest}", reg.host))).unwrap();
        let layers = m["layers"].as_array().unwrap();
        let (base, ours) = (layers[0]["digest"].as_str().unwrap(), layers[1]["digest"].as_str().unwrap());
        let mount = [
            "POST /v2/pipeline/mounted/blobs/uploads/",
            &format!("mount={}", base.replace(':', "%3A")),
            "from=library",
        ];
        assert!(line_of(&log, &mount).is_some(), "the base layer {base} is mounted:\n{text}");
        let put_base = ["PUT /v2/pipeline/mounted/blobs/uploads/", &format!("digest={}", base.replace(':', "%3A"))];
        assert!(line_of(&log, &put_base).is_none(), "the base layer {base} is not uploaded:\n{text}");
        for new in [ours, m["config"]["digest"].as_str().unwrap()] {
            let put = ["PUT /v2/pipeline/mounted/blobs/uploads/", &format!("digest={}", new.replace(':', "%3A"))];
            assert!(line_of(&log, &put).is_some(), "{new} is uploaded:\n{text}");
            uploads += 1;
        }
        // The index comes after each child manifest.
        let child_put = line_of(&log, &[&format!("PUT /v2/pipeline/mounted/manifests/{digest}")]).unwrap();
        let index_put = line_of(&log, &["PUT /v2/pipeline/mounted/manifests/1 "]).unwrap();
        assert!(child_put < index_put, "{text}");
    }
    assert_eq!(uploads, 6);
    assert!(proxy.peak_inflight() >= 2, "uploads overlap (peak {}):\n{text}", proxy.peak_inflight());
    assert!(api::complete_or_absent(reg, "pipeline/mounted", "1"));
}

/// Peak resident memory of a command, in KiB, from `/usr/bin/time`.
fn peak_kib(cmd: &mut Command) -> u64 {
    let out = cmd.output().expect("running /usr/bin/time");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed:\n{err}");
    err.lines().filter_map(|l| l.trim().strip_prefix("PEAK ")).next_back().and_then(|v| v.parse().ok()).unwrap()
}

#[test]
fn a_256_mib_layer_is_pushed_in_bounded_memory() {
    let Some(reg) = shared_registry() else { return };
    if !require(std::path::Path::new("/usr/bin/time").exists(), "/usr/bin/time (apt-get install time)") {
        return;
    }
    let env = Env::new();
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\nCOPY big /big\n")]);
    let big = std::fs::File::create(ctx.join("big")).unwrap();
    let mut random = std::fs::File::open("/dev/urandom").unwrap();
    std::io::copy(&mut std::io::Read::take(&mut random, 256 << 20), &mut std::io::BufWriter::new(big)).unwrap();
    let name = format!("{}/pipeline/big:1", reg.host);
    build_ok(&env, &["-t", &name, s(&ctx)]);
    let timed = |args: &[&str]| {
        let mut cmd = Command::new("/usr/bin/time");
        cmd.args(["-f", "PEAK %M"]).arg(env.cmd(&[]).get_program()).args(args);
        for (k, v) in env.cmd(&[]).get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        peak_kib(&mut cmd)
    };
    // The build is cached: what is measured is the push from the store.
    let built = timed(&["build", "--progress", "plain", "-t", &name, "--push", s(&ctx)]);
    let pushed = timed(&["push", &name]);
    eprintln!("a 256 MiB layer: peak RSS {} MiB (build --push), {} MiB (push)", built / 1024, pushed / 1024);
    assert!(built < 96 * 1024, "peak RSS {built} KiB of build --push with a 256 MiB layer");
    assert!(pushed < 96 * 1024, "peak RSS {pushed} KiB pushing a 256 MiB layer");
    let m: serde_json::Value = serde_json::from_slice(&skopeo_raw(&name)).unwrap();
    let layer = &m["layers"][0];
    assert!(layer["size"].as_u64().unwrap() > 256 << 20);
    assert!(api::complete_or_absent(reg, "pipeline/big", "1"));
}

#[test]
fn platform_split_false_lays_every_platform_into_one_tree() {
    let Some((env, _)) = mirrored() else { return };
    let dockerfile = "FROM busybox\nARG TARGETARCH\nCOPY <<EOF /arch-$TARGETARCH\n$TARGETARCH\nEOF\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile)]);
    let out = env.dir.path().join("merged");
    let tar = env.dir.path().join("merged.tar");
    let local = format!("type=local,dest={},platform-split=false", s(&out));
    let tarred = format!("type=tar,dest={},platform-split=false", s(&tar));
    build_ok(&env, &["--platform", "linux/amd64,linux/arm64", "-o", &local, "-o", &tarred, s(&ctx)]);
    for arch in ["amd64", "arm64"] {
        assert_eq!(std::fs::read_to_string(out.join(format!("arch-{arch}"))).unwrap(), format!("{arch}\n"));
    }
    assert!(out.join("bin/busybox").exists() && !out.join("linux_amd64").exists());
    let listing = sh(Command::new("tar").arg("-tf").arg(&tar));
    assert!(listing.lines().any(|l| l == "arch-amd64") && listing.lines().any(|l| l == "arch-arm64"), "{listing}");
    assert!(!listing.contains("linux_arm64"), "{listing}");
}
