//! Go `text/template`, as docker's and buildx's `--format` take it, over
//! the JSON value a command prints for `--format json` (one data model):
//! `{{.Field.Sub}}`, `{{json .X}}`, `{{range}}`, `{{if}}`/`{{else}}`,
//! `{{with}}`, variables, pipelines and the functions docker documents
//! (`join`, `split`, `upper`, `lower`, `title`, `truncate`, `pad`, `json`,
//! Go's built-ins). A `table` prefix aligns tab-separated columns under a
//! header, as docker's formatter does.

mod exec;
mod parse;
mod printf;

use serde_json::Value;

/// A template that did not parse or did not execute; the message is Go's
/// (`template: :1:2: executing "" at <.Foo>: can't evaluate field Foo in type ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Parse(String),
    Exec(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Parse(m) => write!(f, "template parsing error: {m}"),
            Error::Exec(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    src: String,
    nodes: Vec<parse::Node>,
    root_type: String,
    json_indent: Option<String>,
}

impl Template {
    /// Parses `src`; an unknown function is a parse error, as in Go.
    pub fn parse(src: &str) -> Result<Template, Error> {
        let nodes = parse::parse(src)?;
        check_funcs(src, &nodes)?;
        Ok(Template { src: src.to_string(), nodes, root_type: "interface {}".to_string(), json_indent: None })
    }

    /// Names the type of the data in "can't evaluate field X in type T".
    pub fn with_type(mut self, name: &str) -> Template {
        self.root_type = name.to_string();
        self
    }

    /// `json` prints indented JSON, as buildx's templates do.
    pub fn with_json_indent(mut self, indent: &str) -> Template {
        self.json_indent = Some(indent.to_string());
        self
    }

    /// Calls `f` with every operand of the template, nested ones included.
    fn visit(&self, f: &mut impl FnMut(&parse::Arg)) {
        fn pipe(p: &parse::Pipe, f: &mut impl FnMut(&parse::Arg)) {
            for a in p.cmds.iter().flatten() {
                f(a);
                if let parse::Arg::Sub(inner, _) = a {
                    pipe(inner, f);
                }
            }
        }
        fn nodes(ns: &[parse::Node], f: &mut impl FnMut(&parse::Arg)) {
            for n in ns {
                match n {
                    parse::Node::Text(_) => {}
                    parse::Node::Action(p) => pipe(p, f),
                    parse::Node::If(b) | parse::Node::Range(b) | parse::Node::With(b) => {
                        pipe(&b.pipe, f);
                        nodes(&b.body, f);
                        nodes(&b.otherwise, f);
                    }
                }
            }
        }
        nodes(&self.nodes, f)
    }

    /// Whether the template may read top-level `field` (`.Image...`), or
    /// the whole data (`{{json .}}`, `$`): to fetch only what it uses.
    pub fn may_read(&self, field: &str) -> bool {
        let mut found = false;
        self.visit(&mut |a| {
            if let parse::Arg::Field(names) | parse::Arg::Var(_, names) = a {
                found |= names.first().is_none_or(|n| n.eq_ignore_ascii_case(field));
            }
        });
        found
    }

    /// The first name of every `.Field` the template reads.
    fn field_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.visit(&mut |a| {
            if let parse::Arg::Field(names) = a {
                out.extend(names.first().cloned());
            }
        });
        out
    }

    /// Runs the template with `data` as dot and `$`.
    pub fn execute(&self, data: &Value) -> Result<String, Error> {
        let mut e = exec::Exec {
            src: &self.src,
            root_type: &self.root_type,
            json_indent: self.json_indent.as_deref(),
            vars: vec![("$".to_string(), data.clone())],
            out: String::new(),
            dot_type: self.root_type.clone(),
        };
        e.run(&self.nodes, data)?;
        Ok(e.out)
    }
}

fn check_funcs(src: &str, nodes: &[parse::Node]) -> Result<(), Error> {
    fn pipe(src: &str, p: &parse::Pipe) -> Result<(), Error> {
        for cmd in &p.cmds {
            for a in cmd {
                match a {
                    parse::Arg::Func(f) if !exec::FUNCS.contains(&f.as_str()) => {
                        return Err(Error::Parse(format!(
                            "template: :{}: function {f:?} not defined",
                            parse::line_of(src, p.pos)
                        )))
                    }
                    parse::Arg::Sub(inner, _) => pipe(src, inner)?,
                    _ => {}
                }
            }
        }
        Ok(())
    }
    for n in nodes {
        match n {
            parse::Node::Text(_) => {}
            parse::Node::Action(p) => pipe(src, p)?,
            parse::Node::If(b) | parse::Node::Range(b) | parse::Node::With(b) => {
                pipe(src, &b.pipe)?;
                check_funcs(src, &b.body)?;
                check_funcs(src, &b.otherwise)?;
            }
        }
    }
    Ok(())
}

/// What a `--format` value asks for.
#[derive(Debug, Clone)]
pub enum Format {
    /// `table` (or nothing): the command's own layout.
    Default,
    /// `json`: the command's JSON.
    Json,
    /// A template; `table` when it had the `table` prefix.
    Template { template: Template, table: bool },
}

impl Format {
    /// Reads a `--format` value as docker does: `table` and `json` are
    /// names, `table TEMPLATE` a table, anything else a template; `\t` and
    /// `\n` written out stand for a tab and a newline.
    pub fn parse(s: &str) -> Result<Format, Error> {
        let trimmed = s.trim();
        match trimmed {
            "" | "table" => return Ok(Format::Default),
            "json" => return Ok(Format::Json),
            _ => {}
        }
        let (table, body) = match trimmed.strip_prefix("table") {
            Some(rest) if rest.starts_with(char::is_whitespace) => (true, rest.trim_matches(' ')),
            _ => (false, s),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        Ok(Format::Template { template: Template::parse(&body)?, table })
    }
}

/// clap's reader of a `--format` value.
pub fn format_arg(s: &str) -> Result<Format, String> {
    Format::parse(s).map_err(|e| e.to_string())
}

/// `CreatedSince` → `CREATED SINCE`, docker's header for a field it has no
/// special name for.
pub fn header_name(field: &str) -> String {
    let mut out = String::new();
    let cs: Vec<char> = field.chars().collect();
    for (i, c) in cs.iter().enumerate() {
        let boundary = i > 0
            && c.is_uppercase()
            && (cs[i - 1].is_lowercase()
                || cs.get(i + 1).is_some_and(|n| n.is_lowercase()) && cs[i - 1].is_uppercase());
        if boundary {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out
}

/// Each row through `template`, one per line; with `table`, a header line
/// first (the template run over each field's header name: `headers`, else
/// [`header_name`]) and the tab-separated cells aligned as docker's
/// tabwriter does.
pub fn render_rows(
    template: &Template,
    table: bool,
    rows: &[Value],
    headers: &[(&str, &str)],
) -> Result<String, Error> {
    let mut lines = Vec::new();
    if table {
        let mut h = serde_json::Map::new();
        for (k, v) in headers {
            h.insert(k.to_string(), Value::from(*v));
        }
        // Every field the template names, so that a header shows with no rows too.
        for k in template.field_names() {
            h.entry(k.clone()).or_insert_with(|| Value::from(header_name(&k)));
        }
        if let Ok(line) = template.execute(&Value::Object(h)) {
            if !line.trim().is_empty() {
                lines.push(line);
            }
        }
    }
    for r in rows {
        lines.push(template.execute(r)?);
    }
    if !table {
        return Ok(lines.iter().map(|l| format!("{l}\n")).collect());
    }
    let cells: Vec<Vec<String>> =
        lines.iter().flat_map(|l| l.split('\n')).map(|l| l.split('\t').map(str::to_string).collect()).collect();
    Ok(crate::cmd::output::columns(&cells))
}

#[cfg(test)]
mod tests;
