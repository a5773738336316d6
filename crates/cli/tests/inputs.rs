//! Build inputs as buildx takes them: Git contexts from a `git daemon` on
//! loopback, HTTP archives and Dockerfiles, a Dockerfile on stdin, named
//! contexts (`--build-context`), image IDs (`-q`, `--iidfile`, `images`),
//! `--call=outline`, and the flags of buildx polyarch does not support.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use crate::util::*;

/// `git daemon` serving the repositories under a directory; killed on drop.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = free_port();
        // `git-daemon` itself: `git daemon` runs it as a child, which a
        // kill of `git` would leave running.
        let exec_path = sh(Command::new("git").arg("--exec-path"));
        let child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        GitDaemon { child, port }
    }

    fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    // Commits of a fixed time long past: a checkout's own file times differ.
    sh(Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"])
        .env("GIT_AUTHOR_DATE", "2020-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2020-01-02T03:04:05Z")
        .args(args)
        .current_dir(dir))
    .trim()
    .to_string()
}

/// A bare repository `repo.git` under `base`: tag `v1` (a.txt `one`),
/// `main` after it (a.txt `two`), branch `dev` (a.txt `dev`), each with
/// `sub/` holding its own Dockerfile. Returns v1's commit id.
fn make_repo(env: &Env, base: &Path) -> String {
    let work = context(
        env,
        "repo-work",
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /ctx/\n"),
            ("a.txt", "one"),
            ("sub/Dockerfile", "FROM scratch\nCOPY . /sub/\n"),
            ("sub/s.txt", "in sub"),
        ],
    );
    git(&work, &["init", "-q"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(&work, &["tag", "-a", "v1", "-m", "v1"]);
    let v1 = git(&work, &["rev-parse", "HEAD"]);
    std::fs::write(work.join("a.txt"), "two").unwrap();
    git(&work, &["commit", "-q", "-am", "two"]);
    git(&work, &["checkout", "-q", "-b", "dev", "v1"]);
    std::fs::write(work.join("a.txt"), "dev").unwrap();
    git(&work, &["commit", "-q", "-am", "dev"]);
    git(&work, &["checkout", "-q", "main"]);
    std::fs::create_dir_all(base).unwrap();
    git(base, &["clone", "-q", "--bare", work.to_str().unwrap(), "repo.git"]);
    v1
}

/// `polyarch build -o type=local,dest=OUT ARGS`; returns OUT.
fn build_local(env: &Env, name: &str, args: &[&str]) -> PathBuf {
    let out = env.dir.path().join(name);
    let dest = format!("type=local,dest={}", out.display());
    let mut full = vec!["-o", &dest];
    full.extend_from_slice(args);
    build_ok(env, &full);
    out
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn git_context_refs_subdirs_and_git_dir() {
    if !require(have("git"), "git") {
        return;
    }
    let env = Env::new();
    let base = env.dir.path().join("served");
    let v1 = make_repo(&env, &base);
    let daemon = GitDaemon::start(&base);
    let url = daemon.url("repo.git");

    let out = build_local(&env, "head", &[&url]);
    assert_eq!(read(out.join("ctx/a.txt")), "two", "the remote's HEAD");
    assert!(!out.join("ctx/.git").exists(), ".git is not part of the context");
    for (frag, want) in [("v1", "one"), ("dev", "dev"), (v1.as_str(), "one"), ("refs/heads/dev", "dev")] {
        let out = build_local(&env, &format!("o-{}", frag.replace('/', "-")), &[&format!("{url}#{frag}")]);
        assert_eq!(read(out.join("ctx/a.txt")), want, "#{frag}");
    }
    // `#ref:subdir`: the subdirectory is the context, with its Dockerfile.
    let out = build_local(&env, "sub", &[&format!("{url}#v1:sub")]);
    assert_eq!(read(out.join("sub/s.txt")), "in sub");
    assert!(!out.join("sub/a.txt").exists() && !out.join("ctx").exists());
    // `-f` names a file of the remote context.
    let out = build_local(&env, "file", &["-f", "sub/Dockerfile", &format!("{url}#dev")]);
    assert_eq!(read(out.join("sub/a.txt")), "dev");
    // BuildKit keeps .git with BUILDKIT_CONTEXT_KEEP_GIT_DIR.
    let out = build_local(&env, "keep", &["--build-arg", "BUILDKIT_CONTEXT_KEEP_GIT_DIR=1", &url]);
    assert!(out.join("ctx/.git/HEAD").is_file(), "kept .git");

    // A Git URL as a named context.
    let ctx = context(&env, "usesrc", &[("Dockerfile", "FROM scratch\nCOPY --from=src a.txt /from-git.txt\n")]);
    let out = build_local(&env, "named-git", &["--build-context", &format!("src={url}#dev"), s(&ctx)]);
    assert_eq!(read(out.join("from-git.txt")), "dev");

    let err = env.fails(&["build", &format!("{url}#no-such-ref")]);
    assert!(err.contains(&format!("{url}#no-such-ref")) && err.contains("git"), "{err}");
    let err = env.fails(&["build", &format!("{url}#v1:missing")]);
    assert!(err.contains("subdirectory missing not found"), "{err}");
    let err = env.fails(&["build", &format!("{url}#v1:../..")]);
    assert!(err.contains("leaves the repository"), "{err}");
    let err = env.fails(&["build", &daemon.url("nope.git")]);
    assert!(err.contains("nope.git"), "{err}");
    assert_clean_root(&env.root());
}

#[test]
fn git_context_with_a_submodule() {
    if !require(have("git"), "git") {
        return;
    }
    let env = Env::new();
    let base = env.dir.path().join("served");
    std::fs::create_dir_all(&base).unwrap();
    let daemon = GitDaemon::start(&base);
    let lib = context(&env, "lib-work", &[("lib.txt", "from the submodule")]);
    git(&lib, &["init", "-q"]);
    git(&lib, &["add", "-A"]);
    git(&lib, &["commit", "-q", "-m", "lib"]);
    git(&base, &["clone", "-q", "--bare", lib.to_str().unwrap(), "lib.git"]);
    let app = context(&env, "app-work", &[("Dockerfile", "FROM scratch\nCOPY . /ctx/\n")]);
    git(&app, &["init", "-q"]);
    git(&app, &["-c", "protocol.file.allow=always", "submodule", "add", "-q", &daemon.url("lib.git"), "vendor/lib"]);
    git(&app, &["add", "-A"]);
    git(&app, &["commit", "-q", "-m", "app"]);
    git(&base, &["clone", "-q", "--bare", app.to_str().unwrap(), "app.git"]);
    let out = build_local(&env, "withsub", &[&daemon.url("app.git")]);
    assert_eq!(read(out.join("ctx/vendor/lib/lib.txt")), "from the submodule");
    assert!(!out.join("ctx/.git").exists() && !out.join("ctx/vendor/lib/.git").exists(), "no .git of git's");
    assert_clean_root(&env.root());
}

#[test]
fn git_context_over_dumb_http() {
    if !require(have("git"), "git") {
        return;
    }
    let env = Env::new();
    let port = serve_repo(&env);
    let out = build_local(&env, "http", &[&format!("http://127.0.0.1:{port}/repo.git#v1")]);
    assert_eq!(read(out.join("ctx/a.txt")), "one");
    assert_clean_root(&env.root());
}

/// The repository of [`make_repo`] served as `/repo.git` over dumb HTTP
/// on loopback; returns the port.
fn serve_repo(env: &Env) -> u16 {
    let base = env.dir.path().join("served");
    make_repo(env, &base);
    let bare = base.join("repo.git");
    git(&bare, &["update-server-info"]);
    let mut files = BTreeMap::new();
    let mut todo = vec![bare.clone()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(&base).unwrap().to_str().unwrap().to_string();
                files.insert(format!("/{rel}"), std::fs::read(&p).unwrap());
            }
        }
    }
    http_server(files)
}

#[test]
fn add_takes_a_git_repository_at_a_ref_and_directory() {
    if !require(have("git"), "git") {
        return;
    }
    let env = Env::new();
    let port = serve_repo(&env);
    let repo = format!("http://127.0.0.1:{port}/repo.git");
    let df = format!(
        "FROM scratch\nADD {repo}#v1:sub /from-git/\nADD {repo}#dev /whole\nADD --keep-git-dir=true {repo}#v1 /kept/\n"
    );
    let ctx = context(&env, "addgit", &[("Dockerfile", &df)]);
    let out = build_local(&env, "addgit-out", &[s(&ctx)]);
    assert_eq!(read(out.join("from-git/s.txt")), "in sub");
    assert!(!out.join("from-git/a.txt").exists(), "only the directory asked for");
    assert_eq!(read(out.join("whole/a.txt")), "dev");
    assert!(!out.join("whole/.git").exists(), "no .git without --keep-git-dir");
    assert_eq!(read(out.join("kept/a.txt")), "one");
    assert!(out.join("kept/.git").is_dir(), "--keep-git-dir keeps it");
    // Again: the steps without .git from the cache (a kept .git differs
    // from one fetch to the next, so that step copies anew).
    let (_, stderr) = build_ok(&env, &["-o", &format!("type=local,dest={}", out.display()), s(&ctx)]);
    for step in ["1/3] ADD", "2/3] ADD"] {
        let id = stderr.lines().find(|l| l.contains(step)).and_then(|l| l.split(' ').next()).unwrap();
        assert!(stderr.lines().any(|l| l == format!("{id} CACHED")), "{step}: {stderr}");
    }
    assert_clean_root(&env.root());
}

/// BuildKit's newer Git forms: `ADD --checksum=COMMIT-PREFIX` and the
/// query form (`?tag=`, `?branch=`, `?subdir=`, `?checksum=`); a checksum
/// that does not match, a bad query or a checksum of a local source fail
/// at their line.
#[test]
fn add_checks_a_git_checksum_and_reads_the_query_form() {
    if !require(have("git"), "git") {
        return;
    }
    let env = Env::new();
    let port = serve_repo(&env);
    let bare = env.dir.path().join("served/repo.git");
    let (v1, dev) = (git(&bare, &["rev-parse", "v1^{commit}"]), git(&bare, &["rev-parse", "dev"]));
    let repo = format!("http://127.0.0.1:{port}/repo.git");
    let df_ok = format!(
        "FROM scratch\nADD --checksum={} {repo}#v1 /c/\nADD {repo}?tag=v1&subdir=sub /q/\n\
         ADD {repo}?branch=dev&checksum={} /b/\nADD {repo}?tag=v1&mtime=commit /m/\n\
         ADD {repo}?fetch-by-commit&checksum={v1} /f/\n",
        &v1[..7],
        &dev[..10]
    );
    // A digit the branch's commit does not start with.
    let wrong = if dev.starts_with('0') { "1" } else { "0" };
    let ctx = context(&env, "gitq", &[("Dockerfile", &df_ok)]);
    let out = build_local(&env, "gitq-out", &[s(&ctx)]);
    assert_eq!(read(out.join("c/a.txt")), "one");
    assert_eq!(read(out.join("q/s.txt")), "in sub");
    assert!(!out.join("q/a.txt").exists(), "only the subdir");
    assert_eq!(read(out.join("b/a.txt")), "dev");
    assert_eq!(read(out.join("f/a.txt")), "one", "fetch-by-commit");
    let when: i64 = git(&bare, &["log", "-1", "--format=%ct", "v1"]).parse().unwrap();
    for f in ["m/a.txt", "m/sub/s.txt", "m/sub"] {
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(std::fs::symlink_metadata(out.join(f)).unwrap().mtime(), when, "{f}: mtime=commit");
    }
    use std::os::unix::fs::MetadataExt as _;
    assert_ne!(std::fs::metadata(out.join("c/a.txt")).unwrap().mtime(), when, "the checkout's own times by default");

    let bad = format!("FROM scratch\nADD --checksum={wrong} {repo}#dev /x/\n");
    let ctx = context(&env, "gitbad", &[("Dockerfile", &bad)]);
    let err = env.fails(&["build", "-o", "type=cacheonly", s(&ctx)]);
    assert!(err.contains(&format!("expected checksum to match {wrong}, got {dev}")), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
    for (df, why) in [
        (format!("FROM scratch\nADD {repo}?depth=1 /x/\n"), "unexpected query \"depth\""),
        (format!("FROM scratch\nADD --checksum=abc {repo}?checksum=abd /x/\n"), "checksum mismatch \"abc\" != \"abd\""),
        ("FROM scratch\nADD --checksum=abc local.txt /x\n".to_string(), "checksum requires HTTP(S) or Git sources"),
    ] {
        let ctx = context(&env, "gitbad2", &[("Dockerfile", &df), ("local.txt", "x")]);
        let err = env.fails(&["build", "-o", "type=cacheonly", s(&ctx)]);
        assert!(err.contains(why) && err.contains("Dockerfile:2"), "{df}: {err}");
    }
    assert_clean_root(&env.root());
}

/// A repository reached over ssh, as BuildKit's git source reaches it:
/// with the agent of `--ssh default` (here a key file, which polyarch
/// loads into an agent of its own), the host's key scanned, nothing of
/// the user's ssh files read or written; without `--ssh default` the step
/// fails, naming the repository and its line, before anything is fetched.
#[test]
fn add_takes_a_git_repository_over_ssh_with_the_default_agent() {
    if !require(have("git") && have("ssh-keyscan") && have("ssh-agent"), "git, ssh-keyscan and ssh-agent") {
        return;
    }
    let env = Env::new();
    let Some(sshd) = crate::util::ssh::Sshd::start(env.dir.path()) else { return };
    let base = env.dir.path().join("served");
    make_repo(&env, &base);
    let repo = format!("ssh://root@127.0.0.1:{}{}", sshd.port, base.join("repo.git").display());
    let df = format!("FROM scratch\nADD {repo}#v1:sub /from-git/\nADD {repo}#dev /whole\n");
    let ctx = context(&env, "addssh", &[("Dockerfile", &df)]);
    let known_hosts = std::path::Path::new("/root/.ssh/known_hosts");
    let before = std::fs::read(known_hosts).ok();

    let err = env.fails(&["build", "-o", "type=cacheonly", s(&ctx)]);
    assert!(err.contains("no SSH key \"default\" forwarded") && err.contains(&repo), "{err}");
    assert!(err.contains("Dockerfile:2"), "names the line: {err}");

    let key = env.dir.path().join("id_ed25519");
    let ssh = format!("default={}", key.display());
    let out = build_local(&env, "addssh-out", &["--ssh", &ssh, s(&ctx)]);
    assert_eq!(read(out.join("from-git/s.txt")), "in sub");
    assert!(!out.join("from-git/a.txt").exists(), "only the directory asked for");
    assert_eq!(read(out.join("whole/a.txt")), "dev");
    assert_eq!(std::fs::read(known_hosts).ok(), before, "the user's known_hosts is left alone");
    // An agent that does not hold the key the server wants is refused.
    let other = env.dir.path().join("other_key");
    sh(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other));
    let ssh = format!("default={}", other.display());
    let err = env.fails(&["build", "--no-cache", "--ssh", &ssh, "-o", "type=cacheonly", s(&ctx)]);
    assert!(err.contains(&repo) && err.contains("Dockerfile:2") && err.contains("Permission denied"), "{err}");
    assert_clean_root(&env.root());
}

/// An HTTP server on loopback answering `files` by path, 404 otherwise.
fn http_server(files: BTreeMap<String, Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let files = Arc::new(files);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let files = files.clone();
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&req).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or(path).to_string();
                let (status, body) = match files.get(&path) {
                    Some(b) => ("200 OK", b.clone()),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let _ =
                    write!(conn, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(&body);
            });
        }
    });
    port
}

#[test]
fn http_archive_and_dockerfile_contexts() {
    if !require(have("tar"), "tar") {
        return;
    }
    let env = Env::new();
    let src = context(
        &env,
        "tarsrc",
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /ctx/\n"),
            ("a.txt", "from the archive"),
            ("alt/Dockerfile.alt", "FROM scratch\nCOPY a.txt /alt.txt\n"),
            (".dockerignore", "ignored.txt\n"),
            ("ignored.txt", "x"),
        ],
    );
    let tgz = env.dir.path().join("ctx.tar.gz");
    sh(Command::new("tar").arg("-czf").arg(&tgz).arg("-C").arg(&src).arg("."));
    let mut files = BTreeMap::new();
    files.insert("/ctx.tar.gz".to_string(), std::fs::read(&tgz).unwrap());
    files.insert("/Dockerfile".to_string(), b"FROM scratch\nLABEL via=url\n".to_vec());
    let port = http_server(files);
    let base = format!("http://127.0.0.1:{port}");

    let out = build_local(&env, "tgz", &[&format!("{base}/ctx.tar.gz")]);
    assert_eq!(read(out.join("ctx/a.txt")), "from the archive");
    assert!(!out.join("ctx/ignored.txt").exists(), ".dockerignore of the archive applies");
    let out = build_local(&env, "alt", &["-f", "alt/Dockerfile.alt", &format!("{base}/ctx.tar.gz")]);
    assert_eq!(read(out.join("alt.txt")), "from the archive");

    // A URL of a plain file is the Dockerfile, with no context.
    build_ok(&env, &["-t", "url:1", &format!("{base}/Dockerfile")]);
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "url:1"])).unwrap();
    assert_eq!(inspect[0]["Config"]["config"]["Labels"]["via"], "url");

    let err = env.fails(&["build", &format!("{base}/missing.tar")]);
    assert!(err.contains(&format!("{base}/missing.tar")) && err.contains("404"), "{err}");
    assert_clean_root(&env.root());
}

fn with_stdin(env: &Env, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut full = vec!["build", "--progress", "plain"];
    full.extend_from_slice(args);
    let mut child = env.cmd(&full).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn dockerfile_on_stdin() {
    let env = Env::new();
    // `polyarch build - < Dockerfile`: no context.
    let out = with_stdin(&env, &["-t", "stdin:1", "-"], b"FROM scratch\nLABEL from=stdin\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "stdin:1"])).unwrap();
    assert_eq!(inspect[0]["Config"]["config"]["Labels"]["from"], "stdin");
    let out = with_stdin(&env, &["-"], b"FROM scratch\nCOPY a.txt /\n");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("a.txt"));
    // `-f -` with a context directory.
    let ctx = context(&env, "ctx", &[("a.txt", "from the context")]);
    let dest = env.dir.path().join("out");
    let o = format!("type=local,dest={}", dest.display());
    let out = with_stdin(&env, &["-o", &o, "-f", "-", s(&ctx)], b"FROM scratch\nCOPY a.txt /\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read(dest.join("a.txt")), "from the context");
    // Two Dockerfiles on stdin is buildx's error.
    let out = with_stdin(&env, &["-f", "Dockerfile", "-"], b"FROM scratch\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ambiguous Dockerfile source"));
}

#[test]
fn named_contexts_replace_stages_and_images() {
    let Some((env, _reg)) = mirrored() else { return };
    let base = context(&env, "base", &[("etc/base.txt", "base dir")]);
    let extra = context(&env, "extra", &[("x.txt", "extra"), ("skip.txt", "s"), (".dockerignore", "skip.txt\n")]);
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            // The stage `base` would fail: the context replaces all of it.
            "FROM no-such-image-anywhere AS base\nRUN false\nFROM base\nCOPY --from=extra / /extra/\nCOPY --from=img /bin/busybox /bb\n",
        )],
    );
    let out = build_local(
        &env,
        "named",
        &[
            "--build-context",
            &format!("base={}", base.display()),
            "--build-context",
            &format!("extra={}", extra.display()),
            "--build-context",
            "img=docker-image://busybox:latest",
            s(&ctx),
        ],
    );
    assert_eq!(read(out.join("etc/base.txt")), "base dir");
    assert_eq!(read(out.join("extra/x.txt")), "extra");
    assert!(!out.join("extra/skip.txt").exists(), "the named directory's .dockerignore applies");
    assert!(out.join("bb").is_file());

    // `FROM alpine` with alpine=docker-image://..., by its normalized name.
    let ctx2 = context(&env, "ctx2", &[("Dockerfile", "FROM docker.io/library/alpine:latest\nLABEL x=y\n")]);
    let meta = env.dir.path().join("meta.json");
    build_ok(
        &env,
        &["--build-context", "alpine=docker-image://busybox", "--metadata-file", s(&meta), "-t", "fromimg:1", s(&ctx2)],
    );
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "fromimg:1"])).unwrap();
    assert!(inspect[0]["Config"]["rootfs"]["diff_ids"].as_array().is_some_and(|l| !l.is_empty()), "{inspect}");

    // oci-layout://DIR@DIGEST and :TAG of an image built into a layout.
    let layout = env.dir.path().join("layout");
    let df = context(&env, "lay", &[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "from the layout")]);
    build_ok(&env, &["-t", "lay:v1", "-o", &format!("type=oci,tar=false,dest={}", layout.display()), s(&df)]);
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let ctx3 = context(&env, "ctx3", &[("Dockerfile", "FROM scratch\nCOPY --from=lay /f /g\n")]);
    let out = build_local(
        &env,
        "fromlayout",
        &["--build-context", &format!("lay=oci-layout://{}@{digest}", layout.display()), s(&ctx3)],
    );
    assert_eq!(read(out.join("g")), "from the layout");
    if let Some(tag) = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"].as_str() {
        let out = build_local(
            &env,
            "fromtag",
            &["--build-context", &format!("lay=oci-layout://{}:{tag}", layout.display()), s(&ctx3)],
        );
        assert_eq!(read(out.join("g")), "from the layout");
    }

    // Bad values name the context.
    let err = env.fails(&["build", "--build-context", "x=/no/such/dir", s(&ctx3)]);
    assert!(err.contains("failed to get build context x"), "{err}");
    let err = env.fails(&["build", "--build-context", "novalue", s(&ctx3)]);
    assert!(err.contains("invalid --build-context \"novalue\""), "{err}");
    let err = env.fails(&["build", "--build-context", "lay=target:base", s(&ctx3)]);
    assert!(err.contains("bake"), "{err}");
    let err =
        env.fails(&["build", "--build-context", &format!("lay=oci-layout://{}:nope", layout.display()), s(&ctx3)]);
    assert!(err.contains("no such image in the layout") && err.contains(":nope"), "{err}");
    assert_clean_root(&env.root());
}

#[test]
fn image_id_is_the_config_digest() {
    let env = Env::new();
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\nCOPY a /\n"), ("a", "a")]);
    let meta = env.dir.path().join("meta.json");
    let iid = env.dir.path().join("iid");
    let out = env.ok(&["build", "-q", "-t", "ids:1", "--metadata-file", s(&meta), "--iidfile", s(&iid), s(&ctx)]);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let config = meta["containerimage.config.digest"].as_str().unwrap();
    assert_ne!(meta["containerimage.digest"], meta["containerimage.config.digest"]);
    assert_eq!(out.trim(), config, "-q prints the image ID");
    assert_eq!(read(iid.clone()), config);
    let id12 = &config[7..19];
    let table = env.ok(&["images"]);
    assert!(table.lines().any(|l| l.starts_with("ids ") && l.contains(id12)), "{table}");
    assert_eq!(env.ok(&["images", "-q"]).trim(), id12);
    // The ID names the image, as docker takes IDs.
    env.ok(&["inspect", id12]);
    // A failed build leaves no stale ID; local outputs have none.
    let bad = context(&env, "bad", &[("Dockerfile", "FROM scratch\nCOPY missing /\n")]);
    env.fails(&["build", "--iidfile", s(&iid), s(&bad)]);
    assert!(!iid.exists(), "the old image ID file is removed");
    let dest = format!("type=local,dest={}", env.dir.path().join("l").display());
    let err = env.fails(&["build", "--iidfile", s(&iid), "-o", &dest, s(&ctx)]);
    assert!(err.contains("local and tar exporters are incompatible with image ID file"), "{err}");
    // A multi-platform build's ID is its index digest (buildx has no
    // config digest to show).
    let meta2 = env.dir.path().join("meta2.json");
    let out = env.ok(&["build", "-q", "--platform", "linux/amd64,linux/arm64", "--metadata-file", s(&meta2), s(&ctx)]);
    let meta2: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta2).unwrap()).unwrap();
    assert_eq!(out.trim(), meta2["containerimage.digest"].as_str().unwrap());
}

#[test]
fn buildx_flags_polyarch_lacks_are_named() {
    let env = Env::new();
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\n")]);
    for flag in ["--attest=type=sbom", "--detach"] {
        let err = env.fails(&["build", flag, s(&ctx)]);
        let name = flag.split('=').next().unwrap();
        assert!(err.contains(&format!("polyarch does not support {name} of docker buildx build")), "{err}");
        assert!(!err.contains("-- "), "no clap tip: {err}");
    }
    let err = env.fails(&["build", "--provenance=mode=max", s(&ctx)]);
    assert!(err.contains("polyarch does not support --provenance of docker buildx build"), "{err}");
    let err = env.fails(&["build", "--bogus-flag", s(&ctx)]);
    assert!(err.contains("unknown flag --bogus-flag") && !err.contains("-- --bogus"), "{err}");
    // What buildx accepts and ignores, polyarch does too.
    build_ok(&env, &["--provenance=false", "--sbom=false", "--rm", "--force-rm", "--compress", s(&ctx)]);
    // A flag given twice takes its last value, as in Go's flag parsing.
    let out = env.run(&["build", "--progress", "plain", "--progress", "quiet", "--rm", "--rm", s(&ctx)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("#1 "), "quiet won: {err}");
    let (_, err) = build_ok(&env, &["--squash", s(&ctx)]);
    assert!(err.contains("squash is removed with BuildKit"), "{err}");
    // -D: debug logs on stderr.
    let out = env.run(&["-D", "build", s(&ctx)]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("DEBUG: "));
    // -D expands the build check warnings as buildx --debug does.
    let warned = context(&env, "warned", &[("Dockerfile", "FROM scratch\nMAINTAINER me\n")]);
    let (_, err) = build_ok(&env, &[s(&warned)]);
    assert!(err.contains("1 warning found (use docker --debug to expand):"), "{err}");
    let out = env.run(&["build", "--debug", "--progress", "plain", s(&warned)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(" 1 warning found:\n - MaintainerDeprecated: "), "{err}");
    assert!(err.contains("More info: https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/"), "{err}");
    assert!(err.contains("   2 | >>> MAINTAINER me"), "{err}");
    let err = env.fails(&["build", "-q", "--progress", "plain", s(&ctx)]);
    assert!(err.contains("progress=plain and quiet cannot be used together"), "{err}");
    // Boolean flags take Go's values, as buildx's do (`--push=$PUSH`).
    let out = env.ok(&["build", "--quiet=true", "--push=false", "--no-cache=0", "--pull=false", s(&ctx)]);
    assert!(out.trim().starts_with("sha256:"), "quiet: only the digest: {out}");
    let err = env.fails(&["build", "--push=maybe", s(&ctx)]);
    assert!(err.contains("'maybe'") && err.contains("--push"), "{err}");
}

#[test]
fn call_outline_text_and_json() {
    let env = Env::new();
    let df = "ARG BASE=scratch\n# build compiles it\nFROM $BASE AS build\n# VERSION the version\nARG VERSION=1.0\nRUN --mount=type=secret,id=token,required=true --mount=type=ssh true\nFROM build\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", df)]);
    let text = env.ok(&["build", "--call", "outline", "--target", "build", s(&ctx)]);
    assert_eq!(
        text,
        "TARGET:      build\nDESCRIPTION: compiles it\n\nBUILD ARG   VALUE     DESCRIPTION\nBASE        scratch   \nVERSION     1.0       the version\n\nSECRET   REQUIRED\ntoken    true\n\nSSH       REQUIRED\ndefault   \n\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["build", "--call=outline,format=json", s(&ctx)])).unwrap();
    assert_eq!(json["args"][1]["name"], "VERSION");
    assert_eq!(json["secrets"][0]["required"], true);
}

#[test]
fn invalid_base_image_platform_check() {
    let Some((env, reg)) = mirrored() else { return };
    // A one-platform image in the registry, used for another platform.
    let image = format!("{}/test/amd64-only:1", reg.host);
    let ctx = context(&env, "one", &[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x")]);
    build_ok(&env, &["--platform", "linux/amd64", "-t", &image, "--push", s(&ctx)]);
    let user = context(&env, "user", &[("Dockerfile", &format!("FROM {image}\n"))]);
    let out = env.run(&["build", "--check", "--platform", "linux/arm64", s(&user)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("InvalidBaseImagePlatform"), "{text}");
    assert!(
        text.contains(&format!(
            "Base image {image} was pulled with platform \"linux/amd64\", expected \"linux/arm64\" for current build"
        )),
        "{text}"
    );
    assert!(text.contains("https://docs.docker.com/go/dockerfile/rule/invalid-base-image-platform/"), "{text}");
    // The same platform: no warning; nor another variant only, as BuildKit
    // compares OS and architecture.
    let out = env.ok(&["build", "--check", "--platform", "linux/amd64", s(&user)]);
    assert!(out.contains("no warnings found"), "{out}");
    let v7 = format!("{}/test/armv7-only:1", reg.host);
    build_ok(&env, &["--platform", "linux/arm/v7", "-t", &v7, "--push", s(&ctx)]);
    let user7 = context(&env, "user7", &[("Dockerfile", &format!("FROM {v7}\n"))]);
    let out = env.ok(&["build", "--check", "--platform", "linux/arm/v6", s(&user7)]);
    assert!(out.contains("no warnings found"), "{out}");
}

#[test]
fn named_contexts_in_run_mounts() {
    let Some((env, _reg)) = mirrored_for_run() else { return };
    let extra = context(&env, "extra", &[("x.txt", "mounted")]);
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=from=extra,target=/e cat /e/x.txt > /out.txt\nFROM scratch\nCOPY --from=0 /out.txt /\n",
        )],
    );
    let named = format!("extra={}", extra.display());
    let out = build_local(&env, "mounted", &["--build-context", &named, s(&ctx)]);
    assert_eq!(read(out.join("out.txt")), "mounted");
    // A changed named context is not served from the cache.
    std::fs::write(extra.join("x.txt"), "changed").unwrap();
    let out = build_local(&env, "mounted2", &["--build-context", &named, s(&ctx)]);
    assert_eq!(read(out.join("out.txt")), "changed");
    assert_clean_root(&env.root());
}
