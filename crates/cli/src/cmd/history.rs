//! `polyarch history` (and `image history`): the history of a stored
//! image, newest first, with Docker's flags and layout (`docker history`):
//! the image ID on the top row and `<missing>` below it, each entry's
//! age, command (cut at 45 characters unless `--no-trunc`), layer size and
//! comment. For an index, `--platform` picks the image (default: the
//! host's, else the first one present), as `docker history --platform`.

use anyhow::{bail, Context as _, Result};
use clap::Args;
use polyarch_builder::config::rfc3339;
use polyarch_oci::Platform;
use polyarch_transfer::local;
use serde_json::{json, Value};

use super::images::{ago, emit, human_size, lookup, open_store, parse_rfc3339, short_id_of, table};
use super::GlobalArgs;
use crate::template::{self, Format};

/// Docker's column headers for the fields of `polyarch history`.
const HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

/// How wide `CREATED BY` is when cut, as in Docker's history table.
const CREATED_BY_WIDTH: usize = 45;

#[derive(Args)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format.
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    human: bool,
    /// Don't truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// `table`, `json` or a Go template (`{{.CreatedBy}}`, `table {{.ID}}\t{{.Size}}`),
    /// as `docker history --format`.
    #[arg(long, default_value = "table", value_parser = template::format_arg)]
    format: Format,
    /// For an index, the platform whose image to show (default: the host's,
    /// else the first one present).
    #[arg(long)]
    platform: Option<String>,
    #[arg(value_name = "IMAGE")]
    image: String,
}

/// One history entry, as Docker's daemon answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: String,
    created: Option<i64>,
    created_by: String,
    size: u64,
    comment: String,
}

/// The entries of a config's `history`, newest first, each non-empty one
/// with the size of its layer (in order); the top one gets `top_id`.
/// A config whose history names more layers than the manifest has is an
/// error, as Docker's "unable to find layer size".
fn entries(config: &Value, layer_sizes: &[u64], top_id: &str) -> Result<Vec<Entry>> {
    let history = config.get("history").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut sizes = layer_sizes.iter();
    let mut out = Vec::with_capacity(history.len());
    for h in &history {
        let text = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let size = if h.get("empty_layer").and_then(Value::as_bool).unwrap_or(false) {
            0
        } else {
            match sizes.next() {
                Some(s) => *s,
                None => bail!("the history names more layers than the image has ({})", layer_sizes.len()),
            }
        };
        out.push(Entry {
            id: "<missing>".to_string(),
            created: h.get("created").and_then(Value::as_str).and_then(parse_rfc3339),
            created_by: text("created_by"),
            size,
            comment: text("comment"),
        });
    }
    out.reverse();
    if let Some(first) = out.first_mut() {
        first.id = top_id.to_string();
    }
    Ok(out)
}

/// Docker's `formatter.Ellipsis` for ASCII and other one-column text: the
/// first `width - 1` characters and `…` when longer.
fn ellipsis(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The fields Docker's history formatter gives templates and JSON.
fn row(e: &Entry, human: bool, trunc: bool) -> Value {
    let id = if trunc { short_id_of(&e.id) } else { e.id.clone() };
    let created_at = e.created.map(rfc3339).unwrap_or_default();
    let since = match (human, e.created) {
        (false, _) => rfc3339(e.created.unwrap_or(0)),
        (true, Some(t)) if t > 0 => ago(t),
        (true, _) => "N/A".to_string(),
    };
    let created_by = e.created_by.replace('\t', " ");
    let created_by = if trunc { ellipsis(&created_by, CREATED_BY_WIDTH) } else { created_by };
    let size = if human { human_size(e.size) } else { e.size.to_string() };
    json!({
        "Comment": e.comment,
        "CreatedAt": created_at,
        "CreatedBy": created_by,
        "CreatedSince": since,
        "ID": id,
        "Size": size,
    })
}

pub fn history(global: &GlobalArgs, a: HistoryArgs) -> Result<u8> {
    let platform = a.platform.as_deref().map(|p| Platform::parse(p).map_err(anyhow::Error::from)).transpose()?;
    let store = open_store(global)?;
    let (name, desc) = lookup(&store, &a.image)?;
    let img = local::image_for(&store, &name, &desc, platform.as_ref()).with_context(|| format!("reading {name}"))?;
    let Some(manifest) = img.manifest.as_image() else { bail!("{name}: not an image manifest") };
    let config: Value =
        serde_json::from_slice(&img.config_bytes).with_context(|| format!("reading {name}'s config"))?;
    let sizes: Vec<u64> = manifest.layers.iter().map(|l| l.size).collect();
    let top = local::image_id(&store, &desc).unwrap_or_else(|_| desc.digest.clone()).to_string();
    let entries = entries(&config, &sizes, &top).with_context(|| format!("reading {name}'s history"))?;
    let trunc = !a.no_trunc;
    let rows: Vec<Value> = entries.iter().map(|e| row(e, a.human, trunc)).collect();
    let field = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    if a.quiet {
        return emit(&rows.iter().map(|r| format!("{}\n", field(r, "ID"))).collect::<String>()).map(|()| 0);
    }
    match a.format {
        Format::Json => emit(&rows.iter().map(|r| format!("{r}\n")).collect::<String>())?,
        Format::Template { template, table } => {
            emit(&template::render_rows(&template.with_type("HistoryResponseItem"), table, &rows, HEADERS)?)?
        }
        Format::Default => {
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"].map(|k| field(r, k)).to_vec())
                .collect();
            emit(&table(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], &body))?
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Value {
        json!({"history": [
            {"created": "2025-01-01T00:00:00Z", "created_by": "busybox-static (amd64)"},
            {"created": "2026-01-02T03:04:05Z", "created_by": "ENV A=1", "comment": "buildkit.dockerfile.v0", "empty_layer": true},
            {"created": "2026-01-02T03:04:06Z", "created_by": "RUN /bin/sh -c echo a very long command that goes on and on # buildkit"},
        ]})
    }

    #[test]
    fn entries_are_newest_first_with_their_layers_sizes() {
        let e = entries(&config(), &[1_040_000, 96], "sha256:abcdef0123456789").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].id, "sha256:abcdef0123456789");
        assert_eq!((e[0].size, e[1].size, e[2].size), (96, 0, 1_040_000));
        assert_eq!(e[1].id, "<missing>");
        assert_eq!(e[1].comment, "buildkit.dockerfile.v0");
        assert_eq!(e[2].created, parse_rfc3339("2025-01-01T00:00:00Z"));
    }

    #[test]
    fn a_history_naming_more_layers_than_the_image_has_is_an_error() {
        let err = entries(&config(), &[5], "x").unwrap_err().to_string();
        assert!(err.contains("more layers than the image has (1)"), "{err}");
    }

    #[test]
    fn rows_follow_dockers_formatter() {
        let e = entries(&config(), &[1_040_000, 96], "sha256:abcdef0123456789").unwrap();
        let r = row(&e[0], true, true);
        assert_eq!(r["ID"], "abcdef012345");
        assert_eq!(r["Size"], "96B");
        let by = r["CreatedBy"].as_str().unwrap();
        assert_eq!(by.chars().count(), 45);
        assert!(by.ends_with('…') && by.starts_with("RUN /bin/sh -c echo a very long"), "{by}");
        let full = row(&e[0], false, false);
        assert_eq!(full["ID"], "sha256:abcdef0123456789");
        assert_eq!(full["Size"], "96");
        assert_eq!(full["CreatedSince"], "2026-01-02T03:04:06Z");
        assert_eq!(full["CreatedAt"], "2026-01-02T03:04:06Z");
        assert!(full["CreatedBy"].as_str().unwrap().ends_with("# buildkit"));
        assert_eq!(row(&e[2], true, true)["Size"], "1.04MB");
        assert_eq!(row(&e[1], true, true)["ID"], "<missing>");
    }

    #[test]
    fn ellipsis_cuts_as_docker_does() {
        assert_eq!(ellipsis("abc", 3), "abc");
        assert_eq!(ellipsis("abcd", 3), "ab…");
        assert_eq!(ellipsis("", 3), "");
    }
}
