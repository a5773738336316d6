//! Instructions that only change the image config, with BuildKit's
//! history texts (`dispatchEnv`, `dispatchLabel`, `dispatchCmd`...).

use polyarch_dockerfile::instructions::{CmdLine, Command, Instruction, KeyValue};

use super::{Run, StageState};
use crate::config::{go_list, go_quoted_list, healthcheck_text, Empty, Healthcheck};
use crate::error::{ErrorKind, Result};
pub(crate) use polyarch_dockerfile::values::{parse_port_spec, valid_signal};

impl Run<'_> {
    pub(super) fn meta(&mut self, st: &mut StageState, cmd: &Command, ins: &Instruction) -> Result<()> {
        let line = cmd.start_line;
        let text = match ins {
            Instruction::Env(kvs) => {
                // Every pair expands with the environment from before the
                // instruction, as BuildKit's `Expand` runs before `dispatchEnv`.
                let pairs = self.expand_pairs(st, kvs, line)?;
                let mut msg = String::from("ENV");
                for (k, v) in pairs {
                    msg.push_str(&format!(" {k}={v}"));
                    st.image.add_env(&k, &v);
                }
                msg
            }
            Instruction::Label(kvs) => {
                let pairs = self.expand_pairs(st, kvs, line)?;
                let mut msg = String::from("LABEL");
                for (k, v) in pairs {
                    msg.push_str(&format!(" {k}={v}"));
                    st.image.config.labels.insert(k, v);
                }
                msg
            }
            Instruction::Arg(defs) => {
                let mut parts = Vec::new();
                for a in defs {
                    let value = if let Some(v) = self.builtins.get(&a.key).filter(|_| a.value.is_none()) {
                        Some(v.clone())
                    } else if let Some(v) = self.opts.build_args.get(&a.key) {
                        Some(v.clone())
                    } else if let Some(d) = &a.value {
                        Some(self.expand(st, d, line)?)
                    } else {
                        self.global_args.get(&a.key).cloned()
                    };
                    parts.push(match &value {
                        Some(v) => format!("{}={v}", a.key),
                        None => a.key.clone(),
                    });
                    // Without a value the ARG keeps the one already in
                    // scope (from an earlier ARG or the parent stage), as
                    // BuildKit only adds to the state's environment.
                    let value =
                        value.or_else(|| st.args.iter().find(|(k, _)| k == &a.key).and_then(|(_, v)| v.clone()));
                    st.args.retain(|(k, _)| k != &a.key);
                    st.args.push((a.key.clone(), value));
                }
                format!("ARG {}", parts.join(" "))
            }
            Instruction::Expose(ports) => {
                let env = self.env(st);
                let mut all = Vec::new();
                for p in ports {
                    let words = self
                        .lex
                        .process_words(p, &env)
                        .map_err(|e| self.loc(line).error(ErrorKind::Dockerfile, e.to_string(), None))?;
                    for w in words {
                        let ps =
                            parse_port_spec(&w).map_err(|m| self.loc(line).error(ErrorKind::Invalid, m, Some(&w)))?;
                        all.extend(ps);
                    }
                }
                all.sort();
                all.dedup();
                for p in &all {
                    st.image.config.exposed_ports.insert(p.clone(), Empty {});
                }
                let m: Vec<String> = all.iter().map(|p| format!("{p}:{{}}")).collect();
                format!("EXPOSE map[{}]", m.join(" "))
            }
            Instruction::Volume(vols) => {
                let mut vs = Vec::new();
                for v in vols {
                    let v = self.expand(st, v, line)?;
                    if v.is_empty() {
                        return Err(self.loc(line).error(
                            ErrorKind::Invalid,
                            "VOLUME specified can not be an empty string",
                            None,
                        ));
                    }
                    st.image.config.volumes.insert(v.clone(), Empty {});
                    vs.push(v);
                }
                format!("VOLUME {}", go_list(&vs))
            }
            Instruction::User(u) => {
                let u = self.expand(st, u, line)?;
                st.image.config.user = u.clone();
                format!("USER {u}")
            }
            Instruction::Stopsignal(s) => {
                let s = self.expand(st, s, line)?;
                if !valid_signal(&s) {
                    return Err(self.loc(line).error(ErrorKind::Invalid, format!("Invalid signal: {s}"), Some(&s)));
                }
                st.image.config.stop_signal = s.clone();
                format!("STOPSIGNAL {s}")
            }
            Instruction::Maintainer(m) => {
                st.image.author = Some(m.clone());
                format!("MAINTAINER {m}")
            }
            Instruction::Shell(sh) => {
                st.image.config.shell = sh.clone();
                format!("SHELL {}", go_list(sh))
            }
            Instruction::Cmd(c) => {
                let args = with_shell(st, c);
                st.image.config.cmd = args.clone();
                st.image.config.args_escaped = true;
                st.cmd_set = true;
                format!("CMD {}", go_quoted_list(&args))
            }
            Instruction::Entrypoint(c) => {
                let args = with_shell(st, c);
                st.image.config.entrypoint = args.clone();
                if !st.cmd_set {
                    st.image.config.cmd.clear();
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
                st.image.config.healthcheck = Some(hc);
                text
            }
            Instruction::Onbuild(expr) => {
                // BuildKit stores the trigger without a history entry.
                st.image.config.on_build.push(expr.clone());
                return Ok(());
            }
            Instruction::From(_)
            | Instruction::Run(_)
            | Instruction::Copy(_)
            | Instruction::Add(_)
            | Instruction::Workdir(_) => {
                return Ok(());
            }
        };
        self.commit_meta(st, text);
        Ok(())
    }
}

impl Run<'_> {
    /// Expands the keys and values of one ENV or LABEL, all with the
    /// variables in scope before it (ARG, unlike these, is sequential).
    fn expand_pairs(&self, st: &StageState, kvs: &[KeyValue], line: usize) -> Result<Vec<(String, String)>> {
        kvs.iter().map(|kv| Ok((self.expand(st, &kv.key, line)?, self.expand(st, &kv.value, line)?))).collect()
    }
}

/// Shell-form commands run through SHELL (default `/bin/sh -c`).
fn with_shell(st: &StageState, c: &CmdLine) -> Vec<String> {
    if !c.prepend_shell {
        return c.args.clone();
    }
    let mut sh = if st.image.config.shell.is_empty() {
        vec!["/bin/sh".to_string(), "-c".to_string()]
    } else {
        st.image.config.shell.clone()
    };
    sh.push(c.args.join(" "));
    sh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!(parse_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(parse_port_spec("8000-8002").unwrap(), ["8000/tcp", "8001/tcp", "8002/tcp"]);
        assert_eq!(parse_port_spec("127.0.0.1:8080:80").unwrap(), ["80/tcp"]);
        assert!(parse_port_spec("abc").is_err());
        assert!(parse_port_spec("80/xyz").is_err());
    }

    #[test]
    fn signals() {
        assert!(valid_signal("SIGTERM"));
        assert!(valid_signal("KILL"));
        assert!(valid_signal("9"));
        assert!(!valid_signal("SIGNOPE"));
        assert!(!valid_signal("0"));
    }
}
