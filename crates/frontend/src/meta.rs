//! Instructions that only change the image config, with BuildKit's
//! history texts (`dispatchEnv`, `dispatchLabel`, `dispatchCmd`...).

use polyarch_dockerfile::instructions::{CmdLine, Command, Instruction, KeyValue};

use crate::config::{go_list, go_quoted_list, healthcheck_text, ContainerConfig, Empty, Healthcheck};
use crate::convert::{Converter, StageState};
use crate::error::{ErrorKind, Result};
use crate::Resolver;
use polyarch_dockerfile::values::{parse_port_spec, valid_signal};

/// The expansion of words with the variables in scope before an
/// instruction (ARGs, then ENV over them): what [`apply`] needs of its
/// caller, the plan's converter or the builder.
pub struct Scope<'a> {
    /// The lexer, with the Dockerfile's escape character.
    pub lex: &'a polyarch_dockerfile::shell::Lex,
    /// The variables.
    pub env: std::collections::HashMap<String, String>,
}

/// Declares ARG `key` in a stage's scope (its ARGs in the order first
/// declared), as BuildKit adds an ARG to the stage's environment
/// (`AddEnv`): an ARG declared again keeps its place and takes the new
/// value; one without a value keeps the value in scope.
pub fn declare_arg(args: &mut Vec<(String, Option<String>)>, key: &str, value: Option<String>) {
    match args.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => {
            if value.is_some() {
                *v = value;
            }
        }
        None => args.push((key.to_string(), value)),
    }
}

/// The value of `key` in a `KEY=VALUE` list.
fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter().find_map(|e| e.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

/// `KEY=VALUE` entries for RUN: the image's environment, then the ARGs in
/// scope that no ENV shadows (BuildKit passes those to the process too).
pub fn run_env(image_env: &[String], args: &[(String, Option<String>)]) -> Vec<String> {
    let mut out: Vec<String> = image_env.to_vec();
    for (k, v) in args {
        let Some(v) = v else { continue };
        if env_value(image_env, k).is_none() {
            out.push(format!("{k}={v}"));
        }
    }
    out
}

/// A RUN's history text as BuildKit's `runCommandString` writes it: `|N
/// K=V ...` before the command when ARGs are in scope, each ARG once and
/// with the value the stage's environment holds for it (an ENV of the
/// same name wins), empty when it has none.
pub fn history_command(args: &[String], build_args: &[(String, Option<String>)], image_env: &[String]) -> String {
    let mut words: Vec<String> = Vec::new();
    if !build_args.is_empty() {
        words.push(format!("|{}", build_args.len()));
        words.extend(build_args.iter().map(|(k, v)| {
            let value = env_value(image_env, k).or(v.as_deref()).unwrap_or_default();
            format!("{k}={value}")
        }));
    }
    words.extend(args.iter().cloned());
    words.join(" ")
}

/// An instruction as BuildKit names its step (`processCmdEnv`, then
/// `uppercaseCmd`): with `raw` (a RUN) quotes and variables the build does
/// not define stay as written; without (COPY, ADD, WORKDIR) the words are
/// processed as the Dockerfile's shell lexer processes them, quotes
/// removed and unset variables empty (`COPY ["a b", "/d/$UNSET"]` shows as
/// `COPY [a b, /d/]`). Text that does not expand shows as written.
pub fn step_text(
    lex: &polyarch_dockerfile::shell::Lex,
    text: &str,
    env: &std::collections::HashMap<String, String>,
    raw: bool,
) -> String {
    let mut lex = lex.clone();
    lex.raw_quotes = raw;
    lex.skip_unset_env = raw;
    let text = text.trim();
    let shown = lex.process_word(text, env).unwrap_or_else(|_| text.to_string());
    match shown.split_once(' ') {
        Some((verb, rest)) => format!("{} {rest}", verb.to_uppercase()),
        None => shown.to_uppercase(),
    }
}

/// The variables a stage's words expand with: its ARGs that have a
/// value, then its `Env` over them, as BuildKit's shell lexer sees them.
pub fn variables(args: &[(String, Option<String>)], env: &[String]) -> std::collections::HashMap<String, String> {
    let mut m = std::collections::HashMap::new();
    for (k, v) in args {
        if let Some(v) = v {
            m.insert(k.clone(), v.clone());
        }
    }
    for e in env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        m.insert(k.to_string(), v.to_string());
    }
    m
}

/// Why a config instruction failed: an expansion (a Dockerfile error) or
/// a value BuildKit refuses (`Invalid`), with the word when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaError {
    /// The error's kind.
    pub kind: ErrorKind,
    /// What is wrong.
    pub message: String,
    /// The word.
    pub word: Option<String>,
}

impl Scope<'_> {
    fn word(&self, w: &str) -> std::result::Result<String, MetaError> {
        self.lex.process_word(w, &self.env).map_err(|e| MetaError {
            kind: ErrorKind::Dockerfile,
            message: e.to_string(),
            word: None,
        })
    }

    fn words(&self, w: &str) -> std::result::Result<Vec<String>, MetaError> {
        self.lex.process_words(w, &self.env).map_err(|e| MetaError {
            kind: ErrorKind::Dockerfile,
            message: e.to_string(),
            word: None,
        })
    }

    /// The keys and values of one ENV or LABEL, all expanded with the
    /// variables from before it (ARG, unlike these, is sequential).
    fn pairs(&self, kvs: &[KeyValue]) -> std::result::Result<Vec<(String, String)>, MetaError> {
        kvs.iter().map(|kv| Ok((self.word(&kv.key)?, self.word(&kv.value)?))).collect()
    }
}

fn invalid(message: impl Into<String>, word: Option<&str>) -> MetaError {
    MetaError { kind: ErrorKind::Invalid, message: message.into(), word: word.map(String::from) }
}

/// Applies one instruction that only changes the image config (ENV,
/// LABEL, EXPOSE, VOLUME, USER, STOPSIGNAL, MAINTAINER, SHELL, CMD,
/// ENTRYPOINT, HEALTHCHECK, ONBUILD) to `config` and `author`, as
/// BuildKit's `dispatch*` functions do; `cmd_set` says whether the stage
/// set CMD itself (an ENTRYPOINT then keeps it). Returns the history text
/// to commit, `None` for ONBUILD (stored without a history entry) and for
/// the instructions that are not config ones (ARG, FROM, RUN, COPY, ADD,
/// WORKDIR), which the caller handles. The one implementation, for the
/// plan and for the build.
pub fn apply(
    config: &mut ContainerConfig,
    author: &mut Option<String>,
    cmd_set: &mut bool,
    ins: &Instruction,
    scope: &Scope<'_>,
) -> std::result::Result<Option<String>, MetaError> {
    Ok(Some(match ins {
        Instruction::Env(kvs) => {
            let mut msg = String::from("ENV");
            for (k, v) in scope.pairs(kvs)? {
                msg.push_str(&format!(" {k}={v}"));
                config.add_env(&k, &v);
            }
            msg
        }
        Instruction::Label(kvs) => {
            let mut msg = String::from("LABEL");
            for (k, v) in scope.pairs(kvs)? {
                msg.push_str(&format!(" {k}={v}"));
                config.labels.insert(k, v);
            }
            msg
        }
        Instruction::Expose(ports) => {
            let mut all = Vec::new();
            for p in ports {
                for w in scope.words(p)? {
                    all.extend(parse_port_spec(&w).map_err(|m| invalid(m, Some(&w)))?);
                }
            }
            all.sort();
            all.dedup();
            for p in &all {
                config.exposed_ports.insert(p.clone(), Empty {});
            }
            let m: Vec<String> = all.iter().map(|p| format!("{p}:{{}}")).collect();
            format!("EXPOSE map[{}]", m.join(" "))
        }
        Instruction::Volume(vols) => {
            let mut vs = Vec::new();
            for v in vols {
                let v = scope.word(v)?;
                if v.is_empty() {
                    return Err(invalid("VOLUME specified can not be an empty string", None));
                }
                vs.push(v);
            }
            for v in &vs {
                config.volumes.insert(v.clone(), Empty {});
            }
            format!("VOLUME {}", go_list(&vs))
        }
        Instruction::User(u) => {
            let u = scope.word(u)?;
            config.user = u.clone();
            format!("USER {u}")
        }
        Instruction::Stopsignal(s) => {
            let s = scope.word(s)?;
            if !valid_signal(&s) {
                return Err(invalid(format!("Invalid signal: {s}"), Some(&s)));
            }
            config.stop_signal = s.clone();
            format!("STOPSIGNAL {s}")
        }
        Instruction::Maintainer(m) => {
            *author = Some(m.clone());
            format!("MAINTAINER {m}")
        }
        Instruction::Shell(sh) => {
            config.shell = sh.clone();
            format!("SHELL {}", go_list(sh))
        }
        Instruction::Cmd(cl) => {
            let args = with_shell(&config.shell, cl);
            config.cmd = args.clone();
            config.args_escaped = true;
            *cmd_set = true;
            format!("CMD {}", go_quoted_list(&args))
        }
        Instruction::Entrypoint(cl) => {
            let args = with_shell(&config.shell, cl);
            config.entrypoint = args.clone();
            if !*cmd_set {
                config.cmd.clear();
            }
            format!("ENTRYPOINT {}", go_quoted_list(&args))
        }
        Instruction::Healthcheck(h) => {
            let hc = Healthcheck {
                test: h.test.clone(),
                interval: h.interval,
                timeout: h.timeout,
                start_period: h.start_period,
                start_interval: h.start_interval,
                retries: h.retries,
            };
            let text = healthcheck_text(&hc);
            config.healthcheck = Some(hc);
            text
        }
        Instruction::Onbuild(expr) => {
            // BuildKit stores the trigger without a history entry.
            config.on_build.push(expr.clone());
            return Ok(None);
        }
        Instruction::From(_)
        | Instruction::Arg(_)
        | Instruction::Run(_)
        | Instruction::Copy(_)
        | Instruction::Add(_)
        | Instruction::Workdir(_) => return Ok(None),
    }))
}

impl<R: Resolver> Converter<'_, R> {
    pub(crate) fn meta(&mut self, st: &mut StageState, cmd: &Command, ins: &Instruction) -> Result<()> {
        let line = cmd.start_line;
        let scope = Scope { lex: &self.lex, env: self.env(st) };
        let text = apply(&mut st.config.config, &mut st.config.author, &mut st.cmd_set, ins, &scope)
            .map_err(|e| self.src.error(e.kind, line, e.message, e.word.as_deref()))?;
        if let Some(text) = text {
            st.config.commit(text, false);
        }
        Ok(())
    }
}

/// Shell-form commands run through SHELL (default `/bin/sh -c`).
pub fn with_shell(shell: &[String], c: &CmdLine) -> Vec<String> {
    if !c.prepend_shell {
        return c.args.clone();
    }
    let mut sh = if shell.is_empty() { vec!["/bin/sh".to_string(), "-c".to_string()] } else { shell.to_vec() };
    sh.push(c.args.join(" "));
    sh
}

/// The id of a `type=cache` mount whose own id (the target when none) is
/// `id`: within the build argument `BUILDKIT_CACHE_MOUNT_NS` when given
/// (BuildKit's built-in, undeclared: `NS/ID`), so that builds of other
/// namespaces keep caches of their own.
pub fn cache_mount_id(build_args: &std::collections::BTreeMap<String, String>, id: String) -> String {
    match build_args.get("BUILDKIT_CACHE_MOUNT_NS").filter(|ns| !ns.is_empty()) {
        Some(ns) => format!("{ns}/{id}"),
        None => id,
    }
}

/// Whether the build argument `BUILDKIT_MULTI_PLATFORM` asks for a
/// multi-platform build of however many platforms (Go's `ParseBool` true
/// values).
pub fn multi_platform_requested(build_args: &std::collections::BTreeMap<String, String>) -> bool {
    build_args
        .get("BUILDKIT_MULTI_PLATFORM")
        .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

/// The host name BuildKit gives RUN containers when none is asked for.
pub const DEFAULT_SANDBOX_HOSTNAME: &str = "buildkitsandbox";

/// The host name a build asks RUN containers to have: the build argument
/// `BUILDKIT_SANDBOX_HOSTNAME` (BuildKit's built-in, read whether or not
/// the Dockerfile declares it), when not empty. It is the exec op's
/// `hostname` (so part of its key, as BuildKit's `Meta.Hostname`); `None`
/// leaves the op's empty and the container named
/// [`DEFAULT_SANDBOX_HOSTNAME`].
pub fn sandbox_hostname(build_args: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    build_args.get("BUILDKIT_SANDBOX_HOSTNAME").map(String::as_str).filter(|h| !h.is_empty())
}

/// Checks the host name [`sandbox_hostname`] asks for before anything
/// runs: the kernel takes at most 64 bytes, and `/etc/hosts` no blanks.
pub fn check_sandbox_hostname(
    build_args: &std::collections::BTreeMap<String, String>,
) -> std::result::Result<(), String> {
    let Some(h) = sandbox_hostname(build_args) else { return Ok(()) };
    if h.len() > 64 || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid BUILDKIT_SANDBOX_HOSTNAME {h:?}: a host name is at most 64 bytes, without blanks"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_arguments_of_run_containers() {
        let mut args = std::collections::BTreeMap::new();
        assert_eq!(sandbox_hostname(&args), None);
        assert_eq!(cache_mount_id(&args, "/root/.cache".into()), "/root/.cache");
        args.insert("BUILDKIT_SANDBOX_HOSTNAME".to_string(), String::new());
        args.insert("BUILDKIT_CACHE_MOUNT_NS".to_string(), String::new());
        assert_eq!(sandbox_hostname(&args), None, "empty is unset");
        assert_eq!(cache_mount_id(&args, "go".into()), "go");
        args.insert("BUILDKIT_SANDBOX_HOSTNAME".to_string(), "box".into());
        args.insert("BUILDKIT_CACHE_MOUNT_NS".to_string(), "ci".into());
        assert_eq!(sandbox_hostname(&args), Some("box"));
        assert!(check_sandbox_hostname(&args).is_ok());
        for bad in ["a b", &"h".repeat(65), "x\ny"] {
            args.insert("BUILDKIT_SANDBOX_HOSTNAME".to_string(), bad.to_string());
            let e = check_sandbox_hostname(&args).unwrap_err();
            assert!(e.contains("invalid BUILDKIT_SANDBOX_HOSTNAME"), "{e}");
        }
        assert_eq!(cache_mount_id(&args, "go".into()), "ci/go");
    }

    #[test]
    fn ports_and_signals() {
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(parse_port_spec("8000-8001").unwrap(), ["8000/tcp", "8001/tcp"]);
        assert!(parse_port_spec("80/xyz").is_err());
        assert!(valid_signal("SIGTERM") && valid_signal("9"));
        assert!(!valid_signal("SIGNOPE") && !valid_signal("0"));
    }

    #[test]
    fn arg_scope_run_env_and_history_as_buildkit() {
        let mut args = Vec::new();
        declare_arg(&mut args, "V", Some("1".into()));
        declare_arg(&mut args, "W", None);
        declare_arg(&mut args, "P", Some("x".into()));
        // Declared again: keeps its place, takes the new value; without a
        // value it keeps the one in scope.
        declare_arg(&mut args, "V", Some("2".into()));
        declare_arg(&mut args, "P", None);
        assert_eq!(args, [("V".into(), Some("2".into())), ("W".into(), None), ("P".into(), Some("x".into()))]);
        let image_env = ["PATH=/bin".to_string(), "P=env".to_string()];
        assert_eq!(run_env(&image_env, &args), ["PATH=/bin", "P=env", "V=2"]);
        // runCommandString: each ARG once, where first declared, with the
        // environment's value (ENV P wins over ARG P), empty for none.
        let h = history_command(&["/bin/sh".into(), "-c".into(), "true".into()], &args, &image_env);
        assert_eq!(h, "|3 V=2 W= P=env /bin/sh -c true");
        assert_eq!(history_command(&["ls".into()], &[], &image_env), "ls");
    }

    #[test]
    fn step_texts_as_buildkit_names_steps() {
        let lex = polyarch_dockerfile::shell::Lex::new('\\');
        let env: std::collections::HashMap<String, String> = [("SET".to_string(), "val".to_string())].into();
        let run = step_text(&lex, r#"run echo "$UNSET" '$SET' ${SET}"#, &env, true);
        assert_eq!(run, r#"RUN echo "$UNSET" '$SET' val"#);
        let copy = step_text(&lex, r#"copy ["a b.txt", "/dst/$SET/$UNSET/"]"#, &env, false);
        assert_eq!(copy, "COPY [a b.txt, /dst/val//]");
        assert_eq!(step_text(&lex, "WORKDIR $UNSET/w/$SET", &env, false), "WORKDIR /w/val");
        assert_eq!(step_text(&lex, r#"COPY "a"#, &env, false), r#"COPY "a"#, "as written when it does not expand");
    }
}
