//! `polyarch builder create/use/inspect/ls/rm/stop`, `worker --probe`, and a
//! node reached through a real sshd on 127.0.0.1.

use serde_json::Value;

use crate::util::ssh::Sshd;
use crate::util::{free_port, require, Env};

fn ls_json(env: &Env) -> Value {
    serde_json::from_str(&env.ok(&["builder", "ls", "--format", "json"])).expect("ls JSON")
}

fn names(ls: &Value) -> Vec<String> {
    ls.as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap().to_string()).collect()
}

fn current(ls: &Value) -> String {
    let cur: Vec<&Value> = ls.as_array().unwrap().iter().filter(|b| b["current"] == true).collect();
    assert_eq!(cur.len(), 1, "{ls}");
    cur[0]["name"].as_str().unwrap().to_string()
}

#[test]
fn create_use_ls_inspect_stop_rm_round_trip() {
    let env = Env::new();
    assert_eq!(names(&ls_json(&env)), ["default"]);
    let out = env.ok(&["builder", "create", "--name", "multi", "--platform", "linux/arm64,linux/s390x", "local"]);
    assert_eq!(out.trim(), "multi");
    let out = env.ok(&["builder", "create", "--name", "multi", "--append", "--node", "far", "ssh://me@127.0.0.1:1"]);
    assert_eq!(out.trim(), "multi");
    // Stored in the config directory as JSON, with no temporary files left.
    let dir = env.dir.path().join("xdg/polyarch/builders");
    let files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(files, ["multi.json"]);
    let stored: Value = serde_json::from_slice(&std::fs::read(dir.join("multi.json")).unwrap()).unwrap();
    assert_eq!(stored["nodes"][1]["endpoint"], "ssh://me@127.0.0.1:1");

    let ls = ls_json(&env);
    assert_eq!(names(&ls), ["default", "multi"]);
    assert_eq!(current(&ls), "default");
    let nodes = &ls[1]["nodes"];
    assert_eq!(nodes[0]["name"], "multi0");
    assert_eq!(nodes[0]["status"], "inactive");
    assert_eq!(nodes[0]["platforms"], serde_json::json!(["linux/arm64", "linux/s390x"]));
    assert_eq!(nodes[1]["name"], "far");

    env.ok(&["builder", "use", "multi"]);
    assert_eq!(current(&ls_json(&env)), "multi");
    let table = env.ok(&["builder", "ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["default", "polyarch"]);
    assert_eq!(lines[3].split_whitespace().collect::<Vec<_>>(), ["multi*", "polyarch"]);
    assert!(
        lines[4].starts_with(" \\_ multi0") && lines[4].contains(" \\_ local") && lines[4].contains("inactive"),
        "{table}"
    );
    assert!(lines[4].ends_with("linux/arm64*, linux/s390x*"), "{table}");
    assert!(lines[5].contains(" \\_ ssh://me@127.0.0.1:1"), "{table}");
    // POLYARCH_BUILDER overrides the choice made with `use`.
    let ls: Value = serde_json::from_slice(
        &env.cmd(&["builder", "ls", "--format", "json"]).env("POLYARCH_BUILDER", "default").output().unwrap().stdout,
    )
    .unwrap();
    assert_eq!(current(&ls), "default");

    let inspect = env.ok(&["builder", "inspect"]);
    assert!(inspect.starts_with("Name:          multi\nDriver:        polyarch\n"), "{inspect}");
    assert!(
        inspect.contains("Name:          far\nEndpoint:      ssh://me@127.0.0.1:1\nStatus:        inactive\n"),
        "{inspect}"
    );

    // The host's platform builds on the local node; a platform no node
    // offers fails, listing what each offers, before anything is built.
    let ctx = env.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
    let out = env.run(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("builds on node multi0 (local)"), "{err}");
    let err = env.fails(&["build", "--platform", "windows/amd64", ctx.to_str().unwrap()]);
    assert!(err.contains("builder \"multi\" cannot build every platform"), "{err}");
    assert!(err.contains("windows/amd64: no node of builder multi builds it (multi0 [linux/arm64, "), "{err}");
    assert!(err.contains("; far [])"), "{err}");
    let err = env.fails(&["build", "--builder", "nope", ctx.to_str().unwrap()]);
    assert!(err.contains("no builder \"nope\""), "{err}");

    env.ok(&["builder", "stop", "multi"]);
    env.ok(&["builder", "rm", "multi"]);
    let ls = ls_json(&env);
    assert_eq!(names(&ls), ["default"]);
    assert_eq!(current(&ls), "default", "removing the current builder falls back to the default");
}

#[test]
fn invalid_requests_fail_clearly() {
    let env = Env::new();
    for (args, want) in [
        (&["builder", "rm", "default"][..], "cannot be removed"),
        (&["builder", "rm", "local"][..], "cannot be removed"),
        (&["builder", "rm", "ghost"][..], "no builder \"ghost\""),
        (&["builder", "use", "ghost"][..], "no builder \"ghost\""),
        (&["builder", "inspect", "ghost"][..], "no builder \"ghost\""),
        (&["builder", "create", "--driver", "polyarch", "tcp://h:1"][..], "unsupported endpoint"),
        (&["builder", "create", "ssh://h:0"][..], "bad port"),
        (&["builder", "create", "--name", "a/b"][..], "invalid name"),
        (&["builder", "create", "--name", "default"][..], "default builder"),
        (&["builder", "create", "--platform", "linux/"][..], "invalid platform"),
        (&["builder", "create", "--append", "--name", "ghost"][..], "no builder \"ghost\""),
    ] {
        let err = env.fails(args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(env.ok(&["builder", "create"]).trim(), "builder0");
    assert_eq!(env.ok(&["builder", "create", "--use"]).trim(), "builder1");
    let err = env.fails(&["builder", "create", "--name", "builder0"]);
    assert!(err.contains("--append"), "{err}");
    assert_eq!(current(&ls_json(&env)), "builder1");
    // `use local` and `use default` both pick the default builder.
    env.ok(&["builder", "use", "local"]);
    assert_eq!(current(&ls_json(&env)), "default");
    // The default builder's inspect works and stop is a no-op.
    let inspect = env.ok(&["builder", "inspect", "default"]);
    assert!(inspect.contains("Endpoint:      local\nStatus:        running\n"), "{inspect}");
    env.ok(&["builder", "stop", "default"]);
}

#[test]
fn worker_probe_prints_the_version_and_platforms() {
    let env = Env::new();
    let v: Value = serde_json::from_str(&env.ok(&["worker", "--probe"])).expect("probe JSON");
    assert_eq!(v["version"], format!("v{}", env!("CARGO_PKG_VERSION")));
    let host = format!("linux/{}", polyarch_emu::Arch::host().expect("known host").name());
    assert_eq!(v["native"][0], host.as_str());
    assert!(v["emulated"].is_array(), "{v}");
    assert!(env.fails(&["worker"]).contains("--probe"));
}

#[test]
fn ssh_node_bootstraps_and_an_unreachable_one_reports_an_error() {
    let env = Env::new();
    let Some(sshd) = Sshd::start(env.dir.path()) else {
        return;
    };
    let local: Value = serde_json::from_str(&env.ok(&["worker", "--probe"])).unwrap();
    let bin = env!("CARGO_BIN_EXE_polyarch");
    let endpoint = format!("ssh://root@127.0.0.1:{}", sshd.port);
    let run = |args: &[&str]| {
        let out = env.cmd(args).env("POLYARCH_SSH", sshd.ssh_command()).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) =
        run(&["builder", "create", "--name", "b", "--remote-polyarch", bin, &endpoint, "--bootstrap"]);
    assert!(ok, "create failed: {stdout}\n{stderr}");
    let (ok, inspect, stderr) = run(&["builder", "inspect", "b"]);
    assert!(ok, "{stderr}");
    assert!(inspect.contains(&format!("Endpoint:      {endpoint}\nStatus:        running\n")), "{inspect}");
    assert!(inspect.contains(&format!("Polyarch:      v{}\n", env!("CARGO_PKG_VERSION"))), "{inspect}");
    let platforms = inspect.lines().find_map(|l| l.strip_prefix("Platforms:")).expect("platforms line").trim();
    assert!(platforms.starts_with("linux/amd64"), "{platforms}");
    // No test changes the host's handlers (the emu tests use private
    // binfmt_misc instances), so every platform is compared.
    let all = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().filter_map(Value::as_str).map(String::from).collect()
    };
    let emulated = all(&local["emulated"]);
    assert!(!emulated.is_empty() || !require(false, "an emulated platform (polyarch binfmt install arm64)"));
    for e in &emulated {
        assert!(platforms.contains(&format!("{e} (emulated)")), "{e} in {platforms}");
    }
    let ls = ls_json(&env);
    let node = &ls[1]["nodes"][0];
    assert_eq!(node["status"], "running");
    assert_eq!(all(&node["native"]), all(&local["native"]));
    assert_eq!(all(&node["emulated"]), all(&local["emulated"]));

    // A closed port: the node is stored with status error, naming it.
    let closed = format!("ssh://root@127.0.0.1:{}", free_port());
    let (ok, _, stderr) = run(&["builder", "create", "--name", "gone", "--node", "dead", &closed, "--bootstrap"]);
    assert!(!ok && stderr.contains("node dead"), "{stderr}");
    let (ok, inspect, stderr) = run(&["builder", "inspect", "gone", "--bootstrap"]);
    assert!(!ok && stderr.contains("node dead"), "{stderr}");
    assert!(inspect.contains("Status:        error\nError:         node dead ("), "{inspect}");
    assert!(inspect.contains(&closed), "{inspect}");

    // stop marks the ssh node inactive; inspect --bootstrap brings it back.
    env.ok(&["builder", "stop", "b"]);
    assert_eq!(ls_json(&env)[1]["nodes"][0]["status"], "inactive");
    let (ok, inspect, stderr) = run(&["builder", "inspect", "--bootstrap", "b"]);
    assert!(ok, "{stderr}");
    assert!(inspect.contains("Status:        running"), "{inspect}");
}
