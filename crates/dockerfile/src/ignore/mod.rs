//! `.dockerignore` semantics, as in `moby/patternmatcher` and its
//! `ignorefile` package: `*`, `?`, `[...]`, `**`, `!` exceptions, and a path
//! being excluded when it or one of its parent directories matches.

mod file;

pub use file::read_all;

use crate::compat::{clean, dir};
use crate::re::Regex;
use crate::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
enum MatchType {
    Exact,
    Prefix,
    Suffix,
    Regexp(String),
}

/// One cleaned pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    cleaned: String,
    exclusion: bool,
    match_type: MatchType,
    regex: Option<Regex>,
}

impl Pattern {
    /// The pattern after cleaning, without a leading `!`.
    pub fn as_str(&self) -> &str {
        &self.cleaned
    }

    /// Whether this is a `!` exception.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    fn matches(&self, path: &str) -> bool {
        match &self.match_type {
            MatchType::Exact => path == self.cleaned,
            MatchType::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            MatchType::Suffix => {
                let suffix = &self.cleaned[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            MatchType::Regexp(_) => self.regex.as_ref().is_some_and(|r| r.is_match(path)),
        }
    }
}

/// Compiles a cleaned pattern like patternmatcher's `Pattern.compile`,
/// returning the match type (with the regexp text for `Regexp`).
fn compile(pattern: &str) -> MatchType {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut mt = MatchType::Exact;
    let mut regexp = false;
    let mut i = 0;
    let mut iter = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if mt == MatchType::Exact && !regexp {
                        mt = MatchType::Prefix;
                    } else {
                        re.push_str(".*");
                        regexp = true;
                    }
                } else {
                    re.push_str("(.*/)?");
                    regexp = true;
                }
                if iter == 0 {
                    mt = MatchType::Suffix;
                    regexp = false;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                regexp = true;
            }
            '?' => {
                re.push_str("[^/]");
                regexp = true;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => match chars.get(i) {
                Some(&n) => {
                    i += 1;
                    re.push('\\');
                    re.push(n);
                    regexp = true;
                }
                None => re.push('\\'),
            },
            '[' | ']' => {
                re.push(ch);
                regexp = true;
            }
            _ => re.push(ch),
        }
        iter += 1;
    }
    if regexp {
        re.push('$');
        MatchType::Regexp(re)
    } else {
        mt
    }
}

/// Go's `filepath.Match` syntax check.
fn validate(p: &str) -> bool {
    let c: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' => {
                if i + 1 >= c.len() {
                    return false;
                }
                i += 2;
            }
            '[' => {
                i += 1;
                if c.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut n = 0;
                loop {
                    if c.get(i) == Some(&']') && n > 0 {
                        i += 1;
                        break;
                    }
                    let Some(next) = class_esc(&c, i) else { return false };
                    i = next;
                    if c.get(i) == Some(&'-') {
                        let Some(next) = class_esc(&c, i + 1) else { return false };
                        i = next;
                    }
                    n += 1;
                }
            }
            _ => i += 1,
        }
    }
    true
}

/// Go's `getEsc`: the index after one class character, if well formed.
fn class_esc(c: &[char], mut i: usize) -> Option<usize> {
    match c.get(i) {
        None | Some('-') | Some(']') => return None,
        Some('\\') => {
            i += 1;
            c.get(i)?;
        }
        _ => {}
    }
    i += 1;
    (i < c.len()).then_some(i)
}

/// An ordered list of patterns; later ones override earlier ones.
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl PatternMatcher {
    /// Builds a matcher; empty patterns are skipped, bad syntax is an error.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<PatternMatcher, Error> {
        let mut pm = PatternMatcher::default();
        for raw in patterns {
            let p = raw.as_ref().trim_matches(char::is_whitespace);
            if p.is_empty() {
                continue;
            }
            let mut p = clean(p);
            let mut exclusion = false;
            if let Some(rest) = p.strip_prefix('!') {
                if rest.is_empty() {
                    return Err(Error::Pattern {
                        pattern: raw.as_ref().to_string(),
                        message: "illegal exclusion pattern: \"!\"".into(),
                    });
                }
                exclusion = true;
                pm.exclusions = true;
                p = rest.to_string();
            }
            if !validate(&p) {
                return Err(Error::Pattern { pattern: p, message: "syntax error in pattern".into() });
            }
            let match_type = compile(&p);
            let regex =
                match &match_type {
                    MatchType::Regexp(s) => Some(Regex::new(s).map_err(|_| Error::Pattern {
                        pattern: p.clone(),
                        message: "syntax error in pattern".into(),
                    })?),
                    _ => None,
                };
            pm.patterns.push(Pattern { cleaned: p, exclusion, match_type, regex });
        }
        Ok(pm)
    }

    /// The patterns in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether any pattern is a `!` exception.
    pub fn exclusions(&self) -> bool {
        self.exclusions
    }

    /// Whether `file` (slash-separated, relative to the context) or one of
    /// its parent directories is matched and not re-included later
    /// (patternmatcher's `MatchesOrParentMatches`).
    pub fn matches_or_parent_matches(&self, file: &str) -> bool {
        let parent = dir(file);
        let parents: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut m = p.matches(file);
            if !m && parent != "." {
                m = (0..parents.len()).any(|i| p.matches(&parents[..=i].join("/")));
            }
            if m {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// The deprecated single-parent check (patternmatcher's `Matches`).
    pub fn matches_single_parent(&self, file: &str) -> bool {
        let parent = dir(file);
        let parents: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut m = p.matches(file);
            let dirs = p.cleaned.split('/').count();
            if !m && parent != "." && dirs <= parents.len() {
                m = p.matches(&parents[..dirs].join("/"));
            }
            if m {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether `file` itself matches, without looking at parents.
    pub fn matches_exact(&self, file: &str) -> bool {
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            if p.matches(file) {
                matched = !p.exclusion;
            }
        }
        matched
    }
}

/// The top-level helper: cleans `file`, never excludes the context root.
pub fn matches_or_parent_matches<S: AsRef<str>>(file: &str, patterns: &[S]) -> Result<bool, Error> {
    let pm = PatternMatcher::new(patterns)?;
    let file = clean(file);
    if file == "." {
        return Ok(false);
    }
    Ok(pm.matches_or_parent_matches(&file))
}

#[cfg(test)]
mod tests;
