//! Shell wildcard patterns for `${v#p}`, `${v%p}` and `${v/p/r}`: `?` is one
//! character, `*` the shortest or longest run, `\` escapes `*`, `?`, `\`.

use crate::re::Regex;

/// Converts a shell pattern into the regular expression BuildKit builds.
pub(crate) fn to_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let tok = chars[i];
        i += 1;
        match tok {
            '*' => {
                out.push_str(star);
                continue;
            }
            '?' => {
                out.push('.');
                continue;
            }
            '\\' => {
                if matches!(chars.get(i), Some('}' | '/')) {
                    continue;
                }
                out.push('\\');
                let next = chars.get(i).copied();
                i += 1;
                match next {
                    Some(c @ ('*' | '?' | '\\')) => out.push(c),
                    other => return Err(format!("invalid escape '\\{}'", other.unwrap_or('\u{fffd}'))),
                }
                continue;
            }
            '[' | ']' | '{' | '}' | '.' | '+' | '(' | ')' | '|' | '^' | '$' => out.push('\\'),
            _ => {}
        }
        out.push(tok);
    }
    Ok(out)
}

fn compile(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, String> {
    to_regex(pattern, greedy, anchored)
        .and_then(|s| Regex::new(&s))
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))
}

/// Reverses a pattern, keeping escapes in front of what they escape.
pub(crate) fn reverse_pattern(pattern: &str) -> String {
    let p: Vec<char> = pattern.chars().collect();
    if p.is_empty() {
        return String::new();
    }
    let last = p.len() - 1;
    let mut out = vec!['\0'; p.len()];
    let mut i = 0;
    while i <= last {
        let tok = p[i];
        let o = last - i;
        if tok == '\\' && i != last {
            out[o - 1] = tok;
            out[o] = p[i + 1];
            i += 2;
        } else {
            out[o] = tok;
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// `${value#pattern}` / `${value##pattern}`.
pub(crate) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let re = compile(pattern, greedy, true)?;
    let chars: Vec<char> = value.chars().collect();
    Ok(match re.find_chars(&chars, 0) {
        Some((_, end)) => chars[end..].iter().collect(),
        None => value.to_string(),
    })
}

/// `${value%pattern}` / `${value%%pattern}`, done as a prefix trim on the
/// reversed value and pattern.
pub(crate) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let rp = reverse_pattern(pattern);
    let rv: String = value.chars().rev().collect();
    let s = trim_prefix(&rp, &rv, greedy)?;
    Ok(s.chars().rev().collect())
}

/// `${value/pattern/replacement}` and, with `all`, `${value//pattern/replacement}`.
pub(crate) fn replace(pattern: &str, value: &str, replacement: &str, all: bool) -> Result<String, String> {
    let re = compile(pattern, true, false)?;
    let chars: Vec<char> = value.chars().collect();
    if !all {
        return Ok(match re.find_chars(&chars, 0) {
            Some((s, e)) => {
                let mut out: String = chars[..s].iter().collect();
                out.push_str(replacement);
                out.extend(&chars[e..]);
                out
            }
            None => value.to_string(),
        });
    }
    let expanded = expand_template(replacement);
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= chars.len() {
        let Some((s, e)) = re.find_chars(&chars, search) else { break };
        out.extend(&chars[last_end..s]);
        if e > last_end || s == 0 {
            out.push_str(&expanded);
        }
        last_end = e;
        search = if search + 1 > e { search + 1 } else { e };
    }
    out.extend(&chars[last_end.min(chars.len())..]);
    Ok(out)
}

/// Go's `Regexp.Expand` for an expression without capture groups: `$$` is a
/// dollar, `$name` and `${name}` are empty.
fn expand_template(t: &str) -> String {
    let chars: Vec<char> = t.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => match chars[i + 2..].iter().position(|&c| c == '}') {
                Some(n) if n > 0 && chars[i + 2..i + 2 + n].iter().all(|c| c.is_alphanumeric() || *c == '_') => {
                    i += 3 + n;
                }
                _ => {
                    out.push('$');
                    i += 1;
                }
            },
            Some(c) if c.is_alphanumeric() || *c == '_' => {
                i += 1;
                while chars.get(i).is_some_and(|c| c.is_alphanumeric() || *c == '_') {
                    i += 1;
                }
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convert() {
        // lex_test.go TestConvertShellPatternToRegex
        for (p, want) in [
            ("*", "^.*"),
            ("?", "^."),
            ("\\*", "^\\*"),
            ("(()[]{\\}^$.\\*\\?|\\\\", "^\\(\\(\\)\\[\\]\\{\\}\\^\\$\\.\\*\\?\\|\\\\"),
        ] {
            assert_eq!(to_regex(p, true, true).as_deref(), Ok(want), "{p}");
        }
        for p in ["\\", "\\x", "\\\\\\"] {
            assert!(to_regex(p, true, true).is_err(), "{p}");
        }
    }

    #[test]
    fn reverse() {
        // lex_test.go TestReverseString / TestReversePattern
        assert_eq!("54321".chars().rev().collect::<String>(), "12345");
        for (p, want) in [
            ("a\\*c", "c\\*a"),
            ("\\\\\\ab", "b\\a\\\\"),
            ("ab\\", "\\ba"),
            ("👽\\🚀🖖", "🖖\\🚀👽"),
            ("\\\\b", "b\\\\"),
        ] {
            assert_eq!(reverse_pattern(p), want, "{p}");
        }
    }
}
