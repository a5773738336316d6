//! The image config a plan gives each platform: the part of a build that
//! is not a vertex (environment, working directory, user, command, labels,
//! ports, volumes, health check, stop signal, ONBUILD triggers, history),
//! as BuildKit keeps its image config beside the LLB. Field names are the
//! image spec's (`Env`, `WorkingDir`...); no time is recorded, so that a
//! plan is a pure function of its inputs.

use std::collections::BTreeMap;

pub(crate) use polyarch_dockerfile::values::{go_list, go_quoted_list};
use polyarch_oci::Platform;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// BuildKit's default `PATH` for Linux (`system.DefaultPathEnv`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The comment BuildKit puts in history entries of Dockerfile builds.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// An empty JSON object, the value type of `ExposedPorts` and `Volumes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// HEALTHCHECK settings; durations in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct Healthcheck {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: u64,
    #[serde(default, skip_serializing_if = "is_zero_i")]
    pub retries: i64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_i(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// The `config` object of an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub user: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_default")]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_default")]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "null_default")]
    pub args_escaped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub on_build: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub shell: Vec<String>,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One history entry (without a time: the builder sets it when it runs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub empty_layer: bool,
}

/// The image config of one platform's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// The platform fields (`architecture`, `os`, `variant`).
    #[serde(flatten)]
    pub platform: Platform,
    /// `author` (MAINTAINER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The container config.
    #[serde(default)]
    pub config: ContainerConfig,
    /// `history`: the base image's, then one entry per instruction.
    #[serde(default, deserialize_with = "null_default")]
    pub history: Vec<History>,
}

impl ImageConfig {
    /// BuildKit's config for `FROM scratch`: `PATH` set, working dir `/`.
    pub fn scratch(platform: &Platform) -> ImageConfig {
        let mut c = ImageConfig { platform: platform.clone(), ..ImageConfig::default() };
        c.config.working_dir = "/".into();
        c.config.env = vec![format!("PATH={DEFAULT_PATH}")];
        c
    }

    /// Reads a base image's config blob; fields BuildKit does not carry
    /// over (`rootfs`, `created`, `Hostname`...) are dropped.
    pub fn from_base(bytes: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        let v: Value = serde_json::from_slice(bytes)?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).filter(|x| !x.is_empty()).map(String::from);
        let platform = Platform {
            os: s("os").unwrap_or_default(),
            architecture: s("architecture").unwrap_or_default(),
            variant: s("variant"),
            os_version: s("os.version"),
            ..Platform::default()
        };
        let config = match v.get("config") {
            Some(c) if !c.is_null() => serde_json::from_value(c.clone())?,
            _ => ContainerConfig::default(),
        };
        let history = match v.get("history") {
            Some(h) if !h.is_null() => serde_json::from_value(h.clone())?,
            _ => Vec::new(),
        };
        Ok(ImageConfig { platform, author: s("author"), config, history })
    }

    /// Appends a history entry as BuildKit's `commitToHistory` does.
    pub fn commit(&mut self, created_by: String, with_layer: bool) {
        self.history.push(History {
            created: None,
            created_by: Some(created_by),
            author: None,
            comment: Some(HISTORY_COMMENT.into()),
            empty_layer: !with_layer,
        });
    }

    /// Sets or replaces `key` in `Env`.
    pub fn add_env(&mut self, key: &str, value: &str) {
        self.config.add_env(key, value);
    }
}

impl ContainerConfig {
    /// Sets `key=value` in `Env`, replacing an entry of the same key in
    /// place, as BuildKit's `addEnv`.
    pub fn add_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self.env.iter_mut().find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key) {
            Some(e) => *e = entry,
            None => self.env.push(entry),
        }
    }
}

/// Go's `time.Duration.String` for nanoseconds.
pub fn go_duration(ns: u64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", trim_frac(ns, 1_000));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", trim_frac(ns, 1_000_000));
    }
    let total_s = ns / 1_000_000_000;
    let (h, m, s) = (total_s / 3600, total_s % 3600 / 60, total_s % 60);
    let secs = trim_frac(s * 1_000_000_000 + ns % 1_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

fn trim_frac(v: u64, unit: u64) -> String {
    let (whole, frac) = (v / unit, v % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    format!("{whole}.{}", format!("{frac:0width$}").trim_end_matches('0'))
}

/// BuildKit's history text for HEALTHCHECK: Go's `%q` of its
/// `*HealthcheckConfig` (dockerfile2llb's `dispatchHealthcheck`), each
/// field quoted in order: the test as a quoted list, the four durations
/// by their `String`, the retries as a quoted rune, so
/// `HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" "0s" '\x03'}`.
pub fn healthcheck_text(h: &Healthcheck) -> String {
    let d = |ns: u64| polyarch_dockerfile::go_quote(&go_duration(ns));
    format!(
        "HEALTHCHECK &{{{} {} {} {} {} {}}}",
        go_quoted_list(&h.test),
        d(h.interval),
        d(h.timeout),
        d(h.start_period),
        d(h.start_interval),
        polyarch_dockerfile::go_quote_rune(h.retries)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_configs_keep_what_a_build_inherits() {
        let base = br#"{"architecture":"arm","variant":"v7","os":"linux","created":"2020-01-01T00:00:00Z",
            "config":{"Hostname":"x","Env":["PATH=/bin"],"Cmd":["sh"],"Labels":null,"OnBuild":["RUN true"],
            "WorkingDir":"/w","User":"1:2","Shell":["/bin/ash","-c"]},
            "rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"/bin/sh"}]}"#;
        let mut c = ImageConfig::from_base(base).unwrap();
        assert_eq!(c.platform.format(), "linux/arm/v7");
        assert_eq!((c.config.working_dir.as_str(), c.config.user.as_str()), ("/w", "1:2"));
        assert_eq!(c.config.on_build, ["RUN true"]);
        assert_eq!(c.config.shell, ["/bin/ash", "-c"]);
        assert_eq!(c.history.len(), 1);
        c.add_env("PATH", "/usr/bin");
        c.add_env("A", "1");
        assert_eq!(c.config.env, ["PATH=/usr/bin", "A=1"]);
        let out = serde_json::to_string(&c).unwrap();
        assert!(!out.contains("Hostname") && !out.contains("rootfs") && !out.contains("created\""), "{out}");
        assert!(ImageConfig::from_base(b"not json").is_err());
    }

    #[test]
    fn healthchecks_read_as_buildkit_records_them() {
        let h = Healthcheck {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: 90_000_000_000,
            start_period: 1_500_000_000,
            retries: 3,
            ..Healthcheck::default()
        };
        assert_eq!(healthcheck_text(&h), r#"HEALTHCHECK &{["CMD-SHELL" "true"] "1m30s" "0s" "1.5s" "0s" '\x03'}"#);
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    }

    #[test]
    fn scratch_is_buildkits() {
        let c = ImageConfig::scratch(&Platform::new("linux", "s390x", None));
        assert_eq!(c.config.working_dir, "/");
        assert_eq!(c.config.env, [format!("PATH={DEFAULT_PATH}")]);
    }
}
