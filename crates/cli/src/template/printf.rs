//! The verbs of Go's `fmt.Sprintf` that templates use: `%v %s %d %q %t
//! %x %f %%`, with a width and the `-` and `0` flags.

use serde_json::Value;

use super::exec::print;

fn show(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        other => print(other),
    }
}

fn verb(c: char, v: Option<&Value>, prec: Option<usize>) -> String {
    let Some(v) = v else { return format!("%!{c}(MISSING)") };
    match c {
        'v' | 's' => show(v),
        'd' => match v.as_i64() {
            Some(n) => n.to_string(),
            None => format!("%!d({})", show(v)),
        },
        'q' => serde_json::to_string(&show(v)).unwrap_or_default(),
        't' => match v {
            Value::Bool(b) => b.to_string(),
            other => format!("%!t({})", show(other)),
        },
        'x' => match (v.as_i64(), v) {
            (Some(n), _) => format!("{n:x}"),
            (_, Value::String(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            _ => format!("%!x({})", show(v)),
        },
        'f' => match v.as_f64() {
            Some(f) => format!("{f:.*}", prec.unwrap_or(6)),
            None => format!("%!f({})", show(v)),
        },
        other => format!("%!{other}({})", show(v)),
    }
}

/// `fmt.Sprintf(format, args...)`.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = format.chars().peekable();
    let mut next = args.iter();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut left, mut zero) = (false, false);
        while let Some(&f) = it.peek().filter(|f| **f == '-' || **f == '0' || **f == '+' || **f == ' ') {
            left |= f == '-';
            zero |= f == '0';
            it.next();
        }
        let mut width = 0usize;
        while let Some(d) = it.peek().and_then(|c| c.to_digit(10)) {
            width = width * 10 + d as usize;
            it.next();
        }
        let mut prec = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = 0usize;
            while let Some(d) = it.peek().and_then(|c| c.to_digit(10)) {
                p = p * 10 + d as usize;
                it.next();
            }
            prec = Some(p);
        }
        let Some(v) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if v == '%' {
            out.push('%');
            continue;
        }
        let mut s = verb(v, next.next(), prec);
        if let (Some(p), 's' | 'v') = (prec, v) {
            s = s.chars().take(p).collect();
        }
        let pad = width.saturating_sub(s.chars().count());
        if left {
            s.push_str(&" ".repeat(pad));
        } else {
            let fill = if zero { "0" } else { " " };
            s = format!("{}{s}", fill.repeat(pad));
        }
        out.push_str(&s);
    }
    let extra: Vec<String> = next.map(show).collect();
    if !extra.is_empty() {
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}
