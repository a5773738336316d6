//! The reference grammar of distribution/reference `regexp.go`, written
//! as plain functions that accept exactly what its anchored regular
//! expressions accept and capture what they capture.
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] remote-name
//! domain           := host [':' port-number]
//! host             := domain-name | IPv4address | \[ IPv6address \]
//! domain-name      := domain-component ['.' domain-component]*
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! port-number      := /[0-9]+/
//! path-component   := alpha-numeric [separator alpha-numeric]*
//! remote-name      := path-component ['/' path-component]*
//! alpha-numeric    := /[a-z0-9]+/
//! separator        := /[_.]|__|[-]+/
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := /[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}/
//! identifier       := /[a-f0-9]{64}/
//! ```

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `separator`: one period, one or two underscores, or any number of dashes.
fn is_separator(s: &str) -> bool {
    matches!(s, "." | "_" | "__") || (!s.is_empty() && s.chars().all(|c| c == '-'))
}

/// `path-component`: lower-case alphanumeric runs joined by separators.
pub(crate) fn is_path_component(s: &str) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    if !is_lower_alnum(first) || !is_lower_alnum(last) {
        return false;
    }
    s.split(is_lower_alnum).filter(|sep| !sep.is_empty()).all(is_separator)
}

/// `remote-name`: one or more path components separated by `/`.
pub(crate) fn is_remote_name(s: &str) -> bool {
    s.split('/').all(is_path_component)
}

/// `domain-component`.
fn is_domain_component(s: &str) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `domain`: a host name, IPv4 address or bracketed IPv6 address, and an
/// optional numeric port.
pub(crate) fn is_domain_and_port(s: &str) -> bool {
    let rest = if s.starts_with('[') {
        let Some(end) = s.find(']') else {
            return false;
        };
        let inner = &s[1..end];
        if inner.is_empty() || !inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return false;
        }
        &s[end + 1..]
    } else {
        let end = s.find(':').unwrap_or(s.len());
        if !s[..end].split('.').all(is_domain_component) {
            return false;
        }
        &s[end..]
    };
    match rest.strip_prefix(':') {
        None => rest.is_empty(),
        Some(port) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// `tag`: a word character then up to 127 word characters, `.` or `-`.
pub(crate) fn is_tag(s: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if word(c) => {}
        _ => return false,
    }
    s.len() <= 128 && chars.all(|c| word(c) || c == '.' || c == '-')
}

/// `digest` as the reference grammar spells it (looser than what a digest
/// must be to verify).
pub(crate) fn is_digest(s: &str) -> bool {
    let Some((alg, hex)) = s.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|c| {
        let mut chars = c.chars();
        matches!(chars.next(), Some(f) if f.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_alphanumeric())
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `identifier`: 64 lower-case hex digits.
pub(crate) fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `name`, split into domain (empty when absent) and remote name, or
/// `None` when `s` is not a name.
pub(crate) fn split_name(s: &str) -> Option<(&str, &str)> {
    if let Some((domain, rest)) = s.split_once('/') {
        if is_domain_and_port(domain) && is_remote_name(rest) {
            return Some((domain, rest));
        }
    }
    is_remote_name(s).then_some(("", s))
}

/// The captures of the anchored reference expression: name, tag and digest
/// (tag and digest empty when absent), or `None` when `s` does not match.
pub(crate) fn match_reference(s: &str) -> Option<(&str, &str, &str)> {
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => {
            if !is_digest(digest) {
                return None;
            }
            (rest, digest)
        }
        None => (s, ""),
    };
    let slash = rest.rfind('/');
    let (name, tag) = match rest.rfind(':') {
        // A colon after the last slash can only start the tag.
        Some(colon) if slash.is_none_or(|sl| colon > sl) => {
            let tag = &rest[colon + 1..];
            if !is_tag(tag) {
                return None;
            }
            (&rest[..colon], tag)
        }
        _ => (rest, ""),
    };
    split_name(name)?;
    Some((name, tag, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// distribution's TestDomainRegexp.
    #[test]
    fn domain() {
        let cases = [
            ("test.com", true),
            ("test.com:10304", true),
            ("test.com:http", false),
            ("localhost", true),
            ("localhost:8080", true),
            ("a", true),
            ("a.b", true),
            ("ab.cd.com", true),
            ("a-b.com", true),
            ("-ab.com", false),
            ("ab-.com", false),
            ("ab.c-om", true),
            ("ab.-com", false),
            ("ab.com-", false),
            ("0101.com", true),
            ("001a.com", true),
            ("b.gbc.io:443", true),
            ("b.gbc.io", true),
            ("xn--n3h.com", true),
            ("Asdf.com", true),
            ("192.168.1.1:75050", true),
            ("192.168.1.1:750050", true),
            ("[fd00:1:2::3]:75050", true),
            ("[fd00:1:2::3]75050", false),
            ("[fd00:1:2::3]::75050", false),
            ("[fd00:1:2::3%eth0]:75050", false),
            ("[fd00123123123]:75050", true),
            ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050", true),
            ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505", true),
            ("fd00:1:2::3:75050", false),
            ("", false),
            ("[]", false),
        ];
        for (input, want) in cases {
            assert_eq!(is_domain_and_port(input), want, "{input}");
        }
    }

    /// distribution's TestFullNameRegexp.
    #[test]
    fn full_name() {
        let long = format!("{}a", "a/".repeat(128));
        let long_rest = format!("{}a", "a/".repeat(127));
        let cases: Vec<(&str, Option<(&str, &str)>)> = vec![
            ("", None),
            ("short", Some(("", "short"))),
            ("simple/name", Some(("simple", "name"))),
            ("library/ubuntu", Some(("library", "ubuntu"))),
            ("docker/stevvooe/app", Some(("docker", "stevvooe/app"))),
            ("aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb", Some(("aa", "aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb"))),
            ("aa/aa/bb/bb/bb", Some(("aa", "aa/bb/bb/bb"))),
            ("a/a/a/a", Some(("a", "a/a/a"))),
            ("a/a/a/a/", None),
            ("a//a/a", None),
            ("a", Some(("", "a"))),
            ("a/aa", Some(("a", "aa"))),
            ("a/aa/a", Some(("a", "aa/a"))),
            ("foo.com", Some(("", "foo.com"))),
            ("foo.com/", None),
            ("foo.com:8080/bar", Some(("foo.com:8080", "bar"))),
            ("foo.com:http/bar", None),
            ("foo.com/bar", Some(("foo.com", "bar"))),
            ("foo.com/bar/baz", Some(("foo.com", "bar/baz"))),
            ("localhost:8080/bar", Some(("localhost:8080", "bar"))),
            ("sub-dom1.foo.com/bar/baz/quux", Some(("sub-dom1.foo.com", "bar/baz/quux"))),
            ("blog.foo.com/bar/baz", Some(("blog.foo.com", "bar/baz"))),
            ("a^a", None),
            ("aa/asdf$$^/aa", None),
            ("asdf$$^/aa", None),
            ("aa-a/a", Some(("aa-a", "a"))),
            (long.as_str(), Some(("a", long_rest.as_str()))),
            ("a-/a/a/a", None),
            ("foo.com/a-/a/a", None),
            ("-foo/bar", None),
            ("foo/bar-", None),
            ("foo-/bar", None),
            ("foo/-bar", None),
            ("_foo/bar", None),
            ("foo_bar", Some(("", "foo_bar"))),
            ("foo_bar.com", Some(("", "foo_bar.com"))),
            ("foo_bar.com:8080", None),
            ("foo_bar.com:8080/app", None),
            ("foo.com/foo_bar", Some(("foo.com", "foo_bar"))),
            ("____/____", None),
            ("_docker/_docker", None),
            ("docker_/docker_", None),
            ("b.gcr.io/test.example.com/my-app", Some(("b.gcr.io", "test.example.com/my-app"))),
            ("xn--n3h.com/myimage", Some(("xn--n3h.com", "myimage"))),
            ("xn--7o8h.com/myimage", Some(("xn--7o8h.com", "myimage"))),
            ("example.com/xn--7o8h.com/myimage", Some(("example.com", "xn--7o8h.com/myimage"))),
            (
                "example.com/some_separator__underscore/myimage",
                Some(("example.com", "some_separator__underscore/myimage")),
            ),
            ("example.com/__underscore/myimage", None),
            ("example.com/..dots/myimage", None),
            ("example.com/.dots/myimage", None),
            ("example.com/nodouble..dots/myimage", None),
            ("docker./docker", None),
            (".docker/docker", None),
            ("docker-/docker", None),
            ("-docker/docker", None),
            ("do..cker/docker", None),
            ("do__cker:8080/docker", None),
            ("do__cker/docker", Some(("", "do__cker/docker"))),
            (
                "registry.io/foo/project--id.module--name.ver---sion--name",
                Some(("registry.io", "foo/project--id.module--name.ver---sion--name")),
            ),
            ("Asdf.com/foo/bar", Some(("Asdf.com", "foo/bar"))),
            ("Foo/FarB", None),
            ("do___cker/docker", None),
        ];
        for (input, want) in cases {
            assert_eq!(split_name(input), want, "{input}");
        }
    }

    /// distribution's TestReferenceRegexp.
    #[test]
    fn reference() {
        let d = "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912";
        let with = |s: &str| format!("{s}{d}");
        let tag128 = "t".repeat(128);
        type Captures<'a> = Option<(&'a str, &'a str, &'a str)>;
        let cases: Vec<(String, Captures)> = vec![
            ("registry.com:8080/myapp:tag".into(), Some(("registry.com:8080/myapp", "tag", ""))),
            (with("registry.com:8080/myapp@"), Some(("registry.com:8080/myapp", "", d))),
            (with("registry.com:8080/myapp:tag2@"), Some(("registry.com:8080/myapp", "tag2", d))),
            ("registry.com:8080/myapp@sha256:badbadbadbad".into(), None),
            ("registry.com:8080/myapp:invalid~tag".into(), None),
            ("bad_hostname.com:8080/myapp:tag".into(), None),
            (with("localhost:8080@"), Some(("localhost", "8080", d))),
            (with("localhost:8080/name@"), Some(("localhost:8080/name", "", d))),
            (with("localhost:http/name@"), None),
            (with("localhost@"), Some(("localhost", "", d))),
            ("registry.com:8080/myapp@bad".into(), None),
            ("registry.com:8080/myapp@2bad".into(), None),
            ("foo:".into(), None),
            ("foo@".into(), None),
            (with("foo@@"), None),
            (format!("foo:{}", "t".repeat(128)), Some(("foo", &*tag128, ""))),
            (format!("foo:{}", "t".repeat(129)), None),
        ];
        for (input, want) in cases {
            assert_eq!(match_reference(&input), want, "{input}");
        }
    }

    /// distribution's TestIdentifierRegexp.
    #[test]
    fn identifier() {
        let cases = [
            ("da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821", true),
            ("7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C", false),
            ("da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf", false),
            ("sha256:da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821", false),
            ("da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482", false),
        ];
        for (input, want) in cases {
            assert_eq!(is_identifier(input), want, "{input}");
        }
    }

    #[test]
    fn digest_syntax() {
        assert!(is_digest("sha256:ffffffffffffffffffffffffffffffff"));
        assert!(is_digest("sha256+b64u.x_y-z:FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"));
        assert!(!is_digest("sha256:fffffffffffffffffffffffffffffff"));
        assert!(!is_digest("2sha:ffffffffffffffffffffffffffffffff"));
        assert!(!is_digest("sha256-:ffffffffffffffffffffffffffffffff"));
        assert!(!is_digest(":ffffffffffffffffffffffffffffffff"));
    }
}
