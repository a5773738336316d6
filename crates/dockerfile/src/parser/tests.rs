use super::*;

fn p(s: &str) -> ParseResult {
    parse(s.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn err(s: &str) -> Error {
    parse(s.as_bytes()).unwrap_err()
}

#[test]
fn continuation_trimming() {
    assert_eq!(trim_continuation("foo \\", '\\'), ("foo ", false));
    assert_eq!(trim_continuation("foo\\ \t", '\\'), ("foo", false));
    assert_eq!(trim_continuation("\\", '\\'), ("", false));
    assert_eq!(trim_continuation("foo \\\\", '\\'), ("foo \\\\", true));
    assert_eq!(trim_continuation("foo `", '`'), ("foo ", false));
    assert_eq!(trim_continuation("foo \\", '`'), ("foo \\", true));
}

#[test]
fn lines_and_spans() {
    let r = p("FROM a\n\nRUN echo a \\\n  b\n# c\nRUN x\n");
    assert_eq!(r.nodes.len(), 3);
    assert_eq!((r.nodes[1].start_line, r.nodes[1].end_line), (3, 4));
    assert_eq!(r.nodes[1].args, vec!["echo a   b"]);
    assert_eq!(r.nodes[2].prev_comment, vec!["c"]);
    assert_eq!((r.nodes[2].start_line, r.nodes[2].end_line), (6, 6));
}

#[test]
fn comments_and_empty_lines_in_continuations() {
    let r = p("RUN a \\\n# comment\n\n  b\n");
    assert_eq!(r.nodes[0].args, vec!["a   b"]);
    assert_eq!(r.nodes[0].end_line, 4);
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].short, "Empty continuation line found in: RUN a   b");
    assert_eq!(r.warnings[0].line, 4);
}

#[test]
fn directives_only_at_top() {
    let r = p("# syntax=docker/dockerfile:1\n# ESCAPE=`\n# check=skip=all\nFROM a\n# escape=\\\n");
    assert_eq!(r.escape, '`');
    assert_eq!(r.directive("syntax"), Some("docker/dockerfile:1"));
    assert_eq!(r.directive("check"), Some("skip=all"));
    let r = p("# comment\n# escape=`\nFROM a\n");
    assert_eq!(r.escape, '\\');
    assert!(r.directives.is_empty());
    let r = p("\n# escape=`\nFROM a\n");
    assert_eq!(r.escape, '\\');
    assert_eq!(err("# escape=x\nFROM a").to_string(), "invalid escape token 'x' does not match ` or \\");
    assert_eq!(err("# syntax=a\n# syntax=b\nFROM a").to_string(), "only one syntax parser directive can be used");
}

#[test]
fn bom_and_crlf() {
    let r = p("\u{feff}FROM a\r\nRUN b \\\r\n c\r\n");
    assert_eq!(r.nodes[0].cmd, "FROM");
    assert_eq!(r.nodes[1].args, vec!["b  c"]);
}

#[test]
fn heredocs() {
    let r = p("RUN <<EOF\necho hi\nEOF\nCOPY <<-A <<'B' /dst\n\tx\n\tA\ny $z\nB\n");
    assert_eq!(r.nodes[0].heredocs[0].content, "echo hi\n");
    assert_eq!((r.nodes[0].start_line, r.nodes[0].end_line), (1, 3));
    let c = &r.nodes[1];
    assert_eq!(c.heredocs.len(), 2);
    assert_eq!((c.heredocs[0].chomp, c.heredocs[0].content.as_str()), (true, "\tx\n"));
    assert_eq!((c.heredocs[1].expand, c.heredocs[1].content.as_str()), (false, "y $z\n"));
    assert_eq!(c.end_line, 8);
    // JSON form and other instructions do not read heredocs.
    let r = p("RUN [\"<<EOF\"]\nUSER <<X\n");
    assert!(r.nodes.iter().all(|n| n.heredocs.is_empty()));
    assert_eq!(err("RUN <<EOF\nabc\n").to_string(), "unterminated heredoc");
}

#[test]
fn onbuild_nested() {
    let r = p("ONBUILD RUN --mount=type=cache,target=/x <<EOF\nhi\nEOF\n");
    let n = &r.nodes[0];
    let sub = n.onbuild.as_ref().unwrap();
    assert_eq!(sub.cmd, "RUN");
    assert_eq!(sub.flags, vec!["--mount=type=cache,target=/x"]);
    assert_eq!(n.heredocs[0].content, "hi\n");
    assert_eq!(n.flat_args(), vec!["RUN", "<<EOF"]);
}

#[test]
fn no_instructions_and_long_lines() {
    assert_eq!(err("# just a comment\n\n").to_string(), "file with no instructions");
    let long = format!("FROM a\nRUN {}\n", "x".repeat(MAX_LINE_LEN));
    assert_eq!(err(&long).to_string(), "dockerfile line greater than max allowed size of 65535");
    let ok = format!("FROM a\nRUN {}\n", "x".repeat(MAX_LINE_LEN - 4));
    assert_eq!(p(&ok).nodes.len(), 2);
}

#[test]
fn json_errors() {
    assert_eq!(
        err("CMD [\"a\", 1]").to_string(),
        "when using JSON array syntax, arrays must be comprised of strings only"
    );
    assert_eq!(err("ENV a").to_string(), "ENV must have two arguments");
}

// Ported from BuildKit parser_test.go / parser_heredoc_test.go.

#[test]
fn bk_parse_words() {
    let cases: &[(&str, &[&str])] = &[
        ("foo", &["foo"]),
        ("foo bar", &["foo", "bar"]),
        ("foo\\ bar", &["foo\\ bar"]),
        ("foo=bar", &["foo=bar"]),
        ("foo bar 'abc xyz'", &["foo", "bar", "'abc xyz'"]),
        ("foo bar \"abc xyz\"", &["foo", "bar", "\"abc xyz\""]),
        ("àöû", &["àöû"]),
        ("föo bàr \"âbc xÿz\"", &["föo", "bàr", "\"âbc xÿz\""]),
    ];
    for (input, want) in cases {
        assert_eq!(line::parse_words(input, '\\'), *want, "{input}");
    }
}

#[test]
fn bk_line_numbers() {
    let src = "# ESCAPE=\\\n\n\n\nFROM brimstone/ubuntu:14.04\n\n\n# TORUN -v /var/run/docker.sock:/var/run/docker.sock\n\n\nENV GOPATH \\\n/go\n\n\n\n# Install the packages we need, clean up after them and us\nRUN apt-get update \\\n\t&& dpkg -l | awk '/^ii/ {print $2}' > /tmp/dpkg.clean \\\n\n\n    && apt-get install -y --no-install-recommends git golang ca-certificates \\\n    && apt-get clean \\\n    && rm -rf /var/lib/apt/lists \\\n\n\t&& go get -v github.com/brimstone/consuldock \\\n    && mv $GOPATH/bin/consuldock /usr/local/bin/consuldock \\\n\n\t&& dpkg -l | awk '/^ii/ {print $2}' > /tmp/dpkg.dirty \\\n\t&& apt-get remove --purge -y $(diff /tmp/dpkg.clean /tmp/dpkg.dirty | awk '/^>/ {print $2}') \\\n\t&& rm /tmp/dpkg.* \\\n\t&& rm -rf $GOPATH\n";
    let r = p(src);
    let spans: Vec<(usize, usize)> = r.nodes.iter().map(|n| (n.start_line, n.end_line)).collect();
    assert_eq!(spans, vec![(5, 5), (11, 12), (17, 31)]);
}

#[test]
fn bk_warns_on_empty_continuation_line() {
    let src = "\nFROM alpine:3.6\n\nRUN something \\\n\n    following \\\n\n    more\n\nRUN another \\\n\n    thing\nRUN non-indented \\\n# this is a comment\n   after-comment\n\nRUN indented \\\n    # this is an indented comment\n    comment\n\t";
    let r = p(src);
    assert_eq!(r.warnings.len(), 2);
    assert!(r.warnings[0].short.contains("Empty continuation line found in"));
    assert!(r.warnings[0].short.contains("RUN something     following     more"));
    assert!(r.warnings[1].short.contains("RUN another     thing"));
    assert!(r.warnings[1].detail.contains("will become errors in a future release"));
}

#[test]
fn bk_scanner_errors() {
    let src = format!("\n\t\tFROM image\n\t\tLABEL test={}\n", "a".repeat(65536));
    assert_eq!(err(&src).to_string(), "dockerfile line greater than max allowed size of 65535");
}

#[test]
fn bk_extracts_heredocs() {
    let src = "\nFROM alpine:3.6\n\nENV NAME=me\n\nRUN ls\n\nUSER <<INVALID\nINVALID\n\nRUN <<EMPTY\nEMPTY\n\nRUN 3<<EMPTY2\nEMPTY2\n\nRUN \"<<NOHEREDOC\"\n\nRUN <<INDENT\n\tfoo\n\tbar\nINDENT\n\nRUN <<-UNINDENT\n\tbaz\n\tquux\nUNINDENT\n\nRUN <<-UNINDENT2\n\tbaz\n\tquux\n\tUNINDENT2\n\nRUN <<-EXPAND\n\texpand $NAME\nEXPAND\n\nRUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND\n\nRUN <<COPY\necho hello world\necho foo bar\nCOPY\n\nRUN <<COMMENT\n# internal comment\necho hello world\necho foo bar # trailing comment\nCOMMENT\n\nRUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT\n\nCOPY <<FILE1 <<FILE2 /dest\ncontent 1\nFILE1\ncontent 2\nFILE2\n\nCOPY <<X <<Y /dest\nY\nX\nX\nY\n\t";
    type H<'a> = (&'a str, &'a str, bool, bool, u64);
    let want: &[&[H]] = &[
        &[],
        &[],
        &[],
        &[],
        &[("EMPTY", "", true, false, 0)],
        &[("EMPTY2", "", true, false, 3)],
        &[],
        &[("INDENT", "\tfoo\n\tbar\n", true, false, 0)],
        &[("UNINDENT", "\tbaz\n\tquux\n", true, true, 0)],
        &[("UNINDENT2", "\tbaz\n\tquux\n", true, true, 0)],
        &[("EXPAND", "\texpand $NAME\n", true, true, 0)],
        &[("NOEXPAND", "\tdon't expand $NAME\n", false, true, 0)],
        &[("COPY", "echo hello world\necho foo bar\n", true, false, 0)],
        &[("COMMENT", "# internal comment\necho hello world\necho foo bar # trailing comment\n", true, false, 0)],
        &[("MOUNT", "echo hello\n", true, false, 0)],
        &[("FILE1", "content 1\n", true, false, 0), ("FILE2", "content 2\n", true, false, 0)],
        &[("X", "Y\n", true, false, 0), ("Y", "X\n", true, false, 0)],
    ];
    let r = p(src);
    for (i, w) in want.iter().enumerate() {
        let got: Vec<H> = r.nodes[i + 1]
            .heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.content.as_str(), h.expand, h.chomp, h.file_descriptor))
            .collect();
        assert_eq!(got, *w, "child {}", i + 1);
    }
}

#[test]
fn bk_json_heredoc() {
    let r = p("\nFROM alpine:3.6\n\nRUN [\"whoami\"]\nRUN [\"<<EOF\"]\nRUN [\"<<'EOF'\"]\n\t");
    assert!(r.nodes[1..4].iter().all(|n| n.heredocs.is_empty()));
}

#[test]
fn bk_heredoc_helpers() {
    assert_eq!(chomp_heredoc_content("\thello\n\tworld\n"), "hello\nworld\n");
    for src in ["<<EOF", "<<'EOF'", "<<\"EOF\"", "<<-EOF", "<<-'EOF'", "<<-\"EOF\""] {
        assert_eq!(parse_heredoc(src).unwrap().map(|h| h.name).as_deref(), Some("EOF"), "{src}");
    }
    for src in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
        assert!(parse_heredoc(src).is_err(), "{src}");
    }
    for src in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF"] {
        assert_eq!(parse_heredoc(src), Ok(None), "{src}");
    }
    let lines: &[(&str, &[&str])] = &[
        ("RUN <<EOF", &["EOF"]),
        ("RUN <<-EOF", &["EOF"]),
        ("RUN <<'EOF'", &["EOF"]),
        ("RUN 4<<EOF", &["EOF"]),
        ("RUN <<EOF <<EOF2", &["EOF", "EOF2"]),
        ("RUN '<<EOF'", &[]),
        ("RUN \"<<EOF\"", &[]),
    ];
    for (line, names) in lines {
        let got: Vec<String> = heredoc::heredocs_from_line(line).unwrap().into_iter().map(|h| h.name).collect();
        assert_eq!(got, *names, "{line}");
    }
}
