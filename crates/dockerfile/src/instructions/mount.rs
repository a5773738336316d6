//! `RUN --mount=...` specifications (BuildKit `commands_runmount.go`).

use serde::Serialize;

use super::bflag::suggest;
use crate::go_quote;

/// A parsed `--mount` value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// `bind` (default), `cache`, `tmpfs`, `secret` or `ssh`.
    pub r#type: String,
    /// `from`: stage or image to take the source from.
    pub from: Option<String>,
    /// `source`/`src`.
    pub source: Option<String>,
    /// `target`/`dst`/`destination`.
    pub target: Option<String>,
    /// `readonly`/`ro` or the inverse of `readwrite`/`rw`, if given.
    pub read_only: Option<bool>,
    /// `required` (secret and ssh only).
    pub required: bool,
    /// `id`.
    pub id: Option<String>,
    /// `sharing` (cache): `shared`, `private` or `locked`.
    pub sharing: Option<String>,
    /// `mode`, octal.
    pub mode: Option<u32>,
    /// `uid`.
    pub uid: Option<u64>,
    /// `gid`.
    pub gid: Option<u64>,
    /// `size` (tmpfs).
    pub size: Option<String>,
    /// `env` (secret).
    pub env: Option<String>,
}

const TYPES: [&str; 5] = ["bind", "cache", "tmpfs", "secret", "ssh"];
const KEYS: [&str; 16] = [
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "required",
    "size",
    "id",
    "sharing",
    "mode",
];

use crate::values::csv_fields as fields;

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid value for {key}: {v}")),
    }
}

/// Parses one `--mount` value.
pub(crate) fn parse_mount(value: &str) -> Result<Mount, String> {
    let fields = fields(value);
    let mut m = Mount { r#type: "bind".into(), ..Mount::default() };
    for f in &fields {
        if let Some((k, v)) = f.split_once('=') {
            if k.eq_ignore_ascii_case("type") {
                let t = v.to_lowercase();
                if !TYPES.contains(&t.as_str()) {
                    return Err(suggest(&format!("unsupported mount type {}", go_quote(v)), v, &TYPES, true));
                }
                m.r#type = t;
            }
        }
    }
    let ty = m.r#type.clone();
    let unexpected = |key: &str| format!("unexpected key '{key}' for mount type '{ty}'");
    for field in &fields {
        let Some((key, v)) = field.split_once('=') else {
            if field.is_empty() {
                continue;
            }
            match field.to_lowercase().as_str() {
                "readonly" | "ro" => m.read_only = Some(true),
                "readwrite" | "rw" => m.read_only = Some(false),
                "required" if ty == "secret" || ty == "ssh" => m.required = true,
                "required" => return Err(unexpected("required")),
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let key = key.to_lowercase();
        let v = v.to_string();
        match key.as_str() {
            "type" => {}
            "from" => m.from = Some(v),
            "source" | "src" => m.source = Some(v),
            "target" | "dst" | "destination" => m.target = Some(v),
            "readonly" | "ro" => m.read_only = Some(parse_bool(&key, &v)?),
            "readwrite" | "rw" => m.read_only = Some(!parse_bool(&key, &v)?),
            "required" if ty == "secret" || ty == "ssh" => m.required = parse_bool(&key, &v)?,
            "size" if ty == "tmpfs" => m.size = Some(v),
            "required" | "size" => return Err(unexpected(&key)),
            "id" => m.id = Some(v),
            "sharing" => {
                let s = v.to_lowercase();
                if !s.is_empty() && !matches!(s.as_str(), "shared" | "private" | "locked") {
                    return Err(format!("unsupported sharing value {}", go_quote(&v)));
                }
                m.sharing = Some(s);
            }
            "mode" => m.mode = Some(u32::from_str_radix(&v, 8).map_err(|_| format!("invalid value {v} for mode"))?),
            "uid" => m.uid = Some(v.parse().map_err(|_| format!("invalid value {v} for uid"))?),
            "gid" => m.gid = Some(v.parse().map_err(|_| format!("invalid value {v} for gid"))?),
            "env" => m.env = Some(v),
            _ => return Err(suggest(&format!("unexpected key '{key}' in '{field}'"), &key, &KEYS, true)),
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        let m = parse_mount("type=cache,target=/root/.cache,sharing=locked,id=x").unwrap();
        assert_eq!(
            (m.r#type.as_str(), m.target.as_deref(), m.sharing.as_deref()),
            ("cache", Some("/root/.cache"), Some("locked"))
        );
        let m = parse_mount("target=/src,ro,from=build").unwrap();
        assert_eq!((m.r#type.as_str(), m.read_only, m.from.as_deref()), ("bind", Some(true), Some("build")));
        let m = parse_mount("type=secret,id=tok,required").unwrap();
        assert!(m.required);
        assert_eq!(parse_mount("type=foo").unwrap_err(), "unsupported mount type \"foo\"");
        assert_eq!(parse_mount("type=cahce").unwrap_err(), "unsupported mount type \"cahce\" (did you mean cache?)");
        assert_eq!(parse_mount("type=bind,required").unwrap_err(), "unexpected key 'required' for mount type 'bind'");
        assert_eq!(parse_mount("target").unwrap_err(), "invalid field 'target' must be a key=value pair");
        assert_eq!(
            parse_mount("tagret=/x").unwrap_err(),
            "unexpected key 'tagret' in 'tagret=/x' (did you mean target?)"
        );
    }
}
