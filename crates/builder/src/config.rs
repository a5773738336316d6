//! The image config as BuildKit writes it: top-level keys in sorted order
//! (its exporter re-encodes through a map), the container config in the
//! field order and with the `omitempty` rules of Docker's image spec, and a
//! history entry per instruction.

use std::collections::BTreeMap;

use polyarch_oci::{Digest, Platform};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
#[cfg(test)]
use polyarch_dockerfile::values::go_quoted_list;

// One model of the container config and history for the plan and the
// build: the frontend's.
pub use polyarch_frontend::config::{
    go_duration, healthcheck_text, ContainerConfig, Empty, Healthcheck, History, DEFAULT_PATH, HISTORY_COMMENT,
};

/// An image config being built.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Image {
    /// The platform fields.
    pub platform: Platform,
    /// `author` (MAINTAINER).
    pub author: Option<String>,
    /// The container config.
    pub config: ContainerConfig,
    /// `rootfs.diff_ids`.
    pub diff_ids: Vec<Digest>,
    /// `history`.
    pub history: Vec<History>,
}

impl Image {
    /// BuildKit's image for `FROM scratch`: `PATH` set, working dir `/`.
    pub fn scratch(platform: &Platform) -> Image {
        let mut img = Image { platform: platform.clone(), ..Image::default() };
        img.config.working_dir = "/".into();
        img.config.env = vec![format!("PATH={DEFAULT_PATH}")];
        img
    }

    /// Reads a base image's config; fields BuildKit does not know are dropped.
    pub fn from_base(bytes: &[u8]) -> Result<Image> {
        let v: Value = serde_json::from_slice(bytes).map_err(|source| Error::Json { what: "image config", source })?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(String::from);
        let platform = Platform {
            os: s("os").unwrap_or_default(),
            architecture: s("architecture").unwrap_or_default(),
            variant: s("variant").filter(|x| !x.is_empty()),
            os_version: s("os.version").filter(|x| !x.is_empty()),
            os_features: None,
            features: None,
        };
        let config: ContainerConfig = match v.get("config") {
            Some(c) if !c.is_null() => {
                serde_json::from_value(c.clone()).map_err(|source| Error::Json { what: "image config", source })?
            }
            _ => ContainerConfig::default(),
        };
        let diff_ids = v
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|d| d.as_str()?.parse().ok()).collect())
            .unwrap_or_default();
        let history = match v.get("history") {
            Some(h) if !h.is_null() => {
                serde_json::from_value(h.clone()).map_err(|source| Error::Json { what: "image history", source })?
            }
            _ => Vec::new(),
        };
        Ok(Image { platform, author: s("author"), config, diff_ids, history })
    }

    /// Appends a history entry as BuildKit's `commitToHistory` does.
    pub fn commit(&mut self, created_by: String, with_layer: bool, created: Option<&str>) {
        self.history.push(History {
            created: created.map(String::from),
            created_by: Some(created_by),
            author: None,
            comment: Some(HISTORY_COMMENT.into()),
            empty_layer: !with_layer,
        });
    }

    /// Sets or replaces `key` in `Env`.
    pub fn add_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self.config.env.iter_mut().find(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e) == key) {
            Some(e) => *e = entry,
            None => self.config.env.push(entry),
        }
    }

    /// The value of `key` in `Env`.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.config.env.iter().find_map(|e| e.strip_prefix(key)?.strip_prefix('='))
    }

    /// The config JSON with `created` set (top-level keys sorted).
    pub fn to_json(&self, created: Option<&str>) -> Result<Vec<u8>> {
        let mut top: BTreeMap<&str, Value> = BTreeMap::new();
        let json = |v: &dyn erased::Ser| v.value();
        top.insert("architecture", Value::String(self.platform.architecture.clone()));
        top.insert("os", Value::String(self.platform.os.clone()));
        if let Some(v) = self.platform.variant.as_ref().filter(|v| !v.is_empty()) {
            top.insert("variant", Value::String(v.clone()));
        }
        if let Some(v) = self.platform.os_version.as_ref().filter(|v| !v.is_empty()) {
            top.insert("os.version", Value::String(v.clone()));
        }
        if let Some(a) = self.author.as_ref().filter(|a| !a.is_empty()) {
            top.insert("author", Value::String(a.clone()));
        }
        top.insert("config", json(&self.config)?);
        if let Some(c) = created {
            top.insert("created", Value::String(c.to_string()));
        }
        if !self.history.is_empty() {
            top.insert("history", json(&self.history)?);
        }
        let ids: Vec<Value> = self.diff_ids.iter().map(|d| Value::String(d.to_string())).collect();
        let mut rootfs = serde_json::Map::new();
        rootfs.insert("type".into(), Value::String("layers".into()));
        rootfs.insert("diff_ids".into(), Value::Array(ids));
        top.insert("rootfs", Value::Object(rootfs));
        serde_json::to_vec(&top).map_err(|source| Error::Json { what: "image config", source })
    }
}

mod erased {
    use super::*;
    pub trait Ser {
        fn value(&self) -> Result<Value>;
    }
    impl<T: Serialize> Ser for T {
        fn value(&self) -> Result<Value> {
            serde_json::to_value(self).map_err(|source| Error::Json { what: "image config", source })
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`, the inverse of the computation in [`rfc3339`]).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 in UTC for seconds since the epoch, as Go prints a `time.Time`.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `t` in UTC as Go's `time.RFC3339Nano` writes it (the form BuildKit's
/// progress times take): nanoseconds with trailing zeros dropped, none
/// for a whole second (`2024-01-02T03:04:05.5Z`).
pub fn rfc3339_nano(t: std::time::SystemTime) -> String {
    let (secs, nanos) = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            match d.subsec_nanos() {
                0 => (-(d.as_secs() as i64), 0),
                n => (-(d.as_secs() as i64) - 1, 1_000_000_000 - n),
            }
        }
    };
    let whole = rfc3339(secs);
    if nanos == 0 {
        return whole;
    }
    let frac = format!("{nanos:09}");
    format!("{}.{}Z", whole.trim_end_matches('Z'), frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_config_matches_buildkit() {
        let p = Platform::new("linux", "arm64", Some("v8"));
        let mut img = Image::scratch(&p);
        img.config.cmd = vec!["/bin/sh".into()];
        img.config.args_escaped = true;
        img.commit("CMD [\"/bin/sh\"]".into(), false, Some("2024-01-01T00:00:00Z"));
        let out = String::from_utf8(img.to_json(Some("2024-01-01T00:00:00Z")).unwrap()).unwrap();
        assert_eq!(
            out,
            concat!(
                r#"{"architecture":"arm64","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"#,
                r#""Cmd":["/bin/sh"],"WorkingDir":"/","ArgsEscaped":true},"created":"2024-01-01T00:00:00Z","#,
                r#""history":[{"created":"2024-01-01T00:00:00Z","created_by":"CMD [\"/bin/sh\"]","comment":"buildkit.dockerfile.v0","empty_layer":true}],"#,
                r#""os":"linux","rootfs":{"type":"layers","diff_ids":[]},"variant":"v8"}"#
            )
        );
    }

    #[test]
    fn base_config_round_trip_drops_unknown_fields() {
        let base = br#"{"architecture":"amd64","os":"linux","config":{"Hostname":"x","Env":["PATH=/bin"],"Cmd":["sh"],"Labels":null,"OnBuild":null},
            "rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]},
            "history":[{"created":"2020-01-01T00:00:00Z","created_by":"/bin/sh"}]}"#;
        let mut img = Image::from_base(base).unwrap();
        assert_eq!(img.config.cmd, ["sh"]);
        assert_eq!(img.diff_ids.len(), 1);
        img.add_env("PATH", "/usr/bin");
        img.add_env("A", "1");
        assert_eq!(img.config.env, ["PATH=/usr/bin", "A=1"]);
        assert_eq!(img.env("A"), Some("1"));
        let out = String::from_utf8(img.to_json(None).unwrap()).unwrap();
        assert!(!out.contains("Hostname"), "{out}");
        assert!(out.contains(r#""history":[{"created":"2020-01-01T00:00:00Z","created_by":"/bin/sh"}]"#), "{out}");
    }

    #[test]
    fn go_formatting() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        let t = |s: u64, n: u32| std::time::UNIX_EPOCH + std::time::Duration::new(s, n);
        assert_eq!(rfc3339_nano(t(1_700_000_000, 0)), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_nano(t(1_700_000_000, 123_456_789)), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(rfc3339_nano(t(1_700_000_000, 500_000_000)), "2023-11-14T22:13:20.5Z");
        assert_eq!(
            rfc3339_nano(std::time::UNIX_EPOCH - std::time::Duration::new(0, 1)),
            "1969-12-31T23:59:59.999999999Z"
        );
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_quoted_list(&["a b".into(), "c\"".into()]), r#"["a b" "c\""]"#);
        let h = Healthcheck {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: 5_000_000_000,
            retries: 3,
            ..Default::default()
        };
        assert_eq!(healthcheck_text(&h), r#"HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" "0s" '\x03'}"#);
    }
}
