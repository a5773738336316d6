//! Dockerfile bytes → AST, following BuildKit's `frontend/dockerfile/parser`:
//! directives, line continuations (with either escape character), comments
//! and empty lines inside continuations, JSON vs shell forms, heredocs,
//! ONBUILD, a UTF-8 BOM and CRLF line endings.

mod directives;
mod heredoc;
mod line;

use serde::Serialize;

pub use directives::Directive;
pub use heredoc::{chomp_heredoc_content, parse_heredoc, Heredoc};

use crate::compat::{is_space, trim_space};
use crate::Error;
pub(crate) use directives::match_directive;
use directives::DirectiveParser;
use line::{
    parse_health_config, parse_maybe_json, parse_maybe_json_to_list, parse_name_val,
    parse_strings_whitespace_delimited, parse_words, split_command,
};

/// BuildKit's longest accepted physical line, `bufio.MaxScanTokenSize - 1`.
pub const MAX_LINE_LEN: usize = 64 * 1024 - 1;

/// One instruction of the AST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The instruction keyword as written (BuildKit matches it case-insensitively).
    pub cmd: String,
    /// The leading `--name=value` words.
    pub flags: Vec<String>,
    /// The arguments as the line parser split them; for ENV and LABEL
    /// `[key, value, sep]` triples. Empty for ONBUILD (see `onbuild`).
    pub args: Vec<String>,
    /// Whether the arguments were a JSON array (exec form).
    pub json: bool,
    /// Here-documents, in the order they were opened.
    pub heredocs: Vec<Heredoc>,
    /// The instruction ONBUILD wraps.
    pub onbuild: Option<Box<Node>>,
    /// The logical line (continuations joined, comments removed).
    pub original: String,
    /// First physical line, 1-based.
    pub start_line: usize,
    /// Last physical line, heredoc bodies included.
    pub end_line: usize,
    /// Comment lines right above the instruction.
    pub prev_comment: Vec<String>,
}

impl Node {
    /// The lower-cased keyword.
    pub fn keyword(&self) -> String {
        self.cmd.to_lowercase()
    }

    /// BuildKit's `nodeArgs`: for ONBUILD the nested keyword then its args.
    pub fn flat_args(&self) -> Vec<String> {
        match &self.onbuild {
            Some(sub) => {
                let mut v = vec![sub.cmd.clone()];
                v.extend(sub.flat_args());
                v
            }
            None => self.args.clone(),
        }
    }

    fn can_contain_heredoc(&self) -> bool {
        let node = match (&self.onbuild, self.keyword().as_str()) {
            (Some(sub), "onbuild") => sub.as_ref(),
            _ => self,
        };
        matches!(node.keyword().as_str(), "add" | "copy" | "run") && !node.json
    }
}

/// A non-fatal finding, like BuildKit's parser warnings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// One-line description.
    pub short: String,
    /// Longer explanation.
    pub detail: String,
    /// Documentation link.
    pub url: String,
    /// 1-based line.
    pub line: usize,
}

/// The parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseResult {
    /// Instructions in order.
    pub nodes: Vec<Node>,
    /// Parser directives found at the top.
    pub directives: Vec<Directive>,
    /// The escape character in effect.
    pub escape: char,
    /// Warnings, e.g. empty continuation lines.
    pub warnings: Vec<Warning>,
}

impl ParseResult {
    /// The value of directive `name` (lower-case), if present.
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives.iter().find(|d| d.name == name).map(|d| d.value.as_str())
    }
}

struct Directives {
    parser: DirectiveParser,
    escape: char,
    found: Vec<Directive>,
}

impl Directives {
    fn possible(&mut self, line: &str) -> Result<bool, String> {
        let Some(d) = self.parser.parse_line(line)? else { return Ok(false) };
        if d.name == "escape" {
            self.escape = match d.value.as_str() {
                "`" => '`',
                "\\" => '\\',
                v => return Err(format!("invalid escape token '{v}' does not match ` or \\")),
            };
        }
        self.found.push(d);
        Ok(true)
    }
}

/// Physical lines with their endings, enforcing the scanner's size limit.
struct Lines<'a> {
    data: &'a str,
    pos: usize,
    too_long: bool,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.pos >= self.data.len() || self.too_long {
            return None;
        }
        let rest = &self.data[self.pos..];
        let (tok, limit) = match rest.find('\n') {
            Some(i) => (&rest[..=i], MAX_LINE_LEN + 1),
            None => (rest, MAX_LINE_LEN),
        };
        if tok.len() > limit {
            self.too_long = true;
            return None;
        }
        self.pos += tok.len();
        Some(tok)
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(s: &str) -> bool {
    s.trim_start_matches(is_space).starts_with('#')
}

/// Trims the first-line whitespace, notes directives and drops comments.
fn process_line<'a>(d: &mut Directives, tok: &'a str, strip: bool) -> Result<(&'a str, bool), String> {
    let mut t = trim_newline(tok);
    if strip {
        t = t.trim_start_matches(is_space);
    }
    let ok = d.possible(t)?;
    Ok((if is_comment(t) { "" } else { t }, ok))
}

/// Removes a trailing escape (plus spaces/tabs); false when the line continues.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else { return (line, true) };
    if before.is_empty() || !before.ends_with(escape) {
        return (before, false);
    }
    (line, true)
}

fn syntax(message: impl Into<String>, start_line: usize, end_line: usize) -> Error {
    Error::Syntax { message: message.into(), start_line, end_line }
}

/// Parses a Dockerfile.
pub fn parse(input: &[u8]) -> Result<ParseResult, Error> {
    let text = String::from_utf8_lossy(input);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines = Lines { data: text, pos: 0, too_long: false };
    let mut d = Directives { parser: DirectiveParser::default(), escape: '\\', found: Vec::new() };
    let mut current = 0usize;
    let mut nodes: Vec<Node> = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();

    while let Some(tok) = lines.next() {
        if is_comment(tok) {
            let c = trim_space(tok.get(1..).unwrap_or(""));
            if c.is_empty() {
                comments.clear();
            } else {
                comments.push(c.to_string());
            }
        }
        // BuildKit locates a directive error at the count of lines read
        // before the offending one, i.e. one line above it (line 0 for the
        // first line); match it so that diagnostics point where BuildKit's do.
        let (first, directive) = process_line(&mut d, tok, true).map_err(|e| syntax(e, current, current))?;
        if directive {
            comments.pop();
        }
        current += 1;
        let start = current;
        let (first, mut eol) = trim_continuation(first, d.escape);
        if eol && first.is_empty() {
            continue;
        }
        let mut buf = first.to_string();
        let mut empty_continuation = false;
        while !eol {
            let Some(tok) = lines.next() else { break };
            let (p, _) = process_line(&mut d, tok, false).map_err(|e| syntax(e, current, current))?;
            current += 1;
            if is_comment(tok) {
                continue;
            }
            if p.trim_start_matches(is_space).is_empty() {
                empty_continuation = true;
                continue;
            }
            let (p, e) = trim_continuation(p, d.escape);
            eol = e;
            buf.push_str(p);
        }
        if empty_continuation {
            warnings.push(Warning {
                short: format!("Empty continuation line found in: {buf}"),
                detail: "Empty continuation lines will become errors in a future release".into(),
                url: "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/".into(),
                line: current,
            });
        }
        let mut node =
            node_from_line(&buf, d.escape, std::mem::take(&mut comments)).map_err(|e| syntax(e, start, current))?;
        if node.can_contain_heredoc() && buf.contains("<<") {
            let docs = heredoc::heredocs_from_line(&buf).map_err(|e| syntax(e, start, current))?;
            for mut doc in docs {
                let mut terminated = false;
                for tok in lines.by_ref() {
                    current += 1;
                    let mut candidate = trim_newline(tok);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(tok);
                }
                if !terminated {
                    return Err(syntax("unterminated heredoc", start, current));
                }
                node.heredocs.push(doc);
            }
        }
        node.start_line = start;
        node.end_line = current;
        if let Some(sub) = node.onbuild.as_mut() {
            sub.start_line = start;
            sub.end_line = current;
        }
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(syntax("file with no instructions", current, current));
    }
    if lines.too_long {
        return Err(syntax(
            format!("dockerfile line greater than max allowed size of {MAX_LINE_LEN}"),
            current,
            current,
        ));
    }
    Ok(ParseResult { nodes, directives: d.found, escape: d.escape, warnings })
}

/// Splits one logical line and dispatches to the instruction's line parser.
fn node_from_line(line: &str, escape: char, comments: Vec<String>) -> Result<Node, String> {
    let (cmd, flags, rest) = split_command(line);
    let mut node = Node {
        cmd,
        flags,
        args: Vec::new(),
        json: false,
        heredocs: Vec::new(),
        onbuild: None,
        original: line.to_string(),
        start_line: 0,
        end_line: 0,
        prev_comment: comments,
    };
    let (args, json) = match node.keyword().as_str() {
        "add" | "copy" | "volume" => parse_maybe_json_to_list(&rest)?,
        "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(&rest)?,
        "arg" => (parse_words(&rest, escape), false),
        "env" => (parse_name_val(&rest, "ENV", escape)?, false),
        "label" => (parse_name_val(&rest, "LABEL", escape)?, false),
        "expose" | "from" => (parse_strings_whitespace_delimited(&rest), false),
        "healthcheck" => parse_health_config(&rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            (if rest.is_empty() { Vec::new() } else { vec![rest.clone()] }, false)
        }
        "onbuild" => {
            if !rest.is_empty() {
                node.onbuild = Some(Box::new(node_from_line(&rest, escape, Vec::new())?));
            }
            (Vec::new(), false)
        }
        // Unknown instructions keep one empty argument, as BuildKit's parseIgnore.
        _ => (vec![String::new()], false),
    };
    node.args = args;
    node.json = json;
    Ok(node)
}

#[cfg(test)]
mod tests;
