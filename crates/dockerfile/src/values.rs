//! Values of instructions as BuildKit's dockerfile2llb reads them: ports,
//! signals, WORKDIR paths, here-document scripts, and the Go formatting of
//! history text. One implementation for the builder and the frontend.

use crate::instructions::CmdLine;

/// Splits one CSV record into its fields as Go's `encoding/csv` does for
/// the flags buildx reads that way (`--mount`, `--output`, `--cache-to`,
/// `--cache-from`, `--secret`): a field in double quotes may hold commas,
/// and `""` inside one is a quote.
pub fn csv_fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Whether a shell-form command is only a here-document marker.
pub fn is_lone_heredoc(arg: &str) -> bool {
    let Some(rest) = arg.trim().strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let word = rest.trim_matches(|c| c == '"' || c == '\'');
    !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// BuildKit's `ChompHeredocContent`: leading tabs of every line removed.
pub fn chomp(data: &str) -> String {
    data.split('\n').map(|l| l.trim_start_matches('\t')).collect::<Vec<_>>().join("\n")
}

/// A here-document's first line, with `...` when more follow.
pub fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim().replace("\r\n", "\n");
    let mut lines = doc.split('\n');
    let first = lines.next().unwrap_or("").to_string();
    if lines.next().is_some() {
        first + "..."
    } else {
        first
    }
}

/// A RUN's here-documents as BuildKit's dispatchRun turns them into a
/// command: the script for the shell (or the path of a piped file that
/// starts with `#!`) and that piped file's name and content. `Err` when
/// the parser produced here-documents on a command that cannot take them.
#[allow(clippy::type_complexity)]
pub fn heredoc_script(cmd: &CmdLine) -> Result<(Option<String>, Option<(String, String)>), InvalidRun> {
    let files = &cmd.files;
    match files.first() {
        None => Ok((None, None)),
        Some(_) if cmd.args.len() != 1 || !cmd.prepend_shell => Err(InvalidRun),
        Some(f) if is_lone_heredoc(&cmd.args[0]) => {
            let data = if f.chomp { chomp(&f.data) } else { f.data.clone() };
            if data.starts_with("#!") {
                Ok((Some(format!("/dev/pipes/{}", f.name)), Some((f.name.clone(), data))))
            } else {
                Ok((Some(data), None))
            }
        }
        Some(_) => {
            let mut full = cmd.args[0].clone();
            for f in files {
                full.push_str(&format!("\n{}{}", f.data, f.name));
            }
            Ok((Some(full), None))
        }
    }
}

/// Here-documents on a RUN that cannot take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("parsing produced an invalid run command")]
pub struct InvalidRun;

/// BuildKit's `NormalizeWorkdir` on Linux: an absolute path is kept as
/// written; a relative one joins the current directory and is cleaned.
pub fn normalize_workdir(current: &str, p: &str) -> String {
    if p.starts_with('/') {
        return p.to_string();
    }
    let parent = if current.is_empty() { "/" } else { current };
    crate::clean(&format!("/{parent}/{p}"))
}

/// The absolute destination of COPY/ADD: relative to the working
/// directory, never above the root, keeping a trailing `/` (also for `.`
/// and `..`) that marks a directory.
pub fn dest_path(workdir: &str, dest: &str) -> String {
    let dir_syntax =
        dest.ends_with('/') || dest == "." || dest == ".." || dest.ends_with("/.") || dest.ends_with("/..");
    let joined = if dest.starts_with('/') { dest.to_string() } else { format!("/{workdir}/{dest}") };
    let c = crate::clean(&joined);
    if dir_syntax && c != "/" {
        format!("{c}/")
    } else {
        c
    }
}

/// The file name BuildKit's Dockerfile frontend gives a URL:
/// `path.Base` of the URL's decoded path (trailing slashes dropped, so
/// `http://h/dir/` names `dir`), or `__unnamed__` when the path is empty
/// or `/`. A `Content-Disposition` header is not used: the frontend always
/// sets the name.
pub fn url_file_name(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    let path = no_query.split_once("://").map(|(_, r)| r).unwrap_or(no_query);
    let path = path.split_once('/').map(|(_, p)| p).unwrap_or("");
    match percent_decode(path.trim_end_matches('/')).rsplit('/').next() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// `%XX` escapes decoded, as Go's `url.URL.Path` holds them (left as
/// written when malformed).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An http(s) URL.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// `80`, `80/udp`, `8000-8002/tcp`, `127.0.0.1:80:80` (the container
/// port is kept) → `port/proto` keys, as go-connections' `ParsePortSpecs`.
pub fn parse_port_spec(spec: &str) -> Result<Vec<String>, String> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let container = rest.rsplit(':').next().unwrap_or(rest);
    let bad = || format!("invalid containerPort: {container}");
    let (lo, hi) = match container.split_once('-') {
        Some((a, b)) => (a.parse::<u32>().map_err(|_| bad())?, b.parse::<u32>().map_err(|_| bad())?),
        None => {
            let p = container.parse::<u32>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if hi < lo || hi > 65535 {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Signal names and numbers moby's `signal.ParseSignal` accepts.
pub fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return n > 0 && n <= 64;
    }
    let name = s.trim_start_matches("SIG").to_uppercase();
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE", "POLL",
        "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1",
        "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    ];
    NAMES.contains(&name.as_str()) || name.starts_with("RTMIN") || name.starts_with("RTMAX")
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub fn go_quoted_list(v: &[String]) -> String {
    let parts: Vec<String> = v.iter().map(|s| crate::go_quote(s)).collect();
    format!("[{}]", parts.join(" "))
}

/// Go's `%v` of a string slice: `[a b]`.
pub fn go_list(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_markers_and_chomp() {
        assert!(is_lone_heredoc("<<EOF"));
        assert!(is_lone_heredoc("<<-\"EOT\""));
        assert!(!is_lone_heredoc("cat <<EOF"));
        assert!(!is_lone_heredoc("<<EOF > /x"));
        assert_eq!(chomp("\t\techo\n\tx"), "echo\nx");
        assert_eq!(summarize_heredoc("a\nb\n"), "a...");
        assert_eq!(summarize_heredoc("a\n"), "a");
    }

    #[test]
    fn ports_signals_workdirs() {
        assert_eq!(parse_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(parse_port_spec("8000-8002").unwrap(), ["8000/tcp", "8001/tcp", "8002/tcp"]);
        assert_eq!(parse_port_spec("127.0.0.1:8080:80").unwrap(), ["80/tcp"]);
        assert!(parse_port_spec("80/xyz").is_err());
        assert!(valid_signal("SIGTERM") && valid_signal("9") && !valid_signal("SIGNOPE") && !valid_signal("65"));
        assert_eq!(normalize_workdir("/a", "b/../c"), "/a/c");
        assert_eq!(normalize_workdir("/a", "/x/./y/"), "/x/./y/");
        assert_eq!(go_quoted_list(&["a".into(), "b c".into()]), "[\"a\" \"b c\"]");
        assert_eq!(go_list(&["a".into(), "b".into()]), "[a b]");
    }

    #[test]
    fn copy_destinations_stay_below_the_root() {
        assert_eq!(dest_path("/", "app"), "/app");
        assert_eq!(dest_path("/w", "app/"), "/w/app/");
        assert_eq!(dest_path("/w", "."), "/w/");
        assert_eq!(dest_path("/w/", ".."), "/");
        assert_eq!(dest_path("", "."), "/");
        assert_eq!(dest_path("", "/x/../y"), "/y");
        assert_eq!(dest_path("rel", "../../x"), "/x");
        assert_eq!(dest_path("/w", "/abs//b/./"), "/abs/b/");
    }
}
