//! Instruction flags (`--name=value`), as BuildKit's `instructions/bflag.go`,
//! plus the "did you mean" suggestion of `util/suggest`.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Str,
    Strings,
}

#[derive(Debug, Clone)]
struct Flag {
    name: &'static str,
    kind: Kind,
    value: Option<String>,
    values: Vec<String>,
}

/// The flags declared for one instruction and the words given to it.
#[derive(Debug, Clone)]
pub(crate) struct BFlags {
    args: Vec<String>,
    flags: Vec<Flag>,
    used: BTreeSet<&'static str>,
}

/// A rejected flag: the message and the word to point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlagError {
    pub message: String,
    pub word: String,
}

impl BFlags {
    pub(crate) fn new(args: &[String]) -> BFlags {
        BFlags { args: args.to_vec(), flags: Vec::new(), used: BTreeSet::new() }
    }

    pub(crate) fn add_bool(&mut self, name: &'static str) {
        self.flags.push(Flag { name, kind: Kind::Bool, value: None, values: Vec::new() });
    }

    pub(crate) fn add_string(&mut self, name: &'static str) {
        self.flags.push(Flag { name, kind: Kind::Str, value: None, values: Vec::new() });
    }

    pub(crate) fn add_strings(&mut self, name: &'static str) {
        self.flags.push(Flag { name, kind: Kind::Strings, value: None, values: Vec::new() });
    }

    /// The value of a string flag, if given.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.flags.iter().find(|f| f.name == name).and_then(|f| f.value.clone())
    }

    /// Whether a boolean flag was given as true.
    pub(crate) fn bool(&self, name: &str) -> bool {
        self.string(name).as_deref() == Some("true")
    }

    /// A boolean flag's value if it was given at all.
    pub(crate) fn opt_bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }

    /// All values of a repeatable flag.
    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.flags.iter().find(|f| f.name == name).map(|f| f.values.clone()).unwrap_or_default()
    }

    /// Checks the given words against the declared flags.
    pub(crate) fn parse(&mut self) -> Result<(), FlagError> {
        let args = self.args.clone();
        for a in &args {
            let err = |message: String| FlagError { message, word: a.clone() };
            if a == "--" {
                break;
            }
            let Some(body) = a.strip_prefix("--") else {
                return Err(err(format!("arg should start with -- : {a}")));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let names: Vec<&str> = self.flags.iter().map(|f| f.name).collect();
            let Some(flag) = self.flags.iter_mut().find(|f| f.name == name) else {
                return Err(err(suggest(&format!("unknown flag: {name}"), name, &names, true)));
            };
            if self.used.contains(flag.name) && flag.kind != Kind::Strings {
                return Err(err(format!("duplicate flag specified: {name}")));
            }
            self.used.insert(flag.name);
            match flag.kind {
                Kind::Bool => {
                    if value == Some("") {
                        return Err(err(format!("missing a value on flag: {name}")));
                    }
                    let v = value.unwrap_or("").to_lowercase();
                    flag.value = Some(match v.as_str() {
                        "true" | "" => "true".into(),
                        "false" => "false".into(),
                        _ => {
                            return Err(err(format!(
                                "expecting boolean value for flag {name}, not: {}",
                                value.unwrap_or("")
                            )))
                        }
                    });
                }
                Kind::Str | Kind::Strings => {
                    let Some(v) = value else {
                        return Err(err(format!("missing a value on flag: {name}")));
                    };
                    flag.value = Some(v.to_string());
                    if flag.kind == Kind::Strings {
                        flag.values.push(v.to_string());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Levenshtein distance over characters.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// BuildKit's `suggest.Search`: the option within edit distance 2 of
/// `val` (the closest, the first of equals), none when one is equal.
pub fn search<S: AsRef<str>>(val: &str, options: &[S], case_sensitive: bool) -> Option<String> {
    let v = if case_sensitive { val.to_string() } else { val.to_lowercase() };
    let mut best = None;
    let mut min = 3;
    for opt in options {
        let o = if case_sensitive { opt.as_ref().to_string() } else { opt.as_ref().to_lowercase() };
        if o == v {
            return None;
        }
        let d = distance(&v, &o);
        if d < min {
            min = d;
            best = Some(o);
        }
    }
    best
}

/// Appends ` (did you mean X?)` when an option is within distance 2.
pub(crate) fn suggest(message: &str, val: &str, options: &[&str], case_sensitive: bool) -> String {
    let v = if case_sensitive { val.to_string() } else { val.to_lowercase() };
    let mut best: Option<String> = None;
    let mut min = 3;
    for opt in options {
        let o = if case_sensitive { opt.to_string() } else { opt.to_lowercase() };
        if o == v {
            return message.to_string();
        }
        let d = distance(&v, &o);
        if d < min {
            min = d;
            best = Some(if case_sensitive {
                o
            } else if val == val.to_lowercase() {
                o.to_lowercase()
            } else if val == val.to_uppercase() {
                o.to_uppercase()
            } else {
                o
            });
        }
    }
    match best {
        Some(m) => format!("{message} (did you mean {m}?)"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(words: &[&str]) -> BFlags {
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        let mut f = BFlags::new(&words);
        f.add_bool("link");
        f.add_string("from");
        f.add_strings("exclude");
        f
    }

    #[test]
    fn parses_values() {
        let mut f = flags(&["--link", "--from=a", "--exclude=x", "--exclude=y"]);
        f.parse().unwrap();
        assert!(f.bool("link"));
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert_eq!(f.strings("exclude"), vec!["x", "y"]);
        let mut f = flags(&["--link=FALSE"]);
        f.parse().unwrap();
        assert_eq!(f.opt_bool("link"), Some(false));
    }

    #[test]
    fn errors() {
        let msg = |w: &[&str]| flags(w).parse().unwrap_err().message;
        assert_eq!(msg(&["--chown=1"]), "unknown flag: chown");
        assert_eq!(msg(&["--form=a"]), "unknown flag: form (did you mean from?)");
        assert_eq!(msg(&["--from=a", "--from=b"]), "duplicate flag specified: from");
        assert_eq!(msg(&["--from"]), "missing a value on flag: from");
        assert_eq!(msg(&["--link="]), "missing a value on flag: link");
        assert_eq!(msg(&["--link=yes"]), "expecting boolean value for flag link, not: yes");
        assert_eq!(msg(&["-x"]), "arg should start with -- : -x");
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("unknown instruction: FORM", "FORM", &["FROM", "RUN"], false),
            "unknown instruction: FORM (did you mean FROM?)"
        );
        assert_eq!(suggest("x", "runn", &["RUN"], false), "x (did you mean run?)");
        assert_eq!(suggest("x", "zzzzz", &["RUN"], false), "x");
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
