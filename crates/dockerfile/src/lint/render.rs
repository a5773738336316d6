//! The text `--check` prints: BuildKit's `LintResults.PrintTo`, each
//! warning with its rule, link, message and the Dockerfile excerpt.

use super::Warning;

/// Sorts `warnings` by line (stable) and renders them as
/// `buildx build --check` prints them.
pub fn render(warnings: &[Warning], file: &str, source: &str) -> String {
    let mut sorted: Vec<&Warning> = warnings.iter().collect();
    sorted.sort_by_key(|w| w.start_line);
    let lines: Vec<&str> = source.split('\n').collect();
    let mut out = String::new();
    for w in sorted {
        out.push_str(&format!("\nWARNING: {}", w.rule));
        if !w.url.is_empty() {
            out.push_str(&format!(" - {}", w.url));
        }
        out.push_str(&format!("\n{}\n", w.message));
        out.push_str(&excerpt(&lines, file, w.start_line, w.end_line.max(w.start_line)));
    }
    out
}

/// The warnings after a build as buildx prints them with `--debug`
/// (`printWarnings`): each short line, its detail (the rule's
/// description), `More info:` with the link, and the Dockerfile excerpt.
pub fn render_expanded(warnings: &[Warning], file: &str, source: &str) -> String {
    let lines: Vec<&str> = source.split('\n').collect();
    let mut out = String::new();
    for w in warnings {
        out.push_str(&format!(" - {}\n{}\n", w.short(), w.description));
        if !w.url.is_empty() {
            out.push_str(&format!("More info: {}\n", w.url));
        }
        out.push_str(&excerpt(&lines, file, w.start_line, w.end_line.max(w.start_line)));
        out.push('\n');
    }
    out
}

/// BuildKit's `errdefs.Source.Print`: the lines around a range, the
/// range marked with `>>>`.
fn excerpt(lines: &[&str], file: &str, first: usize, last: usize) -> String {
    if first < 1 || first > lines.len() {
        return String::new();
    }
    let (mut start, mut end) = (first, last.min(lines.len()));
    let pad = if end == start { 4 } else { 2 };
    let mut p = 0;
    while p < pad {
        if start > 1 {
            start -= 1;
            p += 1;
        }
        if end != lines.len() {
            end += 1;
            p += 1;
        }
        p += 1;
    }
    let mut out = format!("{file}:{first}\n--------------------\n");
    for i in start..=end {
        let mark = if (first..=last).contains(&i) { ">>>" } else { "   " };
        out.push_str(&format!(" {i:>3} | {mark} {}\n", lines[i - 1]));
    }
    out.push_str("--------------------\n");
    out
}
