//! A small backtracking regular-expression engine covering the subset of Go
//! RE2 syntax that the Dockerfile shell patterns and `.dockerignore` patterns
//! compile to: literals, `\x` escapes, `.`, `[...]` classes, `(...)` groups,
//! `^`/`$` anchors and the `*`, `+`, `?` quantifiers (greedy or lazy).
//!
//! Matching follows Go's leftmost-first semantics (the same result a
//! backtracking engine gives), so `.*?` and `.*` behave as in BuildKit.

/// A compiled expression.
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
struct Node {
    atom: Atom,
    min: usize,
    max: Option<usize>,
    greedy: bool,
}

#[derive(Debug, Clone)]
enum Atom {
    Char(char),
    /// `.`: any character but a newline (Go's default flags).
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Group(Vec<Node>),
    Begin,
    End,
}

impl Regex {
    /// Compiles `src`; the error text follows Go's `regexp/syntax` wording.
    pub(crate) fn new(src: &str) -> Result<Regex, String> {
        let chars: Vec<char> = src.chars().collect();
        let mut pos = 0;
        let nodes = parse_seq(&chars, &mut pos, 0)?;
        if pos < chars.len() {
            return Err(format!("error parsing regexp: unexpected ): `{src}`"));
        }
        Ok(Regex { nodes })
    }

    /// Whether the expression matches anywhere in `text`.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        self.find_chars(&chars, 0).is_some()
    }

    /// Leftmost-first match at or after char index `start`, as char indices.
    pub(crate) fn find_chars(&self, text: &[char], start: usize) -> Option<(usize, usize)> {
        for s in start..=text.len() {
            let mut end = None;
            if match_seq(&self.nodes, text, s, &mut |p| {
                end = Some(p);
                true
            }) {
                return end.map(|e| (s, e));
            }
        }
        None
    }
}

fn parse_seq(chars: &[char], pos: &mut usize, depth: usize) -> Result<Vec<Node>, String> {
    let mut nodes: Vec<Node> = Vec::new();
    while *pos < chars.len() {
        let c = chars[*pos];
        let atom = match c {
            ')' => {
                if depth == 0 {
                    return Err("error parsing regexp: unexpected )".to_string());
                }
                return Ok(nodes);
            }
            '(' => {
                *pos += 1;
                let inner = parse_seq(chars, pos, depth + 1)?;
                if *pos >= chars.len() || chars[*pos] != ')' {
                    return Err("error parsing regexp: missing closing )".to_string());
                }
                Atom::Group(inner)
            }
            '*' | '+' | '?' => {
                let last = nodes.last_mut();
                match last {
                    Some(n) if n.min == 1 && n.max == Some(1) => {
                        let (min, max) = match c {
                            '*' => (0, None),
                            '+' => (1, None),
                            _ => (0, Some(1)),
                        };
                        n.min = min;
                        n.max = max;
                        if chars.get(*pos + 1) == Some(&'?') {
                            n.greedy = false;
                            *pos += 1;
                        }
                        *pos += 1;
                        continue;
                    }
                    _ => return Err(format!("error parsing regexp: missing argument to repetition operator: `{c}`")),
                }
            }
            '.' => Atom::Any,
            '^' => Atom::Begin,
            '$' => Atom::End,
            '\\' => {
                *pos += 1;
                match chars.get(*pos) {
                    Some(&e) => Atom::Char(e),
                    None => return Err("error parsing regexp: trailing backslash at end of expression".to_string()),
                }
            }
            '[' => parse_class(chars, pos)?,
            other => Atom::Char(other),
        };
        nodes.push(Node { atom, min: 1, max: Some(1), greedy: true });
        *pos += 1;
    }
    if depth > 0 {
        return Err("error parsing regexp: missing closing )".to_string());
    }
    Ok(nodes)
}

/// Parses `[...]` starting at `chars[*pos] == '['`; leaves `pos` on the `]`.
fn parse_class(chars: &[char], pos: &mut usize) -> Result<Atom, String> {
    *pos += 1;
    let mut negated = false;
    if chars.get(*pos) == Some(&'^') {
        negated = true;
        *pos += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(*pos) else {
            return Err("error parsing regexp: missing closing ]".to_string());
        };
        if c == ']' && !first {
            break;
        }
        first = false;
        let lo = class_char(chars, pos)?;
        let mut hi = lo;
        if chars.get(*pos) == Some(&'-') && chars.get(*pos + 1).is_some_and(|&n| n != ']') {
            *pos += 1;
            hi = class_char(chars, pos)?;
            if hi < lo {
                return Err(format!("error parsing regexp: invalid character class range: `{lo}-{hi}`"));
            }
        }
        ranges.push((lo, hi));
    }
    Ok(Atom::Class { negated, ranges })
}

fn class_char(chars: &[char], pos: &mut usize) -> Result<char, String> {
    let Some(&c) = chars.get(*pos) else {
        return Err("error parsing regexp: missing closing ]".to_string());
    };
    *pos += 1;
    if c == '\\' {
        let Some(&e) = chars.get(*pos) else {
            return Err("error parsing regexp: trailing backslash at end of expression".to_string());
        };
        *pos += 1;
        return Ok(e);
    }
    Ok(c)
}

fn match_seq(nodes: &[Node], text: &[char], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    match nodes.split_first() {
        None => k(pos),
        Some((node, rest)) => repeat(node, 0, text, pos, &mut |p| match_seq(rest, text, p, k)),
    }
}

fn repeat(node: &Node, count: usize, text: &[char], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    let can_more = node.max.is_none_or(|m| count < m);
    if count < node.min {
        return match_atom(&node.atom, text, pos, &mut |p| repeat(node, count + 1, text, p, k));
    }
    if node.greedy {
        if can_more && match_atom(&node.atom, text, pos, &mut |p| p != pos && repeat(node, count + 1, text, p, k)) {
            return true;
        }
        k(pos)
    } else {
        if k(pos) {
            return true;
        }
        can_more && match_atom(&node.atom, text, pos, &mut |p| p != pos && repeat(node, count + 1, text, p, k))
    }
}

fn match_atom(atom: &Atom, text: &[char], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    match atom {
        Atom::Char(c) => text.get(pos) == Some(c) && k(pos + 1),
        Atom::Any => text.get(pos).is_some_and(|&c| c != '\n') && k(pos + 1),
        Atom::Class { negated, ranges } => match text.get(pos) {
            Some(&c) => {
                let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                inside != *negated && k(pos + 1)
            }
            None => false,
        },
        Atom::Group(nodes) => match_seq(nodes, text, pos, k),
        Atom::Begin => pos == 0 && k(pos),
        Atom::End => pos == text.len() && k(pos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(re: &str, text: &str) -> Option<(usize, usize)> {
        let chars: Vec<char> = text.chars().collect();
        Regex::new(re).ok()?.find_chars(&chars, 0)
    }

    #[test]
    fn greedy_and_lazy() {
        assert_eq!(find("^.*x", "axbxc"), Some((0, 4)));
        assert_eq!(find("^.*?x", "axbxc"), Some((0, 2)));
        assert_eq!(find("b", "abc"), Some((1, 2)));
        assert_eq!(find("^(.*/)?c$", "a/b/c"), Some((0, 5)));
        assert_eq!(find("^[^/]*$", "a/b"), None);
        assert_eq!(find("^a[b-d]e$", "ace"), Some((0, 3)));
        assert_eq!(find("^a[^b-d]e$", "ace"), None);
        assert_eq!(find("^.$", "\n"), None);
    }

    #[test]
    fn errors() {
        assert!(Regex::new("[a").is_err());
        assert!(Regex::new("(a").is_err());
        assert!(Regex::new("a)").is_err());
        assert!(Regex::new("*a").is_err());
        assert!(Regex::new("[z-a]").is_err());
    }
}
