//! Go `text/template` source → a tree of nodes: text, actions with
//! pipelines, `if`/`range`/`with` with `else`, variables, `{{- -}}`
//! trimming and `{{/* comments */}}`.

use super::Error;

/// One node of a parsed template.
#[derive(Debug, Clone)]
pub enum Node {
    Text(String),
    /// `{{pipeline}}`: prints the pipeline's value (or only declares).
    Action(Pipe),
    If(Branch),
    Range(Branch),
    With(Branch),
}

/// The pipeline of a control structure and its two lists.
#[derive(Debug, Clone)]
pub struct Branch {
    pub pipe: Pipe,
    pub body: Vec<Node>,
    pub otherwise: Vec<Node>,
}

/// `$x := cmd | cmd ...`.
#[derive(Debug, Clone)]
pub struct Pipe {
    /// Byte offset of the action in the source.
    pub pos: usize,
    /// The action's text, for "at <...>" in errors.
    pub text: String,
    pub decl: Vec<String>,
    /// `=` instead of `:=`.
    pub assign: bool,
    pub cmds: Vec<Vec<Arg>>,
}

/// An operand of a command.
#[derive(Debug, Clone)]
pub enum Arg {
    /// `.A.B` on dot (`.` alone when empty).
    Field(Vec<String>),
    /// `$x.A.B` (`$` is the data the template was given).
    Var(String, Vec<String>),
    /// A function name.
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// `(pipeline).A.B`.
    Sub(Box<Pipe>, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `.Name`, and whether it follows an operand with no space (`$x.A`, `.A.B`).
    Field(String, bool),
    Var(String),
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Pipe,
    Open,
    Close,
    Declare,
    Assign,
    Comma,
}

/// Byte offset → `line` (1-based), as Go's parse errors show it.
pub fn line_of(src: &str, pos: usize) -> usize {
    1 + src[..pos.min(src.len())].matches('\n').count()
}

fn parse_err(src: &str, pos: usize, msg: impl std::fmt::Display) -> Error {
    Error::Parse(format!("template: :{}: {msg}", line_of(src, pos)))
}

/// Raw pieces: text and the inside of each action with its offset.
enum Piece {
    Text(String),
    Action(usize, String),
}

fn split(src: &str) -> Result<Vec<Piece>, Error> {
    let mut out = Vec::new();
    let mut rest = 0;
    let mut trim_next = false;
    while let Some(open) = src[rest..].find("{{").map(|i| i + rest) {
        let mut text = &src[rest..open];
        if trim_next {
            text = text.trim_start();
        }
        let mut start = open + 2;
        let trim_prev =
            src[start..].starts_with("- ") || src[start..].starts_with("-\t") || src[start..].starts_with("-\n");
        if trim_prev {
            text = text.trim_end();
            start += 1;
        }
        out.push(Piece::Text(text.to_string()));
        let inner_start = start;
        let close = if src[start..].trim_start().starts_with("/*") {
            let c = src[start..].find("*/").ok_or_else(|| parse_err(src, open, "unclosed comment"))? + start + 2;
            src[c..].find("}}").map(|i| i + c)
        } else {
            find_close(&src[start..]).map(|i| i + start)
        }
        .ok_or_else(|| parse_err(src, open, "unclosed action"))?;
        let mut inner_end = close;
        trim_next = close > inner_start + 1 && (src[..close].ends_with(" -") || src[..close].ends_with("\t-"));
        if trim_next {
            inner_end -= 1;
        }
        let raw = &src[inner_start..inner_end];
        let inner = raw.trim();
        if !inner.starts_with("/*") {
            out.push(Piece::Action(inner_start + raw.len() - raw.trim_start().len(), inner.to_string()));
        }
        rest = close + 2;
    }
    let mut text = &src[rest..];
    if trim_next {
        text = text.trim_start();
    }
    out.push(Piece::Text(text.to_string()));
    Ok(out)
}

/// The `}}` that closes an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn lex(src: &str, pos: usize, s: &str) -> Result<Vec<Tok>, Error> {
    let mut toks = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    let word = |i: &mut usize| {
        let st = *i;
        while *i < cs.len() && is_ident(cs[*i]) {
            *i += 1;
        }
        cs[st..*i].iter().collect::<String>()
    };
    while i < cs.len() {
        let c = cs[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1
            }
            '(' => {
                toks.push(Tok::Open);
                i += 1
            }
            ')' => {
                toks.push(Tok::Close);
                i += 1
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1
            }
            ':' if cs.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1
            }
            '.' if cs.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => toks.push(number(src, pos, &cs, &mut i)?),
            '.' => {
                let joined = i > 0 && (is_ident(cs[i - 1]) || cs[i - 1] == ')' || cs[i - 1] == '$');
                i += 1;
                toks.push(Tok::Field(word(&mut i), joined));
            }
            '$' => {
                i += 1;
                toks.push(Tok::Var(format!("${}", word(&mut i))));
            }
            '"' => toks.push(Tok::Str(quoted(src, pos, &cs, &mut i)?)),
            '`' => {
                let end = cs[i + 1..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or_else(|| parse_err(src, pos, "unterminated raw quoted string"))?;
                toks.push(Tok::Str(cs[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            '\'' => {
                let ch =
                    cs.get(i + 1).copied().ok_or_else(|| parse_err(src, pos, "unterminated character constant"))?;
                toks.push(Tok::Int(ch as i64));
                i += 3;
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+') && cs.get(i + 1).is_some_and(|c| c.is_ascii_digit())) =>
            {
                toks.push(number(src, pos, &cs, &mut i)?)
            }
            c if is_ident(c) => toks.push(Tok::Ident(word(&mut i))),
            c => return Err(parse_err(src, pos, format!("unexpected {c:?} in command"))),
        }
    }
    Ok(toks)
}

fn number(src: &str, pos: usize, cs: &[char], i: &mut usize) -> Result<Tok, Error> {
    let st = *i;
    *i += 1;
    while *i < cs.len() && (cs[*i].is_ascii_alphanumeric() || cs[*i] == '.' || cs[*i] == '_') {
        *i += 1;
    }
    let text: String = cs[st..*i].iter().filter(|&&c| c != '_').collect();
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Tok::Int(n));
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(n) = i64::from_str_radix(hex, 16) {
            return Ok(Tok::Int(n));
        }
    }
    text.parse::<f64>().map(Tok::Float).map_err(|_| parse_err(src, pos, format!("bad number syntax: {text:?}")))
}

fn quoted(src: &str, pos: usize, cs: &[char], i: &mut usize) -> Result<String, Error> {
    let mut out = String::new();
    *i += 1;
    loop {
        let c = *cs.get(*i).ok_or_else(|| parse_err(src, pos, "unterminated quoted string"))?;
        *i += 1;
        match c {
            '"' => return Ok(out),
            '\\' => {
                let e = *cs.get(*i).ok_or_else(|| parse_err(src, pos, "unterminated quoted string"))?;
                *i += 1;
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    other => other,
                });
            }
            c => out.push(c),
        }
    }
}

struct Toks<'a> {
    src: &'a str,
    pos: usize,
    toks: Vec<Tok>,
    i: usize,
}

impl Toks<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn err(&self, msg: impl std::fmt::Display) -> Error {
        parse_err(self.src, self.pos, msg)
    }

    /// `.A.B` fields that follow an operand with no space (`$x.A`, `(..).A`).
    fn fields(&mut self, mut names: Vec<String>) -> Vec<String> {
        while let Some(Tok::Field(f, true)) = self.peek() {
            if f.is_empty() {
                break;
            }
            names.push(f.clone());
            self.i += 1;
        }
        names
    }

    fn pipe(&mut self, text: &str, allow_decl: bool) -> Result<Pipe, Error> {
        let mut p = Pipe { pos: self.pos, text: text.to_string(), decl: Vec::new(), assign: false, cmds: Vec::new() };
        if allow_decl {
            self.decl(&mut p);
        }
        let mut cmd = Vec::new();
        while let Some(t) = self.peek().cloned() {
            self.i += 1;
            let arg = match t {
                Tok::Pipe => {
                    if cmd.is_empty() {
                        return Err(self.err("missing command"));
                    }
                    p.cmds.push(std::mem::take(&mut cmd));
                    continue;
                }
                Tok::Close => {
                    self.i -= 1;
                    break;
                }
                Tok::Open => {
                    let inner = self.pipe(text, false)?;
                    if self.peek() != Some(&Tok::Close) {
                        return Err(self.err("unclosed left paren"));
                    }
                    self.i += 1;
                    let f = self.fields(Vec::new());
                    Arg::Sub(Box::new(inner), f)
                }
                Tok::Field(f, _) => Arg::Field(self.fields(if f.is_empty() { Vec::new() } else { vec![f] })),
                Tok::Var(v) => {
                    let f = self.fields(Vec::new());
                    Arg::Var(v, f)
                }
                Tok::Ident(w) => match w.as_str() {
                    "true" => Arg::Bool(true),
                    "false" => Arg::Bool(false),
                    "nil" => Arg::Nil,
                    _ => Arg::Func(w),
                },
                Tok::Str(s) => Arg::Str(s),
                Tok::Int(n) => Arg::Int(n),
                Tok::Float(f) => Arg::Float(f),
                Tok::Declare | Tok::Assign | Tok::Comma => return Err(self.err("unexpected token in operand")),
            };
            cmd.push(arg);
        }
        if cmd.is_empty() {
            return Err(self.err(if p.cmds.is_empty() { "missing value for command" } else { "missing command" }));
        }
        p.cmds.push(cmd);
        Ok(p)
    }

    /// `$x :=` or `$i, $e :=` at the start of a pipeline.
    fn decl(&mut self, p: &mut Pipe) {
        let save = self.i;
        let mut vars = Vec::new();
        while let Some(Tok::Var(v)) = self.peek().cloned() {
            self.i += 1;
            vars.push(v);
            match self.peek() {
                Some(Tok::Comma) => self.i += 1,
                Some(Tok::Declare) | Some(Tok::Assign) => {
                    p.assign = self.peek() == Some(&Tok::Assign);
                    self.i += 1;
                    p.decl = vars;
                    return;
                }
                _ => break,
            }
        }
        self.i = save;
    }
}

fn pipe_of(src: &str, pos: usize, text: &str, allow_decl: bool) -> Result<Pipe, Error> {
    let mut t = Toks { src, pos, toks: lex(src, pos, text)?, i: 0 };
    let p = t.pipe(text, allow_decl)?;
    if t.i != t.toks.len() {
        return Err(t.err("unexpected \")\" in operand"));
    }
    Ok(p)
}

/// What ended a list of nodes.
enum Stop {
    Eof,
    End,
    Else(usize, String),
}

struct Parser<'a> {
    src: &'a str,
    pieces: std::vec::IntoIter<Piece>,
}

impl Parser<'_> {
    fn list(&mut self) -> Result<(Vec<Node>, Stop), Error> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            let (pos, action) = match piece {
                Piece::Text(t) => {
                    if !t.is_empty() {
                        nodes.push(Node::Text(t));
                    }
                    continue;
                }
                Piece::Action(pos, a) => (pos, a),
            };
            let (kw, rest) = match action.split_once(|c: char| c.is_whitespace()) {
                Some((k, r)) => (k, r.trim()),
                None => (action.as_str(), ""),
            };
            match kw {
                "end" => return Ok((nodes, Stop::End)),
                "else" => return Ok((nodes, Stop::Else(pos, rest.to_string()))),
                "if" | "range" | "with" => nodes.push(self.branch(kw, pos, rest)?),
                "define" | "template" | "block" | "break" | "continue" => {
                    return Err(parse_err(self.src, pos, format!("{{{{{kw}}}}} is not supported")))
                }
                _ => nodes.push(Node::Action(pipe_of(self.src, pos, &action, true)?)),
            }
        }
        Ok((nodes, Stop::Eof))
    }

    fn branch(&mut self, kw: &str, pos: usize, rest: &str) -> Result<Node, Error> {
        if rest.is_empty() {
            return Err(parse_err(self.src, pos, format!("missing value for {kw}")));
        }
        let pipe = pipe_of(self.src, pos, rest, true)?;
        let (body, end) = self.list()?;
        let otherwise = match end {
            Stop::Eof => return Err(parse_err(self.src, pos, format!("unexpected EOF in {kw}"))),
            Stop::End => Vec::new(),
            Stop::Else(_, r) if r.is_empty() => match self.list()? {
                (nodes, Stop::End) => nodes,
                (_, _) => return Err(parse_err(self.src, pos, format!("expected end; found else or EOF in {kw}"))),
            },
            // `{{else if x}}` / `{{else with x}}`: a nested branch that shares our end.
            Stop::Else(p, r) => {
                let (k2, r2) = r.split_once(|c: char| c.is_whitespace()).unwrap_or((r.as_str(), ""));
                if k2 != kw || kw == "range" {
                    return Err(parse_err(self.src, p, format!("unexpected {r:?} after else")));
                }
                vec![self.branch(k2, p, r2.trim())?]
            }
        };
        let b = Branch { pipe, body, otherwise };
        Ok(match kw {
            "if" => Node::If(b),
            "range" => Node::Range(b),
            _ => Node::With(b),
        })
    }
}

/// Parses a whole template.
pub fn parse(src: &str) -> Result<Vec<Node>, Error> {
    let mut p = Parser { src, pieces: split(src)?.into_iter() };
    match p.list()? {
        (nodes, Stop::Eof) => Ok(nodes),
        (_, Stop::End) => Err(parse_err(src, src.len(), "unexpected {{end}}")),
        (_, Stop::Else(pos, _)) => Err(parse_err(src, pos, "unexpected {{else}}")),
    }
}
