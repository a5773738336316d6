//! `--progress rawjson`: BuildKit's `client.SolveStatus` stream as
//! `docker buildx build --progress rawjson` prints it, one JSON object per
//! line, with the field names and shapes of moby/buildkit `client/graph.go`
//! (`vertexes` with `digest`, `inputs`, `name`, `started`, `completed`,
//! `cached`, `error`; `statuses` with `id`, `vertex`, `total`, `current`,
//! `timestamp`, `started`, `completed`; `logs` with `vertex`, `stream`,
//! base64 `data` and `timestamp`; `warnings`), empty fields left out as
//! Go's `omitempty` does (`current`, `timestamp`, a status's `id` and a
//! log's `data` have none), times in RFC 3339 with nanoseconds, and `<`,
//! `>`, `&` escaped as Go's encoder escapes them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;
use polyarch_builder::config::rfc3339_nano;
use polyarch_builder::{Event, Status, Stream, Vertex};
use serde::Serialize;

/// A `SolveStatus`; lists that are empty are not written.
#[derive(Debug, Default, Serialize)]
struct SolveStatus {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    vertexes: Vec<VertexJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    statuses: Vec<StatusJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logs: Vec<LogJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<WarningJson>,
}

#[derive(Debug, Serialize)]
struct VertexJson {
    digest: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    inputs: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cached: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

/// A `VertexStatus`: `id` and `current` are always written, as Go does.
#[derive(Debug, Serialize)]
struct StatusJson {
    id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    vertex: String,
    #[serde(skip_serializing_if = "is_zero_u64")]
    total: u64,
    current: u64,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<String>,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Serialize)]
struct LogJson {
    vertex: String,
    /// 1 stdout, 2 stderr.
    stream: u8,
    data: String,
    timestamp: String,
}

#[derive(Debug, Serialize)]
struct WarningJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    vertex: String,
    #[serde(skip_serializing_if = "is_zero")]
    level: u8,
    #[serde(skip_serializing_if = "String::is_empty")]
    short: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    detail: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    url: String,
    #[serde(rename = "sourceInfo", skip_serializing_if = "Option::is_none")]
    source_info: Option<SourceInfoJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    range: Vec<RangeJson>,
}

/// BuildKit's `pb.SourceInfo` of a warning: the file, its bytes, its language.
#[derive(Debug, Serialize)]
struct SourceInfoJson {
    filename: String,
    data: String,
    language: String,
}

/// A `pb.Range` of lines (`character` is 0 and left out, as omitempty does).
#[derive(Debug, Serialize)]
struct RangeJson {
    start: PositionJson,
    end: PositionJson,
}

#[derive(Debug, Serialize)]
struct PositionJson {
    line: usize,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// A build check warning for the stream (`warnings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The vertex it belongs to (the build definition's).
    pub vertex: Vertex,
    /// BuildKit's level (1 for a check warning).
    pub level: u8,
    /// The one-line message.
    pub short: String,
    /// Lines of detail.
    pub detail: Vec<String>,
    /// A link to the rule's documentation.
    pub url: String,
    /// The Dockerfile's name and text, with the warning's first and last
    /// line (from 1), when it has a place.
    pub source: Option<(String, String, usize, usize)>,
}

/// When a step started and whether it came from the cache.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    started: Option<SystemTime>,
    cached: bool,
}

/// Turns events into `SolveStatus` lines; it remembers each step's start
/// and cache state, as BuildKit's vertex updates carry them every time.
#[derive(Debug, Default)]
pub struct RawJson {
    seen: Mutex<HashMap<usize, Seen>>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// JSON as Go's `json.Encoder` writes it: HTML characters and the line and
/// paragraph separators escaped.
fn go_json(status: &SolveStatus) -> String {
    let text = serde_json::to_string(status).unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

impl RawJson {
    /// The line for `e`, if it makes one (a cached step's line comes with
    /// its `Done`, carrying `cached`).
    pub fn line(&self, e: &Event) -> Option<String> {
        let Ok(mut seen) = self.seen.lock() else { return None };
        let v = e.vertex();
        let s = seen.entry(v.id).or_default();
        let at = Some(rfc3339_nano(e.at()));
        let started = || s.started.map(rfc3339_nano);
        let status = match e {
            Event::Started { at: t, .. } => {
                s.started = Some(*t);
                vertex(v, at, None, false, "")
            }
            Event::Cached { at: t, .. } => {
                s.cached = true;
                s.started.get_or_insert(*t);
                return None;
            }
            Event::Done { .. } => vertex(v, started().or(at.clone()), at, s.cached, ""),
            Event::Failed { message, .. } => vertex(v, started().or(at.clone()), at, false, message),
            Event::Log { stream, line, at: t, .. } => {
                let stream = match stream {
                    Stream::Stdout => 1,
                    Stream::Stderr => 2,
                };
                let data = b64(format!("{line}\n").as_bytes());
                let log = LogJson { vertex: v.digest().to_string(), stream, data, timestamp: rfc3339_nano(*t) };
                SolveStatus { logs: vec![log], ..SolveStatus::default() }
            }
            Event::Status { at, status, .. } => return Some(status_line(v, *at, status)),
            _ => return None,
        };
        Some(go_json(&status))
    }

    /// The line of build check warnings.
    pub fn warnings(&self, warnings: &[Warning]) -> Option<String> {
        if warnings.is_empty() {
            return None;
        }
        let warnings = warnings
            .iter()
            .map(|w| WarningJson {
                vertex: w.vertex.digest().to_string(),
                level: w.level,
                short: b64(w.short.as_bytes()),
                detail: w.detail.iter().map(|d| b64(d.as_bytes())).collect(),
                url: w.url.clone(),
                source_info: w.source.as_ref().map(|(file, text, ..)| SourceInfoJson {
                    filename: file.clone(),
                    data: b64(text.as_bytes()),
                    language: "Dockerfile".into(),
                }),
                range: w
                    .source
                    .iter()
                    .filter(|(.., start, _)| *start > 0)
                    .map(|(.., start, end)| RangeJson {
                        start: PositionJson { line: *start },
                        end: PositionJson { line: (*end).max(*start) },
                    })
                    .collect(),
            })
            .collect();
        Some(go_json(&SolveStatus { warnings, ..SolveStatus::default() }))
    }
}

/// The line of a status of step `v` at `at`.
pub fn status_line(v: &Vertex, at: SystemTime, status: &Status) -> String {
    let json = StatusJson {
        id: status.id.clone(),
        vertex: v.digest().to_string(),
        total: status.total.unwrap_or(0),
        current: status.current,
        timestamp: rfc3339_nano(at),
        started: status.started.map(rfc3339_nano),
        completed: status.completed.map(rfc3339_nano),
    };
    go_json(&SolveStatus { statuses: vec![json], ..SolveStatus::default() })
}

fn vertex(v: &Vertex, started: Option<String>, completed: Option<String>, cached: bool, error: &str) -> SolveStatus {
    let json = VertexJson {
        digest: v.digest().to_string(),
        inputs: v.inputs.iter().map(|d| d.to_string()).collect(),
        name: v.name(),
        started,
        completed,
        cached,
        error: error.to_string(),
    };
    SolveStatus { vertexes: vec![json], ..SolveStatus::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyarch_oci::Platform;
    use std::time::Duration;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_nanos(ms * 1_000_000 + 7)
    }

    fn run_step() -> Vertex {
        let mut v = Vertex::instruction("stage-0", 2, 2, "RUN echo <hi> & bye")
            .with_platform(Platform::parse("linux/arm64").unwrap());
        v.id = 3;
        v.show_platform = true;
        v
    }

    #[test]
    fn vertex_updates_and_logs_as_buildkit_writes_them() {
        let r = RawJson::default();
        let v = run_step();
        let d = v.digest().to_string();
        let lines: Vec<String> = [
            Event::Started { vertex: v.clone(), at: at(0) },
            Event::Log { vertex: v.clone(), at: at(5), stream: Stream::Stderr, line: "hi".into() },
            Event::Done { vertex: v.clone(), at: at(1500), elapsed: Duration::from_millis(1500) },
        ]
        .iter()
        .filter_map(|e| r.line(e))
        .collect();
        let name = r#""name":"[linux/arm64 stage-0 2/2] RUN echo \u003chi\u003e \u0026 bye""#;
        assert_eq!(
            lines,
            [
                format!(r#"{{"vertexes":[{{"digest":"{d}",{name},"started":"2023-11-14T22:13:20.000000007Z"}}]}}"#),
                format!(
                    r#"{{"logs":[{{"vertex":"{d}","stream":2,"data":"aGkK","timestamp":"2023-11-14T22:13:20.005000007Z"}}]}}"#
                ),
                format!(
                    r#"{{"vertexes":[{{"digest":"{d}",{name},"started":"2023-11-14T22:13:20.000000007Z","completed":"2023-11-14T22:13:21.500000007Z"}}]}}"#
                ),
            ]
        );
    }

    #[test]
    fn cached_and_failed_steps() {
        let r = RawJson::default();
        let mut v = Vertex::instruction("stage-0", 2, 2, "COPY a /a");
        v.id = 4;
        v.inputs = vec![Vertex::instruction("stage-0", 1, 2, "FROM scratch").digest()];
        let (d, input) = (v.digest().to_string(), v.inputs[0].to_string());
        assert!(r.line(&Event::Started { vertex: v.clone(), at: at(0) }).is_some());
        assert_eq!(r.line(&Event::Cached { vertex: v.clone(), at: at(1) }), None);
        let done = r.line(&Event::Done { vertex: v.clone(), at: at(2), elapsed: Duration::ZERO }).unwrap();
        assert_eq!(
            done,
            format!(
                r#"{{"vertexes":[{{"digest":"{d}","inputs":["{input}"],"name":"[stage-0 2/2] COPY a /a","started":"2023-11-14T22:13:20.000000007Z","completed":"2023-11-14T22:13:20.002000007Z","cached":true}}]}}"#
            )
        );
        let mut f = Vertex::internal("load metadata for docker.io/library/nope:latest");
        f.id = 5;
        let failed = r.line(&Event::Failed { vertex: f.clone(), at: at(3), message: "not found".into() }).unwrap();
        let fd = f.digest();
        assert_eq!(
            failed,
            format!(
                r#"{{"vertexes":[{{"digest":"{fd}","name":"[internal] load metadata for docker.io/library/nope:latest","started":"2023-11-14T22:13:20.003000007Z","completed":"2023-11-14T22:13:20.003000007Z","error":"not found"}}]}}"#
            )
        );
    }

    #[test]
    fn statuses_as_buildkit_writes_them() {
        let r = RawJson::default();
        let v = run_step();
        let d = v.digest().to_string();
        let blob = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let begin = Status::begin(blob, Some(2048), at(1));
        let line = r.line(&Event::Status { vertex: v.clone(), at: at(1), status: begin.clone() }).unwrap();
        assert_eq!(
            line,
            format!(
                r#"{{"statuses":[{{"id":"{blob}","vertex":"{d}","total":2048,"current":0,"timestamp":"2023-11-14T22:13:20.001000007Z","started":"2023-11-14T22:13:20.001000007Z"}}]}}"#
            )
        );
        let end = Status::begin(format!("extracting {blob}"), None, at(2)).end(at(3));
        assert_eq!(
            status_line(&v, at(3), &end),
            format!(
                r#"{{"statuses":[{{"id":"extracting {blob}","vertex":"{d}","current":0,"timestamp":"2023-11-14T22:13:20.003000007Z","started":"2023-11-14T22:13:20.002000007Z","completed":"2023-11-14T22:13:20.003000007Z"}}]}}"#
            )
        );
        let done: serde_json::Value = serde_json::from_str(&status_line(&v, at(4), &begin.end(at(4)))).unwrap();
        assert_eq!(
            (done["statuses"][0]["current"].as_u64(), done["statuses"][0]["total"].as_u64()),
            (Some(2048), Some(2048))
        );
    }

    #[test]
    fn warnings_are_base64_as_go_writes_bytes() {
        let r = RawJson::default();
        let vertex = Vertex::internal("load build definition from Dockerfile");
        let w = Warning {
            vertex: vertex.clone(),
            level: 1,
            short: "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)".into(),
            detail: vec!["The 'as' keyword should match the case of the 'from' keyword".into()],
            url: "https://docs.docker.com/go/dockerfile/rule/from-as-casing/".into(),
            source: Some(("Dockerfile".into(), "FROM busybox as b\n".into(), 1, 1)),
        };
        let line = r.warnings(&[w]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let w = &v["warnings"][0];
        assert_eq!(w["vertex"], vertex.digest().to_string());
        assert_eq!(w["level"], 1);
        let short = base64::engine::general_purpose::STANDARD.decode(w["short"].as_str().unwrap()).unwrap();
        assert!(String::from_utf8(short).unwrap().starts_with("FromAsCasing:"));
        assert_eq!(w["url"], "https://docs.docker.com/go/dockerfile/rule/from-as-casing/");
        let info = &w["sourceInfo"];
        assert_eq!((info["filename"].as_str(), info["language"].as_str()), (Some("Dockerfile"), Some("Dockerfile")));
        let data = base64::engine::general_purpose::STANDARD.decode(info["data"].as_str().unwrap()).unwrap();
        assert_eq!(data, b"FROM busybox as b\n");
        assert_eq!(w["range"], serde_json::json!([{"start": {"line": 1}, "end": {"line": 1}}]));
        assert_eq!(r.warnings(&[]), None);
    }
}
