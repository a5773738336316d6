use std::collections::HashMap;

use super::*;

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn env_var_table() {
    let env = Env::from_slice(&["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]);
    let lex = Lex::new('\\');
    let mut n = 0;
    for (i, line) in include_str!("testdata/envVarTest").lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 3, "line {}", i + 1);
        if parts[0].trim() == "W" {
            continue;
        }
        let (src, want) = (parts[1].trim(), parts[2].trim());
        let got = lex.process_word(src, &env);
        if want == "error" {
            assert!(got.is_err(), "line {}: {src:?} gave {got:?}", i + 1);
        } else {
            assert_eq!(got.as_deref(), Ok(want), "line {}: {src:?}", i + 1);
        }
        n += 1;
    }
    assert!(n > 150);
}

#[test]
fn words_table() {
    let lex = Lex::new('\\');
    let mut envs: Vec<String> = Vec::new();
    for (i, line) in include_str!("testdata/wordsTest").lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            envs.push(rest.trim_start_matches(' ').to_string());
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 2, "line {}", i + 1);
        let src = parts[0].trim();
        let want: Vec<&str> = parts[1].trim_start_matches(' ').split(',').collect();
        let got = match lex.process_words(src, &Env::from_slice(&envs)) {
            Ok(w) => w,
            Err(_) => vec!["error".to_string()],
        };
        assert_eq!(got, want, "line {}: {src:?}", i + 1);
    }
}

#[test]
fn mandatory_env_vars() {
    let lex = Lex::new('\\');
    let set = Env::from_slice(&["VAR=plain", "ARG=x"]);
    let empty = Env::from_slice(&["VAR=", "ARG=x"]);
    let unset = Env::from_slice(&["ARG=x"]);
    let no_empty = "${VAR:?message here$ARG}";
    let no_unset = "${VAR?message here$ARG}";
    assert_eq!(lex.process_word(no_empty, &set).as_deref(), Ok("plain"));
    let e = lex.process_word(no_empty, &empty).unwrap_err();
    assert!(e.to_string().contains("message herex"), "{e}");
    assert!(lex.process_word(no_empty, &unset).unwrap_err().to_string().contains("message herex"));
    assert_eq!(lex.process_word(no_unset, &set).as_deref(), Ok("plain"));
    assert_eq!(lex.process_word(no_unset, &empty).as_deref(), Ok(""));
    assert!(lex.process_word(no_unset, &unset).unwrap_err().to_string().contains("message herex"));
}

#[test]
fn get_env_last_wins() {
    let env = Env::from_slice(&["foo=bar", "car=hat", "car=bike"]);
    assert_eq!(env.get_env("car").as_deref(), Some("bike"));
    assert_eq!(Env::from_slice(&["foo"]).get_env("foo").as_deref(), Some(""));
}

type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>, &'a [&'a str], &'a [&'a str]);

#[test]
fn process_with_matches() {
    let xb: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];
    let cases: &[Case] = &[
        ("x", &[("DUMMY", "dummy")], Some("x"), &[], &[]),
        ("x ${UNUSED}", &[("DUMMY", "dummy")], Some("x "), &[], &["UNUSED"]),
        ("x ${FOO}", &[("FOO", "y")], Some("x y"), &["FOO"], &[]),
        ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", xb, Some("xxx  ccc"), &["BAR", "FOO"], &["BAZ"]),
        ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", xb, Some("xxx bbb ccc"), &["BAR", "FOO"], &["BAZ"]),
        ("${FOO:-}", xb, Some("xxx"), &["FOO"], &[]),
        ("${FOO:-}", &[], Some(""), &[], &["FOO"]),
        ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", xb, Some("aaa bbb "), &["BAR", "FOO"], &["BAZ"]),
        ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", xb, Some("aaa  "), &["BAR", "FOO"], &["BAZ"]),
        ("${FOO?aaa}", xb, Some("xxx"), &["FOO"], &[]),
        ("${BAR?bbb}", xb, Some(""), &["BAR"], &[]),
        ("${BAZ?ccc}", xb, None, &[], &[]),
        ("${FOO:?aaa}", xb, Some("xxx"), &["FOO"], &[]),
        ("${BAR:?bbb}", xb, None, &[], &[]),
        ("${BAZ:?ccc}", xb, None, &[], &[]),
        ("${BAZ:?}", xb, None, &[], &[]),
        ("${FOO=aaa}", xb, None, &[], &[]),
        ("${FOO=:aaa}", xb, None, &[], &[]),
        ("${FOO=}", &[], None, &[], &[]),
        ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", &[("FOO", "()[]{}^$.*?|\\x")], Some("x"), &["FOO"], &[]),
        ("${FOO%%\\**}", &[("FOO", "xx**")], Some("xx"), &["FOO"], &[]),
        ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y"), &["FOO"], &[]),
        ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], Some("xyy"), &["BAR", "FOO"], &[]),
        ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], Some("xxyy"), &["BAR", "FOO"], &[]),
        ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy"), &["FOO"], &[]),
        ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO#?\\?}", &[("FOO", "???y")], Some("?y"), &["FOO"], &[]),
        ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], Some(".xxyy."), &["FOO"], &["ABC"]),
        ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], Some("a"), &["FOO"], &[]),
        ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO%%$BAR}", &[("FOO", "xxyy"), ("BAR", "")], Some("xxyy"), &["BAR", "FOO"], &[]),
        (
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
            Some("/foo.*/*.txt - /foo..*.txt"),
            &["FOO", "NEEDLE"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            Some("/tmp/bar.txt - /bar.txt"),
            &["FOO", "NEEDLE"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
            &[("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("REPLACEMENT", "/")],
            Some("/foo/b/c.txt - /foo/c.txt"),
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT}",
            &[("FOO", "http://google.de"), ("NEEDLE", "http://"), ("REPLACEMENT", "https://")],
            Some("https://google.de"),
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        ("${FOO//\\//\\/}", &[("FOO", "/tmp/foo.txt")], Some("\\/tmp\\/foo.txt"), &["FOO"], &[]),
        ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], Some("wwxxyy"), &["BAR", "FOO"], &[]),
        ("${FOO//ww}", &[("FOO", "xxyy")], None, &[], &[]),
        ("${FOO//}", &[("FOO", "xxyy")], None, &[], &[]),
        ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
        ("${FOO///}", &[], Some(""), &[], &["FOO"]),
    ];
    let lex = Lex::new('\\');
    for (input, env, want, matched, unmatched) in cases {
        let got = lex.process(input, &map(env));
        match want {
            None => assert!(got.is_err(), "{input}: {got:?}"),
            Some(w) => {
                let r = got.unwrap_or_else(|e| panic!("{input}: {e}"));
                assert_eq!(r.result, *w, "{input}");
                assert_eq!(r.matched.iter().map(String::as_str).collect::<Vec<_>>(), *matched, "{input}");
                assert_eq!(r.unmatched.iter().map(String::as_str).collect::<Vec<_>>(), *unmatched, "{input}");
            }
        }
    }
}

#[test]
fn platform_release_name() {
    let lex = Lex::new('\\');
    let env = map(&[("VERSION", "v1.2.3"), ("TARGETOS", "linux"), ("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]);
    let release = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    assert_eq!(lex.process_word(release, &env).as_deref(), Ok("something-v1.2.3.linux-arm-v7.tar.gz"));
    let env = map(&[("VERSION", "v1.2.3"), ("TARGETOS", "linux"), ("TARGETARCH", "amd64"), ("TARGETVARIANT", "")]);
    assert_eq!(lex.process_word(release, &env).as_deref(), Ok("something-v1.2.3.linux-amd64.tar.gz"));
}

#[test]
fn error_text() {
    let lex = Lex::new('\\');
    let e = lex.process_word("${aaa", &Env::default()).unwrap_err();
    assert_eq!(e.to_string(), "failed to process \"${aaa\": unsupported modifier (\u{fffd}) in substitution");
    let e = lex.process_word("${X:-a", &Env::default()).unwrap_err();
    assert_eq!(e.to_string(), "failed to process \"${X:-a\": syntax error: missing '}'");
    let e = lex.process_word("${}", &Env::default()).unwrap_err();
    assert_eq!(e.message, "syntax error: bad substitution");
    let e = lex.process_word("${X?}", &Env::default()).unwrap_err();
    assert_eq!(e.message, "X: is not allowed to be unset");
    let e = lex.process_word("${X:#a}", &Env::default()).unwrap_err();
    assert_eq!(e.message, "unsupported modifier (:#) in substitution");
    let e = lex.process_word("'a", &Env::default()).unwrap_err();
    assert_eq!(e.message, "unexpected end of statement while looking for matching single-quote");
}

#[test]
fn backtick_escape() {
    let lex = Lex::new('`');
    let env = Env::from_slice(&["A=1"]);
    assert_eq!(lex.process_word("c:\\dir `$A $A", &env).as_deref(), Ok("c:\\dir $A 1"));
    assert_eq!(lex.process_words("a` b c", &env), Ok(vec!["a b".to_string(), "c".to_string()]));
}

#[test]
fn skip_unset_and_raw() {
    let mut lex = Lex::new('\\');
    lex.skip_unset_env = true;
    lex.raw_quotes = true;
    let env = Env::from_slice(&["A=1"]);
    assert_eq!(lex.process_word("$A $B ${C} ${D:-x} '$A'", &env).as_deref(), Ok("1 $B ${C} ${D:-x} '$A'"));
}

#[test]
fn nested_modifier_resets_pending_word() {
    // BuildKit shares one word buffer between nested expansions, so text
    // before `${v:-...}` in the same word is dropped from the word list.
    let lex = Lex::new('\\');
    let words = lex.process_words("a${X:-b}c d", &Env::default());
    assert_eq!(words, Ok(vec!["bc".to_string(), "d".to_string()]));
    assert_eq!(lex.process_word("a${X:-b}c d", &Env::default()).as_deref(), Ok("abc d"));
}
