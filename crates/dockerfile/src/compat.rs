//! Small helpers that reproduce Go standard-library behaviour the Dockerfile
//! semantics depend on: `unicode.IsSpace`, `strings.TrimSpace`,
//! `strconv.Quote` (`%q`), `path.Clean` and `filepath.Dir`.

/// Go's `unicode.IsSpace` (the Unicode `White_Space` property).
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// Go's `strings.TrimSpace`.
pub(crate) fn trim_space(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Go's `unicode.IsDigit` (decimal digits).
pub(crate) fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

/// Go's `unicode.IsLetter`.
pub(crate) fn is_letter(c: char) -> bool {
    c.is_alphabetic()
}

/// Go's `strconv.Quote`, as printed by `%q`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_escaped(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `%q` of an integer: `strconv.QuoteRune` of it as a rune (`'\x03'`
/// for 3, `'A'` for 65), U+FFFD for a value that is no rune.
pub fn go_quote_rune(v: i64) -> String {
    let c = u32::try_from(v).ok().and_then(char::from_u32).unwrap_or('\u{fffd}');
    let mut out = String::from("'");
    push_escaped(&mut out, c, '\'');
    out.push('\'');
    out
}

/// `c` as `strconv.Quote` and `strconv.QuoteRune` write it between `quote`s.
fn push_escaped(out: &mut String, c: char, quote: char) {
    match c {
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        '\\' => out.push_str("\\\\"),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if c.is_control() || c == '\u{feff}' => {
            if (c as u32) <= 0xffff {
                out.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                out.push_str(&format!("\\U{:08x}", c as u32));
            }
        }
        c => out.push(c),
    }
}

/// Go's `path.Clean` (equal to `filepath.Clean` on Unix).
pub fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for comp in p.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// Go's `filepath.Dir` on Unix.
pub fn dir(p: &str) -> String {
    match p.rfind('/') {
        Some(i) => clean(&p[..=i]),
        None => ".".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go() {
        for (i, o) in [
            ("", "."),
            ("abc", "abc"),
            ("abc/", "abc"),
            ("a//b", "a/b"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a/b/../../..", ".."),
            ("/", "/"),
            ("./", "."),
        ] {
            assert_eq!(clean(i), o, "{i}");
        }
    }

    #[test]
    fn dir_matches_go() {
        assert_eq!(dir("a/b/c"), "a/b");
        assert_eq!(dir("a"), ".");
        assert_eq!(dir("/a"), "/");
        assert_eq!(dir("a/"), "a");
    }

    #[test]
    fn quote() {
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(go_quote("한국어"), "\"한국어\"");
        assert_eq!(go_quote("it's"), "\"it's\"");
        // `%q` of an int, as BuildKit's HEALTHCHECK history prints retries.
        assert_eq!(go_quote_rune(3), r"'\x03'");
        assert_eq!(go_quote_rune(0), r"'\x00'");
        assert_eq!(go_quote_rune(10), r"'\n'");
        assert_eq!(go_quote_rune(65), "'A'");
        assert_eq!(go_quote_rune(39), r"'\''");
        assert_eq!(go_quote_rune(34), "'\"'");
        assert_eq!(go_quote_rune(-1), "'\u{fffd}'");
    }
}
