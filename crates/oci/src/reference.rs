//! Image references (`docker.io/library/busybox:latest`), following
//! distribution/reference: the same grammar, the same Docker Hub
//! normalisation (`busybox` → `docker.io/library/busybox`) and the same
//! error messages.

mod grammar;

use std::fmt;
use std::str::FromStr;

use crate::{Digest, Error};

/// The longest repository path accepted.
pub const REPOSITORY_NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Docker Hub's canonical domain.
pub const DEFAULT_DOMAIN: &str = "docker.io";

/// Docker Hub's legacy domain, read as [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";

/// The namespace of Docker Hub's official images.
const OFFICIAL_REPO_PREFIX: &str = "library/";

/// The tag [`Reference::with_default_tag`] adds.
pub const DEFAULT_TAG: &str = "latest";

const ERR_INVALID_FORMAT: &str = "invalid reference format";
const ERR_TAG_INVALID_FORMAT: &str = "invalid tag format";
const ERR_NAME_CONTAINS_UPPERCASE: &str = "repository name must be lowercase";
const ERR_NAME_EMPTY: &str = "repository name must have at least one component";
const ERR_NAME_NOT_CANONICAL: &str = "repository name must be canonical";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, e.g. `docker.io` or `127.0.0.1:5000`; empty only for
    /// references from [`Reference::parse`] that name no registry.
    pub domain: String,
    /// Repository path, e.g. `library/busybox`.
    pub path: String,
    /// The tag, if one was given.
    pub tag: Option<String>,
    /// The digest, if one was given.
    pub digest: Option<crate::Digest>,
}

fn invalid(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidReference { input: input.to_string(), reason: reason.into() }
}

/// Checks a digest as go-digest's `Parse` does and converts it, with
/// go-digest's messages.
fn parse_digest(input: &str, d: &str) -> Result<Digest, Error> {
    let Some((alg, hex)) = d.split_once(':').filter(|(a, h)| !a.is_empty() && !h.is_empty()) else {
        return Err(invalid(input, "invalid checksum digest format"));
    };
    let want = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            let syntax_ok = alg
                .split(['.', '+', '_', '-'])
                .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
                && hex.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
            if !syntax_ok {
                return Err(invalid(input, "invalid checksum digest format"));
            }
            return Err(invalid(input, format!("unsupported digest algorithm {alg:?}")));
        }
    };
    if hex.len() != want {
        return Err(invalid(
            input,
            format!("invalid checksum digest length: {alg} takes {want} hex digits, got {}", hex.len()),
        ));
    }
    if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(invalid(input, "invalid checksum digest format: the hex digits must be lower case"));
    }
    d.parse::<Digest>().map_err(|_| {
        invalid(input, format!("unsupported digest algorithm {alg:?}: polyarch reads sha256 and sha512 digests"))
    })
}

/// Splits a name into Docker Hub's domain and remote name, as
/// distribution's `splitDockerDomain`.
fn split_docker_domain(name: &str) -> (String, String) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        return (DEFAULT_DOMAIN.to_string(), format!("{OFFICIAL_REPO_PREFIX}{name}"));
    };
    let (domain, mut remote) = if maybe_domain == "localhost" {
        (maybe_domain.to_string(), maybe_remote.to_string())
    } else if maybe_domain == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN.to_string(), maybe_remote.to_string())
    } else if maybe_domain.contains(['.', ':']) || maybe_domain.to_lowercase() != maybe_domain {
        (maybe_domain.to_string(), maybe_remote.to_string())
    } else {
        (DEFAULT_DOMAIN.to_string(), name.to_string())
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        remote = format!("{OFFICIAL_REPO_PREFIX}{remote}");
    }
    (domain, remote)
}

/// Whether `host` names this machine: `localhost`, `127.x.x.x` or `[::1]`.
fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

impl Reference {
    /// Parses a reference as distribution's `Parse`: syntax only, no
    /// Docker Hub normalisation, so `busybox` has an empty domain.
    pub fn parse(s: &str) -> Result<Reference, Error> {
        if s.is_empty() {
            return Err(invalid(s, ERR_NAME_EMPTY));
        }
        let Some((name, tag, digest)) = grammar::match_reference(s) else {
            let lower = s.to_lowercase();
            if lower != s && grammar::match_reference(&lower).is_some() {
                return Err(invalid(s, ERR_NAME_CONTAINS_UPPERCASE));
            }
            return Err(invalid(s, ERR_INVALID_FORMAT));
        };
        let (domain, path) = grammar::split_name(name).unwrap_or(("", name));
        if path.len() > REPOSITORY_NAME_TOTAL_LENGTH_MAX {
            return Err(invalid(
                s,
                format!("repository name must not be more than {REPOSITORY_NAME_TOTAL_LENGTH_MAX} characters"),
            ));
        }
        let digest = if digest.is_empty() { None } else { Some(parse_digest(s, digest)?) };
        Ok(Reference {
            domain: domain.to_string(),
            path: path.to_string(),
            tag: (!tag.is_empty()).then(|| tag.to_string()),
            digest,
        })
    }

    /// Parses a reference as distribution's `ParseNormalizedNamed`, turning
    /// familiar Docker Hub names into fully qualified ones (`busybox` →
    /// `docker.io/library/busybox`, `index.docker.io/x/y` → `docker.io/x/y`).
    pub fn parse_normalized(s: &str) -> Result<Reference, Error> {
        if grammar::is_identifier(s) {
            return Err(invalid(
                s,
                format!("invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"),
            ));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote = remainder.split_once(':').map_or(remainder.as_str(), |(r, _)| r);
        if remote.to_lowercase() != remote {
            return Err(invalid(s, format!("{ERR_INVALID_FORMAT}: repository name ({remote}) must be lowercase")));
        }
        Reference::parse(&format!("{domain}/{remainder}")).map_err(|e| match e {
            Error::InvalidReference { reason, .. } => invalid(s, reason),
            other => other,
        })
    }

    /// Parses a reference as distribution's `ParseNamed`: it must already be
    /// in its fully qualified form (`docker.io/library/busybox`, not `busybox`).
    pub fn parse_named(s: &str) -> Result<Reference, Error> {
        let r = Reference::parse_normalized(s)?;
        if r.to_string() != s {
            return Err(invalid(s, ERR_NAME_NOT_CANONICAL));
        }
        Ok(r)
    }

    /// Parses a reference as distribution's `ParseDockerRef`: normalised,
    /// with `latest` when neither tag nor digest is given, and the tag
    /// dropped when both are.
    pub fn parse_docker_ref(s: &str) -> Result<Reference, Error> {
        let mut r = Reference::parse_normalized(s)?;
        if r.digest.is_some() {
            r.tag = None;
        }
        Ok(r.with_default_tag())
    }

    /// The fully qualified repository name, `domain/path`.
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// The repository path, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.path
    }

    /// The name as Docker shows it: without `docker.io/`, and without
    /// `library/` for official images.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => self.path.clone(),
        }
    }

    /// The whole reference as Docker shows it (distribution's
    /// `FamiliarString`), e.g. `busybox:latest`.
    pub fn familiar_string(&self) -> String {
        self.suffixed(self.familiar_name())
    }

    fn suffixed(&self, mut s: String) -> String {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
        s
    }

    /// This reference with the `latest` tag when it has neither tag nor
    /// digest (distribution's `TagNameOnly`).
    pub fn with_default_tag(&self) -> Reference {
        let mut r = self.clone();
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        r
    }

    /// This reference with `tag` (any digest is kept), or an error when
    /// `tag` is not a valid tag.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, Error> {
        if !grammar::is_tag(tag) {
            return Err(invalid(tag, ERR_TAG_INVALID_FORMAT));
        }
        Ok(Reference { tag: Some(tag.to_string()), ..self.clone() })
    }

    /// This reference with `digest` (any tag is kept).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { digest: Some(digest), ..self.clone() }
    }

    /// This reference with neither tag nor digest (distribution's `TrimNamed`).
    pub fn trimmed(&self) -> Reference {
        Reference { tag: None, digest: None, ..self.clone() }
    }

    /// Whether both references name the same repository.
    pub fn in_same_repo(&self, other: &Reference) -> bool {
        self.domain == other.domain && self.path == other.path
    }

    /// Whether the registry is this machine: `localhost`, `127.x.x.x` or
    /// `[::1]`, with or without a port.
    pub fn is_loopback(&self) -> bool {
        let host = match self.domain.rsplit_once(':') {
            Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => self.domain.as_str(),
        };
        is_loopback_host(host)
    }
}

impl fmt::Display for Reference {
    /// The full reference: name, then `:tag` and `@digest` when present.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.suffixed(self.name()))
    }
}

impl FromStr for Reference {
    type Err = Error;

    /// As [`Reference::parse_normalized`].
    fn from_str(s: &str) -> Result<Reference, Error> {
        Reference::parse_normalized(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FF: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    fn reason(r: Result<Reference, Error>) -> String {
        match r {
            Err(Error::InvalidReference { reason, .. }) => reason,
            other => panic!("expected an invalid reference, got {other:?}"),
        }
    }

    /// distribution's TestReferenceParse: (input, name, domain, tag, digest) or error.
    #[test]
    fn reference_parse() {
        let sha512 = format!("sha512:{}", "f".repeat(128));
        let ok: Vec<(String, String, &str, &str, String)> = vec![
            ("test_com".into(), "test_com".into(), "", "", "".into()),
            ("test.com:tag".into(), "test.com".into(), "", "tag", "".into()),
            ("test.com:5000".into(), "test.com".into(), "", "5000", "".into()),
            ("test.com/repo:tag".into(), "test.com/repo".into(), "test.com", "tag", "".into()),
            ("test:5000/repo".into(), "test:5000/repo".into(), "test:5000", "", "".into()),
            ("test:5000/repo:tag".into(), "test:5000/repo".into(), "test:5000", "tag", "".into()),
            (format!("test:5000/repo@{FF}"), "test:5000/repo".into(), "test:5000", "", FF.into()),
            (format!("test:5000/repo:tag@{FF}"), "test:5000/repo".into(), "test:5000", "tag", FF.into()),
            ("lowercase:Uppercase".into(), "lowercase".into(), "", "Uppercase", "".into()),
            (
                format!("{}a:tag-puts-this-over-max", "a/".repeat(127)),
                format!("{}a", "a/".repeat(127)),
                "a",
                "tag-puts-this-over-max",
                "".into(),
            ),
            (
                "sub-dom1.foo.com/bar/baz/quux".into(),
                "sub-dom1.foo.com/bar/baz/quux".into(),
                "sub-dom1.foo.com",
                "",
                "".into(),
            ),
            (
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag".into(),
                "sub-dom1.foo.com/bar/baz/quux".into(),
                "sub-dom1.foo.com",
                "some-long-tag",
                "".into(),
            ),
            (
                "b.gcr.io/test.example.com/my-app:test.example.com".into(),
                "b.gcr.io/test.example.com/my-app".into(),
                "b.gcr.io",
                "test.example.com",
                "".into(),
            ),
            (
                "xn--n3h.com/myimage:xn--n3h.com".into(),
                "xn--n3h.com/myimage".into(),
                "xn--n3h.com",
                "xn--n3h.com",
                "".into(),
            ),
            (
                format!("xn--7o8h.com/myimage:xn--7o8h.com@{sha512}"),
                "xn--7o8h.com/myimage".into(),
                "xn--7o8h.com",
                "xn--7o8h.com",
                sha512.clone(),
            ),
            ("foo_bar.com:8080".into(), "foo_bar.com".into(), "", "8080", "".into()),
            ("foo/foo_bar.com:8080".into(), "foo/foo_bar.com".into(), "foo", "8080", "".into()),
            ("192.168.1.1".into(), "192.168.1.1".into(), "", "", "".into()),
            ("192.168.1.1:tag".into(), "192.168.1.1".into(), "", "tag", "".into()),
            ("192.168.1.1:5000".into(), "192.168.1.1".into(), "", "5000", "".into()),
            ("192.168.1.1/repo".into(), "192.168.1.1/repo".into(), "192.168.1.1", "", "".into()),
            ("192.168.1.1:5000/repo".into(), "192.168.1.1:5000/repo".into(), "192.168.1.1:5000", "", "".into()),
            (
                "192.168.1.1:5000/repo:5050".into(),
                "192.168.1.1:5000/repo".into(),
                "192.168.1.1:5000",
                "5050",
                "".into(),
            ),
            ("[2001:db8::1]/repo".into(), "[2001:db8::1]/repo".into(), "[2001:db8::1]", "", "".into()),
            (
                "[2001:db8:1:2:3:4:5:6]/repo:tag".into(),
                "[2001:db8:1:2:3:4:5:6]/repo".into(),
                "[2001:db8:1:2:3:4:5:6]",
                "tag",
                "".into(),
            ),
            ("[2001:db8::1]:5000/repo".into(), "[2001:db8::1]:5000/repo".into(), "[2001:db8::1]:5000", "", "".into()),
            (
                "[2001:db8::1]:5000/repo:tag".into(),
                "[2001:db8::1]:5000/repo".into(),
                "[2001:db8::1]:5000",
                "tag",
                "".into(),
            ),
            (
                format!("[2001:db8::1]:5000/repo@{FF}"),
                "[2001:db8::1]:5000/repo".into(),
                "[2001:db8::1]:5000",
                "",
                FF.into(),
            ),
            (
                format!("[2001:db8::1]:5000/repo:tag@{FF}"),
                "[2001:db8::1]:5000/repo".into(),
                "[2001:db8::1]:5000",
                "tag",
                FF.into(),
            ),
            ("[2001:db8::]:5000/repo".into(), "[2001:db8::]:5000/repo".into(), "[2001:db8::]:5000", "", "".into()),
            ("[::1]:5000/repo".into(), "[::1]:5000/repo".into(), "[::1]:5000", "", "".into()),
        ];
        for (input, name, domain, tag, digest) in ok {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), input);
            assert_eq!(r.name(), name, "{input}");
            assert_eq!(r.domain, domain, "{input}");
            assert_eq!(r.tag.as_deref().unwrap_or(""), tag, "{input}");
            assert_eq!(r.digest.map(|d| d.to_string()).unwrap_or_default(), digest, "{input}");
        }
        // The length limit applies to the path after the domain, as in
        // current distribution/reference (older releases counted the domain).
        let too_long = format!("{}a:tag", "a/".repeat(129));
        let longest = Reference::parse(&format!("{}a:tag", "a/".repeat(128))).unwrap();
        assert_eq!((longest.domain.as_str(), longest.path.len()), ("a", 255));
        let bad: Vec<(String, &str)> = vec![
            ("".into(), ERR_NAME_EMPTY),
            (":justtag".into(), ERR_INVALID_FORMAT),
            (format!("@{FF}"), ERR_INVALID_FORMAT),
            ("repo@sha256:ffffffffffffffffffffffffffffffffff".into(), "invalid checksum digest length"),
            (
                "validname@invaliddigest:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".into(),
                "unsupported digest algorithm",
            ),
            ("Uppercase:tag".into(), ERR_NAME_CONTAINS_UPPERCASE),
            ("test:5000/Uppercase/lowercase:tag".into(), ERR_NAME_CONTAINS_UPPERCASE),
            (too_long, "repository name must not be more than 255 characters"),
            ("aa/asdf$$^/aa".into(), ERR_INVALID_FORMAT),
            ("[2001:db8::1]".into(), ERR_INVALID_FORMAT),
            ("[2001:db8::1]:5000".into(), ERR_INVALID_FORMAT),
            ("[2001:db8::1]:tag".into(), ERR_INVALID_FORMAT),
            ("[fe80::1%eth0]:5000/repo".into(), ERR_INVALID_FORMAT),
            ("[fe80::1%@invalidzone]:5000/repo".into(), ERR_INVALID_FORMAT),
        ];
        for (input, want) in bad {
            let got = reason(Reference::parse(&input));
            assert!(got.starts_with(want), "{input}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn digest_errors() {
        let cases = [
            (format!("repo@sha256:{}", "F".repeat(64)), "invalid checksum digest format"),
            (format!("repo@sha512:{}", "f".repeat(64)), "invalid checksum digest length: sha512 takes 128"),
            (format!("repo@sha384:{}", "f".repeat(96)), "unsupported digest algorithm \"sha384\": polyarch reads"),
            (format!("repo@SHA256:{}", "f".repeat(64)), "invalid checksum digest format"),
            (format!("repo@md5:{}", "f".repeat(32)), "unsupported digest algorithm \"md5\""),
        ];
        for (input, want) in cases {
            let got = reason(Reference::parse(&input));
            assert!(got.starts_with(want), "{input}: got {got:?}");
        }
    }

    /// distribution's TestDomainAndPath.
    #[test]
    fn domain_and_path() {
        let cases = [
            ("test.com/foo", "test.com", "foo"),
            ("test_com/foo", "", "test_com/foo"),
            ("test:8080/foo", "test:8080", "foo"),
            ("test.com:8080/foo", "test.com:8080", "foo"),
            ("test-com:8080/foo", "test-com:8080", "foo"),
            ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        ];
        for (input, domain, path) in cases {
            let r = Reference::parse(input).unwrap();
            assert_eq!((r.domain.as_str(), r.repository()), (domain, path), "{input}");
        }
    }

    /// distribution's TestWithTag and TestWithDigest (with full-length digests,
    /// which is all polyarch's digest type holds).
    #[test]
    fn with_tag_and_digest() {
        let d: Digest = FF.parse().unwrap();
        let cases = [
            ("test.com/foo", "tag", false, "test.com/foo:tag".to_string()),
            ("foo", "tag2", false, "foo:tag2".to_string()),
            ("test.com:8000/foo", "tag4", false, "test.com:8000/foo:tag4".to_string()),
            ("test.com:8000/foo", "TAG5", false, "test.com:8000/foo:TAG5".to_string()),
            ("test.com:8000/foo", "TAG5", true, format!("test.com:8000/foo:TAG5@{FF}")),
        ];
        for (name, tag, with_digest, combined) in cases {
            let mut r = Reference::parse(name).unwrap();
            if with_digest {
                r = r.with_digest(d.clone());
            }
            assert_eq!(r.with_tag(tag).unwrap().to_string(), combined);
        }
        let tagged = Reference::parse("test.com:8000/foo:tag").unwrap();
        assert_eq!(tagged.with_digest(d.clone()).to_string(), format!("test.com:8000/foo:tag@{FF}"));
        assert_eq!(Reference::parse("foo").unwrap().with_digest(d).to_string(), format!("foo@{FF}"));
    }

    /// distribution's TestInvalidReferenceComponents.
    #[test]
    fn invalid_components() {
        assert!(Reference::parse_normalized("-foo").is_err());
        let r = Reference::parse_normalized("busybox").unwrap();
        assert_eq!(reason(r.with_tag("-foo")), ERR_TAG_INVALID_FORMAT);
        assert!(r.with_tag(&"t".repeat(129)).is_err());
        assert!(r.with_tag(&"t".repeat(128)).is_ok());
    }

    /// distribution's TestValidateReferenceName and TestValidateRemoteName.
    #[test]
    fn validate_names() {
        let valid = [
            "docker/docker",
            "library/debian",
            "debian",
            "docker.io/docker/docker",
            "docker.io/library/debian",
            "docker.io/debian",
            "index.docker.io/docker/docker",
            "index.docker.io/library/debian",
            "index.docker.io/debian",
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000/debian",
            "192.168.0.1",
            "192.168.0.1:80",
            "192.168.0.1:8/debian",
            "192.168.0.2:25000/debian",
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "[fc00::1]:5000/docker",
            "[fc00::1]:5000/docker/docker",
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
            "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "Docker/docker",
            "DOCKER/docker",
            "docker-rules/docker",
            "docker---rules/docker",
            "doc/docker",
            "d/docker",
            "jess/t",
            "dock__er/docker",
        ];
        for name in valid {
            Reference::parse_normalized(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let invalid = [
            "https://github.com/docker/docker",
            "docker/Docker",
            "-docker",
            "-docker/docker",
            "-docker.io/docker/docker",
            "docker///docker",
            "docker.io/docker/Docker",
            "docker.io/docker///docker",
            "[fc00::1]",
            "[fc00::1]:5000",
            "fc00::1:5000/debian",
            "[fe80::1%eth0]:5000/debian",
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "docker-/docker",
            "-docker-/docker",
            "____/____",
            "_docker/_docker",
            "dock..er/docker",
            "dock_.er/docker",
            "dock-.er/docker",
            "docker/",
            "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
        ];
        for name in invalid {
            assert!(Reference::parse_normalized(name).is_err(), "{name} should be invalid");
        }
    }

    #[test]
    fn normalized_error_messages() {
        let id = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
        assert_eq!(
            reason(Reference::parse_normalized(id)),
            format!("invalid repository name ({id}), cannot specify 64-byte hexadecimal strings")
        );
        assert_eq!(
            reason(Reference::parse_normalized("docker/Docker")),
            "invalid reference format: repository name (docker/Docker) must be lowercase"
        );
        assert_eq!(
            reason(Reference::parse_normalized("Busybox:latest")),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        assert_eq!(reason(Reference::parse_normalized("busybox:")), ERR_INVALID_FORMAT);
        let err = Reference::parse_normalized("docker/Docker").unwrap_err().to_string();
        assert!(err.contains("\"docker/Docker\""), "{err}");
    }

    /// distribution's TestParseRepositoryInfo: (remote, familiar, full, ambiguous, domain).
    #[test]
    fn parse_repository_info() {
        let cases = [
            ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io"),
            ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io"),
            ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", "docker.io"),
            ("other/library", "other/library", "docker.io/other/library", "", "docker.io"),
            (
                "private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "",
                "127.0.0.1:8000",
            ),
            ("privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "", "127.0.0.1:8000"),
            ("private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase", "", "example.com"),
            ("privatebase", "example.com/privatebase", "example.com/privatebase", "", "example.com"),
            (
                "private/moonbase",
                "example.com:8000/private/moonbase",
                "example.com:8000/private/moonbase",
                "",
                "example.com:8000",
            ),
            ("privatebasee", "example.com:8000/privatebasee", "example.com:8000/privatebasee", "", "example.com:8000"),
            (
                "library/ubuntu-12.04-base",
                "ubuntu-12.04-base",
                "docker.io/library/ubuntu-12.04-base",
                "index.docker.io/library/ubuntu-12.04-base",
                "docker.io",
            ),
            ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io"),
            ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", "", "docker.io"),
            ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", "", "docker.io"),
            ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
            ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
        ];
        for (remote, familiar, full, ambiguous, domain) in cases {
            for input in [familiar, full, ambiguous].into_iter().filter(|s| !s.is_empty()) {
                let r = Reference::parse_normalized(input).unwrap_or_else(|e| panic!("{input}: {e}"));
                assert_eq!(r.familiar_name(), familiar, "{input}");
                assert_eq!(r.to_string(), full, "{input}");
                assert_eq!(r.domain, domain, "{input}");
                assert_eq!(r.repository(), remote, "{input}");
            }
        }
    }

    /// distribution's TestParseReferenceWithTagAndDigest.
    #[test]
    fn tag_and_digest() {
        let short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
        let r = Reference::parse_normalized(short).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/{short}"));
        assert!(r.tag.is_some() && r.digest.is_some());
        assert_eq!(r.familiar_string(), short);
        let docker = Reference::parse_docker_ref(short).unwrap();
        assert_eq!(docker.to_string(), format!("docker.io/library/busybox@{}", &short[15..]));
        assert_eq!(Reference::parse_docker_ref("busybox").unwrap().to_string(), "docker.io/library/busybox:latest");
    }

    /// distribution's TestParseAnyReference, for the references with a name.
    #[test]
    fn parse_any_named() {
        let d = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";
        let cases = [
            ("redis".to_string(), "docker.io/library/redis".to_string()),
            ("redis:latest".into(), "docker.io/library/redis:latest".into()),
            ("docker.io/library/redis:latest".into(), "docker.io/library/redis:latest".into()),
            (format!("redis@{d}"), format!("docker.io/library/redis@{d}")),
            (format!("docker.io/library/redis@{d}"), format!("docker.io/library/redis@{d}")),
            ("dmcgowan/myapp".into(), "docker.io/dmcgowan/myapp".into()),
            ("dmcgowan/myapp:latest".into(), "docker.io/dmcgowan/myapp:latest".into()),
            ("docker.io/mcgowan/myapp:latest".into(), "docker.io/mcgowan/myapp:latest".into()),
            (format!("dmcgowan/myapp@{d}"), format!("docker.io/dmcgowan/myapp@{d}")),
            (format!("docker.io/dmcgowan/myapp@{d}"), format!("docker.io/dmcgowan/myapp@{d}")),
            (
                "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9".into(),
                "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9".into(),
            ),
            ("dbcc1".into(), "docker.io/library/dbcc1".into()),
        ];
        for (input, equivalent) in cases {
            let r = Reference::parse_normalized(&input).unwrap();
            assert_eq!(r.to_string(), equivalent);
            assert_eq!(r, Reference::parse(&equivalent).unwrap());
        }
    }

    /// distribution's TestNormalizedSplitHostname.
    #[test]
    fn normalized_split_hostname() {
        let cases = [
            ("test.com/foo", "test.com", "foo"),
            ("test_com/foo", "docker.io", "test_com/foo"),
            ("docker/migrator", "docker.io", "docker/migrator"),
            ("test.com:8080/foo", "test.com:8080", "foo"),
            ("test-com:8080/foo", "test-com:8080", "foo"),
            ("foo", "docker.io", "library/foo"),
            ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
            ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
            ("docker.io/foo", "docker.io", "library/foo"),
            ("docker.io/library/foo", "docker.io", "library/foo"),
            ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
            ("localhost/foo", "localhost", "foo"),
            ("localhost:5000/foo", "localhost:5000", "foo"),
        ];
        for (input, domain, path) in cases {
            let r = Reference::parse_normalized(input).unwrap();
            assert_eq!((r.domain.as_str(), r.path.as_str()), (domain, path), "{input}");
        }
    }

    #[test]
    fn parse_named_needs_canonical() {
        assert!(Reference::parse_named("docker.io/library/busybox:1").is_ok());
        assert_eq!(reason(Reference::parse_named("busybox:1")), ERR_NAME_NOT_CANONICAL);
        assert_eq!(reason(Reference::parse_named("index.docker.io/library/busybox")), ERR_NAME_NOT_CANONICAL);
    }

    #[test]
    fn helpers() {
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(r.familiar_string(), "busybox");
        assert_eq!(r.with_default_tag().to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.with_default_tag().familiar_string(), "busybox:latest");
        let d = Reference::parse_normalized(&format!("busybox@{FF}")).unwrap();
        assert_eq!(d.with_default_tag(), d);
        assert!(r.in_same_repo(&r.with_default_tag()));
        assert!(r.in_same_repo(&Reference::parse_normalized("index.docker.io/library/busybox:1").unwrap()));
        assert!(!r.in_same_repo(&Reference::parse_normalized("quay.io/library/busybox").unwrap()));
        assert_eq!(r.with_default_tag().trimmed(), r);
        let g = Reference::parse_normalized("ghcr.io/a/b:1").unwrap();
        assert_eq!(g.familiar_string(), "ghcr.io/a/b:1");
    }

    #[test]
    fn loopback() {
        for (input, want) in [
            ("localhost/a", true),
            ("localhost:5000/a", true),
            ("127.0.0.1/a", true),
            ("127.0.0.1:5000/a", true),
            ("127.1.2.3:80/a", true),
            ("[::1]/a", true),
            ("[::1]:5000/a", true),
            ("128.0.0.1:5000/a", false),
            ("localhost.example.com/a", false),
            ("[::2]:5000/a", false),
            ("busybox", false),
            ("127.0.0.1.example.com/a", false),
        ] {
            assert_eq!(Reference::parse_normalized(input).unwrap().is_loopback(), want, "{input}");
        }
    }
}
