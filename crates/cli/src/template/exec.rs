//! Executes a parsed template over a JSON value, with Go's rules for
//! fields, truth, printing and the functions docker's templates have.

use serde_json::Value;

use super::parse::{Arg, Branch, Node, Pipe};
use super::Error;

/// Functions a template may call: Go's built-ins and docker's additions.
pub const FUNCS: &[&str] = &[
    "and", "or", "not", "len", "index", "eq", "ne", "lt", "le", "gt", "ge", "print", "printf", "println", "json",
    "join", "split", "upper", "lower", "title", "truncate", "pad",
];

pub struct Exec<'a> {
    pub src: &'a str,
    pub root_type: &'a str,
    /// `json` indents with this (buildx's `MarshalIndent`), else is compact (docker's).
    pub json_indent: Option<&'a str>,
    pub vars: Vec<(String, Value)>,
    pub out: String,
    /// What dot is, for errors: the root type, or the field a `range` or
    /// `with` took it from.
    pub dot_type: String,
}

/// A failure and the action it happened in.
struct Fail(String);

type R<T> = Result<T, Fail>;

impl Exec<'_> {
    pub fn run(&mut self, nodes: &[Node], dot: &Value) -> Result<(), Error> {
        self.walk(nodes, dot)
    }

    fn error(&self, pipe: &Pipe, msg: String) -> Error {
        let before = &self.src[..pipe.pos.min(self.src.len())];
        let line = 1 + before.matches('\n').count();
        let col = pipe.pos - before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        Error::Exec(format!("template: :{line}:{col}: executing \"\" at <{}>: {msg}", pipe.text))
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<(), Error> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot).map_err(|Fail(m)| self.error(p, m))?;
                    if p.decl.is_empty() {
                        let s = print(&v);
                        self.out.push_str(&s);
                    }
                }
                Node::If(b) => self.branch(b, dot, false)?,
                Node::With(b) => self.branch(b, dot, true)?,
                Node::Range(b) => self.range(b, dot)?,
            }
        }
        Ok(())
    }

    /// `if`, or `with` (whose body has the value as dot), and their else list.
    fn branch(&mut self, b: &Branch, dot: &Value, with: bool) -> Result<(), Error> {
        let mark = self.vars.len();
        let v = self.pipe(&b.pipe, dot).map_err(|Fail(m)| self.error(&b.pipe, m))?;
        let r = match (truth(&v), with) {
            (true, false) => self.walk(&b.body, dot),
            (true, true) => self.with_dot_type(&b.pipe, |e| e.walk(&b.body, &v)),
            (false, _) => self.walk(&b.otherwise, dot),
        };
        self.vars.truncate(mark);
        r
    }

    /// Runs `f` with dot named after the field `pipe` reads (`.Nodes` → `Nodes`).
    fn with_dot_type<T>(&mut self, pipe: &Pipe, f: impl FnOnce(&mut Self) -> T) -> T {
        let name = match pipe.cmds.last().map(Vec::as_slice) {
            Some([Arg::Field(names)]) | Some([Arg::Var(_, names)]) => names.last().cloned(),
            _ => None,
        };
        let saved = std::mem::replace(&mut self.dot_type, name.unwrap_or_else(|| "interface {}".to_string()));
        let r = f(self);
        self.dot_type = saved;
        r
    }

    fn range(&mut self, b: &Branch, dot: &Value) -> Result<(), Error> {
        let mark = self.vars.len();
        let p = &b.pipe;
        let decl = p.decl.clone();
        let v = self.eval_cmds(p, dot).map_err(|Fail(m)| self.error(p, m))?;
        let items: Vec<(Value, Value)> = match &v {
            Value::Array(a) => a.iter().enumerate().map(|(i, e)| (Value::from(i), e.clone())).collect(),
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                keys.into_iter().map(|k| (Value::from(k.clone()), o[k].clone())).collect()
            }
            Value::Null => Vec::new(),
            Value::Number(n) if n.as_u64().is_some() => {
                (0..n.as_u64().unwrap_or(0)).map(|i| (i.into(), i.into())).collect()
            }
            other => return Err(self.error(p, format!("range can't iterate over {}", print(other)))),
        };
        if items.is_empty() {
            let r = self.walk(&b.otherwise, dot);
            self.vars.truncate(mark);
            return r;
        }
        for (k, e) in items {
            let inner = self.vars.len();
            match decl.as_slice() {
                [one] => self.vars.push((one.clone(), e.clone())),
                [i, x] => {
                    self.vars.push((i.clone(), k));
                    self.vars.push((x.clone(), e.clone()));
                }
                _ => {}
            }
            self.with_dot_type(p, |x| x.walk(&b.body, &e))?;
            self.vars.truncate(inner);
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn pipe(&mut self, p: &Pipe, dot: &Value) -> R<Value> {
        let v = self.eval_cmds(p, dot)?;
        match p.decl.as_slice() {
            [] => {}
            [name] if p.assign => match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = v.clone(),
                None => return Err(Fail(format!("undefined variable: {name}"))),
            },
            [name] => self.vars.push((name.clone(), v.clone())),
            _ => return Err(Fail("too many declarations in command".to_string())),
        }
        Ok(v)
    }

    fn eval_cmds(&mut self, p: &Pipe, dot: &Value) -> R<Value> {
        let mut last: Option<Value> = None;
        for cmd in &p.cmds {
            last = Some(self.cmd(cmd, dot, last)?);
        }
        Ok(last.unwrap_or(Value::Null))
    }

    fn cmd(&mut self, cmd: &[Arg], dot: &Value, piped: Option<Value>) -> R<Value> {
        if let Some(Arg::Func(name)) = cmd.first().filter(|a| matches!(a, Arg::Func(f) if f == "and" || f == "or")) {
            // Go evaluates `and`/`or` operands only until the answer is known.
            let want = name == "or";
            let mut last = Value::Null;
            for a in &cmd[1..] {
                last = self.arg(a, dot)?;
                if truth(&last) == want {
                    return Ok(last);
                }
            }
            return Ok(piped.unwrap_or(last));
        }
        if let Some(Arg::Func(name)) = cmd.first() {
            let mut args = cmd[1..].iter().map(|a| self.arg(a, dot)).collect::<R<Vec<_>>>()?;
            args.extend(piped);
            return call(name, &args, self.json_indent);
        }
        if cmd.len() > 1 || piped.is_some() {
            return Err(Fail(format!("can't give argument to non-function {}", describe(&cmd[0]))));
        }
        self.arg(&cmd[0], dot)
    }

    fn arg(&mut self, a: &Arg, dot: &Value) -> R<Value> {
        match a {
            Arg::Field(names) => fields(dot, names, &self.dot_type),
            Arg::Var(name, names) => {
                let base = self.vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone());
                let base = base.ok_or_else(|| Fail(format!("undefined variable: {name}")))?;
                fields(&base, names, if name == "$" { self.root_type } else { "interface {}" })
            }
            Arg::Func(name) => call(name, &[], self.json_indent),
            Arg::Str(s) => Ok(Value::from(s.clone())),
            Arg::Int(n) => Ok(Value::from(*n)),
            Arg::Float(f) => Ok(Value::from(*f)),
            Arg::Bool(b) => Ok(Value::from(*b)),
            Arg::Nil => Ok(Value::Null),
            Arg::Sub(p, names) => {
                let v = self.pipe(p, dot)?;
                fields(&v, names, "interface {}")
            }
        }
    }
}

fn describe(a: &Arg) -> String {
    match a {
        Arg::Field(n) => format!(".{}", n.join(".")),
        Arg::Var(v, n) if n.is_empty() => v.clone(),
        Arg::Var(v, n) => format!("{v}.{}", n.join(".")),
        Arg::Str(s) => format!("{s:?}"),
        other => format!("{other:?}"),
    }
}

/// `.A.B` from `v`. Keys match as written, else ignoring case (docker's
/// JSON keys are Go's field names or their lowercase tags).
fn fields(v: &Value, names: &[String], root_type: &str) -> R<Value> {
    let mut cur = v;
    let mut ty = root_type.to_string();
    for n in names {
        cur = match cur {
            Value::Object(o) => o
                .get(n)
                .or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v))
                .ok_or_else(|| Fail(format!("can't evaluate field {n} in type {ty}")))?,
            Value::Null => return Err(Fail(format!("nil pointer evaluating {ty}.{n}"))),
            other => return Err(Fail(format!("can't evaluate field {n} in type {}", type_name(other)))),
        };
        ty = n.clone();
    }
    Ok(cur.clone())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "interface {}",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's truth: false, 0, nil and empty strings, lists and maps are false.
pub fn truth(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A value as Go's `%v` prints it (`[a b]`, `map[k:v]`); a null (an
/// absent string or list in the JSON) prints as nothing, as docker's empty
/// fields do.
pub fn print(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        other => inner(other),
    }
}

fn inner(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i64),
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(inner).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys.into_iter().map(|k| format!("{k}:{}", inner(&o[k]))).collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

fn text(v: &Value) -> String {
    inner(v)
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn equal(a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn compare(name: &str, a: &Value, b: &Value) -> R<std::cmp::Ordering> {
    let o = match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
    };
    o.ok_or_else(|| Fail(format!("error calling {name}: incompatible types for comparison")))
}

fn want(name: &str, args: &[Value], n: usize) -> R<()> {
    if args.len() == n {
        return Ok(());
    }
    Err(Fail(format!("wrong number of args for {name}: want {n} got {}", args.len())))
}

fn int_arg(name: &str, v: &Value) -> R<i64> {
    v.as_i64().ok_or_else(|| Fail(format!("error calling {name}: {} is not an integer", print(v))))
}

fn call(name: &str, args: &[Value], json_indent: Option<&str>) -> R<Value> {
    use std::cmp::Ordering::*;
    let s = |i: usize| args.get(i).map(text).unwrap_or_default();
    Ok(match name {
        "and" => args.iter().find(|v| !truth(v)).or(args.last()).cloned().unwrap_or(Value::Null),
        "or" => args.iter().find(|v| truth(v)).or(args.last()).cloned().unwrap_or(Value::Null),
        "not" => {
            want(name, args, 1)?;
            Value::from(!truth(&args[0]))
        }
        "len" => {
            want(name, args, 1)?;
            Value::from(match &args[0] {
                Value::String(x) => x.len(),
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                other => return Err(Fail(format!("error calling len: len of type {}", type_name(other)))),
            })
        }
        "index" => index(args)?,
        "eq" => {
            if args.len() < 2 {
                return Err(Fail("missing argument for comparison".to_string()));
            }
            Value::from(args[1..].iter().any(|b| equal(&args[0], b)))
        }
        "ne" => {
            want(name, args, 2)?;
            Value::from(!equal(&args[0], &args[1]))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, args, 2)?;
            let o = compare(name, &args[0], &args[1])?;
            Value::from(match name {
                "lt" => o == Less,
                "le" => o != Greater,
                "gt" => o == Greater,
                _ => o != Less,
            })
        }
        "print" => Value::from(sprint(args)),
        "println" => Value::from(format!("{}\n", args.iter().map(text).collect::<Vec<_>>().join(" "))),
        "printf" => Value::from(super::printf::sprintf(&s(0), args.get(1..).unwrap_or_default())),
        "json" => {
            want(name, args, 1)?;
            let text = match json_indent {
                Some(i) => crate::cmd::output::json_indented(&args[0], i.as_bytes()).map_err(|e| e.to_string()),
                None => serde_json::to_string(&args[0]).map_err(|e| e.to_string()),
            };
            Value::from(text.map_err(|e| Fail(format!("error calling json: {e}")))?)
        }
        "join" => {
            want(name, args, 2)?;
            let parts: Vec<String> = match &args[0] {
                Value::Array(a) => a.iter().map(text).collect(),
                Value::Null => Vec::new(),
                other => vec![text(other)],
            };
            Value::from(parts.join(&s(1)))
        }
        "split" => {
            want(name, args, 2)?;
            Value::from(s(0).split(s(1).as_str()).map(Value::from).collect::<Vec<_>>())
        }
        "upper" => Value::from(s(0).to_uppercase()),
        "lower" => Value::from(s(0).to_lowercase()),
        "title" => Value::from(title(&s(0))),
        "truncate" => {
            want(name, args, 2)?;
            let n = int_arg(name, &args[1])?.max(0) as usize;
            Value::from(s(0).chars().take(n).collect::<String>())
        }
        "pad" => {
            want(name, args, 3)?;
            let (l, r) = (int_arg(name, &args[1])?.max(0) as usize, int_arg(name, &args[2])?.max(0) as usize);
            Value::from(format!("{}{}{}", " ".repeat(l), s(0), " ".repeat(r)))
        }
        other => return Err(Fail(format!("function {other:?} not defined"))),
    })
}

fn index(args: &[Value]) -> R<Value> {
    let Some((first, keys)) = args.split_first() else {
        return Err(Fail("wrong number of args for index: want at least 1 got 0".to_string()));
    };
    let mut cur = first.clone();
    for k in keys {
        cur = match (&cur, k) {
            (Value::Array(a), k) => {
                let i = k.as_i64().ok_or_else(|| {
                    Fail(format!("error calling index: cannot index slice/array with type {}", type_name(k)))
                })?;
                a.get(usize::try_from(i).unwrap_or(usize::MAX))
                    .cloned()
                    .ok_or_else(|| Fail(format!("error calling index: index out of range: {i}")))?
            }
            (Value::Object(o), Value::String(key)) => o.get(key).cloned().unwrap_or(Value::Null),
            (Value::Null, _) => return Err(Fail("error calling index: index of untyped nil".to_string())),
            (other, _) => {
                return Err(Fail(format!("error calling index: can't index item of type {}", type_name(other))))
            }
        };
    }
    Ok(cur)
}

/// Go's `fmt.Sprint`: spaces between operands when neither is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !a.is_string() && !args[i - 1].is_string() {
            out.push(' ');
        }
        out.push_str(&text(a));
    }
    out
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric() && c != '\'' && c != '_';
    }
    out
}
