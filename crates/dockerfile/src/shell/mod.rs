//! Word expansion with BuildKit's shell lexer semantics (`shell/lex.go`):
//! quotes, escapes, `$var`, `${var}` and the `${var<modifier>...}` forms
//! `:-` `-` `:+` `+` `:?` `?` `#` `##` `%` `%%` `/` `//`, plus word splitting.

mod pattern;

use std::collections::{BTreeSet, HashMap};

use crate::compat::{go_quote, is_digit, is_letter, is_space};

/// Where the lexer looks variables up. `None` means unset, which differs
/// from set-but-empty for `${v-w}`, `${v+w}` and `${v?msg}`.
pub trait EnvGetter {
    /// The value of `key`, if set.
    fn get_env(&self, key: &str) -> Option<String>;
}

impl EnvGetter for HashMap<String, String> {
    fn get_env(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

/// An environment built from `KEY=VALUE` strings; a later key wins and a
/// string without `=` sets the key to the empty string.
#[derive(Debug, Clone, Default)]
pub struct Env {
    map: HashMap<String, String>,
}

impl Env {
    /// Builds the environment from `KEY=VALUE` entries.
    pub fn from_slice<S: AsRef<str>>(entries: &[S]) -> Env {
        let mut map = HashMap::new();
        for e in entries {
            let e = e.as_ref();
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            map.insert(k.to_string(), v.to_string());
        }
        Env { map }
    }

    /// Sets one variable.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.map.insert(key.into(), value.into());
    }
}

impl EnvGetter for Env {
    fn get_env(&self, key: &str) -> Option<String> {
        self.map.get(key).cloned()
    }
}

/// An expansion failure. Displays like BuildKit: `failed to process "<word>": <why>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {}: {message}", go_quote(.source_word))]
pub struct ExpandError {
    /// The word being expanded.
    pub source_word: String,
    /// What went wrong, e.g. `syntax error: missing '}'`.
    pub message: String,
}

/// The full result of one expansion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WordResult {
    /// The expanded string (spaces kept).
    pub result: String,
    /// The expanded string split into words.
    pub words: Vec<String>,
    /// Variables that were looked up and set.
    pub matched: BTreeSet<String>,
    /// Variables that were looked up and unset.
    pub unmatched: BTreeSet<String>,
}

/// The shell lexer. `escape` is `\` or the backtick from `# escape=`.
#[derive(Debug, Clone)]
pub struct Lex {
    escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset_env: bool,
}

impl Lex {
    /// A lexer with the given escape character and default options.
    pub fn new(escape: char) -> Lex {
        Lex { escape, raw_quotes: false, raw_escapes: false, skip_process_quotes: false, skip_unset_env: false }
    }

    /// Expands `word`, keeping spaces (BuildKit's `ProcessWord`).
    pub fn process_word(&self, word: &str, env: &dyn EnvGetter) -> Result<String, ExpandError> {
        self.process(word, env).map(|r| r.result)
    }

    /// Expands `word` and splits it into words (BuildKit's `ProcessWords`).
    pub fn process_words(&self, word: &str, env: &dyn EnvGetter) -> Result<Vec<String>, ExpandError> {
        self.process(word, env).map(|r| r.words)
    }

    /// Expands `word`, also reporting which variables were used.
    pub fn process(&self, word: &str, env: &dyn EnvGetter) -> Result<WordResult, ExpandError> {
        let mut sw = ShellWord {
            lex: self,
            chars: word.chars().collect(),
            pos: 0,
            env,
            raw_escapes: self.raw_escapes,
            words_buffer: String::new(),
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match sw.process_stop_on(None, self.raw_escapes) {
            Ok((result, words)) => Ok(WordResult { result, words, matched: sw.matched, unmatched: sw.unmatched }),
            Err(message) => Err(ExpandError { source_word: word.to_string(), message }),
        }
    }
}

struct ShellWord<'a> {
    lex: &'a Lex,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn EnvGetter,
    raw_escapes: bool,
    /// Shared by nested `process_stop_on` calls, as in BuildKit, where a
    /// nested `${...}` resets the word being built by the caller.
    words_buffer: String,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

#[derive(Default)]
struct Words {
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, buf: &mut String, ch: char) {
        if is_space(ch) && self.in_word {
            if !buf.is_empty() {
                self.words.push(std::mem::take(buf));
                self.in_word = false;
            }
        } else if !is_space(ch) {
            self.add_raw_char(buf, ch);
        }
    }

    fn add_raw_char(&mut self, buf: &mut String, ch: char) {
        buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, buf: &mut String, s: &str) {
        for ch in s.chars() {
            self.add_char(buf, ch);
        }
    }

    fn add_raw_string(&mut self, buf: &mut String, s: &str) {
        buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self, buf: &mut String) -> Vec<String> {
        if !buf.is_empty() {
            self.words.push(std::mem::take(buf));
        }
        self.words
    }
}

/// `string(rune)` of Go for a scanner result, EOF giving U+FFFD.
fn ch_str(c: Option<char>) -> String {
    c.unwrap_or('\u{fffd}').to_string()
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// `<<` keeps the blanks after it in the same word (`<<  EOF` is one
    /// heredoc word), as BuildKit's `processPossibleHeredoc`.
    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(c) = self.peek().filter(|c| matches!(c, ' ' | '\t' | '\n')) {
            out.push(c);
            self.next();
        }
        out
    }

    fn process_stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<(String, Vec<String>), String> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        self.words_buffer.clear();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                let mut buf = std::mem::take(&mut self.words_buffer);
                let w = words.finish(&mut buf);
                self.words_buffer = buf;
                return Ok((result, w));
            }
            let quotes = !self.lex.skip_process_quotes;
            if ch == '$' || ch == '<' || (quotes && (ch == '\'' || ch == '"')) {
                let tmp = match ch {
                    '$' => self.process_dollar()?,
                    '<' => self.process_possible_heredoc(),
                    '\'' => self.process_single_quote()?,
                    _ => self.process_double_quote()?,
                };
                result.push_str(&tmp);
                let mut buf = std::mem::take(&mut self.words_buffer);
                if ch == '$' {
                    words.add_string(&mut buf, &tmp);
                } else {
                    words.add_raw_string(&mut buf, &tmp);
                }
                self.words_buffer = buf;
                continue;
            }
            let mut c = ch;
            self.next();
            let mut buf = std::mem::take(&mut self.words_buffer);
            if c == self.lex.escape {
                if self.raw_escapes {
                    words.add_raw_char(&mut buf, c);
                    result.push(c);
                }
                match self.next() {
                    None => {
                        self.words_buffer = buf;
                        break;
                    }
                    Some(n) => {
                        c = n;
                        words.add_raw_char(&mut buf, c);
                    }
                }
            } else {
                words.add_char(&mut buf, c);
            }
            self.words_buffer = buf;
            result.push(c);
        }
        if let Some(s) = stop {
            return Err(format!("unexpected end of statement while looking for matching {s}"));
        }
        let mut buf = std::mem::take(&mut self.words_buffer);
        let w = words.finish(&mut buf);
        self.words_buffer = buf;
        Ok((result, w))
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let q = self.next();
        if self.lex.raw_quotes {
            result.push_str(&ch_str(q));
        }
        loop {
            match self.next() {
                None => return Err("unexpected end of statement while looking for matching single-quote".into()),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let q = self.next();
        if self.lex.raw_quotes {
            result.push_str(&ch_str(q));
        }
        loop {
            match self.peek() {
                None => return Err("unexpected end of statement while looking for matching double-quote".into()),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let Some(mut c) = self.next() else { continue };
                    if c == self.lex.escape {
                        if self.raw_escapes {
                            result.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                self.next();
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(c);
                }
            }
        }
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let v = self.env.get_env(name);
        if v.is_some() {
            self.matched.insert(name.to_string());
        } else {
            self.unmatched.insert(name.to_string());
        }
        v
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.process_name();
        let ch = self.next();
        let mut chs = ch_str(ch);
        match ch {
            Some('}') => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let mut ch = ch;
                let null_is_unset = ch == Some(':');
                if null_is_unset {
                    ch = self.next();
                    chs.push_str(&ch_str(ch));
                }
                self.modifier(&name, ch, &chs, null_is_unset)
            }
            Some('/') => self.substitute(&name),
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn modifier(&mut self, name: &str, ch: Option<char>, chs: &str, null_is_unset: bool) -> Result<String, String> {
        let raw = ch == Some('#') || ch == Some('%');
        if null_is_unset && raw {
            return Err(format!("unsupported modifier ({chs}) in substitution"));
        }
        let word = match self.process_stop_on(Some('}'), raw) {
            Ok((w, _)) => w,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '}'".into());
                }
                return Err(e);
            }
        };
        let value = self.get_env(name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let empty = value.as_deref().is_none_or(|v| null_is_unset && v.is_empty());
        match ch {
            Some('-') => Ok(if empty { word } else { value.unwrap_or_default() }),
            Some('+') => Ok(if empty { String::new() } else { word }),
            Some('?') => match value {
                None => Err(format!("{name}: {}", if word.is_empty() { "is not allowed to be unset" } else { &word })),
                Some(v) if null_is_unset && v.is_empty() => {
                    Err(format!("{name}: {}", if word.is_empty() { "is not allowed to be empty" } else { &word }))
                }
                Some(v) => Ok(v),
            },
            Some(c @ ('%' | '#')) => {
                let value = value.unwrap_or_default();
                let (greedy, pat) = match word.strip_prefix(c) {
                    Some(rest) => (true, rest.to_string()),
                    None => (false, word),
                };
                if c == '%' {
                    pattern::trim_suffix(&pat, &value, greedy)
                } else {
                    pattern::trim_prefix(&pat, &value, greedy)
                }
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn substitute(&mut self, name: &str) -> Result<String, String> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pat = match self.process_stop_on(Some('/'), true) {
            Ok((p, _)) => p,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '/' in ${}".into());
                }
                return Err(e);
            }
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((r, _)) => r,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '}'".into());
                }
                return Err(e);
            }
        };
        let Some(value) = self.get_env(name) else {
            if self.lex.skip_unset_env {
                return Ok(format!("${{{name}/{pat}/{replacement}}}"));
            }
            return pattern::replace(&pat, "", &replacement, all);
        };
        pattern::replace(&pat, &value, &replacement, all)
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(d) = self.peek().filter(|c| is_digit(*c)) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

#[cfg(test)]
mod tests;
