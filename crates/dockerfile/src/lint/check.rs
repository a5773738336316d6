//! The walk behind [`super::lint`]: parse-time rules per node, then the
//! stage-name and casing checks, then FROM expansion, then each stage's
//! instructions in order, as BuildKit reports them.

use std::collections::{BTreeSet, HashMap};

use super::rules::{self as r, Rule};
use super::{Config, Options, Warning};
use crate::instructions::{parse_instruction, ArgDef, Command, Instruction};
use crate::parser::{Node, ParseResult};
use crate::shell::{Env, Lex};
use crate::Error;

/// A stage's variables as the dispatcher would have them.
#[derive(Clone, Default)]
struct StageEnv {
    env: Vec<(String, String)>,
    /// ARG names declared in the stage (and its parents).
    declared: BTreeSet<String>,
    /// Whether the starting image's variables are known.
    known: bool,
    shell: bool,
    workdir_set: bool,
    /// ONBUILD expressions declared in the stage.
    triggers: Vec<String>,
}

impl StageEnv {
    fn getter(&self) -> Env {
        let mut e = Env::default();
        for (k, v) in &self.env {
            e.set(k.clone(), v.clone());
        }
        e
    }

    fn set(&mut self, k: &str, v: &str) {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.to_string(), v.to_string()));
    }
}

/// Where an instruction is used once per stage.
#[derive(Default)]
struct Once {
    cmd: Option<(usize, usize)>,
    entrypoint: Option<(usize, usize)>,
    healthcheck: Option<(usize, usize)>,
}

pub(super) struct Checker<'a> {
    ast: &'a ParseResult,
    opts: &'a Options<'a>,
    config: &'a Config,
    lex: Lex,
    out: Vec<Warning>,
    /// Set while walking a stage that is not dispatched.
    quiet: bool,
}

impl<'a> Checker<'a> {
    pub(super) fn new(ast: &'a ParseResult, opts: &'a Options<'a>, config: &'a Config) -> Checker<'a> {
        Checker { ast, opts, config, lex: Lex::new(ast.escape), out: Vec::new(), quiet: false }
    }

    fn warn(&mut self, cfg: &Config, rule: Rule, message: String, lines: (usize, usize)) {
        if cfg.enabled(&rule) && !self.quiet {
            self.out.push(Warning {
                rule: rule.name,
                description: rule.description,
                url: rule.url,
                message,
                start_line: lines.0,
                end_line: lines.1,
            });
        }
    }

    pub(super) fn run(mut self) -> Result<Vec<Warning>, Error> {
        let cfg = self.config.clone();
        for w in &self.ast.warnings {
            if w.url == r::NO_EMPTY_CONTINUATION.url {
                self.warn(&cfg, r::NO_EMPTY_CONTINUATION, "Empty continuation line".into(), (w.line, w.line));
            }
        }
        // (node, command, config of the node) in file order.
        let mut items: Vec<(&Node, Command, Config)> = Vec::new();
        for node in &self.ast.nodes {
            let cmd = parse_instruction(node)?;
            let ncfg = cfg.with_comments(&node.prev_comment);
            self.parse_time(node, &cmd, &ncfg);
            items.push((node, cmd, ncfg));
        }
        self.stage_names(&items);
        self.casing(&items);
        let meta: Vec<ArgDef> = items
            .iter()
            .take_while(|(_, c, _)| !matches!(c.instruction, Instruction::From(_)))
            .filter_map(|(_, c, _)| match &c.instruction {
                Instruction::Arg(a) => Some(a.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let defaults = self.globals(&meta, &HashMap::new());
        let globals = self.globals(&meta, &self.opts.build_args);
        let mut declared: BTreeSet<String> = self.opts.builtins.keys().cloned().collect();
        declared.extend(meta.iter().map(|a| a.key.clone()));
        declared.extend(globals.keys().cloned());
        let froms: Vec<&(&Node, Command, Config)> =
            items.iter().filter(|(_, c, _)| matches!(c.instruction, Instruction::From(_))).collect();
        for (_, cmd, ncfg) in &froms {
            self.default_base(cmd, ncfg, &defaults);
        }
        for (_, cmd, ncfg) in &froms {
            self.check_from_args(cmd, ncfg, &globals, &declared);
        }
        for (i, (_, cmd, ncfg)) in froms.iter().enumerate() {
            if let Some((image, expected, actual)) = self.opts.base_platform.and_then(|f| f(i)) {
                let message = r::invalid_base_platform(&image, &expected, &actual);
                self.warn(ncfg, r::INVALID_BASE_IMAGE_PLATFORM, message, (cmd.start_line, cmd.end_line));
            }
        }
        self.dispatch(&items, &globals)?;
        Ok(self.out)
    }

    /// Rules BuildKit runs while turning nodes into instructions.
    fn parse_time(&mut self, node: &Node, cmd: &Command, cfg: &Config) {
        let lines = (cmd.start_line, cmd.end_line);
        match &cmd.instruction {
            Instruction::Maintainer(_) => self.warn(
                cfg,
                r::MAINTAINER_DEPRECATED,
                "Maintainer instruction is deprecated in favor of using label".into(),
                lines,
            ),
            Instruction::From(f) => {
                if node.args.len() == 3 && node.args[2] != node.args[2].to_lowercase() {
                    self.warn(cfg, r::STAGE_NAME_CASING, r::stage_name_casing(&node.args[2]), lines);
                }
                if node.args.len() >= 3 && !from_matches_as(&node.cmd, &node.args[1]) {
                    self.warn(cfg, r::FROM_AS_CASING, r::from_as_casing(&node.cmd, &node.args[1]), lines);
                }
                if let Some(name) = &f.name {
                    self.description(cfg, "FROM", std::slice::from_ref(name), &node.prev_comment, lines);
                }
            }
            Instruction::Arg(args) => {
                let keys: Vec<String> = args.iter().map(|a| a.key.clone()).collect();
                self.description(cfg, "ARG", &keys, &node.prev_comment, lines);
            }
            _ => {}
        }
    }

    fn description(&mut self, cfg: &Config, ins: &str, keys: &[String], comments: &[String], lines: (usize, usize)) {
        let (Some(last), Some(first)) = (comments.last(), keys.first()) else { return };
        let word = last.split(' ').next().unwrap_or("");
        if keys.iter().any(|k| k == word) {
            return;
        }
        let example = if keys.len() > 1 { "<arg_key>" } else { first.as_str() };
        self.warn(cfg, r::INVALID_DEFINITION_DESCRIPTION, r::invalid_description(ins, example), lines);
    }

    fn stage_names(&mut self, items: &[(&Node, Command, Config)]) {
        let mut seen: Vec<String> = Vec::new();
        for (_, cmd, _) in items {
            let Instruction::From(f) = &cmd.instruction else { continue };
            let Some(name) = &f.name else { continue };
            let lines = (cmd.start_line, cmd.end_line);
            if name == "context" || name == "scratch" {
                self.warn(self.config, r::RESERVED_STAGE_NAME, r::reserved_stage_name(name), lines);
            }
            if seen.contains(name) {
                self.warn(self.config, r::DUPLICATE_STAGE_NAME, r::duplicate_stage_name(name), lines);
            }
            seen.push(name.clone());
        }
    }

    /// ConsistentInstructionCasing over the instructions of the stages.
    fn casing(&mut self, items: &[(&Node, Command, Config)]) {
        let in_stage: Vec<&(&Node, Command, Config)> =
            items.iter().skip_while(|(_, c, _)| !matches!(c.instruction, Instruction::From(_))).collect();
        let consistent = |s: &str| s == s.to_lowercase() || s == s.to_uppercase();
        let (mut lower, mut upper) = (0, 0);
        for (node, _, _) in &in_stage {
            if consistent(&node.cmd) {
                if node.cmd == node.cmd.to_lowercase() {
                    lower += 1;
                } else {
                    upper += 1;
                }
            }
        }
        let majority_lower = lower > upper;
        for (node, cmd, _) in in_stage {
            let name = node.cmd.as_str();
            let casing = if majority_lower && name.to_lowercase() != name {
                "lowercase"
            } else if !majority_lower && name.to_uppercase() != name {
                "uppercase"
            } else {
                continue;
            };
            let lines = (cmd.start_line, cmd.end_line);
            self.warn(self.config, r::CONSISTENT_INSTRUCTION_CASING, r::consistent_casing(name, casing), lines);
        }
    }

    /// Global ARG values: builtins, then the meta ARGs in order.
    fn globals(&self, meta: &[ArgDef], build_args: &HashMap<String, String>) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = self.opts.builtins.clone();
        for a in meta {
            let v = match (build_args.get(&a.key), &a.value) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => self.lex.process_word(d, &env).ok(),
                (None, None) => None,
            };
            if let Some(v) = v {
                env.insert(a.key.clone(), v);
            }
        }
        env
    }

    /// InvalidDefaultArgInFrom: the base with only default values.
    fn default_base(&mut self, cmd: &Command, cfg: &Config, defaults: &HashMap<String, String>) {
        let Instruction::From(f) = &cmd.instruction else { return };
        let Ok(res) = self.lex.process(&f.base, defaults) else { return };
        if !valid_reference(&res.result) {
            self.warn(
                cfg,
                r::INVALID_DEFAULT_ARG_IN_FROM,
                r::invalid_default_arg(&f.base),
                (cmd.start_line, cmd.end_line),
            );
        }
    }

    /// UndefinedArgInFrom, RedundantTargetPlatform, FromPlatformFlagConstDisallowed.
    fn check_from_args(
        &mut self,
        cmd: &Command,
        cfg: &Config,
        globals: &HashMap<String, String>,
        declared: &BTreeSet<String>,
    ) {
        let Instruction::From(f) = &cmd.instruction else { return };
        let lines = (cmd.start_line, cmd.end_line);
        let keys: Vec<String> = declared.iter().cloned().collect();
        let undeclared = |this: &mut Self, unmatched: &BTreeSet<String>| {
            for arg in unmatched.iter().filter(|a| !declared.contains(*a)) {
                let s = crate::instructions::search(arg, &keys, true);
                this.warn(cfg, r::UNDEFINED_ARG_IN_FROM, r::undefined_arg_in_from(arg, s.as_deref()), lines);
            }
        };
        if let Ok(res) = self.lex.process(&f.base, globals) {
            undeclared(self, &res.unmatched);
        }
        let Some(p) = &f.platform else { return };
        let Ok(res) = self.lex.process(p, globals) else { return };
        undeclared(self, &res.unmatched);
        if res.matched.len() == 1
            && res.unmatched.is_empty()
            && res.matched.contains("TARGETPLATFORM")
            && globals.get("TARGETPLATFORM") == Some(&res.result)
        {
            self.warn(cfg, r::REDUNDANT_TARGET_PLATFORM, r::redundant_target_platform(p), lines);
        }
        if res.matched.is_empty() && res.unmatched.is_empty() {
            if let Some((os, arch)) = os_arch(&res.result) {
                let name = f.name.clone().unwrap_or_default();
                if !name.contains(&os) && !name.contains(&arch) {
                    self.warn(cfg, r::FROM_PLATFORM_FLAG_CONST_DISALLOWED, r::const_platform(&res.result), lines);
                }
            }
        }
    }
}

/// An ONBUILD expression as the one instruction it holds.
fn parse_trigger(expr: &str) -> Option<Command> {
    let ast = crate::parse(expr.as_bytes()).ok()?;
    match ast.nodes.as_slice() {
        [node] => parse_instruction(node).ok(),
        _ => None,
    }
}

/// BuildKit's `doesFromCaseMatchAsCase`.
fn from_matches_as(from: &str, r#as: &str) -> bool {
    let lower = from == from.to_lowercase();
    let upper = from == from.to_uppercase();
    if !lower && !upper {
        return true;
    }
    if lower {
        r#as == r#as.to_lowercase()
    } else {
        r#as == r#as.to_uppercase()
    }
}

/// containerd's `platforms.Parse` far enough for the OS and architecture.
fn os_arch(s: &str) -> Option<(String, String)> {
    const OSES: [&str; 8] = ["linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos"];
    let parts: Vec<String> = s.to_lowercase().split('/').map(str::to_string).collect();
    if parts.iter().any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')) {
        return None;
    }
    let arch = |a: &str| match a {
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        "i386" | "i686" => "386".to_string(),
        a => a.to_string(),
    };
    match parts.as_slice() {
        [one] if OSES.contains(&one.as_str()) => Some((one.clone(), std::env::consts::ARCH.to_string())),
        [one] => Some(("linux".into(), arch(one))),
        [os, a] | [os, a, _] => Some((os.clone(), arch(a))),
        _ => None,
    }
}

/// distribution's `ParseNormalizedNamed` far enough to reject empty and
/// malformed names (upper case, blanks, bad separators).
pub(super) fn valid_reference(s: &str) -> bool {
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else { return false };
        if alg.is_empty() || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    let (repo, tag) = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    if let Some(t) = tag {
        let ok = t.len() <= 128
            && t.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return false;
        }
    }
    let mut comps: Vec<&str> = repo.split('/').collect();
    if comps.len() > 1 && (comps[0].contains(['.', ':']) || comps[0] == "localhost") {
        comps.remove(0);
    }
    !repo.is_empty()
        && comps.iter().all(|c| {
            !c.is_empty()
                && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
                && c.chars().next().is_some_and(|ch| ch.is_ascii_alphanumeric())
                && c.chars().last().is_some_and(|ch| ch.is_ascii_alphanumeric())
        })
}

impl Checker<'_> {
    /// Each stage's instructions with the variables the dispatcher would have.
    fn dispatch(&mut self, items: &[(&Node, Command, Config)], globals: &HashMap<String, String>) -> Result<(), Error> {
        let mut finished: Vec<(Option<String>, StageEnv)> = Vec::new();
        let mut current: Option<(Option<String>, StageEnv, Once)> = None;
        let mut index = 0usize;
        for (_, cmd, cfg) in items {
            if let Instruction::From(f) = &cmd.instruction {
                if let Some((name, st, _)) = current.take() {
                    finished.push((name, st));
                }
                let base = self.lex.process_word(&f.base, globals).unwrap_or_else(|_| f.base.clone());
                let lower = base.to_lowercase();
                let parent = finished.iter().rev().find(|(n, _)| n.as_deref() == Some(lower.as_str()));
                let mut st = match parent {
                    Some((_, p)) => StageEnv { triggers: Vec::new(), ..p.clone() },
                    None if lower == "scratch" => StageEnv { known: true, ..StageEnv::default() },
                    None => self.image_env(index),
                };
                let triggers = parent.map(|(_, p)| p.triggers.clone()).unwrap_or_default();
                self.quiet = self.opts.stages.as_ref().is_some_and(|s| !s.contains(&index));
                index += 1;
                // The parent's ONBUILD triggers run first, at the FROM line.
                let mut once = Once::default();
                for t in triggers {
                    let Some(mut tc) = parse_trigger(&t) else { continue };
                    (tc.start_line, tc.end_line) = (cmd.start_line, cmd.end_line);
                    self.command(&tc, cfg, &mut st, &mut once, globals);
                }
                current = Some((f.name.clone(), st, once));
                continue;
            }
            let Some((_, st, once)) = current.as_mut() else { continue };
            if let Instruction::Onbuild(expr) = &cmd.instruction {
                st.triggers.push(expr.clone());
            }
            let mut st_local = std::mem::take(st);
            self.command(cmd, cfg, &mut st_local, once, globals);
            *st = st_local;
        }
        self.quiet = false;
        Ok(())
    }

    /// The variables of the registry image stage `index` starts from.
    fn image_env(&self, index: usize) -> StageEnv {
        let env = self.opts.base_env.and_then(|f| f(index));
        let mut st = StageEnv { known: env.is_some(), ..StageEnv::default() };
        for e in env.unwrap_or_default() {
            let (k, v) = e.split_once('=').unwrap_or((&e, ""));
            st.set(k, v);
        }
        st
    }

    /// UndefinedVar for the variables `words` use.
    fn expand_check(&mut self, cfg: &Config, st: &StageEnv, words: &[&str], lines: (usize, usize)) {
        if !st.known {
            return;
        }
        let env = st.getter();
        let mut keys: Vec<String> = st.env.iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        for w in words {
            let Ok(res) = self.lex.process(w, &env) else { continue };
            for var in res.unmatched.iter().filter(|v| !st.declared.contains(*v)) {
                let s = crate::instructions::search(var, &keys, true);
                self.warn(cfg, r::UNDEFINED_VAR, r::undefined_var(var, s.as_deref()), lines);
            }
        }
    }

    fn command(
        &mut self,
        cmd: &Command,
        cfg: &Config,
        st: &mut StageEnv,
        once: &mut Once,
        globals: &HashMap<String, String>,
    ) {
        let lines = (cmd.start_line, cmd.end_line);
        let name = cmd.original.split_whitespace().next().unwrap_or("").to_string();
        match &cmd.instruction {
            Instruction::Env(kvs) | Instruction::Label(kvs) => {
                let words: Vec<&str> = kvs.iter().flat_map(|kv| [kv.key.as_str(), kv.value.as_str()]).collect();
                self.expand_check(cfg, st, &words, lines);
                let env = st.getter();
                let is_env = matches!(cmd.instruction, Instruction::Env(_));
                let mut sets = Vec::new();
                for kv in kvs {
                    if kv.legacy {
                        self.warn(cfg, r::LEGACY_KEY_VALUE_FORMAT, r::legacy_key_value(&name), lines);
                    }
                    if is_env {
                        let k = self.lex.process_word(&kv.key, &env).unwrap_or_else(|_| kv.key.clone());
                        let v = self.lex.process_word(&kv.value, &env).unwrap_or_default();
                        if r::is_secret_name(&k) {
                            self.warn(cfg, r::SECRETS_USED_IN_ARG_OR_ENV, r::secrets("ENV", &k), lines);
                        }
                        sets.push((k, v));
                    }
                }
                for (k, v) in sets {
                    st.set(&k, &v);
                }
            }
            Instruction::Arg(defs) => {
                for a in defs {
                    if r::is_secret_name(&a.key) {
                        self.warn(cfg, r::SECRETS_USED_IN_ARG_OR_ENV, r::secrets("ARG", &a.key), lines);
                    }
                    let value = if let Some(v) = self.opts.build_args.get(&a.key) {
                        Some(v.clone())
                    } else if let Some(d) = &a.value {
                        self.expand_check(cfg, st, &[d], lines);
                        Some(self.lex.process_word(d, &st.getter()).unwrap_or_default())
                    } else {
                        globals.get(&a.key).cloned()
                    };
                    st.declared.insert(a.key.clone());
                    if let Some(v) = value {
                        st.set(&a.key, &v);
                    }
                }
            }
            Instruction::Workdir(p) => {
                self.expand_check(cfg, st, &[p], lines);
                let path = self.lex.process_word(p, &st.getter()).unwrap_or_else(|_| p.clone());
                if !st.workdir_set && !path.starts_with('/') {
                    self.warn(cfg, r::WORKDIR_RELATIVE_PATH, r::workdir_relative(&path), lines);
                }
                st.workdir_set = true;
            }
            Instruction::Copy(c) | Instruction::Add(c) => {
                let mut words: Vec<&str> = Vec::new();
                words.extend(c.chown.as_deref());
                words.extend(c.chmod.as_deref());
                words.extend(c.checksum.as_deref());
                words.extend(c.sources.iter().map(String::as_str));
                words.push(&c.dest);
                self.expand_check(cfg, st, &words, lines);
                if c.from.is_none() {
                    let add = matches!(cmd.instruction, Instruction::Add(_));
                    for s in &c.sources {
                        let s = self.lex.process_word(s, &st.getter()).unwrap_or_else(|_| s.clone());
                        self.ignored_source(cfg, &s, add, lines);
                    }
                }
            }
            Instruction::User(w) | Instruction::Stopsignal(w) => self.expand_check(cfg, st, &[w], lines),
            Instruction::Run(run) => {
                // The mount options are expanded (`setMountState`); the
                // command is left to the shell.
                let words: Vec<&str> = run
                    .mounts
                    .iter()
                    .flat_map(|m| [m.from.as_deref(), m.source.as_deref(), m.target.as_deref(), m.id.as_deref()])
                    .flatten()
                    .collect();
                self.expand_check(cfg, st, &words, lines);
            }
            Instruction::Volume(v) => {
                let words: Vec<&str> = v.iter().map(String::as_str).collect();
                self.expand_check(cfg, st, &words, lines);
            }
            Instruction::Expose(ports) => self.expose(cfg, st, ports, lines),
            Instruction::Shell(_) => st.shell = true,
            Instruction::Cmd(c) | Instruction::Entrypoint(c) => {
                let slot =
                    if matches!(cmd.instruction, Instruction::Cmd(_)) { &mut once.cmd } else { &mut once.entrypoint };
                if let Some(prev) = slot.replace(lines) {
                    self.warn(cfg, r::MULTIPLE_INSTRUCTIONS_DISALLOWED, r::multiple_instructions(&name), prev);
                }
                if c.prepend_shell && !st.shell {
                    self.warn(cfg, r::JSON_ARGS_RECOMMENDED, r::json_args(&name), lines);
                }
            }
            Instruction::Healthcheck(_) => {
                if let Some(prev) = once.healthcheck.replace(lines) {
                    self.warn(cfg, r::MULTIPLE_INSTRUCTIONS_DISALLOWED, r::multiple_instructions(&name), prev);
                }
            }
            _ => {}
        }
    }

    /// CopyIgnoredFile (BuildKit's `validateCopySourcePath`).
    fn ignored_source(&mut self, cfg: &Config, src: &str, add: bool, lines: (usize, usize)) {
        let Some(m) = self.opts.ignore else { return };
        if m.exclusions() || src.contains("://") || src.starts_with("git@") {
            return;
        }
        let src = crate::clean(src);
        if src == "." || src == "/" {
            let root = m.patterns().iter().any(|p| !p.is_exclusion() && matches!(p.as_str(), "*" | "**" | "**/*"));
            if !root {
                return;
            }
        }
        if m.matches_or_parent_matches(src.trim_start_matches('/')) {
            let what = if add { "Add" } else { "Copy" };
            self.warn(cfg, r::COPY_IGNORED_FILE, r::copy_ignored(what, &src), lines);
        }
    }

    /// ExposeProtoCasing and ExposeInvalidFormat on the expanded ports
    /// (EXPOSE is expanded without UndefinedVar, as in `dispatchExpose`).
    fn expose(&mut self, cfg: &Config, st: &StageEnv, ports: &[String], lines: (usize, usize)) {
        let env = st.getter();
        let words: Vec<String> =
            ports.iter().flat_map(|p| self.lex.process_words(p, &env).unwrap_or_else(|_| vec![p.clone()])).collect();
        for p in &words {
            if let Some((_, proto)) = p.rsplit_once('/') {
                if proto != proto.to_lowercase() {
                    self.warn(cfg, r::EXPOSE_PROTO_CASING, r::expose_proto_casing(p), lines);
                }
            }
            if p.contains(':') {
                self.warn(cfg, r::EXPOSE_INVALID_FORMAT, r::expose_invalid_format(p), lines);
            }
        }
    }
}
