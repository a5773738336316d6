//! Output helpers shared by commands.

use anyhow::Result;
use serde::Serialize;

/// JSON with a given indent string (docker prints manifest lists with three
/// spaces and manifests with tabs).
pub fn json_indented<T: Serialize + ?Sized>(value: &T, indent: &[u8]) -> Result<String> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value.serialize(&mut ser)?;
    Ok(String::from_utf8(out)?)
}

/// Re-indents JSON bytes, keeping key order.
pub fn reindent(bytes: &[u8], indent: &[u8]) -> Result<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes)?;
    json_indented(&v, indent)
}

/// Rows of `key:\tvalue` aligned like Go's tabwriter with padding 1.
pub fn aligned(prefix: &str, rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut s = String::new();
    for (k, v) in rows {
        let key = format!("{k}:");
        s.push_str(&format!("{prefix}{key:<width$} {v}\n").replace(" \n", "\n"));
    }
    s
}

/// Rows aligned as docker's tabwriter (minimum width 10, padding 3): every
/// cell but a row's last is padded to its column's width.
pub fn columns(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let w = (widths[i] + 3).max(10);
                line.push_str(&format!("{c:<w$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
