//! Reading `.dockerignore` files (patternmatcher's `ignorefile.ReadAll`).

use crate::compat::{clean, trim_space};

/// Turns `.dockerignore` text into patterns: a UTF-8 BOM is dropped, lines
/// starting with `#` are comments, lines are trimmed, empty lines skipped,
/// patterns are cleaned and a leading `/` removed (after any `!`).
pub fn read_all(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = trim_space(line);
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = trim_space(&pattern[1..]);
        }
        let mut p = pattern.to_string();
        if !p.is_empty() {
            p = clean(&p);
            if p.len() > 1 && p.starts_with('/') {
                p.remove(0);
            }
        }
        if invert {
            p.insert(0, '!');
        }
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_ignorefile() {
        let text = "\u{feff}# comment\n  \n/foo/../bar\n!  /keep/me/ \r\n  #notacomment\nsub//dir/\n/\n!\n";
        assert_eq!(read_all(text), vec!["bar", "!keep/me", "#notacomment", "sub/dir", "/", "!"]);
    }

    #[test]
    fn ignorefile_read_all_table() {
        // ignorefile_test.go TestReadAll
        let content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ";
        assert_eq!(
            read_all(content),
            vec!["test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path", "!", "!"]
        );
        assert!(read_all("").is_empty());
    }
}
