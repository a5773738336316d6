//! Instructions that only change the image config, with BuildKit's
//! history texts (`dispatchEnv`, `dispatchLabel`, `dispatchCmd`...).

use polyarch_dockerfile::instructions::{CmdLine, Command, Instruction, KeyValue};

use crate::config::{go_list, go_quoted_list, healthcheck_text, Empty, Healthcheck};
use crate::convert::{Converter, StageState};
use crate::error::{ErrorKind, Result};
use crate::Resolver;
use polyarch_dockerfile::values::{parse_port_spec, valid_signal};

impl<R: Resolver> Converter<'_, R> {
    pub(crate) fn meta(&mut self, st: &mut StageState, cmd: &Command, ins: &Instruction) -> Result<()> {
        let line = cmd.start_line;
        let text = match ins {
            Instruction::Env(kvs) => {
                let pairs = self.expand_pairs(st, kvs, line)?;
                let mut msg = String::from("ENV");
                for (k, v) in pairs {
                    msg.push_str(&format!(" {k}={v}"));
                    st.config.add_env(&k, &v);
                }
                msg
            }
            Instruction::Label(kvs) => {
                let pairs = self.expand_pairs(st, kvs, line)?;
                let mut msg = String::from("LABEL");
                for (k, v) in pairs {
                    msg.push_str(&format!(" {k}={v}"));
                    st.config.config.labels.insert(k, v);
                }
                msg
            }
            Instruction::Expose(ports) => {
                let env = self.env(st);
                let mut all = Vec::new();
                for p in ports {
                    let words = self
                        .lex
                        .process_words(p, &env)
                        .map_err(|e| self.src.error(ErrorKind::Dockerfile, line, e.to_string(), None))?;
                    for w in words {
                        all.extend(
                            parse_port_spec(&w).map_err(|m| self.src.error(ErrorKind::Invalid, line, m, Some(&w)))?,
                        );
                    }
                }
                all.sort();
                all.dedup();
                for p in &all {
                    st.config.config.exposed_ports.insert(p.clone(), Empty {});
                }
                let m: Vec<String> = all.iter().map(|p| format!("{p}:{{}}")).collect();
                format!("EXPOSE map[{}]", m.join(" "))
            }
            Instruction::Volume(vols) => {
                let mut vs = Vec::new();
                for v in vols {
                    let v = self.expand(st, v, line)?;
                    if v.is_empty() {
                        let msg = "VOLUME specified can not be an empty string";
                        return Err(self.src.error(ErrorKind::Invalid, line, msg, None));
                    }
                    vs.push(v);
                }
                for v in &vs {
                    st.config.config.volumes.insert(v.clone(), Empty {});
                }
                format!("VOLUME {}", go_list(&vs))
            }
            Instruction::User(u) => {
                let u = self.expand(st, u, line)?;
                st.config.config.user = u.clone();
                format!("USER {u}")
            }
            Instruction::Stopsignal(s) => {
                let s = self.expand(st, s, line)?;
                if !valid_signal(&s) {
                    return Err(self.src.error(ErrorKind::Invalid, line, format!("Invalid signal: {s}"), Some(&s)));
                }
                st.config.config.stop_signal = s.clone();
                format!("STOPSIGNAL {s}")
            }
            Instruction::Maintainer(m) => {
                st.config.author = Some(m.clone());
                format!("MAINTAINER {m}")
            }
            Instruction::Shell(sh) => {
                st.config.config.shell = sh.clone();
                format!("SHELL {}", go_list(sh))
            }
            Instruction::Cmd(cl) => {
                let args = with_shell(&st.config.config.shell, cl);
                st.config.config.cmd = args.clone();
                st.config.config.args_escaped = true;
                st.cmd_set = true;
                format!("CMD {}", go_quoted_list(&args))
            }
            Instruction::Entrypoint(cl) => {
                let args = with_shell(&st.config.config.shell, cl);
                st.config.config.entrypoint = args.clone();
                if !st.cmd_set {
                    st.config.config.cmd.clear();
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
                st.config.config.healthcheck = Some(hc);
                text
            }
            Instruction::Onbuild(expr) => {
                // BuildKit stores the trigger without a history entry.
                st.config.config.on_build.push(expr.clone());
                return Ok(());
            }
            Instruction::From(_)
            | Instruction::Arg(_)
            | Instruction::Run(_)
            | Instruction::Copy(_)
            | Instruction::Add(_)
            | Instruction::Workdir(_) => return Ok(()),
        };
        st.config.commit(text, false);
        Ok(())
    }

    /// Expands the keys and values of one ENV or LABEL, all with the
    /// variables in scope before it.
    fn expand_pairs(&self, st: &StageState, kvs: &[KeyValue], line: usize) -> Result<Vec<(String, String)>> {
        kvs.iter().map(|kv| Ok((self.expand(st, &kv.key, line)?, self.expand(st, &kv.value, line)?))).collect()
    }
}

/// Shell-form commands run through SHELL (default `/bin/sh -c`).
pub(crate) fn with_shell(shell: &[String], c: &CmdLine) -> Vec<String> {
    if !c.prepend_shell {
        return c.args.clone();
    }
    let mut sh = if shell.is_empty() { vec!["/bin/sh".to_string(), "-c".to_string()] } else { shell.to_vec() };
    sh.push(c.args.join(" "));
    sh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_signals() {
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(parse_port_spec("8000-8001").unwrap(), ["8000/tcp", "8001/tcp"]);
        assert!(parse_port_spec("80/xyz").is_err());
        assert!(valid_signal("SIGTERM") && valid_signal("9"));
        assert!(!valid_signal("SIGNOPE") && !valid_signal("0"));
    }
}
