use std::collections::BTreeMap;

use polyarch_oci::{Digest, Platform};

use super::*;
use crate::graph::{Graph, VertexId, VertexSpec};
use crate::op::*;

fn p(s: &str) -> Platform {
    Platform::parse(s).unwrap()
}

fn d(s: &str) -> Digest {
    Digest::sha256(s.as_bytes())
}

/// A graph with two image sources to use as inputs 0 and 1.
fn with_inputs() -> (Graph, Vec<VertexId>) {
    let mut g = Graph::new();
    let ids = ["a", "b"]
        .iter()
        .map(|n| {
            let op = Op::Source(Source::Image(ImageSource { reference: format!("{n}:1"), resolved: Some(d(n)) }));
            g.add(VertexSpec::new(op, p("linux/amd64"))).unwrap()
        })
        .collect();
    (g, ids)
}

fn deps(n: usize, checksum: bool) -> Vec<DepKey> {
    (0..n)
        .map(|i| DepKey::new(d(&format!("input-{i}"))).with_checksum(checksum.then(|| d(&format!("content-{i}")))))
        .collect()
}

/// The key of `op` for `platform`, named `name`, with as many inputs as it
/// reads, their fixed keys and checksums, and a fixed source content.
fn key_as(op: &Op, platform: &str, name: &str) -> Digest {
    let (mut g, ids) = with_inputs();
    let n = op.input_uses().iter().map(|u| u.input + 1).max().unwrap_or(0);
    let spec = VertexSpec::new(op.clone(), p(platform)).with_inputs(ids[..n].to_vec()).with_name(name);
    let id = g.add(spec).unwrap();
    let v = g.get(id).unwrap();
    v.cache_key("test", &deps(n, true), Some(&d("source-content"))).unwrap()
}

fn key(op: &Op) -> Digest {
    key_as(op, "linux/amd64", "step")
}

fn exec() -> Exec {
    Exec {
        args: vec!["/bin/sh".into(), "-c".into(), "make".into()],
        env: vec!["PATH=/usr/bin:/bin".into(), "A=1".into()],
        cwd: "/src".into(),
        user: "0:0".into(),
        hostname: "buildkitsandbox".into(),
        extra_hosts: BTreeMap::from([("db".into(), "10.0.0.2".into())]),
        proxy_env: BTreeMap::from([("HTTP_PROXY".into(), "http://proxy:3128".into())]),
        mounts: vec![
            Mount { target: "/".into(), kind: MountKind::Input { input: 0, selector: String::new(), readonly: false } },
            Mount {
                target: "/ctx".into(),
                kind: MountKind::Input { input: 1, selector: "/src".into(), readonly: true },
            },
            Mount {
                target: "/root/.cache".into(),
                kind: MountKind::Cache {
                    id: "go-build".into(),
                    sharing: Sharing::Locked,
                    from: None,
                    selector: String::new(),
                    readonly: false,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                },
            },
            Mount { target: "/tmp".into(), kind: MountKind::Tmpfs { size: Some(1 << 20) } },
            Mount {
                target: "/run/secrets/token".into(),
                kind: MountKind::Secret { id: "token".into(), required: true, mode: 0o400, uid: 0, gid: 0, env: None },
            },
            Mount {
                target: "/run/ssh".into(),
                kind: MountKind::Ssh { id: "default".into(), required: false, mode: 0o600, uid: 0, gid: 0 },
            },
        ],
        network: Network::Sandbox,
        security: Security::Sandbox,
        ..Exec::default()
    }
}

fn copy() -> Copy {
    Copy {
        source: 1,
        dest: Some(0),
        paths: vec!["/src/app/main.go".into(), "/src/app/go.mod".into()],
        dest_path: "/app/".into(),
        owner: Some(Owner { user: Id::Id(1000), group: Some(Id::Name("staff".into())) }),
        mode: Some(0o644),
        follow_symlinks: true,
        create_dest_path: true,
        exclude: vec!["*.md".into()],
        ..Copy::default()
    }
}

fn git() -> GitSource {
    GitSource {
        remote: "https://example.org/repo.git".into(),
        reference: "main".into(),
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        subdir: "docs".into(),
        keep_git_dir: false,
        skip_submodules: false,
        mtime_commit: false,
    }
}

fn all_ops() -> Vec<(&'static str, Op)> {
    vec![
        ("exec", Op::Exec(exec())),
        ("copy", Op::Copy(copy())),
        (
            "mkdir",
            Op::Mkdir(Mkdir { input: Some(0), path: "/work".into(), mode: 0o755, parents: true, ..Mkdir::default() }),
        ),
        (
            "mkfile",
            Op::Mkfile(Mkfile {
                input: Some(0),
                path: "/etc/motd".into(),
                data: b"hi\n".to_vec(),
                mode: 0o644,
                ..Mkfile::default()
            }),
        ),
        ("rm", Op::Rm(Rm { input: Some(0), path: "/tmp/x".into(), allow_not_found: true, wildcard: false })),
        (
            "symlink",
            Op::Symlink(Symlink {
                input: Some(0),
                target: "busybox".into(),
                path: "/bin/sh".into(),
                ..Symlink::default()
            }),
        ),
        (
            "source.image",
            Op::Source(Source::Image(ImageSource { reference: "busybox:1.36".into(), resolved: Some(d("busybox")) })),
        ),
        (
            "source.context",
            Op::Source(Source::Context(ContextSource {
                name: "context".into(),
                include: vec!["src".into()],
                exclude: vec!["**/*.o".into()],
            })),
        ),
        ("source.git", Op::Source(Source::Git(git()))),
        (
            "source.git.no-submodules.mtime-commit",
            Op::Source(Source::Git(GitSource { skip_submodules: true, mtime_commit: true, ..git() })),
        ),
        (
            "source.http",
            Op::Source(Source::Http(HttpSource {
                url: "https://example.org/a.tar.gz".into(),
                checksum: Some(d("body")),
                filename: None,
                mode: 0o600,
                uid: 0,
                gid: 0,
            })),
        ),
        ("merge", Op::Merge(Merge { inputs: vec![0, 1] })),
    ]
}

#[test]
fn keys_of_every_op_match_the_golden_file() {
    let mut text = String::from("# op vertex-digest cache-key (regenerate with UPDATE_GOLDEN=1)\n");
    for (name, op) in all_ops() {
        let (mut g, ids) = with_inputs();
        let n = op.input_uses().iter().map(|u| u.input + 1).max().unwrap_or(0);
        let id = g.add(VertexSpec::new(op.clone(), p("linux/arm64")).with_inputs(ids[..n].to_vec())).unwrap();
        let digest = g.get(id).unwrap().digest().clone();
        text.push_str(&format!("{name} {digest} {}\n", key_as(&op, "linux/arm64", "x")));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/keys.golden");
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(text, golden, "cache keys changed: bump the op's version tag, then run with UPDATE_GOLDEN=1");
}

#[test]
fn keys_are_stable_and_independent_of_map_order() {
    for (name, op) in all_ops() {
        assert_eq!(key(&op), key(&op.clone()), "{name}");
    }
    // Object keys are sorted whatever order they were inserted in.
    let mut a = serde_json::Map::new();
    a.insert("z".into(), 1.into());
    a.insert("a".into(), serde_json::json!({"y": [1, 2], "b": null}));
    let mut b = serde_json::Map::new();
    b.insert("a".into(), serde_json::json!({"b": null, "y": [1, 2]}));
    b.insert("z".into(), 1.into());
    let (ca, cb) = (canonical_json(&a, "a").unwrap(), canonical_json(&b, "b").unwrap());
    assert_eq!(ca, cb);
    assert_eq!(String::from_utf8(ca).unwrap(), r#"{"a":{"b":null,"y":[1,2]},"z":1}"#);
    // Maps of an op filled in another order give the same key.
    let mut e1 = exec();
    let mut e2 = exec();
    for (k, v) in [("x", "1"), ("y", "2"), ("w", "3")] {
        e1.extra_hosts.insert(k.into(), v.into());
    }
    for (k, v) in [("w", "3"), ("y", "2"), ("x", "1")] {
        e2.extra_hosts.insert(k.into(), v.into());
    }
    assert_eq!(key(&Op::Exec(e1)), key(&Op::Exec(e2)));
}

/// Asserts that each change in `affecting` changes the key of `base` and
/// each change in `cleared` does not.
fn check(base: Op, affecting: Vec<(&str, Op)>, cleared: Vec<(&str, Op)>) {
    let k = key(&base);
    assert_eq!(k, key_as(&base, "linux/amd64", "another progress name"), "names are not keyed");
    for (what, op) in affecting {
        assert_ne!(key(&op), k, "{} {what} must change the key", base.type_name());
    }
    for (what, op) in cleared {
        assert_eq!(key(&op), k, "{} {what} must not change the key", base.type_name());
    }
}

fn with<T: Clone>(base: &T, f: impl FnOnce(&mut T)) -> T {
    let mut t = base.clone();
    f(&mut t);
    t
}

#[test]
fn exec_keys() {
    let e = exec();
    let x = |f: fn(&mut Exec)| Op::Exec(with(&e, f));
    let base = Op::Exec(e.clone());
    assert_ne!(key(&base), key_as(&base, "linux/arm64", "step"), "an exec's platform is keyed");
    let cache_id = |e: &mut Exec| {
        if let MountKind::Cache { id, .. } = &mut e.mounts[2].kind {
            *id = "other".into();
        }
    };
    let mount_selector = |e: &mut Exec| {
        if let MountKind::Input { selector, .. } = &mut e.mounts[1].kind {
            *selector = "/other".into();
        }
    };
    let secret_id = |e: &mut Exec| {
        if let MountKind::Secret { id, .. } = &mut e.mounts[4].kind {
            *id = "other".into();
        }
    };
    check(
        base,
        vec![
            ("args", x(|e| e.args.push("-j2".into()))),
            ("env", x(|e| e.env[1] = "A=2".into())),
            ("cwd", x(|e| e.cwd = "/".into())),
            ("user", x(|e| e.user = "1000".into())),
            ("network", x(|e| e.network = Network::None)),
            ("security", x(|e| e.security = Security::Insecure)),
            ("mount target", x(|e| e.mounts[3].target = "/var/tmp".into())),
            ("cache mount id", x(cache_id)),
            ("secret id", x(secret_id)),
            ("extra host name", x(|e| e.extra_hosts = BTreeMap::from([("cache".into(), "10.0.0.2".into())]))),
            ("mount selector", x(mount_selector)),
        ],
        vec![
            ("proxy env", x(|e| e.proxy_env.clear())),
            ("extra host address", x(|e| e.extra_hosts.insert("db".into(), "10.9.9.9".into()).map_or((), drop))),
        ],
    );
}

#[test]
fn copy_keys() {
    let c = copy();
    let x = |f: fn(&mut Copy)| Op::Copy(with(&c, f));
    let base = Op::Copy(c.clone());
    check(
        base,
        vec![
            ("dest path", x(|c| c.dest_path = "/srv/".into())),
            ("file name", x(|c| c.paths[0] = "/src/app/other.go".into())),
            ("owner", x(|c| c.owner = None)),
            ("mode", x(|c| c.mode = Some(0o600))),
            ("exclude", x(|c| c.exclude.clear())),
            ("unpack", x(|c| c.unpack = true)),
            ("contents only", x(|c| c.contents_only = true)),
            ("timestamp", x(|c| c.timestamp = Some(0))),
            ("parents", x(|c| c.parents = true)),
        ],
        vec![
            // The checksum of what is read covers where it was read from.
            ("source directory", x(|c| c.paths = vec!["/elsewhere/main.go".into(), "/elsewhere/go.mod".into()])),
        ],
    );
}

#[test]
fn copy_keys_follow_content_and_platforms_do_not_count() {
    let op = Op::Copy(copy());
    assert_eq!(key_as(&op, "linux/s390x", "s"), key_as(&op, "linux/arm/v7", "t"));
    let (mut g, ids) = with_inputs();
    let id = g.add(VertexSpec::new(op, p("linux/amd64")).with_inputs(ids)).unwrap();
    let v = g.get(id).unwrap();
    let with_sum = |s: &str| {
        let deps = vec![DepKey::new(d("input-0")), DepKey::new(d("input-1")).with_checksum(Some(d(s)))];
        v.cache_key("t", &deps, None).unwrap()
    };
    assert_ne!(with_sum("one"), with_sum("two"), "the source's content is keyed");
    // The destination is read whole: a checksum of it is not keyed.
    let dest_sum = |s: &str| {
        let deps = vec![DepKey::new(d("input-0")).with_checksum(Some(d(s))), DepKey::new(d("input-1"))];
        v.cache_key("t", &deps, None).unwrap()
    };
    assert_eq!(dest_sum("one"), dest_sum("two"));
    let input_key = |s: &str| v.cache_key("t", &[DepKey::new(d(s)), DepKey::new(d("input-1"))], None).unwrap();
    assert_ne!(input_key("x"), input_key("y"), "input keys are keyed");
    // Without a checksum the source directories stay in the key.
    let unsummed = |paths: Vec<String>| {
        let (mut g, ids) = with_inputs();
        let id = g.add(VertexSpec::new(Op::Copy(Copy { paths, ..copy() }), p("linux/amd64")).with_inputs(ids)).unwrap();
        g.get(id).unwrap().cache_key("t", &deps(2, false), None).unwrap()
    };
    assert_ne!(unsummed(vec!["/a/f".into()]), unsummed(vec!["/b/f".into()]));
}

#[test]
fn file_op_keys() {
    let mk = Mkdir { input: Some(0), path: "/w".into(), mode: 0o755, parents: true, ..Mkdir::default() };
    let x = |f: fn(&mut Mkdir)| Op::Mkdir(with(&mk, f));
    check(
        Op::Mkdir(mk.clone()),
        vec![
            ("path", x(|m| m.path = "/v".into())),
            ("mode", x(|m| m.mode = 0o700)),
            ("parents", x(|m| m.parents = false)),
            ("owner", x(|m| m.owner = Some(Owner { user: Id::Id(1), group: None }))),
            ("timestamp", x(|m| m.timestamp = Some(1))),
        ],
        vec![],
    );
    let op = Op::Mkdir(mk);
    assert_eq!(key_as(&op, "linux/arm64", "a"), key_as(&op, "linux/ppc64le", "b"), "platform is not keyed");

    let mf = Mkfile { input: Some(0), path: "/f".into(), data: b"a".to_vec(), mode: 0o644, ..Mkfile::default() };
    let x = |f: fn(&mut Mkfile)| Op::Mkfile(with(&mf, f));
    check(
        Op::Mkfile(mf.clone()),
        vec![
            ("data", x(|m| m.data = b"b".to_vec())),
            ("path", x(|m| m.path = "/g".into())),
            ("mode", x(|m| m.mode = 0o755)),
            ("owner", x(|m| m.owner = Some(Owner { user: Id::Name("app".into()), group: None }))),
        ],
        vec![],
    );
    assert_eq!(key_as(&Op::Mkfile(mf.clone()), "linux/386", "a"), key(&Op::Mkfile(mf)));

    let rm = Rm { input: Some(0), path: "/x".into(), allow_not_found: false, wildcard: false };
    let x = |f: fn(&mut Rm)| Op::Rm(with(&rm, f));
    check(
        Op::Rm(rm.clone()),
        vec![
            ("path", x(|r| r.path = "/y".into())),
            ("allow not found", x(|r| r.allow_not_found = true)),
            ("wildcard", x(|r| r.wildcard = true)),
        ],
        vec![],
    );
    assert_eq!(key_as(&Op::Rm(rm.clone()), "linux/s390x", "a"), key(&Op::Rm(rm)));

    let ln = Symlink { input: Some(0), target: "a".into(), path: "/b".into(), ..Symlink::default() };
    let x = |f: fn(&mut Symlink)| Op::Symlink(with(&ln, f));
    check(
        Op::Symlink(ln.clone()),
        vec![("target", x(|l| l.target = "c".into())), ("path", x(|l| l.path = "/d".into()))],
        vec![],
    );
    assert_eq!(key_as(&Op::Symlink(ln.clone()), "linux/s390x", "a"), key(&Op::Symlink(ln)));
}

#[test]
fn merge_keys() {
    let m = Op::Merge(Merge { inputs: vec![0, 1] });
    check(m.clone(), vec![("order", Op::Merge(Merge { inputs: vec![1, 0] }))], vec![]);
    assert_eq!(key_as(&m, "linux/s390x", "a"), key(&m), "platform is not keyed");
}

#[test]
fn source_keys() {
    let img = ImageSource { reference: "busybox:1.36".into(), resolved: Some(d("m")) };
    let base = Op::Source(Source::Image(img.clone()));
    assert_ne!(key(&base), key_as(&base, "linux/arm64", "step"), "an image's platform is keyed");
    let i = |f: fn(&mut ImageSource)| Op::Source(Source::Image(with(&img, f)));
    check(
        base,
        vec![("resolved digest", i(|i| i.resolved = Some(d("n"))))],
        vec![("reference", i(|i| i.reference = "docker.io/library/busybox:latest".into()))],
    );

    let ctx = ContextSource { name: "context".into(), include: vec![], exclude: vec!["*.o".into()] };
    let c = |f: fn(&mut ContextSource)| Op::Source(Source::Context(with(&ctx, f)));
    let base = Op::Source(Source::Context(ctx.clone()));
    assert_eq!(key(&base), key_as(&base, "linux/arm64", "step"), "a context's platform is not keyed");
    check(
        base,
        vec![("include", c(|c| c.include = vec!["src".into()])), ("exclude", c(|c| c.exclude.clear()))],
        vec![("name", c(|c| c.name = "other".into()))],
    );

    let git = GitSource {
        remote: "https://h/r.git".into(),
        reference: "main".into(),
        commit: Some("abc".into()),
        ..GitSource::default()
    };
    let x = |f: fn(&mut GitSource)| Op::Source(Source::Git(with(&git, f)));
    check(
        Op::Source(Source::Git(git.clone())),
        vec![
            ("commit", x(|g| g.commit = Some("def".into()))),
            ("remote", x(|g| g.remote = "https://h/s.git".into())),
            ("subdir", x(|g| g.subdir = "d".into())),
            ("keep git dir", x(|g| g.keep_git_dir = true)),
        ],
        vec![("reference", x(|g| g.reference = "v1".into()))],
    );

    let http = HttpSource { url: "https://h/a".into(), checksum: Some(d("a")), mode: 0o600, ..HttpSource::default() };
    let h = |f: fn(&mut HttpSource)| Op::Source(Source::Http(with(&http, f)));
    check(
        Op::Source(Source::Http(http.clone())),
        vec![
            ("checksum", h(|h| h.checksum = Some(d("b")))),
            ("file name", h(|h| h.filename = Some("b".into()))),
            ("mode", h(|h| h.mode = 0o644)),
        ],
        vec![("url", h(|h| h.url = "https://mirror/a".into()))],
    );
}

#[test]
fn a_source_content_is_keyed_and_unresolved_sources_are_refused() {
    let (mut g, _) = with_inputs();
    let ctx = g.add(VertexSpec::new(Op::Source(Source::Context(ContextSource::default())), p("linux/amd64"))).unwrap();
    let v = g.get(ctx).unwrap();
    assert_ne!(v.cache_key("t", &[], Some(&d("x"))).unwrap(), v.cache_key("t", &[], Some(&d("y"))).unwrap());
    let e = v.cache_key("linux/amd64", &[], None).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Unresolved);
    assert!(e.to_string().contains("context") && e.to_string().contains("linux/amd64"), "{e}");

    let img = Op::Source(Source::Image(ImageSource { reference: "busybox:1.36".into(), resolved: None }));
    let id = g.add(VertexSpec::new(img, p("linux/arm64")).with_name("[internal] load busybox")).unwrap();
    let e = g.get(id).unwrap().cache_key("linux/arm64", &[], None).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("busybox:1.36") && msg.contains("digest") && msg.contains("[internal] load busybox"), "{msg}");

    let git = Op::Source(Source::Git(GitSource {
        remote: "https://h/r".into(),
        reference: "main".into(),
        ..GitSource::default()
    }));
    let id = g.add(VertexSpec::new(git, p("linux/arm64"))).unwrap();
    assert!(g.get(id).unwrap().cache_key("x", &[], None).unwrap_err().to_string().contains("commit"));

    let http = Op::Source(Source::Http(HttpSource { url: "https://h/a".into(), ..HttpSource::default() }));
    let id = g.add(VertexSpec::new(http, p("linux/arm64"))).unwrap();
    let v = g.get(id).unwrap();
    assert!(v.cache_key("x", &[], None).is_err(), "a download without a checksum needs its content's");
    assert!(v.cache_key("x", &[], Some(&d("body"))).is_ok());
}

#[test]
fn input_keys_must_match_the_inputs() {
    let (mut g, ids) = with_inputs();
    let id = g.add(VertexSpec::new(Op::Copy(copy()), p("linux/amd64")).with_inputs(ids).with_name("COPY")).unwrap();
    let e = g.get(id).unwrap().cache_key("t", &deps(1, false), None).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Invalid);
    assert!(e.to_string().contains("COPY") && e.to_string().contains("1 input keys given for 2 inputs"), "{e}");
}

#[test]
fn base_names_as_go() {
    for (a, b) in [("/a/b", "b"), ("a/b/", "b"), ("/", "/"), ("", "."), ("x", "x"), ("src/*.go", "*.go")] {
        assert_eq!(base_name(a), b, "{a}");
    }
}

#[test]
fn a_step_outside_a_graph_has_its_vertex_key() {
    for (name, op) in all_ops() {
        let (mut g, ids) = with_inputs();
        let n = op.input_uses().iter().map(|u| u.input + 1).max().unwrap_or(0);
        let spec = VertexSpec::new(op.clone(), p("linux/arm64")).with_inputs(ids[..n].to_vec()).with_name(name);
        let id = g.add(spec).unwrap();
        let content = d("source-content");
        let vertex = g.get(id).unwrap().cache_key("linux/arm64", &deps(n, true), Some(&content)).unwrap();
        let step = op_key(&op, &p("linux/arm64"), name, &deps(n, true), Some(&content)).unwrap();
        assert_eq!(vertex, step, "{name}");
    }
    let short = op_key(&Op::Exec(exec()), &p("linux/amd64"), "run", &deps(1, false), None);
    assert!(matches!(short, Err(Error::InputKeys { .. })), "every mounted input needs a key");
}

#[test]
fn run_settings_and_extensions_are_keyed() {
    let base = key(&Op::Exec(exec()));
    let limited = Exec { ulimits: vec![Ulimit { name: "nofile".into(), soft: 10, hard: 20 }], ..exec() };
    assert_ne!(key(&Op::Exec(limited)), base);
    assert_ne!(key(&Op::Exec(Exec { shm_size: Some(1 << 26), ..exec() })), base);
    assert_ne!(key(&Op::Exec(Exec { cgroup_parent: Some("b".into()), ..exec() })), base);
    #[derive(serde::Serialize)]
    struct Ext {
        compression: &'static str,
    }
    let gz = extended(base.clone(), "test.v0", &Ext { compression: "gzip" }).unwrap();
    assert_eq!(gz, extended(base.clone(), "test.v0", &Ext { compression: "gzip" }).unwrap());
    assert_ne!(gz, extended(base.clone(), "test.v0", &Ext { compression: "zstd" }).unwrap());
    assert_ne!(gz, extended(base.clone(), "test.v1", &Ext { compression: "gzip" }).unwrap());
    assert_ne!(gz, base);
}
