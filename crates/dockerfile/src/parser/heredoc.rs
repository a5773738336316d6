//! Here-documents: `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`, `3<<EOF`.

use serde::Serialize;

use crate::shell::{Env, Lex};

/// One here-document attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// The file descriptor before `<<` (0 when none).
    pub file_descriptor: u64,
    /// False when any part of the delimiter was quoted.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the content and terminator.
    pub chomp: bool,
    /// The raw content, every line with its line ending.
    pub content: String,
}

/// Parses a single word such as `<<-"EOF"`; `Ok(None)` when it is not one.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = word[digits..].strip_prefix("<<") else { return Ok(None) };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    // BuildKit's `^(\d*)<<(-?)\s*([^<]*)$`: blanks may follow `<<`.
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    let fd_text = &word[..digits];
    let file_descriptor = match fd_text.parse::<u64>() {
        Ok(v) => v,
        Err(_) if !fd_text.is_empty() => u64::MAX,
        Err(_) => 0,
    };
    let env = Env::default();
    let mut lex = Lex::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &env).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &env).map_err(|e| e.to_string())?;
    if raw.len() != words.len() {
        return Err(format!("internal lexing of heredoc produced inconsistent results: {rest}"));
    }
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    Ok(Some(Heredoc {
        expand: quotes(&words[0]) == quotes(&raw[0]),
        name: words[0].clone(),
        file_descriptor,
        chomp,
        content: String::new(),
    }))
}

/// All here-documents opened on an instruction line, in order.
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lex = Lex::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    let words = lex.process_words(line, &Env::default()).unwrap_or_default();
    let mut docs = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            docs.push(h);
        }
    }
    Ok(docs)
}

/// Removes leading tabs from every line (for `<<-`).
pub fn chomp_heredoc_content(src: &str) -> String {
    src.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(word: &str) -> Option<(String, u64, bool, bool)> {
        parse_heredoc(word).unwrap().map(|h| (h.name, h.file_descriptor, h.expand, h.chomp))
    }

    #[test]
    fn words() {
        assert_eq!(h("<<EOF"), Some(("EOF".into(), 0, true, false)));
        assert_eq!(h("<<-EOF"), Some(("EOF".into(), 0, true, true)));
        assert_eq!(h("<<'EOF'"), Some(("EOF".into(), 0, false, false)));
        assert_eq!(h("<<\"EOF\""), Some(("EOF".into(), 0, false, false)));
        assert_eq!(h("<<E\"O\"F"), Some(("EOF".into(), 0, false, false)));
        assert_eq!(h("3<<EOF"), Some(("EOF".into(), 3, true, false)));
        assert_eq!(h("<< EOF"), Some(("EOF".into(), 0, true, false)));
        assert_eq!(h("<<-  EOF"), Some(("EOF".into(), 0, true, true)));
        assert_eq!(h("<<"), None);
        assert_eq!(h("<<-"), None);
        assert_eq!(h("<<<EOF"), None);
        assert_eq!(h("x<<EOF"), None);
        assert_eq!(h("\"<<EOF\""), None);
    }

    #[test]
    fn from_line() {
        let d = heredocs_from_line("RUN 3<<A cat /dev/fd/3 <<-'B' \"<<C\"").unwrap();
        let names: Vec<_> = d.iter().map(|h| (h.name.as_str(), h.expand, h.chomp)).collect();
        assert_eq!(names, vec![("A", true, false), ("B", false, true)]);
        let d = heredocs_from_line("RUN <<  EOF  > foo").unwrap();
        assert_eq!(d.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["EOF"]);
    }

    #[test]
    fn chomp() {
        assert_eq!(chomp_heredoc_content("\t\ta\n\tb\nc\t\n"), "a\nb\nc\t\n");
    }
}
