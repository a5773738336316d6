//! `polyarch manifest ...` against the real registry, checked with
//! `docker manifest inspect` and `skopeo inspect --raw`.

use std::process::Command;

use crate::util::*;

fn docker_inspect(env: &Env, reference: &str) -> serde_json::Value {
    let out = Command::new("docker")
        .args(["manifest", "inspect", "--insecure", reference])
        .env("DOCKER_CONFIG", env.docker_config())
        .output()
        .expect("running docker");
    assert!(out.status.success(), "docker manifest inspect {reference}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("docker's JSON")
}

fn platforms(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!("{}/{}", p["os"].as_str().unwrap_or(""), p["architecture"].as_str().unwrap_or(""));
            if let Some(v) = p["variant"].as_str() {
                s = format!("{s}/{v}");
            }
            s
        })
        .collect()
}

#[test]
fn create_annotate_push_inspect_amend() {
    let Some(reg) = shared_registry() else { return };
    if !require(have("docker"), "the docker client") || !require(have("skopeo"), "skopeo") {
        return;
    }
    let env = Env::new();
    let r = &reg.host;
    let list = format!("{r}/test/manifest:v1");
    let img = |arch: &str| format!("{r}/library/busybox:latest-{arch}");

    let out = env.ok(&["manifest", "create", &list, &img("amd64"), &img("arm64"), &img("armv7")]);
    assert!(out.contains("Created manifest list"), "{out}");
    // Without --amend an existing list is refused, naming it.
    let err = env.fails(&["manifest", "create", &list, &img("s390x")]);
    assert!(err.contains("test/manifest:v1") && err.contains("--amend"), "{err}");

    env.ok(&["manifest", "annotate", "--os", "linux", "--arch", "arm", "--variant", "v7", &list, &img("armv7")]);
    let err = env.fails(&["manifest", "annotate", "--arch", "nonsense", &list, &img("armv7")]);
    assert!(err.contains("nonsense"), "{err}");
    let err = env.fails(&["manifest", "annotate", "--arch", "amd46", &list, &img("armv7")]);
    assert!(err.contains("unsupported os/arch combination: linux/amd46; did you mean \"amd64\"?"), "{err}");
    // Docker's list of os/arch pairs: other names for an architecture are refused, naming the standard one.
    let err = env.fails(&["manifest", "annotate", "--arch", "x86_64", &list, &img("armv7")]);
    assert!(err.contains("unsupported os/arch combination: linux/x86_64; did you mean \"linux/amd64\"?"), "{err}");
    let err = env.fails(&["manifest", "annotate", "--arch", "arm", "--variant", "armv7", &list, &img("armv7")]);
    assert!(err.contains("unsupported variant \"armv7\" for linux/arm") && err.contains("\"v7\""), "{err}");

    // Local inspect shows the list with platforms taken from the configs.
    let local: serde_json::Value = serde_json::from_str(&env.ok(&["manifest", "inspect", &list])).unwrap();
    assert_eq!(platforms(&local), ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]);

    // --amend adds a platform.
    env.ok(&["manifest", "create", "--amend", &list, &img("s390x")]);
    let verbose: serde_json::Value = serde_json::from_str(&env.ok(&["manifest", "inspect", "-v", &list])).unwrap();
    assert_eq!(verbose.as_array().unwrap().len(), 4);
    assert_eq!(verbose[3]["Ref"], img("s390x"));

    let digest = env.ok(&["manifest", "push", "--purge", &list]).trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    // --purge removed the local list.
    let err = env.fails(&["manifest", "inspect", &format!("{r}/test/manifest:nope")]);
    assert!(err.contains("test/manifest:nope"), "{err}");

    // Independent clients see the same index, with every child present.
    let raw = skopeo_raw(&list);
    assert_eq!(sha256_hex(&raw), digest, "digest of the bytes the registry serves");
    let idx: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(platforms(&idx), ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/s390x"]);
    for m in idx["manifests"].as_array().unwrap() {
        let child = format!("{r}/test/manifest@{}", m["digest"].as_str().unwrap());
        skopeo_raw(&child);
    }
    let docker = docker_inspect(&env, &list);
    assert_eq!(platforms(&docker), platforms(&idx));

    // Remote inspect with polyarch.
    let remote: serde_json::Value = serde_json::from_str(&env.ok(&["manifest", "inspect", &list])).unwrap();
    assert_eq!(remote, idx);
    let single: serde_json::Value =
        serde_json::from_str(&env.ok(&["manifest", "inspect", "-v", &img("arm64")])).unwrap();
    assert_eq!(single["Descriptor"]["platform"]["architecture"], "arm64");
}

#[test]
fn index_source_is_refused_with_advice_and_flatten_takes_entries() {
    let Some(reg) = shared_registry() else { return };
    let env = Env::new();
    let r = &reg.host;
    let list = format!("{r}/test/flatten:v1");
    let err = env.fails(&["manifest", "create", &list, &format!("{r}/library/busybox:latest")]);
    assert!(err.contains("library/busybox:latest") && err.contains("--flatten"), "{err}");
    env.ok(&["manifest", "create", "--flatten", &list, &format!("{r}/library/busybox:latest")]);
    let local: serde_json::Value = serde_json::from_str(&env.ok(&["manifest", "inspect", &list])).unwrap();
    assert_eq!(local["manifests"].as_array().unwrap().len(), 9);
    env.ok(&["manifest", "rm", &list]);
    let err = env.fails(&["manifest", "rm", &list]);
    assert!(err.contains("test/flatten:v1"), "{err}");
}
