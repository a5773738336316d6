//! The fuzz targets of `polyarch-oci`, shared by `tests/fuzz.rs` (bounded,
//! under `cargo test`) and the cargo-fuzz targets under `fuzz/`.

use polyarch_oci::{media_type, ImageConfig, Platform, RawManifest, Reference};

/// Tokens for references.
#[rustfmt::skip]
pub const REFERENCE_DICT: &[&str] = &[
    "/", ":", "@", "sha256:", "sha512:", ".", "-", "_", "__", "[", "]", "::1", "localhost", "docker.io/", "library/",
    "index.docker.io/", ":5000", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
];

/// References: each parser gives a value or an error; what parses prints
/// back to something that parses to the same value.
pub fn reference(input: &[u8]) {
    let s = String::from_utf8_lossy(input);
    if let Ok(r) = Reference::parse(&s) {
        let again = Reference::parse(&r.to_string());
        assert_eq!(again.as_ref().ok(), Some(&r), "{s:?} prints as {r}, which parses differently");
        let _ = (r.familiar_string(), r.with_default_tag(), r.is_loopback(), r.trimmed());
    }
    if let Ok(r) = Reference::parse_normalized(&s) {
        assert_eq!(Reference::parse_normalized(&r.to_string()).ok(), Some(r.clone()), "{s:?} normalised");
        let _ = Reference::parse_named(&r.familiar_string());
    }
    let _ = Reference::parse_docker_ref(&s);
}

/// Tokens for platform specifiers.
#[rustfmt::skip]
pub const PLATFORM_DICT: &[&str] = &[
    "linux", "windows", "darwin", "/", "(", ")", "+", "%", "%2B", "arm", "arm64", "amd64", "v7", "v8", "386", "aarch64",
    "x86_64", "armhf", "armel", "*",
];

/// Platform specifiers, matchers and their formatting.
pub fn platform(input: &[u8]) {
    let host = Platform::new("linux", "arm", Some("v6"));
    let s = String::from_utf8_lossy(input);
    let _ = polyarch_oci::platform::parse_warning(&s);
    let Ok(p) = Platform::parse_with_host(&s, &host) else { return };
    let all = p.format_all();
    let n = p.normalize();
    let _ = (p.format(), p.only().matches(&host), p.only_strict().matches(&n));
    // containerd's FormatAll escapes only `%+()/`: other decoded bytes
    // print as they are and may not parse back, there as here.
    let plain = |v: &str| v.chars().all(|c| c.is_ascii_alphanumeric() || "_.-%+()/".contains(c));
    let options_print = plain(p.os_version_str()) && p.os_features_slice().iter().all(|f| plain(f));
    // Format is Go's path.Join, which cleans `.` and `..` components away.
    let dots = |v: &str| !v.is_empty() && v.bytes().all(|b| b == b'.');
    let components_print = !dots(&p.architecture) && !dots(p.variant_str());
    if !p.os.is_empty() && !p.architecture.is_empty() && options_print && components_print {
        let again = Platform::parse_with_host(&all, &host).map(|q| q.normalize());
        assert_eq!(again.as_ref().ok(), Some(&n), "{s:?} prints as {all}, which parses differently");
    }
}

/// Tokens for manifest JSON.
#[rustfmt::skip]
pub const MANIFEST_DICT: &[&str] = &[
    "{", "}", "[", "]", ",", ":", "\"", "null", "true", "1e999", "-0", "\\u0000", "\\ud800", "\"schemaVersion\":2",
    "\"mediaType\":", "\"manifests\":", "\"config\":", "\"layers\":", "\"platform\":", "\"digest\":", "\"size\":",
    "18446744073709551616", "\"sha256:0\"", media_type::OCI_INDEX, media_type::DOCKER_MANIFEST,
];

/// Manifests, indexes and image configs, under each content type a
/// registry may announce.
pub fn manifest(input: &[u8]) {
    let types = [None, Some(media_type::OCI_INDEX), Some(media_type::DOCKER_MANIFEST), Some("application/json")];
    for t in types {
        if let Ok(m) = RawManifest::from_bytes(input.to_vec(), t) {
            assert_eq!(m.bytes().as_ref(), input, "the bytes are kept as read");
            let _ = (m.descriptor(), m.is_index(), m.as_index().map(|i| i.manifests.len()));
            let _ = m.as_image().map(|i| i.layers.len());
        }
    }
    if let Ok(c) = ImageConfig::from_slice(input) {
        let _ = c.platform();
    }
}
