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
pub(super) fn print(
    dockerfile: &[u8],
    file: &str,
    call: &str,
    target: Option<&str>,
    build_args: &BTreeMap<String, String>,
) -> Result<u8> {
    let source = String::from_utf8_lossy(dockerfile);
    let diag = |e: polyarch_dockerfile::Error| anyhow::anyhow!("{}", e.diagnostic(file, &source).render());
    let ast = polyarch_dockerfile::parse(dockerfile).map_err(diag)?;
    let df = instructions::parse(&ast).map_err(diag)?;
    let t = df.target(target).map_err(diag)?;
    let needed = needed(&df, t);
    let o = collect(&ast, &df, &needed, t, build_args)?;
    if call.split(',').any(|f| f.trim() == "format=json") {
        crate::outln!("{}", serde_json::to_string_pretty(&o)?)?;
    } else {
        crate::out!("{}", render(&o))?;
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

/// What the outline gathers, as BuildKit's `outlineCapture`.
#[derive(Default)]
struct Capture {
    /// Arguments by name: first line, JSON.
    args: BTreeMap<String, (usize, Value)>,
    /// Secrets and SSH ids: first line, required.
    secrets: BTreeMap<String, (usize, bool)>,
    ssh: BTreeMap<String, (usize, bool)>,
}

/// The outline as BuildKit's JSON (`name`, `description`, `args`,
/// `secrets`, `ssh`): the ARGs of the stages the target needs, and the
/// global ARGs their FROM lines use, each with its value (a `--build-arg`
/// or the default, expanded) and its `# NAME text` description; the
/// secrets and SSH ids of their RUN mounts; each list in line order.
fn collect(
    ast: &polyarch_dockerfile::ParseResult,
    df: &Dockerfile,
    needed: &[bool],
    target: usize,
    build_args: &BTreeMap<String, String>,
) -> Result<Value> {
    let lex = polyarch_dockerfile::Lex::new(ast.escape);
    let describe = |comments: &[String], name: &str| {
        let prefix = format!("{name} ");
        comments.iter().find_map(|c| c.strip_prefix(&prefix)).unwrap_or("").to_string()
    };
    let mut stage: Option<usize> = None;
    let mut cap = Capture::default();
    let mut globals: Vec<(usize, String, Value)> = Vec::new();
    let mut global_env: HashMap<String, String> = HashMap::new();
    let mut env: HashMap<String, String> = HashMap::new();
    let mut used_globals: std::collections::BTreeSet<String> = Default::default();
    let mut description = String::new();
    for node in &ast.nodes {
        let cmd = parse_instruction(node).map_err(|e| anyhow::anyhow!("{e}"))?;
        let in_scope = stage.is_none_or(|i| needed.get(i).copied().unwrap_or(false));
        match &cmd.instruction {
            Instruction::From(f) => {
                let i = stage.map_or(0, |i| i + 1);
                stage = Some(i);
                env = global_env.clone();
                if needed.get(i).copied().unwrap_or(false) {
                    for word in std::iter::once(&f.base).chain(f.platform.as_ref()) {
                        if let Ok(r) = lex.process(word, &global_env) {
                            used_globals.extend(r.matched);
                        }
                    }
                }
                if i == target {
                    description = f.name.as_deref().map(|n| describe(&node.prev_comment, n)).unwrap_or_default();
                }
            }
            Instruction::Arg(defs) if in_scope => {
                for a in defs {
                    let value = match (build_args.get(&a.key), &a.value) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(d)) => Some(lex.process_word(d, &env).unwrap_or_else(|_| d.clone())),
                        (None, None) => env.get(&a.key).cloned(),
                    };
                    let mut v = json!({"name": a.key});
                    if let Some(val) = value.as_ref().filter(|v| !v.is_empty()) {
                        v["value"] = json!(val);
                    }
                    let d = describe(&node.prev_comment, &a.key);
                    if !d.is_empty() {
                        v["description"] = json!(d);
                    }
                    v["location"] = location(cmd.start_line, cmd.end_line);
                    if let Some(val) = value {
                        env.insert(a.key.clone(), val.clone());
                        if stage.is_none() {
                            global_env.insert(a.key.clone(), val);
                        }
                    }
                    if stage.is_none() {
                        globals.push((cmd.start_line, a.key.clone(), v));
                    } else {
                        cap.args.entry(a.key.clone()).or_insert((cmd.start_line, v));
                    }
                }
            }
            Instruction::Run(r) if in_scope => {
                for m in &r.mounts {
                    let (map, id) = match m.r#type.as_str() {
                        "secret" => (&mut cap.secrets, m.id.clone().or_else(|| m.target.as_deref().map(basename))),
                        "ssh" => (&mut cap.ssh, Some(m.id.clone().unwrap_or_else(|| "default".into()))),
                        _ => continue,
                    };
                    let e = map.entry(id.unwrap_or_default()).or_insert((cmd.start_line, false));
                    e.1 |= m.required;
                }
            }
            _ => {}
        }
    }
    for (line, name, v) in globals {
        if used_globals.contains(&name) {
            cap.args.entry(name).or_insert((line, v));
        }
    }
    let mut o = serde_json::Map::new();
    if let Some(n) = &df.stages[target].name {
        o.insert("name".into(), json!(n));
    }
    if !description.is_empty() {
        o.insert("description".into(), json!(description));
    }
    let mut args: Vec<(usize, Value)> = cap.args.into_values().collect();
    args.sort_by_key(|(l, _)| *l);
    if !args.is_empty() {
        o.insert("args".into(), Value::Array(args.into_iter().map(|(_, v)| v).collect()));
    }
    for (key, m) in [("secrets", cap.secrets), ("ssh", cap.ssh)] {
        let mut list: Vec<(usize, Value)> = m
            .into_iter()
            .map(|(n, (line, req))| {
                let mut v = json!({"name": n});
                if req {
                    v["required"] = json!(true);
                }
                v["location"] = location(line, line);
                (line, v)
            })
            .collect();
        list.sort_by_key(|(l, _)| *l);
        if !list.is_empty() {
            o.insert(key.into(), Value::Array(list.into_iter().map(|(_, v)| v).collect()));
        }
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
        let args: BTreeMap<String, String> = [("GOOS".to_string(), "linux".to_string())].into_iter().collect();
        let o = collect(&ast, &d, &needed(&d, t), t, &args).unwrap();
        let names: Vec<&str> = o["args"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["BASE", "VERSION", "GOOS"], "UNUSED is not in a needed stage");
        assert_eq!(o["args"][1]["value"], "1.0");
        assert_eq!(o["args"][1]["description"], "the version to build");
        assert_eq!(o["args"][2]["value"], "linux", "a --build-arg is the value");
        let names = |k: &str| -> Vec<String> {
            o[k].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(names("secrets"), ["token", "npmrc"], "in line order");
        assert_eq!(o["secrets"][0]["required"], true);
        assert_eq!(names("ssh"), ["default"]);
        let text = render(&o);
        assert!(text.starts_with("TARGET: release\n\nBUILD ARG   VALUE     DESCRIPTION\n"), "{text}");
        assert!(text.contains("VERSION     1.0       the version to build\n"), "{text}");
        assert!(text.contains("SECRET   REQUIRED\ntoken    true\nnpmrc    \n"), "{text}");
        // A global ARG no FROM of a needed stage uses is left out.
        let ast = polyarch_dockerfile::parse(b"ARG UNUSED=1\nARG B=scratch\nFROM $B\n").unwrap();
        let d = instructions::parse(&ast).unwrap();
        let o = collect(&ast, &d, &needed(&d, 0), 0, &BTreeMap::new()).unwrap();
        assert_eq!(o["args"].as_array().unwrap().len(), 1, "{o}");
    }
}
