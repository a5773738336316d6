//! A small regular-expression engine covering the subset of Go RE2 syntax
//! that the Dockerfile shell patterns and `.dockerignore` patterns compile
//! to: literals, `\x` escapes, `.`, `[...]` classes, `(...)` groups,
//! `^`/`$` anchors and the `*`, `+`, `?` quantifiers (greedy or lazy).
//!
//! Patterns compile to a program run by a Pike VM, as RE2 does: threads in
//! priority order give Go's leftmost-first semantics (so `.*?` and `.*`
//! behave as in BuildKit), in time linear in the text for a given pattern.
//! A backtracking matcher took exponential time on `**/**/**/…` patterns.

/// A compiled expression.
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    prog: Vec<Inst>,
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

/// One instruction of a compiled program.
#[derive(Debug, Clone)]
enum Inst {
    /// Consumes one character the atom accepts (`Char`, `Any`, `Class`).
    Consume(Atom),
    /// Continues at both, the first preferred.
    Split(usize, usize),
    Jmp(usize),
    Begin,
    End,
    Match,
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
        let mut prog = Vec::new();
        compile_seq(&nodes, &mut prog);
        prog.push(Inst::Match);
        Ok(Regex { prog })
    }

    /// Whether the expression matches anywhere in `text`.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        self.find_chars(&chars, 0).is_some()
    }

    /// Leftmost-first match at or after char index `start`, as char indices.
    pub(crate) fn find_chars(&self, text: &[char], start: usize) -> Option<(usize, usize)> {
        let mut marks = vec![usize::MAX; self.prog.len()];
        // Threads in priority order: (program counter, where their match began).
        let mut clist: Vec<(usize, usize)> = Vec::new();
        let mut nlist: Vec<(usize, usize)> = Vec::new();
        let mut matched = None;
        let mut pos = start.min(text.len());
        loop {
            if matched.is_none() {
                // A match starting here ranks below every earlier start.
                self.add(&mut clist, &mut marks, pos, text.len(), 0, pos);
            }
            if matched.is_some() && clist.is_empty() {
                break;
            }
            for &(pc, began) in &clist {
                match &self.prog[pc] {
                    Inst::Match => {
                        // Lower-priority threads are cut off.
                        matched = Some((began, pos));
                        break;
                    }
                    Inst::Consume(atom) if text.get(pos).is_some_and(|&c| accepts(atom, c)) => {
                        self.add(&mut nlist, &mut marks, pos + 1, text.len(), pc + 1, began);
                    }
                    _ => {}
                }
            }
            if pos >= text.len() {
                break;
            }
            std::mem::swap(&mut clist, &mut nlist);
            nlist.clear();
            pos += 1;
        }
        matched
    }

    /// Adds the thread at `pc` and everything it reaches without consuming
    /// a character at `pos`, in priority order, each instruction once.
    fn add(
        &self,
        list: &mut Vec<(usize, usize)>,
        marks: &mut [usize],
        pos: usize,
        len: usize,
        pc: usize,
        began: usize,
    ) {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if marks[pc] == pos {
                continue;
            }
            marks[pc] = pos;
            match self.prog[pc] {
                Inst::Jmp(to) => stack.push(to),
                Inst::Split(first, second) => {
                    stack.push(second);
                    stack.push(first);
                }
                Inst::Begin if pos == 0 => stack.push(pc + 1),
                Inst::End if pos == len => stack.push(pc + 1),
                Inst::Begin | Inst::End => {}
                Inst::Consume(_) | Inst::Match => list.push((pc, began)),
            }
        }
    }
}

fn accepts(atom: &Atom, c: char) -> bool {
    match atom {
        Atom::Char(want) => c == *want,
        Atom::Any => c != '\n',
        Atom::Class { negated, ranges } => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated,
        _ => false,
    }
}

fn compile_seq(nodes: &[Node], prog: &mut Vec<Inst>) {
    for node in nodes {
        compile_node(node, prog);
    }
}

fn compile_atom(atom: &Atom, prog: &mut Vec<Inst>) {
    match atom {
        Atom::Group(nodes) => compile_seq(nodes, prog),
        Atom::Begin => prog.push(Inst::Begin),
        Atom::End => prog.push(Inst::End),
        other => prog.push(Inst::Consume(other.clone())),
    }
}

/// `x` once, `x?`, `x*` or `x+` (the only repetitions the parser makes).
fn compile_node(node: &Node, prog: &mut Vec<Inst>) {
    let split = |prog: &mut Vec<Inst>, at: usize, body: usize, out: usize| {
        prog[at] = if node.greedy { Inst::Split(body, out) } else { Inst::Split(out, body) };
    };
    match (node.min, node.max) {
        (1, Some(1)) => compile_atom(&node.atom, prog),
        (0, Some(1)) => {
            let at = prog.len();
            prog.push(Inst::Jmp(0));
            compile_atom(&node.atom, prog);
            let out = prog.len();
            split(prog, at, at + 1, out);
        }
        (0, None) => {
            let at = prog.len();
            prog.push(Inst::Jmp(0));
            compile_atom(&node.atom, prog);
            prog.push(Inst::Jmp(at));
            let out = prog.len();
            split(prog, at, at + 1, out);
        }
        _ => {
            let body = prog.len();
            compile_atom(&node.atom, prog);
            let at = prog.len();
            prog.push(Inst::Jmp(0));
            split(prog, at, body, at + 1);
        }
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
        assert_eq!(find("a*?", "aaa"), Some((0, 0)));
        assert_eq!(find("(a|b)", "b"), None, "no alternation: | is a literal");
        assert_eq!(find("x(a*)*y", "zxaaay"), Some((1, 6)));
        assert_eq!(find("$", "abc"), Some((3, 3)));
    }

    #[test]
    fn nested_stars_take_linear_time() {
        // `**/` repeated compiles to nested `(.*/)?`: exponential for a
        // backtracking matcher, instant here.
        let re = format!("^{}keep$", "(.*/)?".repeat(60));
        let text = format!("{}x", "a/".repeat(200));
        let t = std::time::Instant::now();
        assert_eq!(find(&re, &text), None);
        assert_eq!(find(&re, &format!("{}keep", "a/".repeat(200))), Some((0, 404)));
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());
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
