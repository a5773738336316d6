//! Go-template `--format` as docker and buildx take it, over the same JSON
//! the commands print for `--format json`.

use crate::util::*;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn inspect_and_images_templates() {
    let Some(reg) = shared_registry() else { return };
    let env = Env::new();
    let src = busybox(reg);
    env.ok(&["pull", "--platform", "linux/arm64", &src]);
    let full = json(&env.ok(&["inspect", &src]));
    let full = &full[0];

    assert_eq!(env.ok(&["inspect", "-f", "{{.Architecture}}", &src]), "arm64\n");
    assert_eq!(env.ok(&["inspect", "--format", "{{.Os}}/{{.Architecture}}", &src, &src]), "linux/arm64\nlinux/arm64\n");
    assert_eq!(env.ok(&["inspect", "-f", "{{.Id}}", &src]).trim(), full["Id"].as_str().unwrap());
    assert_eq!(json(&env.ok(&["inspect", "-f", "{{json .RepoTags}}", &src])), full["RepoTags"]);
    assert_eq!(json(&env.ok(&["inspect", "-f", "{{json .Config.config}}", &src])), full["Config"]["config"]);
    let config = json(&env.ok(&["inspect", "-f", "{{json .Config}}", &src]));
    for (k, v) in full["Config"].as_object().unwrap() {
        assert_eq!(&config[k], v, "{k} of {config}");
    }
    assert_eq!(
        env.ok(&["inspect", "-f", "{{range .Platforms}}{{.}} {{end}}|{{index .RepoTags 0}}|{{upper .Os}}", &src]),
        format!("{} |{}|LINUX\n", full["Platforms"][0].as_str().unwrap(), full["RepoTags"][0].as_str().unwrap())
    );
    let variant = full["Variant"].as_str().unwrap_or("");
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.Os}}/{{.Architecture}}{{if .Variant}}/{{.Variant}}{{end}}", &src]),
        if variant.is_empty() { "linux/arm64\n".to_string() } else { format!("linux/arm64/{variant}\n") }
    );
    // Docker's field names on the image config, whatever the JSON's case.
    assert_eq!(env.ok(&["inspect", "-f", "{{.Config.Architecture}}", &src]), "arm64\n");
    // Docker's `.Config` is the runtime config; `.RootFS.Layers` the diff IDs.
    assert_eq!(
        json(&env.ok(&["inspect", "-f", "{{json .Config.Env}}", &src])),
        full["Config"]["config"]["Env"],
        "{full}"
    );
    assert_eq!(
        json(&env.ok(&["inspect", "-f", "{{json .RootFS.Layers}}", &src])),
        full["Config"]["rootfs"]["diff_ids"]
    );
    assert_eq!(env.ok(&["inspect", "-f", "{{len .RootFS.Layers}} {{.Config.Cmd}}", &src]), "1 [sh]\n");
    // `--format json` is the JSON, as without a format.
    assert_eq!(json(&env.ok(&["inspect", "--format", "json", &src])), json(&env.ok(&["inspect", &src])));

    let err = env.fails(&["inspect", "-f", "{{.Architecure}}", &src]);
    assert!(
        err.contains("template: :1:2: executing \"\" at <.Architecure>: can't evaluate field Architecure"),
        "{err}"
    );
    let err = env.fails(&["inspect", "-f", "{{.Architecture", &src]);
    assert!(err.contains("template parsing error") && err.contains("unclosed action"), "{err}");
    let err = env.fails(&["images", "--format", "{{nosuch .ID}}"]);
    assert!(err.contains("function \"nosuch\" not defined"), "{err}");

    let names = env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(names, format!("{}:latest\n", src.trim_end_matches(":latest")));
    let table = env.ok(&["images", "--format", "table {{.Repository}}\\t{{.ID}}\\t{{.Platforms}}"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("REPOSITORY") && lines[0].contains("   IMAGE ID   ") && lines[0].ends_with("PLATFORMS"),
        "{table}"
    );
    let id_col = lines[0].find("IMAGE ID").unwrap();
    assert_eq!(&lines[1][id_col..id_col + 12], &full["Id"].as_str().unwrap()["sha256:".len()..][..12], "{table}");
    let rows: Vec<serde_json::Value> = env.ok(&["images", "--format", "json"]).lines().map(json).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(env.ok(&["images", "--format", "{{json .}}"]).trim(), serde_json::to_string(&rows[0]).unwrap());

    let du = json(&env.ok(&["du", "--format", "json"]));
    assert_eq!(env.ok(&["du", "--format", "{{.Images}} images"]), format!("{} images\n", du["Images"]));
}

#[test]
fn imagetools_inspect_templates_as_buildx() {
    let Some(reg) = shared_registry() else { return };
    let env = Env::new();
    let src = busybox(reg);
    assert_eq!(env.ok(&["imagetools", "inspect", "--format", "{{.Name}}", &src]), format!("{src}\n"));
    let manifest = env.ok(&["imagetools", "inspect", "--format", "{{json .Manifest}}", &src]);
    // buildx's json indents with two spaces.
    assert!(manifest.starts_with("{\n  \"schemaVersion\": 2,"), "{manifest}");
    let manifest = json(&manifest);
    assert_eq!(manifest["digest"].as_str().unwrap(), sha256_hex(&skopeo_raw(&src)));
    assert_eq!(manifest["manifests"].as_array().unwrap().len(), 9);
    assert_eq!(json(&env.ok(&["imagetools", "inspect", "--format", "json", &src]))["manifest"], manifest);

    let images = json(&env.ok(&["imagetools", "inspect", "--format", "{{json .Image}}", &src]));
    // `{{json .}}` is buildx's whole input: name, manifest and image.
    let all = json(&env.ok(&["imagetools", "inspect", "--format", "{{json .}}", &src]));
    assert_eq!(all["name"], src.as_str());
    assert_eq!(all["manifest"], manifest);
    assert_eq!(all["image"], images);
    // Keyed by the index's platforms, as buildx's (containerd's Format, so arm64 keeps its v8).
    assert_eq!(images["linux/arm64/v8"]["architecture"], "arm64", "{images}");
    assert_eq!(images["linux/arm/v7"]["variant"], "v7", "{images}");
    assert_eq!(
        env.ok(&["imagetools", "inspect", "--format", "{{(index .Image \"linux/s390x\").Architecture}}", &src]),
        "s390x\n"
    );
    let platforms = env.ok(&[
        "imagetools",
        "inspect",
        "--format",
        "{{range .Manifest.Manifests}}{{if ne .Platform.Architecture \"unknown\"}}{{.Platform.Os}}/{{.Platform.Architecture}} {{end}}{{end}}",
        &src,
    ]);
    assert!(platforms.contains("linux/amd64 ") && platforms.contains("linux/arm64 "), "{platforms}");
    // One image: .Image is its config, .Manifest its descriptor.
    let one = format!("{}/library/busybox:latest-arm64", reg.host);
    assert_eq!(env.ok(&["imagetools", "inspect", "--format", "{{.Image.Architecture}}", &one]), "arm64\n");
    let err = env.fails(&["imagetools", "inspect", "--format", "{{.Digest}}", &src]);
    assert!(err.contains("can't evaluate field Digest"), "{err}");
}

#[test]
fn builder_ls_and_version_templates() {
    let env = Env::new();
    let ls = json(&env.ok(&["builder", "ls", "--format", "json"]));
    let names = env.ok(&[
        "builder",
        "ls",
        "--format",
        "{{.Name}} {{.Driver}} {{.Current}}{{range .Nodes}} {{.Endpoint}}{{end}}",
    ]);
    assert_eq!(names, format!("default {} true local\n", ls[0]["driver"].as_str().unwrap()));
    let table = env.ok(&["builder", "ls", "--format", "table {{.Name}}\\t{{.Current}}"]);
    assert_eq!(table, "NAME      CURRENT\ndefault   true\n");

    let v = json(&env.ok(&["version", "--format", "json"]));
    assert_eq!(v["Version"], format!("v{}", env!("CARGO_PKG_VERSION")));
    let line = env.ok(&["version"]);
    assert_eq!(line, format!("polyarch {} {}\n", v["Version"].as_str().unwrap(), v["Commit"].as_str().unwrap()));
    assert_eq!(env.ok(&["version", "-f", "{{.Commit}}"]), format!("{}\n", v["Commit"].as_str().unwrap()));
}
