//! Goldens: docker's documented `--format` examples ("Format command and
//! log output", `docker inspect`, `docker images`) and Go's rules.

use serde_json::json;

use super::*;

fn container() -> Value {
    json!({
        "Name": "/web",
        "Names": ["web", "frontend"],
        "Image": "ubuntu:latest",
        "State": {"Running": true, "Pid": 4242, "Status": "running"},
        "Config": {"Labels": {"com.example.version": "1.0", "maintainer": "me"}, "Env": ["A=1", "B=2"]},
        "NetworkSettings": {
            "Networks": {"bridge": {"IPAddress": "172.17.0.2"}, "back": {"IPAddress": "10.0.0.5"}},
            "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8443"}]}
        },
        "Size": 4261234,
        "Empty": [],
        "Nothing": null,
    })
}

fn run(t: &str) -> String {
    Template::parse(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .execute(&container())
        .unwrap_or_else(|e| panic!("{t}: {e}"))
}

fn fails(t: &str) -> String {
    match Template::parse(t).and_then(|t| t.with_type("image.InspectResponse").execute(&container())) {
        Ok(out) => panic!("{t} should fail, printed {out:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn docker_documented_functions() {
    // docs.docker.com/engine/cli/formatting/
    assert_eq!(run(r#"{{join .Names " , "}}"#), "web , frontend");
    assert_eq!(run("{{json .State}}"), r#"{"Running":true,"Pid":4242,"Status":"running"}"#);
    assert_eq!(run("{{lower .Config.Labels.maintainer | upper}}"), "ME");
    assert_eq!(run(r#"{{split .Image ":"}}"#), "[ubuntu latest]");
    assert_eq!(run("{{title .State.Status}}"), "Running");
    assert_eq!(run("{{upper .Name}}"), "/WEB");
    assert_eq!(run("{{println .Name}}x"), "/web\nx");
    assert_eq!(run(r#"{{index .Config.Labels "com.example.version"}}"#), "1.0");
    assert_eq!(run("{{truncate .Image 6}}|{{pad .State.Status 1 2}}|"), "ubuntu| running  |");
}

#[test]
fn docker_inspect_examples() {
    // docs.docker.com/reference/cli/docker/inspect/
    assert_eq!(run("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"), "10.0.0.5 172.17.0.2 ");
    assert_eq!(
        run("{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} {{end}}"),
        " 443/tcp -> 8443  80/tcp -> 8080 "
    );
    assert_eq!(run("{{.State.Pid}}"), "4242");
    assert_eq!(run("{{json .Config.Env}}"), r#"["A=1","B=2"]"#);
    assert_eq!(run("{{.Config.Env}}"), "[A=1 B=2]");
    assert_eq!(run("{{.Config.Labels}}"), "map[com.example.version:1.0 maintainer:me]");
    assert_eq!(run("{{.Size}}"), "4261234");
    assert_eq!(run("[{{.Nothing}}]{{json .Nothing}}"), "[]null");
}

#[test]
fn control_structures() {
    assert_eq!(run("{{if .State.Running}}up{{else}}down{{end}}"), "up");
    assert_eq!(run("{{if .Empty}}some{{else if .Nothing}}none{{else}}empty{{end}}"), "empty");
    assert_eq!(run("{{range .Empty}}x{{else}}no items{{end}}"), "no items");
    assert_eq!(run("{{with .State}}{{.Status}}{{end}}"), "running");
    assert_eq!(run("{{with .Nothing}}x{{else}}nil{{end}}"), "nil");
    assert_eq!(run("{{range $i, $n := .Names}}{{$i}}={{$n}};{{end}}"), "0=web;1=frontend;");
    assert_eq!(run("{{$x := .Image}}{{$x}}/{{$.Name}}"), "ubuntu:latest//web");
    assert_eq!(run("{{range .Names}}{{.}}@{{$.Image}} {{end}}"), "web@ubuntu:latest frontend@ubuntu:latest ");
    assert_eq!(run("{{if and .State.Running (eq .State.Status \"running\" \"up\")}}ok{{end}}"), "ok");
    assert_eq!(run("{{if or .Empty .Nothing}}x{{else}}{{not .Empty}}{{end}}"), "true");
    // Operands after the answer are not evaluated, as in Go.
    assert_eq!(run("{{if and .Nothing .Nothing.X}}x{{else}}no{{end}}"), "no");
    assert_eq!(run("{{or .Name .Nothing.X}}"), "/web");
    assert_eq!(run("{{len .Names}} {{if gt .Size 1000}}big{{end}} {{ne .Name \"x\"}}"), "2 big true");
}

#[test]
fn whitespace_trimming_comments_and_printf() {
    assert_eq!(run("a  {{- .Name -}}  b"), "a/webb");
    assert_eq!(run("{{/* a comment */}}x"), "x");
    assert_eq!(run(r#"{{printf "%s has %d names" .Image (len .Names)}}"#), "ubuntu:latest has 2 names");
    assert_eq!(run(r#"{{printf "%-6s|%5v|%q" "ab" 12 .Name}}"#), "ab    |   12|\"/web\"");
    assert_eq!(run(r#"{{print "a" 1 2 "b"}}"#), "a1 2b");
    assert_eq!(run("{{.Names | json}}"), r#"["web","frontend"]"#);
    assert_eq!(run("{{`raw \\n`}}"), "raw \\n");
}

#[test]
fn unknown_fields_are_errors_naming_them() {
    assert_eq!(
        fails("{{.Architecture}}"),
        "template: :1:2: executing \"\" at <.Architecture>: can't evaluate field Architecture in type image.InspectResponse"
    );
    assert_eq!(
        fails("x\n  {{.State.Nope}}"),
        "template: :2:4: executing \"\" at <.State.Nope>: can't evaluate field Nope in type State"
    );
    assert!(fails("{{range .Names}}{{.X}}{{end}}").ends_with("can't evaluate field X in type string"));
    assert!(fails("{{with .State}}{{.Nope}}{{end}}").ends_with("can't evaluate field Nope in type State"));
    assert!(
        fails("{{range .Names}}{{$.Nope}}{{end}}").ends_with("can't evaluate field Nope in type image.InspectResponse")
    );
    let v = json!({"Nodes": [{"Name": "n1"}]});
    let err = Template::parse("{{range .Nodes}}{{.Endpoint}}{{end}}").unwrap().execute(&v).unwrap_err().to_string();
    assert!(err.ends_with("can't evaluate field Endpoint in type Nodes"), "{err}");
    assert!(fails("{{.Nothing.X}}").contains("nil pointer evaluating Nothing.X"), "{}", fails("{{.Nothing.X}}"));
    assert!(fails("{{.Name.X}}").contains("can't evaluate field X in type string"));
}

#[test]
fn parse_errors() {
    assert_eq!(fails("{{nope .Name}}"), "template parsing error: template: :1: function \"nope\" not defined");
    assert!(fails("{{if .Name}}x").contains("unexpected EOF"));
    assert!(fails("{{.Name").contains("unclosed action"));
    assert!(fails("{{end}}").contains("unexpected {{end}}"));
    assert!(fails("{{index .Names 5}}").contains("index out of range: 5"));
}

#[test]
fn field_names_match_json_keys_ignoring_case() {
    let v = json!({"name": "b1", "nodes": [{"name": "n1", "endpoint": "unix:///x"}]});
    let t = Template::parse("{{.Name}}: {{range .Nodes}}{{.Name}} {{.Endpoint}}{{end}}").unwrap();
    assert_eq!(t.execute(&v).unwrap(), "b1: n1 unix:///x");
}

#[test]
fn formats_as_docker_reads_them() {
    assert!(matches!(Format::parse("table").unwrap(), Format::Default));
    assert!(matches!(Format::parse("").unwrap(), Format::Default));
    assert!(matches!(Format::parse("json").unwrap(), Format::Json));
    let Format::Template { template, table } = Format::parse(r"table {{.Repository}}\t{{.Tag}}").unwrap() else {
        panic!("a template")
    };
    assert!(table);
    let rows = vec![
        json!({"Repository": "busybox", "Tag": "latest", "ID": "abc"}),
        json!({"Repository": "registry.example/app", "Tag": "1", "ID": "def"}),
    ];
    assert_eq!(
        render_rows(&template, true, &rows, &[]).unwrap(),
        "REPOSITORY             TAG\nbusybox                latest\nregistry.example/app   1\n"
    );
    let Format::Template { template, table } = Format::parse(r"{{.ID}}\t{{.Tag}}").unwrap() else { panic!() };
    assert!(!table);
    assert_eq!(render_rows(&template, false, &rows, &[]).unwrap(), "abc\tlatest\ndef\t1\n");
    let Format::Template { template, .. } = Format::parse(r"table {{.ID}}\t{{.CreatedSince}}").unwrap() else {
        panic!()
    };
    let rows = vec![json!({"ID": "abc", "CreatedSince": "2 weeks ago"})];
    assert_eq!(
        render_rows(&template, true, &rows, &[("ID", "IMAGE ID"), ("CreatedSince", "CREATED")]).unwrap(),
        "IMAGE ID   CREATED\nabc        2 weeks ago\n"
    );
    assert_eq!(render_rows(&template, true, &[], &[("ID", "IMAGE ID")]).unwrap(), "IMAGE ID   CREATED SINCE\n");
    assert_eq!(header_name("CreatedSince"), "CREATED SINCE");
    assert_eq!(header_name("ID"), "ID");
    assert_eq!(header_name("RepoTags"), "REPO TAGS");
}

#[test]
fn what_a_template_may_read() {
    let t = |s: &str| Template::parse(s).unwrap();
    assert!(t("{{json .Image}}").may_read("Image"));
    assert!(t("{{json .}}").may_read("Image"));
    assert!(t("{{(index .Image \"linux/amd64\").Os}}").may_read("Image"));
    assert!(t("{{range .Manifest.Manifests}}{{.}}{{end}}").may_read("Image"), "dot inside range is not known");
    assert!(!t("{{.Name}} {{json .Manifest}}").may_read("Image"));
}
