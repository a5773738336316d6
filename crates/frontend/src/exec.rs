//! RUN: an exec vertex on the stage's root, with the environment (image
//! ENV and the ARGs in scope), working directory, user, network, security
//! mode and every `--mount` type (bind, cache, tmpfs, secret, ssh), as
//! BuildKit's `dispatchRun` and `convert_runmount.go`.

use polyarch_dockerfile::instructions::{self, Command, Mount as DfMount};
use polyarch_solver::op::{Exec, Mkfile, Mount, MountKind, Network, Op, Security, Sharing};
use polyarch_solver::{VertexId, VertexSpec};

use crate::convert::{normalize_workdir, Converter, PlatformCtx, StageState};
use crate::error::{ErrorKind, Result};
use crate::meta::{history_command, run_env, with_shell};
use crate::Resolver;
use polyarch_dockerfile::values::{heredoc_script, is_lone_heredoc, summarize_heredoc};

/// The process arguments, and a script file (name, content) to mount at
/// `/dev/pipes`.
type Prepared = (Vec<String>, Option<(String, String)>);

/// The inputs and mounts of one exec being assembled.
struct Mounts {
    inputs: Vec<VertexId>,
    mounts: Vec<Mount>,
    ssh: usize,
}

impl Mounts {
    fn input(&mut self, v: VertexId) -> usize {
        self.inputs.push(v);
        self.inputs.len() - 1
    }
}

impl<R: Resolver> Converter<'_, R> {
    pub(crate) async fn run(
        &mut self,
        st: &mut StageState,
        cmd: &Command,
        r: &instructions::Run,
        pc: &PlatformCtx,
    ) -> Result<()> {
        let line = cmd.start_line;
        let network = match r.network.as_deref() {
            None | Some("default") | Some("") => self.opts.network,
            Some("host") => Network::Host,
            Some("none") => Network::None,
            Some(other) => {
                let msg = format!("unsupported network mode {other:?}");
                return Err(self.src.error(ErrorKind::Invalid, line, msg, Some(other)));
            }
        };
        let security = match r.security.as_deref() {
            None | Some("sandbox") => Security::Sandbox,
            Some("insecure") => Security::Insecure,
            Some(other) => {
                let msg = format!("unsupported security mode {other:?}");
                return Err(self.src.error(ErrorKind::Invalid, line, msg, Some(other)));
            }
        };
        let (args, pipe) = self.command(st, r, line)?;
        let root = self.root_or_empty(st)?;
        let root_mount = MountKind::Input { input: 0, selector: String::new(), readonly: false };
        let mut m = Mounts { inputs: vec![root], mounts: vec![Mount { target: "/".into(), kind: root_mount }], ssh: 0 };
        for spec in &r.mounts {
            self.mount(st, spec, line, pc, &mut m).await?;
        }
        if let Some((file, data)) = pipe {
            // A script with a shebang runs as a file, as BuildKit mounts it.
            let op = Op::Mkfile(Mkfile {
                input: None,
                path: format!("/{file}"),
                data: data.into_bytes(),
                mode: 0o755,
                ..Mkfile::default()
            });
            let spec = VertexSpec::new(op, st.platform.clone()).with_name("[internal] preparing inline document");
            let v = self.graph.add(spec)?;
            let input = m.input(v);
            let kind = MountKind::Input { input, selector: String::new(), readonly: true };
            m.mounts.push(Mount { target: "/dev/pipes".into(), kind });
        }
        let config = &st.config.config;
        let exec = Exec {
            args: args.clone(),
            env: run_env(&config.env, &st.args),
            cwd: if config.working_dir.is_empty() { "/".into() } else { config.working_dir.clone() },
            user: config.user.clone(),
            proxy_env: self.proxy_env.clone(),
            mounts: m.mounts,
            network,
            security,
            extra_hosts: self.opts.extra_hosts.clone(),
            ulimits: self.opts.ulimits.clone(),
            shm_size: self.opts.shm_size,
            cgroup_parent: self.opts.cgroup_parent.clone(),
            hostname: crate::meta::sandbox_hostname(&self.opts.build_args).unwrap_or_default().to_string(),
        };
        let mut text = cmd.original.clone();
        if let (Some(f), Some(arg)) = (r.cmd.files.first(), r.cmd.args.first()) {
            if is_lone_heredoc(arg) {
                text.push_str(&format!(" ({})", summarize_heredoc(&f.data)));
            }
        }
        let shown = self.display(st, &text, true);
        let name = self.step_name(st, &shown);
        let v = self.add(st, Op::Exec(exec), m.inputs, name)?;
        st.root = Some(v);
        st.config.commit(format!("RUN {} # buildkit", history_command(&args, &st.args, &st.config.config.env)), true);
        Ok(())
    }

    /// The process arguments, and a script file for `/dev/pipes` when the
    /// command is a lone here-document starting with `#!`.
    fn command(&self, st: &StageState, r: &instructions::Run, line: usize) -> Result<Prepared> {
        let (script, pipe) =
            heredoc_script(&r.cmd).map_err(|e| self.src.error(ErrorKind::Dockerfile, line, e.to_string(), None))?;
        let cmd = match script {
            Some(s) => instructions::CmdLine { args: vec![s], ..r.cmd.clone() },
            None => r.cmd.clone(),
        };
        Ok((with_shell(&st.config.config.shell, &cmd), pipe))
    }

    /// One `--mount`, with its words expanded.
    async fn mount(
        &mut self,
        st: &StageState,
        spec: &DfMount,
        line: usize,
        pc: &PlatformCtx,
        m: &mut Mounts,
    ) -> Result<()> {
        let w = MountWords {
            target: self.expand_opt(st, &spec.target, line)?,
            selector: self.expand_opt(st, &spec.source, line)?.as_deref().map(selector).unwrap_or_default(),
            from: self.expand_opt(st, &spec.from, line)?,
            id: self.expand_opt(st, &spec.id, line)?.filter(|i| !i.is_empty()),
            workdir: st.config.config.working_dir.clone(),
            uid: id32(spec.uid),
            gid: id32(spec.gid),
        };
        let missing = || {
            let msg = format!("mount type {} requires a target", spec.r#type);
            self.src.error(ErrorKind::Invalid, line, msg, Some("--mount"))
        };
        let (target, kind) = match spec.r#type.as_str() {
            "bind" => {
                let target = w.abs(w.target.as_deref().ok_or_else(missing)?);
                let input = self.mount_input(st, w.from.as_deref(), line, pc, m).await?;
                let readonly = spec.read_only != Some(false);
                (target, MountKind::Input { input, selector: w.selector, readonly })
            }
            "cache" => {
                let target = w.abs(w.target.as_deref().ok_or_else(missing)?);
                let from = match w.from.as_deref() {
                    Some(f) => Some(self.mount_input(st, Some(f), line, pc, m).await?),
                    None => None,
                };
                (target.clone(), cache_mount(spec, w, from, target, &self.opts.build_args))
            }
            "tmpfs" => {
                let target = w.abs(w.target.as_deref().ok_or_else(missing)?);
                let size = match self.expand_opt(st, &spec.size, line)? {
                    Some(s) => Some(parse_size(&s).ok_or_else(|| {
                        self.src.error(ErrorKind::Invalid, line, format!("invalid tmpfs size {s:?}"), Some("--mount"))
                    })?),
                    None => None,
                };
                (target, MountKind::Tmpfs { size })
            }
            "secret" => {
                let env = self.expand_opt(st, &spec.env, line)?;
                secret_mount(spec, w, env).ok_or_else(|| {
                    let msg = "secret mount requires an id or a target";
                    self.src.error(ErrorKind::Invalid, line, msg, Some("--mount"))
                })?
            }
            "ssh" => {
                let target =
                    w.target.as_deref().map_or_else(|| format!("/run/buildkit/ssh_agent.{}", m.ssh), |t| w.abs(t));
                m.ssh += 1;
                let (id, mode) = (w.id.unwrap_or_else(|| "default".into()), spec.mode.unwrap_or(0o600));
                (target, MountKind::Ssh { id, required: spec.required, mode, uid: w.uid, gid: w.gid })
            }
            other => {
                let msg = format!("unsupported mount type {other:?}");
                return Err(self.src.error(ErrorKind::Invalid, line, msg, Some("--mount")));
            }
        };
        m.mounts.push(Mount { target, kind });
        Ok(())
    }

    /// The input a mount reads: the context, a stage or an image.
    async fn mount_input(
        &mut self,
        st: &StageState,
        from: Option<&str>,
        line: usize,
        pc: &PlatformCtx,
        m: &mut Mounts,
    ) -> Result<usize> {
        let v = match from {
            None => self.context()?,
            Some(f) => self.named_source(st, f, line, pc).await?,
        };
        Ok(m.input(v))
    }
}

/// The expanded words of one `--mount`.
struct MountWords {
    target: Option<String>,
    selector: String,
    from: Option<String>,
    id: Option<String>,
    workdir: String,
    uid: u32,
    gid: u32,
}

impl MountWords {
    /// A target as an absolute path: relative ones under the working directory.
    fn abs(&self, t: &str) -> String {
        let p = normalize_workdir(&self.workdir, t);
        format!("/{}", polyarch_dockerfile::clean(&p).trim_start_matches('/'))
    }
}

/// A `type=cache` mount: by id (the target when none, within the build's
/// cache namespace), seeded from `from`.
fn cache_mount(
    spec: &DfMount,
    w: MountWords,
    from: Option<usize>,
    target: String,
    build_args: &std::collections::BTreeMap<String, String>,
) -> MountKind {
    let sharing = match spec.sharing.as_deref() {
        None | Some("") | Some("shared") => Sharing::Shared,
        Some("private") => Sharing::Private,
        Some(_) => Sharing::Locked,
    };
    MountKind::Cache {
        id: crate::meta::cache_mount_id(build_args, w.id.unwrap_or(target)),
        sharing,
        from,
        selector: w.selector,
        readonly: spec.read_only == Some(true),
        mode: spec.mode.unwrap_or(0o755),
        uid: w.uid,
        gid: w.gid,
    }
}

/// A `type=secret` mount: its id (the target's base name when none) and
/// where it goes (`/run/secrets/<id>` unless only an env is asked for);
/// `None` with neither an id nor a target.
fn secret_mount(spec: &DfMount, w: MountWords, env: Option<String>) -> Option<(String, MountKind)> {
    let id = w.id.clone().or_else(|| w.target.as_deref().map(|t| base_name(t).to_string()))?;
    let target = match (&w.target, &env) {
        (Some(t), _) => w.abs(t),
        (None, Some(_)) => String::new(),
        (None, None) => format!("/run/secrets/{id}"),
    };
    let mode = spec.mode.unwrap_or(0o400);
    Some((target, MountKind::Secret { id, required: spec.required, mode, uid: w.uid, gid: w.gid, env }))
}

/// A mount's `source` as a selector of its input (`""` for all of it).
fn selector(source: &str) -> String {
    let c = polyarch_dockerfile::clean(&format!("/{source}"));
    if c == "/" {
        String::new()
    } else {
        c
    }
}

fn id32(v: Option<u64>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

fn base_name(p: &str) -> &str {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or(p)
}

/// A size as go-units' `RAMInBytes` reads it: `64m`, `1g`, `512kb`, bytes.
fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_lowercase();
    let digits = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim().trim_end_matches('b').trim_end_matches('i');
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    Some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_env_and_history() {
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(selector("/"), "");
        assert_eq!(selector("a/../b"), "/b");
    }
}
