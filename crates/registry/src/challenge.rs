//! `WWW-Authenticate` parsing (RFC 7235 challenges with quoted parameters)
//! and repository scopes.

use std::collections::BTreeMap;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme in lower case: `basic` or `bearer`.
    pub scheme: String,
    /// Parameters with lower-case names (`realm`, `service`, `scope`, `error`).
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses all challenges of one or more `WWW-Authenticate` header values.
/// Unparseable parts are skipped rather than failing the whole header.
pub fn parse(headers: &[&str]) -> Vec<Challenge> {
    let mut out = Vec::new();
    for h in headers {
        parse_one(h, &mut out);
    }
    out
}

fn parse_one(h: &str, out: &mut Vec<Challenge>) {
    let s = h.as_bytes();
    let mut i = 0;
    let mut current: Option<Challenge> = None;
    loop {
        while i < s.len() && (s[i] == b' ' || s[i] == b'\t' || s[i] == b',') {
            i += 1;
        }
        if i >= s.len() {
            break;
        }
        let start = i;
        while i < s.len() && is_token_char(s[i]) {
            i += 1;
        }
        if i == start {
            // Not a token: skip one byte and resynchronise.
            i += 1;
            continue;
        }
        let token = &h[start..i];
        let mut j = i;
        while j < s.len() && (s[j] == b' ' || s[j] == b'\t') {
            j += 1;
        }
        if j < s.len() && s[j] == b'=' && current.is_some() {
            // auth-param: name=value or name="quoted"
            j += 1;
            while j < s.len() && (s[j] == b' ' || s[j] == b'\t') {
                j += 1;
            }
            let (value, next) = read_value(h, j);
            if let Some(c) = current.as_mut() {
                c.params.insert(token.to_ascii_lowercase(), value);
            }
            i = next;
        } else {
            // A new scheme (token68 after the scheme is ignored).
            if let Some(c) = current.take() {
                out.push(c);
            }
            current = Some(Challenge { scheme: token.to_ascii_lowercase(), params: BTreeMap::new() });
        }
    }
    if let Some(c) = current {
        out.push(c);
    }
}

fn read_value(h: &str, mut j: usize) -> (String, usize) {
    let s = h.as_bytes();
    if j < s.len() && s[j] == b'"' {
        j += 1;
        let mut v = Vec::new();
        while j < s.len() && s[j] != b'"' {
            if s[j] == b'\\' && j + 1 < s.len() {
                j += 1;
            }
            v.push(s[j]);
            j += 1;
        }
        (String::from_utf8_lossy(&v).into_owned(), (j + 1).min(s.len()))
    } else {
        let start = j;
        while j < s.len() && s[j] != b',' && s[j] != b' ' && s[j] != b'\t' {
            j += 1;
        }
        (h[start..j].to_string(), j)
    }
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&b)
}

/// The access asked of a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// Read.
    Pull,
    /// Read and write.
    Push,
}

/// A set of `repository:NAME:ACTIONS` scopes, kept sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scopes(BTreeMap<String, Access>);

impl Scopes {
    /// `repository:NAME:pull` or `repository:NAME:pull,push`.
    pub fn repo(name: &str, access: Access) -> Scopes {
        Scopes::default().with(name, access)
    }

    /// Adds a repository scope (the stronger access wins).
    pub fn with(mut self, name: &str, access: Access) -> Scopes {
        let e = self.0.entry(name.to_string()).or_insert(access);
        *e = (*e).max(access);
        self
    }

    /// The scope strings.
    pub fn strings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(n, a)| match a {
                Access::Pull => format!("repository:{n}:pull"),
                Access::Push => format!("repository:{n}:pull,push"),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_quoted_commas() {
        let c = parse(&[
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        ]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull,push"));
    }

    #[test]
    fn basic_and_multiple_and_escapes() {
        let c = parse(&[r#"Basic realm="Registry Realm", Bearer realm="x\"y", error="invalid_token""#, "basic"]);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[1].param("realm"), Some("x\"y"));
        assert_eq!(c[1].param("error"), Some("invalid_token"));
        assert_eq!(c[2].scheme, "basic");
        let u = parse(&[r#"Bearer  realm = https://a/t , service=reg"#]);
        assert_eq!(u[0].param("realm"), Some("https://a/t"));
        assert_eq!(u[0].param("service"), Some("reg"));
        assert!(parse(&["", " , "]).is_empty());
    }

    #[test]
    fn scopes_merge() {
        let s = Scopes::repo("a/b", Access::Push).with("c/d", Access::Pull).with("a/b", Access::Pull);
        assert_eq!(s.strings(), vec!["repository:a/b:pull,push", "repository:c/d:pull"]);
    }
}
