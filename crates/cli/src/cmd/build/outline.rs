//! `--call=outline`: what the build of a target takes, as BuildKit's
//! `frontend.outline` subrequest answers and buildx prints it: the target
//! and its description, the build arguments its stages declare (default
//! value and `# NAME description` comment), the secrets and SSH sockets
//! its RUN steps mount; `--call=outline,format=json` prints the JSON.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use polyarch_dockerfile::instructions::{self, parse_instruction, Dockerfile, Instruction};
use serde_json::{json, Value};

/// Prints the outline of `target` (default: the last stage).
pub(super) fn print(dockerfile: &[u8], file: &str, call: &str, target: Option<&str>) -> Result<u8> {
    let source = String::from_utf8_lossy(dockerfile);
    let diag = |e: polyarch_dockerfile::Error| anyhow::anyhow!("{}", e.diagnostic(file, &source).render());
    let ast = polyarch_dockerfile::parse(dockerfile).map_err(diag)?;
    let df = instructions::parse(&ast).map_err(diag)?;
    let t = df.target(target).map_err(diag)?;
    let needed = needed(&df, t);
    let o = collect(&ast, &df, &needed, t)?;
    if call.split(',').any(|f| f.trim() == "format=json") {
        println!("{}", serde_json::to_string_pretty(&o)?);
    } else {
        print!("{}", render(&o));
    }
    Ok(0)
}

/// The stages the target reads, itself included.
fn needed(df: &Dockerfile, target: usize) -> Vec<bool> {
    let mut seen = vec![false; df.stages.len()];
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !std::mem::replace(&mut seen[i], true) {
            todo.extend(df.dependencies(i).into_iter().map(|(j, _)| j));
        }
    }
    seen
}

/// The outline as BuildKit's JSON (`name`, `description`, `args`,
/// `secrets`, `ssh`, `sources`).
fn collect(ast: &polyarch_dockerfile::ParseResult, df: &Dockerfile, needed: &[bool], target: usize) -> Result<Value> {
    let describe = |comments: &[String], name: &str| {
        let prefix = format!("{name} ");
        comments.iter().find_map(|c| c.strip_prefix(&prefix)).unwrap_or("").to_string()
    };
    let mut stage: Option<usize> = None;
    let mut args: Vec<(usize, Value)> = Vec::new();
    let mut seen_args: HashMap<String, ()> = HashMap::new();
    let mut secrets: BTreeMap<String, bool> = BTreeMap::new();
    let mut ssh: BTreeMap<String, bool> = BTreeMap::new();
    let mut description = String::new();
    for node in &ast.nodes {
        let cmd = parse_instruction(node).map_err(|e| anyhow::anyhow!("{e}"))?;
        let in_scope = stage.is_none_or(|i| needed.get(i).copied().unwrap_or(false));
        match &cmd.instruction {
            Instruction::From(f) => {
                let i = stage.map_or(0, |i| i + 1);
                stage = Some(i);
                if i == target {
                    description = f.name.as_deref().map(|n| describe(&node.prev_comment, n)).unwrap_or_default();
                }
            }
            Instruction::Arg(defs) if in_scope => {
                for a in defs {
                    if seen_args.insert(a.key.clone(), ()).is_some() {
                        continue;
                    }
                    let mut v = json!({"name": a.key});
                    if let Some(d) = &a.value {
                        v["value"] = json!(d);
                    }
                    let d = describe(&node.prev_comment, &a.key);
                    if !d.is_empty() {
                        v["description"] = json!(d);
                    }
                    v["location"] = location(cmd.start_line, cmd.end_line);
                    args.push((cmd.start_line, v));
                }
            }
            Instruction::Run(r) if in_scope => {
                for m in &r.mounts {
                    let id = || m.id.clone().or_else(|| m.target.as_deref().map(basename));
                    match m.r#type.as_str() {
                        "secret" => {
                            let e = secrets.entry(id().unwrap_or_default()).or_default();
                            *e |= m.required;
                        }
                        "ssh" => {
                            let e = ssh.entry(m.id.clone().unwrap_or_else(|| "default".into())).or_default();
                            *e |= m.required;
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    args.sort_by_key(|(l, _)| *l);
    let mut o = serde_json::Map::new();
    if let Some(n) = &df.stages[target].name {
        o.insert("name".into(), json!(n));
    }
    if !description.is_empty() {
        o.insert("description".into(), json!(description));
    }
    let list = |m: BTreeMap<String, bool>| -> Vec<Value> {
        m.into_iter().map(|(n, r)| if r { json!({"name": n, "required": true}) } else { json!({"name": n}) }).collect()
    };
    if !args.is_empty() {
        o.insert("args".into(), Value::Array(args.into_iter().map(|(_, v)| v).collect()));
    }
    if !secrets.is_empty() {
        o.insert("secrets".into(), Value::Array(list(secrets)));
    }
    if !ssh.is_empty() {
        o.insert("ssh".into(), Value::Array(list(ssh)));
    }
    Ok(Value::Object(o))
}

fn basename(p: &str) -> String {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or(p).to_string()
}

/// BuildKit's `pb.Location` of a line range (0-based character offsets).
fn location(start: usize, end: usize) -> Value {
    json!({"ranges": [{"start": {"line": start}, "end": {"line": end}}]})
}

/// Buildx's text: `TARGET:`/`DESCRIPTION:`, then `BUILD ARG VALUE
/// DESCRIPTION`, `SECRET REQUIRED` and `SSH REQUIRED` tables, each
/// followed by an empty line (Go's tabwriter: padding 1, then 3).
fn render(o: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (name, desc) = (s(o, "name"), s(o, "description"));
    if !name.is_empty() || !desc.is_empty() {
        let mut rows = vec![vec!["TARGET:".to_string(), if name.is_empty() { "(default)".into() } else { name }]];
        if !desc.is_empty() {
            rows.push(vec!["DESCRIPTION:".into(), desc]);
        }
        out.push_str(&tabwrite(&rows, 1));
        out.push('\n');
    }
    let items = |k: &str| o.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
    let args = items("args");
    if !args.is_empty() {
        let mut rows = vec![vec!["BUILD ARG".to_string(), "VALUE".into(), "DESCRIPTION".into()]];
        rows.extend(args.iter().map(|a| vec![s(a, "name"), s(a, "value"), s(a, "description")]));
        out.push_str(&tabwrite(&rows, 3));
        out.push('\n');
    }
    for (key, head) in [("secrets", "SECRET"), ("ssh", "SSH")] {
        let list = items(key);
        if list.is_empty() {
            continue;
        }
        let mut rows = vec![vec![head.to_string(), "REQUIRED".into()]];
        let required = |v: &Value| if v.get("required").and_then(Value::as_bool) == Some(true) { "true" } else { "" };
        rows.extend(list.iter().map(|v| vec![s(v, "name"), required(v).to_string()]));
        out.push_str(&tabwrite(&rows, 3));
        out.push('\n');
    }
    out
}

/// Go's `tabwriter` with minwidth 0 and `padding`: every cell but the
/// last of a row is padded to its column's width plus `padding`.
fn tabwrite(rows: &[Vec<String>], padding: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}", w = widths[i] + padding));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outline_of_a_target() {
        let df = b"ARG BASE=busybox\nFROM $BASE AS build\n# VERSION the version to build\nARG VERSION=1.0\nRUN --mount=type=secret,id=token,required=true --mount=type=ssh true\nFROM build AS release\n# GOOS os\nARG GOOS\nRUN --mount=type=secret,target=/run/secrets/npmrc true\nFROM busybox AS other\nARG UNUSED=x\n";
        let ast = polyarch_dockerfile::parse(df).unwrap();
        let d = instructions::parse(&ast).unwrap();
        let t = d.target(Some("release")).unwrap();
        let o = collect(&ast, &d, &needed(&d, t), t).unwrap();
        let names: Vec<&str> = o["args"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["BASE", "VERSION", "GOOS"]);
        assert_eq!(o["args"][1]["value"], "1.0");
        assert_eq!(o["args"][1]["description"], "the version to build");
        assert_eq!(o["secrets"], json!([{"name": "npmrc"}, {"name": "token", "required": true}]));
        assert_eq!(o["ssh"], json!([{"name": "default"}]));
        let text = render(&o);
        assert!(text.starts_with("TARGET: release\n\nBUILD ARG   VALUE     DESCRIPTION\n"), "{text}");
        assert!(text.contains("VERSION     1.0       the version to build\n"), "{text}");
        assert!(text.contains("SECRET   REQUIRED\nnpmrc    \ntoken    true\n"), "{text}");
    }
}
