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
