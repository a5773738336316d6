//! One parse function per instruction, mirroring BuildKit's `parse.go`.

use super::bflag::{suggest, BFlags, FlagError};
use super::{duration, mount, ArgDef, CmdLine, Copy, FromStage, Healthcheck, InlineFile, Instruction, KeyValue, Run};
use crate::parser::{chomp_heredoc_content, parse_heredoc, Node};

pub(crate) struct InstrError {
    pub message: String,
    pub token: Option<String>,
}

impl From<String> for InstrError {
    fn from(message: String) -> InstrError {
        InstrError { message, token: None }
    }
}

impl From<&str> for InstrError {
    fn from(message: &str) -> InstrError {
        InstrError { message: message.to_string(), token: None }
    }
}

impl From<FlagError> for InstrError {
    fn from(e: FlagError) -> InstrError {
        let token = e.word.split('=').next().map(str::to_string);
        InstrError { message: e.message, token }
    }
}

type R<T> = Result<T, InstrError>;

struct Req<'a> {
    node: &'a Node,
    args: Vec<String>,
    flags: BFlags,
}

fn at_least_one(cmd: &str) -> InstrError {
    format!("{cmd} requires at least one argument").into()
}

fn exactly_one(cmd: &str) -> InstrError {
    format!("{cmd} requires exactly one argument").into()
}

fn blank_names(cmd: &str) -> InstrError {
    format!("{cmd} names can not be blank").into()
}

pub(crate) fn parse(node: &Node) -> R<Instruction> {
    let mut req = Req { node, args: node.flat_args(), flags: BFlags::new(&node.flags) };
    match node.keyword().as_str() {
        "env" => kvps(&mut req, "ENV").map(Instruction::Env),
        "label" => kvps(&mut req, "LABEL").map(Instruction::Label),
        "maintainer" => single(&mut req, "MAINTAINER", true).map(Instruction::Maintainer),
        "workdir" => single(&mut req, "WORKDIR", true).map(Instruction::Workdir),
        "user" => single(&mut req, "USER", true).map(Instruction::User),
        "stopsignal" => single(&mut req, "STOPSIGNAL", false).map(Instruction::Stopsignal),
        "add" => copy(&mut req, "ADD").map(Instruction::Add),
        "copy" => copy(&mut req, "COPY").map(Instruction::Copy),
        "from" => from(&mut req).map(Instruction::From),
        "onbuild" => onbuild(&mut req).map(Instruction::Onbuild),
        "run" => run(&mut req).map(Instruction::Run),
        "cmd" => {
            req.flags.parse()?;
            Ok(Instruction::Cmd(cmd_line(&req)))
        }
        "entrypoint" => {
            req.flags.parse()?;
            Ok(Instruction::Entrypoint(cmd_line(&req)))
        }
        "healthcheck" => healthcheck(&mut req).map(Instruction::Healthcheck),
        "expose" => {
            if req.args.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            req.flags.parse()?;
            let mut ports = req.args;
            ports.sort();
            Ok(Instruction::Expose(ports))
        }
        "volume" => volume(&mut req).map(Instruction::Volume),
        "arg" => arg(&mut req).map(Instruction::Arg),
        "shell" => shell(&mut req).map(Instruction::Shell),
        _ => {
            let msg = suggest(&format!("unknown instruction: {}", node.cmd), &node.cmd, &super::INSTRUCTIONS, false);
            Err(InstrError { message: msg, token: Some(node.cmd.clone()) })
        }
    }
}

fn kvps(req: &mut Req, name: &str) -> R<Vec<super::KeyValue>> {
    req.flags.parse()?;
    let args = &req.args;
    if args.is_empty() {
        return Err(at_least_one(name));
    }
    if !args.chunks_exact(3).remainder().is_empty() {
        return Err(format!("Bad input to {name}, too many arguments").into());
    }
    let mut out = Vec::new();
    for t in args.chunks(3) {
        if t[0].is_empty() {
            return Err(blank_names(name));
        }
        out.push(KeyValue { key: t[0].clone(), value: t[1].clone(), legacy: t[2].is_empty() });
    }
    Ok(out)
}

fn single(req: &mut Req, name: &str, check_flags: bool) -> R<String> {
    if req.args.len() != 1 {
        return Err(exactly_one(name));
    }
    if check_flags {
        req.flags.parse()?;
    }
    Ok(req.args[0].clone())
}

fn inline_files(node: &Node) -> Vec<InlineFile> {
    node.heredocs
        .iter()
        .map(|h| InlineFile { name: h.name.clone(), data: h.content.clone(), expand: h.expand, chomp: h.chomp })
        .collect()
}

fn cmd_line(req: &Req) -> CmdLine {
    CmdLine { args: req.args.clone(), prepend_shell: !req.node.json, files: inline_files(req.node) }
}

fn copy(req: &mut Req, name: &str) -> R<Copy> {
    if req.args.len() < 2 {
        return Err(format!(
            "{name} requires at least two arguments, but only one was provided. Destination could not be determined."
        )
        .into());
    }
    let is_copy = name == "COPY";
    req.flags.add_string("chown");
    if is_copy {
        req.flags.add_string("from");
    }
    req.flags.add_string("chmod");
    req.flags.add_bool("link");
    if is_copy {
        req.flags.add_bool("parents");
    } else {
        req.flags.add_bool("keep-git-dir");
        req.flags.add_string("checksum");
        req.flags.add_bool("unpack");
    }
    req.flags.add_strings("exclude");
    req.flags.parse()?;

    let (srcs, dest) = req.args.split_at(req.args.len() - 1);
    let dest = dest[0].clone();
    if parse_heredoc(&dest).ok().flatten().is_some() {
        return Err(format!("{name} cannot accept a heredoc as a destination").into());
    }
    let mut sources = Vec::new();
    let mut contents = Vec::new();
    for src in srcs {
        match parse_heredoc(src).ok().flatten() {
            Some(h) => {
                let body = req.node.heredocs.iter().find(|d| d.name == h.name).map(|d| d.content.clone());
                let mut data = body.unwrap_or_default();
                if h.chomp {
                    data = chomp_heredoc_content(&data);
                }
                contents.push(InlineFile { name: h.name, data, expand: h.expand, chomp: h.chomp });
            }
            None => sources.push(src.clone()),
        }
    }
    let f = &req.flags;
    Ok(Copy {
        sources,
        contents,
        dest,
        from: f.string("from"),
        chown: f.string("chown"),
        chmod: f.string("chmod"),
        link: f.bool("link"),
        parents: f.bool("parents"),
        excludes: f.strings("exclude"),
        checksum: f.string("checksum"),
        keep_git_dir: f.bool("keep-git-dir"),
        unpack: f.opt_bool("unpack"),
    })
}

fn is_valid_stage_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn from(req: &mut Req) -> R<FromStage> {
    let args = &req.args;
    let name = if args.len() == 3 && args[1].eq_ignore_ascii_case("as") {
        let n = args[2].to_lowercase();
        if !is_valid_stage_name(&n) {
            return Err(InstrError {
                message: format!(
                    "invalid name for build stage: {}, name can't start with a number or contain symbols",
                    crate::go_quote(&args[2])
                ),
                token: Some(args[2].clone()),
            });
        }
        Some(n)
    } else if args.len() != 1 {
        return Err("FROM requires either one or three arguments".into());
    } else {
        None
    };
    req.flags.add_string("platform");
    req.flags.parse()?;
    Ok(FromStage { base: req.args[0].clone(), name, platform: req.flags.string("platform") })
}

fn onbuild(req: &mut Req) -> R<String> {
    if req.args.is_empty() {
        return Err(at_least_one("ONBUILD"));
    }
    req.flags.parse()?;
    let trigger = req.args[0].trim().to_uppercase();
    match trigger.as_str() {
        "ONBUILD" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        "MAINTAINER" | "FROM" => return Err(format!("{trigger} isn't allowed as an ONBUILD trigger").into()),
        _ => {}
    }
    let original = req.node.original.trim_start_matches(char::is_whitespace);
    let rest = match original.get(..7) {
        Some(head) if head.eq_ignore_ascii_case("onbuild") => &original[7..],
        _ => original,
    };
    Ok(rest.trim_start_matches(char::is_whitespace).to_string())
}

fn run(req: &mut Req) -> R<Run> {
    req.flags.add_strings("mount");
    req.flags.add_string("network");
    req.flags.add_string("security");
    req.flags.parse()?;
    let mut mounts = Vec::new();
    for m in req.flags.strings("mount") {
        mounts.push(mount::parse_mount(&m).map_err(|message| InstrError { message, token: Some("--mount".into()) })?);
    }
    let network = req.flags.string("network");
    if let Some(n) = network.as_deref().filter(|n| !matches!(*n, "default" | "none" | "host" | "")) {
        return Err(InstrError {
            message: format!("unsupported network mode {}", crate::go_quote(n)),
            token: Some("--network".into()),
        });
    }
    let security = req.flags.string("security");
    if let Some(s) = security.as_deref().filter(|s| !matches!(*s, "sandbox" | "insecure")) {
        return Err(InstrError {
            message: format!("unsupported security mode {}", crate::go_quote(s)),
            token: Some("--security".into()),
        });
    }
    Ok(Run { cmd: cmd_line(req), mounts, network, security })
}

fn healthcheck(req: &mut Req) -> R<Healthcheck> {
    if req.args.is_empty() {
        return Err(at_least_one("HEALTHCHECK"));
    }
    let typ = req.args[0].to_uppercase();
    let args = &req.args[1..];
    let mut h =
        Healthcheck { test: Vec::new(), interval: 0, timeout: 0, start_period: 0, start_interval: 0, retries: 0 };
    if typ == "NONE" {
        if !args.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        h.test = vec![typ];
        return Ok(h);
    }
    for f in ["interval", "timeout", "start-period", "start-interval", "retries"] {
        req.flags.add_string(f);
    }
    req.flags.parse()?;
    if typ != "CMD" {
        return Err(format!("Unknown type {} in HEALTHCHECK (try CMD)", crate::go_quote(&typ)).into());
    }
    if args.is_empty() {
        return Err("Missing command after HEALTHCHECK CMD".into());
    }
    let kind = if req.node.json { "CMD" } else { "CMD-SHELL" };
    h.test = std::iter::once(kind.to_string()).chain(args.iter().cloned()).collect();
    let interval = |name: &str| -> R<u64> {
        let v = req.flags.string(name).unwrap_or_default();
        if v.is_empty() {
            return Ok(0);
        }
        let d = duration::parse_duration(&v)?;
        if d == 0 {
            return Ok(0);
        }
        if d < 1_000_000 {
            return Err(format!("Interval {} cannot be less than 1ms", crate::go_quote(name)).into());
        }
        u64::try_from(d)
            .map_err(|_| InstrError::from(format!("Interval {} cannot be less than 1ms", crate::go_quote(name))))
    };
    h.interval = interval("interval")?;
    h.timeout = interval("timeout")?;
    h.start_period = interval("start-period")?;
    h.start_interval = interval("start-interval")?;
    if let Some(r) = req.flags.string("retries").filter(|r| !r.is_empty()) {
        let n: i64 = r
            .parse::<i32>()
            .map(i64::from)
            .map_err(|_| format!("strconv.ParseInt: parsing {}: invalid syntax", crate::go_quote(&r)))?;
        if n < 1 {
            return Err(format!("--retries must be at least 1 (not {n})").into());
        }
        h.retries = n;
    }
    Ok(h)
}

fn volume(req: &mut Req) -> R<Vec<String>> {
    if req.args.is_empty() {
        return Err(at_least_one("VOLUME"));
    }
    req.flags.parse()?;
    let mut out = Vec::new();
    for v in &req.args {
        let v = v.trim();
        if v.is_empty() {
            return Err("VOLUME specified can not be an empty string".into());
        }
        out.push(v.to_string());
    }
    Ok(out)
}

fn arg(req: &mut Req) -> R<Vec<ArgDef>> {
    if req.args.is_empty() {
        return Err(at_least_one("ARG"));
    }
    req.flags.parse()?;
    let mut out = Vec::new();
    for a in &req.args {
        let (key, value) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        if key.is_empty() {
            return Err(blank_names("ARG"));
        }
        out.push(ArgDef { key, value });
    }
    Ok(out)
}

fn shell(req: &mut Req) -> R<Vec<String>> {
    req.flags.parse()?;
    if req.args.is_empty() {
        return Err(at_least_one("SHELL"));
    }
    if !req.node.json {
        return Err("SHELL requires the arguments to be in JSON form".into());
    }
    Ok(req.args.clone())
}
