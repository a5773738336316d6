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
