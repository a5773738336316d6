//! Instructions that only change the image config, with BuildKit's
//! history texts (`dispatchEnv`, `dispatchLabel`, `dispatchCmd`...).

use polyarch_dockerfile::instructions::{Command, Instruction};
use polyarch_frontend::meta::{self, Scope};

use super::{Run, StageState};
use crate::error::{ErrorKind, Result};
#[cfg(test)]
use polyarch_dockerfile::values::{parse_port_spec, valid_signal};

impl Run<'_> {
    pub(super) fn meta(&mut self, st: &mut StageState, cmd: &Command, ins: &Instruction) -> Result<()> {
        let line = cmd.start_line;
        let text = match ins {
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
                    meta::declare_arg(&mut st.args, &a.key, value);
                }
                format!("ARG {}", parts.join(" "))
            }
            other => {
                // The other config instructions: the frontend's one
                // implementation, which the plan uses too.
                let scope = Scope { lex: &self.lex, env: self.env(st) };
                let applied = meta::apply(&mut st.image.config, &mut st.image.author, &mut st.cmd_set, other, &scope);
                match applied {
                    Ok(Some(text)) => text,
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        let kind = match e.kind {
                            polyarch_frontend::ErrorKind::Invalid => ErrorKind::Invalid,
                            _ => ErrorKind::Dockerfile,
                        };
                        return Err(self.loc(line).error(kind, e.message, e.word.as_deref()));
                    }
                }
            }
        };
        self.commit_meta(st, text);
        Ok(())
    }
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
