//! Parser directives (`# syntax=`, `# escape=`, `# check=`), recognised only
//! in the leading comment lines, as in BuildKit's `parser/directives.go`.

use serde::Serialize;

use crate::compat::is_space;

/// One parser directive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// Lower-cased name: `syntax`, `escape` or `check`.
    pub name: String,
    /// The value, trimmed.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

const VALID: [&str; 3] = ["syntax", "escape", "check"];

/// Tracks directive state while lines are read.
#[derive(Debug, Default)]
pub(crate) struct DirectiveParser {
    line: usize,
    seen: Vec<String>,
    done: bool,
}

/// Go's `\s` class.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// Matches `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` by hand.
pub(crate) fn match_directive(line: &str) -> Option<(String, String)> {
    let name_len = line
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(line.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let rest = line[name_len..].trim_start_matches(is_re_space);
    let rest = rest.strip_prefix('=')?;
    if rest.contains('\n') {
        return None;
    }
    let trimmed = rest.trim_start_matches(is_re_space);
    let value = if trimmed.is_empty() {
        // `\s*` gives back one character so that `.+?` can match.
        rest.chars().last()?.to_string()
    } else {
        trimmed.trim_end_matches(is_re_space).to_string()
    };
    Some((line[..name_len].to_string(), value))
}

impl DirectiveParser {
    /// Feeds one line (newline already removed); returns a directive if the
    /// line is one, or an error for a repeated directive.
    pub(crate) fn parse_line(&mut self, line: &str) -> Result<Option<Directive>, String> {
        self.line += 1;
        if self.done {
            return Ok(None);
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(None);
        };
        let rest = rest.trim_start_matches(is_space);
        let Some((name, value)) = match_directive(rest) else {
            self.done = true;
            return Ok(None);
        };
        let k = name.to_lowercase();
        if !VALID.contains(&k.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if self.seen.contains(&k) {
            return Err(format!("only one {k} parser directive can be used"));
        }
        self.seen.push(k.clone());
        Ok(Some(Directive { name: k, value, line: self.line }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_the_regexp() {
        assert_eq!(match_directive("escape=`"), Some(("escape".into(), "`".into())));
        assert_eq!(
            match_directive("Syntax = docker/dockerfile:1  "),
            Some(("Syntax".into(), "docker/dockerfile:1".into()))
        );
        assert_eq!(match_directive("escape=   "), Some(("escape".into(), " ".into())));
        assert_eq!(match_directive("escape="), None);
        assert_eq!(match_directive("1abc=x"), None);
        assert_eq!(match_directive("a-b=x"), None);
        assert_eq!(match_directive("check=skip=all"), Some(("check".into(), "skip=all".into())));
    }

    #[test]
    fn stops_after_first_non_directive() {
        let mut p = DirectiveParser::default();
        assert!(p.parse_line("# syntax=a").unwrap().is_some());
        assert!(p.parse_line("# unknown=b").unwrap().is_none());
        assert!(p.parse_line("# escape=`").unwrap().is_none());
        let mut p = DirectiveParser::default();
        p.parse_line("# escape=`").unwrap();
        assert_eq!(p.parse_line("# ESCAPE=\\").unwrap_err(), "only one escape parser directive can be used");
    }
}
