//! The stage graph: `--target` lookup, stage references through `FROM`,
//! `COPY --from` and `RUN --mount=from=`, cycle detection, and global ARGs
//! expanded into FROM lines.

use std::collections::HashMap;

use super::{Dockerfile, Instruction};
use crate::shell::{Env, Lex};
use crate::Error;

/// Build arguments BuildKit accepts without an ARG declaration.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

fn stage_error(message: String, line: usize) -> Error {
    Error::Stage { message, line }
}

impl Dockerfile {
    /// The index of the stage named `name` (case-insensitive) or numbered `name`.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        let lower = name.to_lowercase();
        if let Some(i) = self.stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str())) {
            return Some(i);
        }
        go_atoi(name).and_then(|i| usize::try_from(i).ok()).filter(|i| *i < self.stages.len())
    }

    /// Checks every `COPY --from` as BuildKit's `toCommand` does before
    /// anything is built: a number is a stage index (`invalid stage index
    /// N` when there is no such stage), anything else a stage name or an
    /// image; variables are not expanded there.
    pub fn check_sources(&self) -> Result<(), Error> {
        for stage in &self.stages {
            for cmd in &stage.commands {
                let Instruction::Copy(c) = &cmd.instruction else { continue };
                let Some(from) = &c.from else { continue };
                if from.contains('$') {
                    return Err(stage_error(
                        "variable expansion is not supported for --from, define a new stage with FROM using ARG \
                         from global scope as a workaround"
                            .into(),
                        cmd.start_line,
                    ));
                }
                if let Some(i) = go_atoi(from) {
                    if usize::try_from(i).map_or(true, |i| i >= self.stages.len()) {
                        return Err(stage_error(format!("invalid stage index {i}"), cmd.start_line));
                    }
                }
            }
        }
        Ok(())
    }

    /// Resolves `--target`: `None` is the last stage; an unknown name is an
    /// error listing the stages.
    pub fn target(&self, target: Option<&str>) -> Result<usize, Error> {
        let Some(t) = target.filter(|t| !t.is_empty()) else {
            return self
                .stages
                .len()
                .checked_sub(1)
                .ok_or_else(|| stage_error("the Dockerfile has no build stage".into(), 0));
        };
        let lower = t.to_lowercase();
        if let Some(i) = self.stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str())) {
            return Ok(i);
        }
        let names: Vec<String> =
            self.stages.iter().map(|s| s.name.clone().unwrap_or_else(|| s.index.to_string())).collect();
        Err(stage_error(
            format!("target stage {} could not be found (stages: {})", crate::go_quote(t), names.join(", ")),
            0,
        ))
    }

    /// Stages that stage `i` reads from: its FROM base when that names an
    /// earlier stage, and the `--from` of COPY and of RUN mounts.
    pub fn dependencies(&self, i: usize) -> Vec<(usize, usize)> {
        let Some(stage) = self.stages.get(i) else { return Vec::new() };
        let mut deps = Vec::new();
        let base = stage.base.to_lowercase();
        if let Some(j) = self.stages[..i].iter().position(|s| s.name.as_deref() == Some(base.as_str())) {
            deps.push((j, stage.line));
        }
        for cmd in &stage.commands {
            let froms: Vec<&str> = match &cmd.instruction {
                Instruction::Copy(c) => c.from.iter().map(String::as_str).collect(),
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_deref()).collect(),
                _ => Vec::new(),
            };
            for f in froms {
                if let Some(j) = self.stage_index(f) {
                    deps.push((j, cmd.start_line));
                }
            }
        }
        deps
    }

    /// Whether step names show their stage (`[stage-0 2/3] RUN ...`), as
    /// BuildKit's dockerfile2llb names them: not in a build of one stage
    /// (`[2/3] RUN ...`), where the image a `COPY --from` or a `RUN
    /// --mount=from=` names counts as a stage of its own (BuildKit adds
    /// one for it).
    pub fn names_stages(&self) -> bool {
        self.stages.len() != 1
            || self.stages.iter().flat_map(|s| &s.commands).any(|c| match &c.instruction {
                Instruction::Copy(c) => c.from.is_some(),
                Instruction::Run(r) => r.mounts.iter().any(|m| m.from.is_some()),
                _ => false,
            })
    }

    /// Fails when stages depend on each other in a loop, naming the loop.
    pub fn check_cycles(&self) -> Result<(), Error> {
        let n = self.stages.len();
        let mut state = vec![0u8; n];
        let mut path: Vec<usize> = Vec::new();
        for start in 0..n {
            self.visit(start, &mut state, &mut path)?;
        }
        Ok(())
    }

    fn visit(&self, i: usize, state: &mut [u8], path: &mut Vec<usize>) -> Result<(), Error> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let from = path.iter().position(|p| *p == i).unwrap_or(0);
                let mut names: Vec<String> = path[from..].iter().map(|p| self.display_name(*p)).collect();
                names.push(self.display_name(i));
                return Err(stage_error(
                    format!("circular dependency detected on stage: {} ({})", self.display_name(i), names.join(" -> ")),
                    self.stages[i].line,
                ));
            }
            _ => {}
        }
        state[i] = 1;
        path.push(i);
        for (j, _) in self.dependencies(i) {
            self.visit(j, state, path)?;
        }
        path.pop();
        state[i] = 2;
        Ok(())
    }

    fn display_name(&self, i: usize) -> String {
        self.stages[i].name.clone().unwrap_or_else(|| i.to_string())
    }
}

/// Go's `strconv.Atoi`: an optional sign and decimal digits.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

/// A FROM line after global ARG expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandedFrom {
    /// The expanded base image or stage name.
    pub base: String,
    /// The expanded `--platform`, if any.
    pub platform: Option<String>,
}

/// Expands each stage's FROM with the global ARGs (declared before the
/// first FROM), overridden by `build_args`; `builtins` (e.g. `TARGETPLATFORM`,
/// `BUILDPLATFORM`) are always visible.
pub fn expand_from(
    df: &Dockerfile,
    escape: char,
    build_args: &HashMap<String, String>,
    builtins: &HashMap<String, String>,
) -> Result<Vec<ExpandedFrom>, Error> {
    let lex = Lex::new(escape);
    let mut env = Env::default();
    for (k, v) in builtins {
        env.set(k.clone(), v.clone());
    }
    for a in &df.meta_args {
        if let Some(v) = build_args.get(&a.key) {
            env.set(a.key.clone(), v.clone());
        } else if let Some(def) = &a.value {
            let v = lex.process_word(def, &env)?;
            env.set(a.key.clone(), v);
        }
    }
    let mut out = Vec::new();
    for s in &df.stages {
        let base = lex.process_word(&s.base, &env)?;
        if base.is_empty() {
            return Err(stage_error(format!("base name ({}) should not be blank", s.base), s.line));
        }
        let platform = match &s.platform {
            Some(p) => Some(lex.process_word(p, &env)?),
            None => None,
        };
        out.push(ExpandedFrom { base, platform });
    }
    Ok(out)
}
