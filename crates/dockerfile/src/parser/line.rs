//! Per-instruction argument parsers (BuildKit `line_parsers.go`) and the
//! command/flag splitter (`split_command.go`).

use crate::compat::{go_quote, is_space, trim_space};

/// Go's `reWhitespace` class `[\t\v\f\r ]`.
pub(crate) fn is_ws(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// `reWhitespace.Split(s, n)` for `n == 2` (`limit2`) or `-1`.
pub(crate) fn split_ws(s: &str, limit2: bool) -> Vec<String> {
    if s.is_empty() {
        return vec![String::new()];
    }
    let mut out = Vec::new();
    let mut beg = 0;
    let mut end = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !is_ws(bytes[i] as char) {
            i += 1;
            continue;
        }
        let m0 = i;
        while i < bytes.len() && is_ws(bytes[i] as char) {
            i += 1;
        }
        if limit2 && out.len() == 1 {
            break;
        }
        end = m0;
        out.push(s[beg..end].to_string());
        beg = i;
    }
    if end != s.len() {
        out.push(s[beg..].to_string());
    }
    out
}

/// Splits a logical line into the instruction word, its `--flags` and the
/// rest of the arguments.
pub(crate) fn split_command(line: &str) -> (String, Vec<String>, String) {
    let parts = split_ws(trim_space(line), true);
    let cmd = parts.first().cloned().unwrap_or_default();
    match parts.get(1) {
        Some(rest) => {
            let (args, flags) = extract_builder_flags(rest);
            (cmd, flags, trim_space(&args).to_string())
        }
        None => (cmd, Vec::new(), String::new()),
    }
}

/// Pulls leading `--flag` words off `line`; byte-wise like BuildKit.
pub(crate) fn extract_builder_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let b = line.as_bytes();
    let rest_at = |pos: usize| String::from_utf8_lossy(&b[pos..]).into_owned();
    let mut words: Vec<String> = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = 0u8;
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= b.len() {
        let ch = if pos < b.len() { b[pos] } else { 0 };
        if phase == Phase::Spaces {
            if pos == b.len() {
                break;
            }
            if is_space(ch as char) {
                pos += 1;
                continue;
            }
            if ch != b'-' || pos + 1 == b.len() || b[pos + 1] != b'-' {
                return (rest_at(pos), words);
            }
            phase = Phase::Word;
        }
        if pos == b.len() {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if is_space(ch as char) {
                phase = Phase::Spaces;
                if word == "--" {
                    return (rest_at(pos), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut c = ch;
            if c == b'\\' {
                if pos + 1 == b.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                c = b[pos];
            }
            word.push(c as char);
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut c = ch;
        if c == b'\\' {
            if pos + 1 == b.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            c = b[pos];
        }
        word.push(c as char);
        pos += 1;
    }
    (String::new(), words)
}

/// Splits on whitespace keeping quotes and escapes (BuildKit `parseWords`).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut sb = String::new();
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let mut ch = if at_end { '\0' } else { chars[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if is_space(ch) {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !sb.is_empty() {
                words.push(sb.clone());
            }
            break;
        }
        if phase == Phase::Word {
            if is_space(ch) {
                phase = Phase::Spaces;
                if blank_ok || !sb.is_empty() {
                    words.push(std::mem::take(&mut sb));
                }
                sb.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                sb.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            sb.push(ch);
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            sb.push(ch);
            ch = chars[pos];
        }
        sb.push(ch);
        pos += 1;
    }
    words
}

/// ENV and LABEL: `[key, value, sep]` triples; `sep` is `=` or empty for the
/// legacy `KEY value` form.
pub(crate) fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else { return Ok(Vec::new()) };
    if !first.contains('=') {
        let parts = split_ws(rest, true);
        if parts.len() < 2 {
            return Err(format!("{key} must have two arguments"));
        }
        return Ok(vec![parts[0].clone(), parts[1].clone(), String::new()]);
    }
    let mut out = Vec::new();
    for w in &words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!("Syntax error - can't find = in {}. Must be of the form: name=value", go_quote(w)));
        };
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(out)
}

/// FROM, EXPOSE and the non-JSON fallback of COPY/ADD/VOLUME.
pub(crate) fn parse_strings_whitespace_delimited(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    split_ws(rest, false)
}

/// Why a JSON array was not accepted.
pub(crate) enum JsonError {
    /// Not JSON or not an array: fall back to shell form.
    NotJson,
    /// A JSON array with a non-string element: an error.
    NotStringArray,
}

pub(crate) const NOT_STRING_ARRAY: &str = "when using JSON array syntax, arrays must be comprised of strings only";

pub(crate) fn parse_json(rest: &str) -> Result<Vec<String>, JsonError> {
    let rest = rest.trim_start_matches(is_space);
    if !rest.starts_with('[') {
        return Err(JsonError::NotJson);
    }
    let values: Vec<serde_json::Value> = serde_json::from_str(rest).map_err(|_| JsonError::NotJson)?;
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(JsonError::NotStringArray),
        })
        .collect()
}

/// RUN, CMD, ENTRYPOINT, SHELL: JSON array or the whole rest as one string.
pub(crate) fn parse_maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json(rest) {
        Ok(v) => Ok((v, true)),
        Err(JsonError::NotStringArray) => Err(NOT_STRING_ARRAY.to_string()),
        Err(JsonError::NotJson) => Ok((vec![rest.to_string()], false)),
    }
}

/// COPY, ADD, VOLUME: JSON array or whitespace-separated words.
pub(crate) fn parse_maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), String> {
    match parse_json(rest) {
        Ok(v) => Ok((v, true)),
        Err(JsonError::NotStringArray) => Err(NOT_STRING_ARRAY.to_string()),
        Err(JsonError::NotJson) => Ok((parse_strings_whitespace_delimited(rest), false)),
    }
}

/// HEALTHCHECK: the type word, then like `parse_maybe_json`.
pub(crate) fn parse_health_config(rest: &str) -> Result<(Vec<String>, bool), String> {
    let b = rest.as_bytes();
    let sep = b.iter().position(|&c| is_space(c as char)).unwrap_or(b.len());
    let next = b[sep..].iter().position(|&c| !is_space(c as char)).map_or(b.len(), |p| sep + p);
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let typ = String::from_utf8_lossy(&b[..sep]).into_owned();
    let (cmd, json) = parse_maybe_json(&String::from_utf8_lossy(&b[next..]))?;
    let mut out = vec![typ];
    out.extend(cmd);
    Ok((out, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_command_flags() {
        let (c, f, a) = split_command("  COPY --from=a --chown=\"x y\" src dst ");
        assert_eq!(c, "COPY");
        assert_eq!(f, vec!["--from=a", "--chown=x y"]);
        assert_eq!(a, "src dst");
        let (_, f, a) = split_command("RUN -- --notaflag");
        assert!(f.is_empty());
        assert_eq!(a, "--notaflag");
        let (c, f, a) = split_command("FROM");
        assert_eq!((c.as_str(), f.len(), a.as_str()), ("FROM", 0, ""));
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(parse_words("a=\"b c\" d='e f' g\\ h", '\\'), vec!["a=\"b c\"", "d='e f'", "g\\ h"]);
        assert_eq!(parse_words("a`\"b c", '`'), vec!["a`\"b", "c"]);
        assert_eq!(parse_words("\"\"", '\\'), vec!["\"\""]);
    }

    #[test]
    fn name_val_forms() {
        assert_eq!(parse_name_val("foo bar baz", "ENV", '\\').unwrap(), vec!["foo", "bar baz", ""]);
        assert_eq!(parse_name_val("a=1 b=\"2 3\"", "ENV", '\\').unwrap(), vec!["a", "1", "=", "b", "\"2 3\"", "="]);
        assert_eq!(parse_name_val("foo", "ENV", '\\').unwrap_err(), "ENV must have two arguments");
        assert_eq!(
            parse_name_val("a=1 b", "LABEL", '\\').unwrap_err(),
            "Syntax error - can't find = in \"b\". Must be of the form: name=value"
        );
    }

    #[test]
    fn json_forms() {
        assert_eq!(parse_maybe_json("[\"a\", \"b\"]").unwrap(), (vec!["a".into(), "b".into()], true));
        assert_eq!(parse_maybe_json("[\"a\" b]").unwrap(), (vec!["[\"a\" b]".into()], false));
        assert_eq!(parse_maybe_json("[1]").unwrap_err(), NOT_STRING_ARRAY);
        assert_eq!(parse_maybe_json_to_list("a  b").unwrap(), (vec!["a".into(), "b".into()], false));
        assert_eq!(parse_health_config("CMD [\"x\"]").unwrap(), (vec!["CMD".into(), "x".into()], true));
        assert_eq!(parse_health_config("NONE").unwrap(), (vec!["NONE".into()], false));
    }
}
