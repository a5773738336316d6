//! Boolean flags with a value, as Go's flag packages take them: docker and
//! buildx accept `--push=false`, `--load=true`, `--no-cache=0` for every
//! boolean flag (`strconv.ParseBool`), and scripts write `--push=$PUSH`.
//! clap's boolean flags take no value, so before parsing, `--NAME=VALUE`
//! of a boolean flag of the command being run becomes `--NAME` when VALUE
//! is true and nothing when it is false. Anything after `--`, and the
//! command line a command runs (`run IMAGE COMMAND...`), is left alone.

use std::ffi::OsString;

use clap::{Arg, ArgAction, Command};

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Whether `arg` takes no value (a clap boolean flag).
fn is_switch(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

fn takes_value(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Set | ArgAction::Append)
}

/// The argument of `cmd` (or a global one of `root`) named `--long`.
fn by_long<'a>(cmd: &'a Command, root: &'a Command, long: &str) -> Option<&'a Arg> {
    let find = |c: &'a Command| {
        c.get_arguments().find(|a| a.get_long() == Some(long) || a.get_all_aliases().is_some_and(|v| v.contains(&long)))
    };
    find(cmd).or_else(|| find(root).filter(|a| a.is_global_set()))
}

/// The argument of `cmd` (or a global one of `root`) named `-c`.
fn by_short<'a>(cmd: &'a Command, root: &'a Command, c: char) -> Option<&'a Arg> {
    let find = |x: &'a Command| x.get_arguments().find(|a| a.get_short() == Some(c));
    find(cmd).or_else(|| find(root).filter(|a| a.is_global_set()))
}

/// `args` with `--BOOL=VALUE` rewritten as the module says.
/// `root` is made only when a word may need it.
pub fn go_bools(root: impl FnOnce() -> Command, args: Vec<OsString>) -> Vec<OsString> {
    let has_candidate = args.iter().skip(1).any(|a| a.to_str().is_some_and(|s| s.starts_with("--") && s.contains('=')));
    if !has_candidate {
        return args;
    }
    let root = &root();
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    out.extend(it.next());
    let mut current = root;
    let mut subcommands_done = false;
    while let Some(a) = it.next() {
        let Some(s) = a.to_str().map(str::to_string) else {
            out.push(a);
            continue;
        };
        if s == "--" {
            out.push(a);
            out.extend(it);
            break;
        }
        if !s.starts_with('-') || s == "-" {
            if !subcommands_done {
                if let Some(sub) = current.find_subcommand(&s) {
                    current = sub;
                    out.push(a);
                    continue;
                }
                subcommands_done = true;
            }
            out.push(a);
            // A command that runs a command line (`run IMAGE COMMAND...`):
            // what follows its first operand is not polyarch's.
            if current.get_positionals().any(Arg::is_trailing_var_arg_set) {
                out.extend(it);
                break;
            }
            continue;
        }
        if let Some(long) = s.strip_prefix("--") {
            match long.split_once('=') {
                Some((name, value)) => {
                    if let (Some(arg), Some(on)) = (by_long(current, root, name), parse_bool(value)) {
                        if is_switch(arg) {
                            if on {
                                out.push(OsString::from(format!("--{name}")));
                            }
                            continue;
                        }
                    }
                    out.push(a);
                }
                None => {
                    let value_next = by_long(current, root, long).is_some_and(takes_value);
                    out.push(a);
                    if value_next {
                        out.extend(it.next());
                    }
                }
            }
            continue;
        }
        // `-t NAME`, `-tNAME`, `-qt NAME`: the value follows the last letter
        // that takes one, when nothing is attached to it.
        let letters: Vec<char> = s[1..].chars().collect();
        let mut value_next = false;
        for (i, c) in letters.iter().enumerate() {
            if by_short(current, root, *c).is_some_and(takes_value) {
                value_next = i + 1 == letters.len();
                break;
            }
        }
        out.push(a);
        if value_next {
            out.extend(it.next());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Command {
        Command::new("polyarch")
            .arg(Arg::new("root").long("root").global(true).action(ArgAction::Set))
            .arg(Arg::new("debug").short('D').long("debug").global(true).action(ArgAction::SetTrue))
            .subcommand(
                Command::new("build")
                    .arg(Arg::new("push").long("push").action(ArgAction::SetTrue))
                    .arg(Arg::new("quiet").short('q').long("quiet").action(ArgAction::SetTrue))
                    .arg(Arg::new("tag").short('t').long("tag").action(ArgAction::Append))
                    .arg(Arg::new("context")),
            )
            .subcommand(
                Command::new("run")
                    .arg(Arg::new("rm").long("rm").action(ArgAction::SetTrue))
                    .arg(Arg::new("image"))
                    .arg(Arg::new("command").num_args(0..).trailing_var_arg(true)),
            )
    }

    fn rewrite(args: &[&str]) -> Vec<String> {
        let args = std::iter::once("polyarch").chain(args.iter().copied()).map(OsString::from).collect();
        go_bools(cli, args).into_iter().skip(1).map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn boolean_flags_take_gos_values() {
        assert_eq!(rewrite(&["build", "--push=false", "."]), ["build", "."]);
        assert_eq!(rewrite(&["build", "--push=true", "."]), ["build", "--push", "."]);
        assert_eq!(rewrite(&["build", "--push=1", "--quiet=F", "."]), ["build", "--push", "."]);
        assert_eq!(rewrite(&["--root", "/x", "build", "--push=0", "."]), ["--root", "/x", "build", "."]);
        assert_eq!(rewrite(&["build", "--debug=true", "."]), ["build", "--debug", "."]);
        assert_eq!(rewrite(&["build", ".", "--push=True"]), ["build", ".", "--push"]);
    }

    #[test]
    fn other_words_are_left_alone() {
        // A value that is not Go's boolean is for clap to refuse.
        assert_eq!(rewrite(&["build", "--push=maybe", "."]), ["build", "--push=maybe", "."]);
        // Not a boolean flag, or the value of one that takes a value.
        assert_eq!(rewrite(&["build", "--tag=x=false", "."]), ["build", "--tag=x=false", "."]);
        assert_eq!(rewrite(&["build", "-t", "--push=false", "."]), ["build", "-t", "--push=false", "."]);
        assert_eq!(rewrite(&["build", "--tag", "--push=false", "."]), ["build", "--tag", "--push=false", "."]);
        assert_eq!(rewrite(&["build", "--", "--push=false"]), ["build", "--", "--push=false"]);
        // The command line a container runs is its own.
        assert_eq!(
            rewrite(&["run", "--rm=true", "img", "ls", "--rm=false"]),
            ["run", "--rm", "img", "ls", "--rm=false"]
        );
        assert_eq!(rewrite(&["build", "--nothing=false"]), ["build", "--nothing=false"]);
    }
}
