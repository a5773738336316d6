//! Ported from moby/patternmatcher `patternmatcher_test.go`.

use super::*;

#[derive(Clone, Copy, PartialEq, Debug)]
enum T {
    Fail,
    Exact,
    Inexact,
}
use T::*;

const CASES: &[(&str, &str, T)] = &[
    ("**", "file", Exact),
    ("**", "file/", Exact),
    ("**/", "file", Exact),
    ("**/", "file/", Exact),
    ("**", "/", Exact),
    ("**/", "/", Exact),
    ("**", "dir/file", Exact),
    ("**/", "dir/file", Exact),
    ("**", "dir/file/", Exact),
    ("**/", "dir/file/", Exact),
    ("**/**", "dir/file", Exact),
    ("**/**", "dir/file/", Exact),
    ("dir/**", "dir/file", Exact),
    ("dir/**", "dir/file/", Exact),
    ("dir/**", "dir/dir2/file", Exact),
    ("dir/**", "dir/dir2/file/", Exact),
    ("**/dir", "dir", Exact),
    ("**/dir", "dir/file", Inexact),
    ("**/dir2/*", "dir/dir2/file", Exact),
    ("**/dir2/*", "dir/dir2/file/", Inexact),
    ("**/dir2/**", "dir/dir2/dir3/file", Exact),
    ("**/dir2/**", "dir/dir2/dir3/file/", Exact),
    ("**file", "file", Exact),
    ("**file", "dir/file", Exact),
    ("**/file", "dir/file", Exact),
    ("**file", "dir/dir/file", Exact),
    ("**/file", "dir/dir/file", Exact),
    ("**/file*", "dir/dir/file", Exact),
    ("**/file*", "dir/dir/file.txt", Exact),
    ("**/file*txt", "dir/dir/file.txt", Exact),
    ("**/file*.txt", "dir/dir/file.txt", Exact),
    ("**/file*.txt*", "dir/dir/file.txt", Exact),
    ("**/**/*.txt", "dir/dir/file.txt", Exact),
    ("**/**/*.txt2", "dir/dir/file.txt", Fail),
    ("**/*.txt", "file.txt", Exact),
    ("**/**/*.txt", "file.txt", Exact),
    ("a**/*.txt", "a/file.txt", Exact),
    ("a**/*.txt", "a/dir/file.txt", Exact),
    ("a**/*.txt", "a/dir/dir/file.txt", Exact),
    ("a/*.txt", "a/dir/file.txt", Fail),
    ("a/*.txt", "a/file.txt", Exact),
    ("a/*.txt**", "a/file.txt", Exact),
    ("a[b-d]e", "ae", Fail),
    ("a[b-d]e", "ace", Exact),
    ("a[b-d]e", "aae", Fail),
    ("a[^b-d]e", "aze", Exact),
    (".*", ".foo", Exact),
    (".*", "foo", Fail),
    ("abc.def", "abcdef", Fail),
    ("abc.def", "abc.def", Exact),
    ("abc.def", "abcZdef", Fail),
    ("abc?def", "abcZdef", Exact),
    ("abc?def", "abcdef", Fail),
    ("**/foo/bar", "foo/bar", Exact),
    ("**/foo/bar", "dir/foo/bar", Exact),
    ("**/foo/bar", "dir/dir2/foo/bar", Exact),
    ("abc/**", "abc", Fail),
    ("abc/**", "abc/def", Exact),
    ("abc/**", "abc/def/ghi", Exact),
    ("**/.foo", ".foo", Exact),
    ("**/.foo", "bar.foo", Fail),
    ("a(b)c/def", "a(b)c/def", Exact),
    ("a(b)c/def", "a(b)c/xyz", Fail),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", Exact),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Exact,
    ),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", Exact),
    ("a\\\\", "a\\", Exact),
    ("a\\*b", "a*b", Exact),
];

const MULTI: &[(&[&str], &str, T)] = &[
    (&["**", "!util/docker/web"], "util/docker/web/foo", Fail),
    (&["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", Exact),
    (
        &["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Fail,
    ),
    (&["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", Fail),
];

#[test]
fn exact_table() {
    for &(p, text, want) in CASES {
        let pm = PatternMatcher::new(&[p]).unwrap();
        assert_eq!(pm.matches_exact(text), want == Exact, "pattern={p:?} text={text:?}");
    }
}

#[test]
fn parent_matches_table() {
    for &(p, text, want) in CASES {
        let pm = PatternMatcher::new(&[p]).unwrap();
        assert_eq!(pm.matches_or_parent_matches(text), want != Fail, "pattern={p:?} text={text:?}");
    }
    for &(ps, text, want) in MULTI {
        let pm = PatternMatcher::new(ps).unwrap();
        assert_eq!(pm.matches_or_parent_matches(text), want != Fail, "patterns={ps:?} text={text:?}");
    }
}

#[test]
fn simple_cases() {
    let m = |f: &str, ps: &[&str]| {
        let pm = PatternMatcher::new(ps)?;
        let f = clean(f);
        Ok::<bool, Error>(f != "." && pm.matches_single_parent(&f))
    };
    assert_eq!(m("fileutils.go", &["*"]), Ok(true));
    assert_eq!(m("fileutils.go", &["*.go"]), Ok(true));
    assert_eq!(m("fileutils.go", &["!fileutils.go", "*.go"]), Ok(true));
    assert_eq!(m("docs/README.md", &["docs", "!docs/README.md"]), Ok(false));
    assert_eq!(m("docs/README.md", &["docs/", "!docs/README.md"]), Ok(false));
    assert_eq!(m("docs/README.md", &["docs/*", "!docs/README.md"]), Ok(false));
    assert_eq!(m("fileutils.go", &["*.go", "!fileutils.go"]), Ok(false));
    assert_eq!(m(".", &["*.go"]), Ok(false));
    assert!(m("fileutils.go", &["!"]).is_err());
    assert_eq!(m("/any/path/there", &[]), Ok(false));
    assert!(m("/any/path/there", &["["]).is_err());
}

#[test]
fn clean_patterns() {
    let pm = PatternMatcher::new(&["docs", "config", ""]).unwrap();
    assert_eq!(pm.patterns().len(), 2);
    assert!(PatternMatcher::new(&["docs", "  !docs/README.md"]).unwrap().exclusions());
    assert!(PatternMatcher::new(&["docs", "!docs/README.md  "]).unwrap().exclusions());
    assert!(!PatternMatcher::new(&["docs"]).unwrap().exclusions());
}

/// Go's filepath.Match tests as used by patternmatcher's TestMatch.
#[test]
fn filepath_match_table() {
    let cases: &[(&str, &str, Option<bool>)] = &[
        ("abc", "abc", Some(true)),
        ("*", "abc", Some(true)),
        ("*c", "abc", Some(true)),
        ("a*", "a", Some(true)),
        ("a*", "abc", Some(true)),
        ("a*", "ab/c", Some(true)),
        ("a*/b", "abc/b", Some(true)),
        ("a*/b", "a/c/b", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
        ("ab[c]", "abc", Some(true)),
        ("ab[b-d]", "abc", Some(true)),
        ("ab[e-g]", "abc", Some(false)),
        ("ab[^c]", "abc", Some(false)),
        ("ab[^b-d]", "abc", Some(false)),
        ("ab[^e-g]", "abc", Some(true)),
        ("a\\*b", "a*b", Some(true)),
        ("a\\*b", "ab", Some(false)),
        ("a?b", "a☺b", Some(true)),
        ("a[^a]b", "a☺b", Some(true)),
        ("a???b", "a☺b", Some(false)),
        ("a[^a][^a][^a]b", "a☺b", Some(false)),
        ("[a-ζ]*", "α", Some(true)),
        ("*[a-ζ]", "A", Some(false)),
        ("a?b", "a/b", Some(false)),
        ("a*b", "a/b", Some(false)),
        ("[\\]a]", "]", Some(true)),
        ("[\\-]", "-", Some(true)),
        ("[x\\-]", "x", Some(true)),
        ("[x\\-]", "-", Some(true)),
        ("[x\\-]", "z", Some(false)),
        ("[\\-x]", "x", Some(true)),
        ("[\\-x]", "-", Some(true)),
        ("[\\-x]", "a", Some(false)),
        ("[]a]", "]", None),
        ("[-]", "-", None),
        ("[x-]", "x", None),
        ("[x-]", "-", None),
        ("[x-]", "z", None),
        ("[-x]", "x", None),
        ("[-x]", "-", None),
        ("[-x]", "a", None),
        ("\\", "a", None),
        ("[a-b-c]", "a", None),
        ("[", "a", None),
        ("[^", "a", None),
        ("[^bc", "a", None),
        ("a[", "a", None),
        ("a[", "ab", None),
        ("*x", "xxx", Some(true)),
    ];
    for &(p, s, want) in cases {
        let got = PatternMatcher::new(&[p]).map(|pm| pm.matches_single_parent(&clean(s)));
        match want {
            Some(w) => assert_eq!(got.as_ref().ok(), Some(&w), "Match({p:?}, {s:?})"),
            None => assert!(got.is_err(), "Match({p:?}, {s:?}) should be a bad pattern"),
        }
    }
}

#[test]
fn compiled_regexps() {
    let cases: &[(&str, Option<&str>)] = &[
        ("*", Some("^[^/]*$")),
        ("file*", Some("^file[^/]*$")),
        ("*file", Some("^[^/]*file$")),
        ("a*/b", Some("^a[^/]*/b$")),
        ("**", None),
        ("**/**", Some("^(.*/)?.*$")),
        ("dir/**", None),
        ("**/dir", None),
        ("**/dir2/*", Some("^(.*/)?dir2/[^/]*$")),
        ("**/dir2/**", Some("^(.*/)?dir2/.*$")),
        ("**file", None),
        ("**/file*txt", Some("^(.*/)?file[^/]*txt$")),
        ("**/**/*.txt", Some("^(.*/)?(.*/)?[^/]*\\.txt$")),
        ("a[b-d]e", Some("^a[b-d]e$")),
        (".*", Some("^\\.[^/]*$")),
    ];
    for &(p, want) in cases {
        let got = match compile(p) {
            MatchType::Regexp(s) => Some(s),
            _ => None,
        };
        assert_eq!(got.as_deref(), want, "{p}");
    }
    assert_eq!(compile("**"), MatchType::Suffix);
    assert_eq!(compile("dir/**"), MatchType::Prefix);
    assert_eq!(compile("abc"), MatchType::Exact);
}

#[test]
fn top_level_helper_and_file() {
    let patterns = read_all("# ignore build output\n/target\n*.log\n!keep.log\nnode_modules/\n");
    assert_eq!(matches_or_parent_matches("target/debug/x", &patterns), Ok(true));
    assert_eq!(matches_or_parent_matches("a.log", &patterns), Ok(true));
    assert_eq!(matches_or_parent_matches("keep.log", &patterns), Ok(false));
    assert_eq!(matches_or_parent_matches("node_modules/x/y.js", &patterns), Ok(true));
    assert_eq!(matches_or_parent_matches("src/a.log", &patterns), Ok(false));
    assert_eq!(matches_or_parent_matches(".", &patterns), Ok(false));
    assert_eq!(matches_or_parent_matches("./target", &patterns), Ok(true));
}
