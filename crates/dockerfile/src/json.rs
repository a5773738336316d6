//! The JSON shape printed by `polyarch debug dockerfile`.

use serde_json::{json, Map, Value};

use crate::compat::go_quote;
use crate::parser::{Node, ParseResult};

/// The AST as JSON: directives, warnings and one object per instruction with
/// `cmd`, `flags`, `args`, `json_form`, `heredocs`, `start_line`, `end_line`
/// and, for ONBUILD, `onbuild`.
pub fn debug_json(r: &ParseResult) -> Value {
    let directives: Map<String, Value> =
        r.directives.iter().map(|d| (d.name.clone(), Value::String(d.value.clone()))).collect();
    let warnings: Vec<Value> = r
        .warnings
        .iter()
        .map(|w| json!({"short": w.short, "detail": w.detail, "url": w.url, "line": w.line}))
        .collect();
    let instructions: Vec<Value> = r.nodes.iter().map(node_json).collect();
    json!({"directives": directives, "warnings": warnings, "instructions": instructions})
}

fn node_json(n: &Node) -> Value {
    let heredocs: Vec<Value> = n
        .heredocs
        .iter()
        .map(|h| json!({"name": h.name, "content": h.content, "expand": h.expand, "chomp": h.chomp}))
        .collect();
    let mut o = json!({
        "cmd": n.cmd.to_lowercase(),
        "flags": n.flags,
        // As BuildKit's node: an ONBUILD's only child is the instruction it
        // wraps (`onbuild`), its own argument list is empty.
        "args": if n.onbuild.is_some() { Vec::new() } else { n.flat_args() },
        "json_form": n.json,
        "heredocs": heredocs,
        "start_line": n.start_line,
        "end_line": n.end_line,
    });
    if let (Some(sub), Some(obj)) = (&n.onbuild, o.as_object_mut()) {
        obj.insert("onbuild".into(), node_json(sub));
    }
    o
}

/// BuildKit's `Node.Dump` s-expression form of the AST, one line per
/// instruction, as used by BuildKit's parser test files.
pub fn dump(r: &ParseResult) -> String {
    r.nodes.iter().map(|n| format!("({})\n", dump_node(n))).collect()
}

fn dump_node(n: &Node) -> String {
    let mut s = n.cmd.to_lowercase();
    if !n.flags.is_empty() {
        let quoted: Vec<String> = n.flags.iter().map(|f| go_quote(f)).collect();
        s.push_str(&format!(" [{}]", quoted.join(" ")));
    }
    match &n.onbuild {
        Some(sub) => s.push_str(&format!(" ({})", dump_node(sub))),
        None => {
            for a in &n.args {
                s.push(' ');
                s.push_str(&go_quote(a));
            }
        }
    }
    s.trim().to_string()
}
