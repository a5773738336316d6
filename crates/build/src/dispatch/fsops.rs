//! Instructions that change the file system: COPY, ADD and WORKDIR. Each
//! is keyed by content; a hit applies the cached layer, a miss writes a new
//! deterministic layer.

use std::sync::Arc;

use polyarch_dockerfile::instructions::{Command, Copy, Instruction};
use polyarch_store::BlobSource;

use super::{Run, StageState};
use crate::cache::{content_digest, KeyBuilder, Record};
use crate::copy::{self, CopySpec, Planned};
use crate::error::{Error, ErrorKind, Result};
use crate::fs::{clean, Kind, MemFs, Node};
use crate::layer::{store_layer, tar_entries, Layer};
use crate::Event;

/// Whether an instruction becomes a step of its own (and a layer).
pub(super) fn is_fs_step(c: &Command) -> bool {
    matches!(c.instruction, Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_) | Instruction::Run(_))
}

/// Where copied files come from.
struct Source {
    fs: Arc<MemFs>,
    keep_owner: bool,
    /// What the key says about the source besides the content.
    label: String,
}

impl Run<'_> {
    async fn copy_source(&mut self, st: &StageState, c: &Copy, line: usize) -> Result<Source> {
        let Some(from) = &c.from else {
            return Ok(Source { fs: self.opts.context.clone(), keep_owner: false, label: "context".into() });
        };
        let from = self.expand(st, from, line)?;
        let before = self.stages.len();
        if let Some(j) = self.stage_named(&from, before) {
            let Some(mut other) = self.stages[j].take() else {
                return Err(self.loc(line).error(
                    ErrorKind::Dockerfile,
                    format!("cannot copy from stage {from:?}, it needs to be defined before current stage {:?}", st.name),
                    Some(&from),
                ));
            };
            let fs = self.stage_fs(&mut other).map(|f| f.clone());
            let key = other.key.clone();
            self.stages[j] = Some(other);
            return Ok(Source { fs: Arc::new(fs?), keep_owner: true, label: format!("stage:{key}") });
        }
        let img = self.image(&from, &st.platform.clone(), line).await?;
        let fs = self.image_fs(&img)?;
        Ok(Source { fs: Arc::new(fs), keep_owner: true, label: format!("image:{}", img.manifest.digest) })
    }

    pub(super) async fn copy(&mut self, st: &mut StageState, cmd: &Command, c: &Copy, add: bool) -> Result<()> {
        let line = cmd.start_line;
        let loc = self.loc(line);
        let verb = if add { "ADD" } else { "COPY" };
        if !c.contents.is_empty() {
            return Err(loc.error(ErrorKind::Unsupported, format!("{verb} with here-documents is not supported yet"), None));
        }
        let mut sources = Vec::new();
        for s in &c.sources {
            sources.push(self.expand(st, s, line)?);
        }
        let dest_raw = self.expand(st, &c.dest, line)?;
        let dest = dest_path(&st.image.config.working_dir, &dest_raw);
        let mut excludes = Vec::new();
        for e in &c.excludes {
            excludes.push(self.expand(st, e, line)?);
        }
        let chmod = match &c.chmod {
            Some(m) => {
                let m = self.expand(st, m, line)?;
                Some(u32::from_str_radix(&m, 8).ok().filter(|v| *v <= 0o7777).ok_or_else(|| {
                    loc.error(ErrorKind::Invalid, format!("invalid chmod parameter: {m}"), Some(&m))
                })?)
            }
            None => None,
        };
        let name = st.prefix(&format!("{verb} {}", cmd.original.split_once(' ').map(|x| x.1).unwrap_or("").trim()));
        let step = self.start(name);
        let result = self.copy_inner(st, c, add, line, sources, dest, excludes, chmod, &dest_raw).await;
        match result {
            Ok(cached) => {
                if cached {
                    self.emit(Event::Cached { id: step.0 });
                }
                self.done(step);
                Ok(())
            }
            Err(e) => {
                self.emit(Event::Failed { id: step.0, message: e.to_string() });
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy_inner(
        &mut self,
        st: &mut StageState,
        c: &Copy,
        add: bool,
        line: usize,
        sources: Vec<String>,
        dest: String,
        excludes: Vec<String>,
        chmod: Option<u32>,
        dest_raw: &str,
    ) -> Result<bool> {
        let loc = self.loc(line);
        let verb = if add { "ADD" } else { "COPY" };
        let target = self.stage_fs(st)?.clone();
        let chown = match &c.chown {
            Some(spec) => {
                let spec = self.expand(st, spec, line)?;
                Some(crate::users::resolve(&target, &spec).map_err(|m| loc.error(ErrorKind::Invalid, m, Some(&spec)))?)
            }
            None => None,
        };
        let (urls, local): (Vec<String>, Vec<String>) =
            sources.iter().cloned().partition(|s| add && (s.starts_with("http://") || s.starts_with("https://")));
        if let Some(g) = local.iter().find(|s| add && (s.starts_with("git@") || s.ends_with(".git"))) {
            return Err(loc.error(ErrorKind::Unsupported, format!("ADD from git ({g}) is not supported yet"), Some(g)));
        }
        if sources.len() > 1 && !dest.ends_with('/') {
            return Err(loc.error(ErrorKind::Invalid, copy::CopyError::NeedsDirectory.to_string(), None));
        }
        // Sources: the context or a stage/image, plus downloads.
        let mut src_fs: MemFs;
        let mut label;
        let keep_owner;
        let mut local_sources: Vec<String> = local.iter().map(|s| clean(s)).collect();
        if !local.is_empty() || urls.is_empty() {
            let s = self.copy_source(st, c, line).await?;
            src_fs = (*s.fs).clone();
            label = s.label;
            keep_owner = s.keep_owner;
        } else {
            src_fs = MemFs::new();
            label = "urls".into();
            keep_owner = false;
        }
        if c.parents {
            // Keep a `/./` pivot visible to the planner.
            local_sources = local.iter().map(|s| s.trim_start_matches('/').to_string()).collect();
        }
        for (n, url) in urls.iter().enumerate() {
            let dl = crate::remote::fetch(url).await.map_err(|e| loc.error(ErrorKind::Io, e.to_string(), Some(url)))?;
            if let Some(sum) = &c.checksum {
                let sum = self.expand(st, sum, line)?;
                let actual = polyarch_oci::Digest::sha256(&dl.data);
                if actual.to_string() != sum {
                    let e = Error::Checksum { url: url.clone(), expected: sum, actual };
                    return Err(loc.error(ErrorKind::Invalid, e.to_string(), Some(url)));
                }
            }
            // Downloads are staged under a private name and copied like files.
            let staged = format!(".polyarch-url-{n}");
            src_fs.insert(staged.clone(), Node { kind: Kind::File(Arc::new(dl.data)), mode: 0o600, uid: 0, gid: 0, mtime: dl.mtime.unwrap_or(0) });
            let d = if dest.ends_with('/') { format!("{dest}{}", dl.name) } else { dest.clone() };
            label.push_str(&format!("|url:{url}"));
            local_sources.push(staged);
            // A URL's file keeps its name even when the destination is a directory.
            if sources.len() == 1 {
                return self.finish_copy(st, verb, &src_fs, &target, CopySpec {
                    sources: local_sources,
                    dest: d,
                    chown,
                    chmod,
                    excludes,
                    parents: false,
                    unpack: false,
                    keep_owner,
                    now: 0,
                }, c, &sources, dest_raw, &label, line).await;
            }
        }
        let spec = CopySpec {
            sources: local_sources,
            dest,
            chown,
            chmod,
            excludes,
            parents: c.parents,
            unpack: add && c.unpack != Some(false),
            keep_owner,
            now: 0,
        };
        self.finish_copy(st, verb, &src_fs, &target, spec, c, &sources, dest_raw, &label, line).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_copy(
        &mut self,
        st: &mut StageState,
        verb: &str,
        src: &MemFs,
        target: &MemFs,
        spec: CopySpec,
        c: &Copy,
        sources: &[String],
        dest_raw: &str,
        label: &str,
        line: usize,
    ) -> Result<bool> {
        let loc = self.loc(line);
        let empty = MemFs::new();
        let base = if c.link { &empty } else { target };
        let plan = |now: i64| {
            let mut s = spec.clone();
            s.now = now;
            copy::plan(src, base, &s).map_err(|e| {
                let token = match &e {
                    copy::CopyError::NotFound(p) => sources.iter().find(|s| clean(s) == clean(p)).cloned(),
                    _ => None,
                };
                let kind = if matches!(e, copy::CopyError::NotFound(_)) { ErrorKind::NotFound } else { ErrorKind::Invalid };
                loc.error(kind, e.to_string(), token.as_deref())
            })
        };
        let probe = plan(0)?;
        let mut key = KeyBuilder::new(&st.key, &st.platform);
        key.part(verb)
            .part(&format!("{:?}", (&spec.sources, &spec.dest, spec.chown, spec.chmod, &spec.excludes, spec.parents, spec.unpack, c.link)))
            .part(label)
            .part(&content_digest(&probe.changes));
        let key = self.layer_key(key);
        let history = format!("{verb} {} {dest_raw} # buildkit", sources.join(" "));
        let planned = plan(self.now);
        let (cached, ran_at) = self.apply_step(st, &key, || planned.map(|p| (p, c.link)))?;
        self.commit_fs(st, history, ran_at);
        Ok(cached)
    }

    fn layer_key(&self, mut k: KeyBuilder) -> String {
        k.part(self.opts.compression.name());
        k.part(&format!("{:?}|{}", self.opts.source_date_epoch, self.opts.rewrite_timestamp));
        k.finish()
    }

    /// Looks `key` up; on a hit applies the cached layer, on a miss plans,
    /// writes and records. Returns whether it was a hit.
    fn apply_step(
        &mut self,
        st: &mut StageState,
        key: &str,
        plan: impl FnOnce() -> Result<(Planned, bool)>,
    ) -> Result<(bool, i64)> {
        st.layers_before_step = st.image.diff_ids.len();
        if !self.opts.no_cache {
            if let Some(rec) = self.cache.get(key) {
                if let Some(layer) = &rec.layer {
                    let r = self.b.store.open(&layer.desc)?;
                    self.stage_fs(st)?.apply_layer(r)?;
                    push_layer(st, layer.clone());
                }
                st.key = key.to_string();
                self.cached += 1;
                return Ok((true, rec.created.unwrap_or(self.now)));
            }
        }
        let (planned, _link) = plan()?;
        let layer = if planned.changes.is_empty() {
            None
        } else {
            let mut entries = copy::layer_entries(&planned.changes, &planned.merged);
            if self.opts.rewrite_timestamp {
                if let Some(epoch) = self.opts.source_date_epoch {
                    for (_, n) in entries.iter_mut() {
                        n.mtime = n.mtime.min(epoch);
                    }
                }
            }
            let tar = tar_entries(entries.iter().map(|(p, n)| (p.as_str(), n)))?;
            let layer = store_layer(&self.b.store, &tar, self.opts.compression)?;
            self.stage_fs(st)?.apply_layer(&tar[..])?;
            push_layer(st, layer.clone());
            Some(layer)
        };
        self.cache.put(key, &Record { layer, created: Some(self.now) })?;
        st.key = key.to_string();
        self.executed += 1;
        Ok((false, self.now))
    }

    pub(super) fn workdir(&mut self, st: &mut StageState, cmd: &Command, p: &str) -> Result<()> {
        let line = cmd.start_line;
        let p = self.expand(st, p, line)?;
        let wd = normalize_workdir(&st.image.config.working_dir, &p);
        st.image.config.working_dir = wd.clone();
        if wd == "/" {
            self.commit_meta(st, format!("WORKDIR {wd}"));
            return Ok(());
        }
        let step = self.start(st.prefix(&format!("WORKDIR {wd}")));
        let user = st.image.config.user.clone();
        let target = self.stage_fs(st)?.clone();
        let owner = crate::users::workdir_owner(&target, &user);
        let mut key = KeyBuilder::new(&st.key, &st.platform);
        key.part("WORKDIR").part(&wd).part(&format!("{owner:?}"));
        let key = self.layer_key(key);
        let now = self.now;
        let (cached, ran_at) = self.apply_step(st, &key, || {
            let mut merged = target.clone();
            let mut changes = MemFs::new();
            copy::mkdir_all(&mut merged, &mut changes, &wd, owner, now);
            Ok((Planned { changes, merged }, false))
        })?;
        if cached {
            self.emit(Event::Cached { id: step.0 });
        }
        self.done(step);
        self.commit_fs(st, format!("WORKDIR {wd}"), ran_at);
        Ok(())
    }
}

fn push_layer(st: &mut StageState, layer: Layer) {
    st.image.diff_ids.push(layer.diff_id.clone());
    st.layers.push(layer);
}

/// The absolute destination of COPY/ADD: relative to the working directory,
/// keeping a trailing `/` (also for `.` and `..`) that marks a directory.
pub(crate) fn dest_path(workdir: &str, dest: &str) -> String {
    let dir_syntax = dest.ends_with('/') || dest == "." || dest == ".." || dest.ends_with("/.") || dest.ends_with("/..");
    let joined = if dest.starts_with('/') { dest.to_string() } else { format!("{}/{dest}", workdir.trim_end_matches('/')) };
    let c = format!("/{}", clean(&joined));
    if dir_syntax && c != "/" {
        format!("{c}/")
    } else {
        c
    }
}

/// BuildKit's `NormalizeWorkdir`: relative paths join the current one.
pub(crate) fn normalize_workdir(current: &str, p: &str) -> String {
    let joined = if p.starts_with('/') { p.to_string() } else { format!("{}/{p}", if current.is_empty() { "/" } else { current }) };
    format!("/{}", clean(&joined))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(dest_path("/", "app"), "/app");
        assert_eq!(dest_path("/", "app/"), "/app/");
        assert_eq!(dest_path("/work", "."), "/work/");
        assert_eq!(dest_path("/work", "sub/x"), "/work/sub/x");
        assert_eq!(dest_path("/work", "/abs"), "/abs");
        assert_eq!(dest_path("", "."), "/");
        assert_eq!(normalize_workdir("/", "app"), "/app");
        assert_eq!(normalize_workdir("/app", "sub/../x"), "/app/x");
        assert_eq!(normalize_workdir("/app", "/"), "/");
        assert_eq!(normalize_workdir("", "rel"), "/rel");
    }
}
