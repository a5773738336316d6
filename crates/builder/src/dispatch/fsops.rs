//! Instructions that change the file system: COPY, ADD and WORKDIR. Each
//! is keyed by content; a hit applies the cached layer, a miss writes a new
//! deterministic layer.

use std::sync::Arc;

use polyarch_dockerfile::instructions::{Command, Copy, Instruction};

use super::{Run, StageState};
use crate::cache::{content_digest, KeyBuilder, Record};
use crate::copy::{self, CopySpec, Planned};
use crate::error::{Error, ErrorKind, Result};
use crate::fs::{clean, Content, Kind, MemFs, Node, Spill};
use crate::layer::{write_layer, Layer};
use crate::Vertex;
use polyarch_dockerfile::values::{is_url, normalize_workdir};

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
    async fn copy_source(&mut self, st: &StageState, c: &Copy, line: usize, step: &Vertex) -> Result<Source> {
        let Some(from) = &c.from else {
            return Ok(Source { fs: self.opts.context.clone(), keep_owner: false, label: "context".into() });
        };
        let from = self.expand(st, from, line)?;
        let before = self.stages.len();
        if let Some(j) = self.stage_named(&from, before) {
            let Some(mut other) = self.stages[j].take() else {
                return Err(self.loc(line).error(
                    ErrorKind::Dockerfile,
                    format!(
                        "cannot copy from stage {from:?}, it needs to be defined before current stage {:?}",
                        st.name
                    ),
                    Some(&from),
                ));
            };
            let fs = self.stage_fs(&mut other).map(|f| f.clone());
            let key = other.key.clone();
            self.stages[j] = Some(other);
            return Ok(Source { fs: Arc::new(fs?), keep_owner: true, label: format!("stage:{key}") });
        }
        if let Some(fs) = self.named_files(&from) {
            return Ok(Source { fs, keep_owner: false, label: format!("named:{from}") });
        }
        let img = self.image(&from, &st.platform.clone(), line).await?;
        let fs = self.image_fs(&img, Some(step)).await?;
        Ok(Source { fs: Arc::new(fs), keep_owner: true, label: format!("image:{}", img.manifest.digest) })
    }

    pub(super) async fn copy(&mut self, st: &mut StageState, cmd: &Command, c: &Copy, add: bool) -> Result<()> {
        let line = cmd.start_line;
        let verb = if add { "ADD" } else { "COPY" };
        let args = self.copy_args(st, c, line)?;
        let rest = cmd.original.split_once(' ').map(|x| x.1).unwrap_or("").trim();
        let text = format!("{verb} {}", self.display_words(st, rest));
        let _slot = self.b.slots.acquire(crate::slots::Class::Cpu).await;
        let mut vertex = self.step_vertex(st, &text);
        let reads_source = c.from.is_some() || c.sources.iter().any(|s| !is_url(s));
        if reads_source {
            vertex.inputs.extend(self.source_input(st, c.from.as_deref(), line));
        }
        let step = self.start(vertex);
        let outcome = self.copy_run(st, c, add, line, args, &step.vertex).await;
        self.end_step(step, outcome)
    }

    /// Expands and checks the words of COPY/ADD.
    fn copy_args(&self, st: &StageState, c: &Copy, line: usize) -> Result<CopyArgs> {
        let loc = self.loc(line);
        let mut sources = Vec::new();
        for s in &c.sources {
            sources.push(self.expand(st, s, line)?);
        }
        let dest_raw = self.expand(st, &c.dest, line)?;
        let mut excludes = Vec::new();
        for e in &c.excludes {
            excludes.push(self.expand(st, e, line)?);
        }
        let chmod_text = match &c.chmod {
            Some(m) => Some(self.expand(st, m, line)?),
            None => None,
        };
        let chmod = match &chmod_text {
            Some(m) => Some(u32::from_str_radix(m, 8).ok().filter(|v| *v <= 0o7777).ok_or_else(|| {
                let msg = format!("invalid chmod parameter: '{m}'. it should be octal string and between 0 and 07777");
                loc.error(ErrorKind::Invalid, msg, Some(m))
            })?),
            None => None,
        };
        let chown = match &c.chown {
            Some(s) => Some(self.expand(st, s, line)?),
            None => None,
        };
        let checksum = match &c.checksum {
            Some(s) => Some(self.expand(st, s, line)?),
            None => None,
        };
        if checksum.is_some() {
            if sources.len() != 1 {
                return Err(loc.error(ErrorKind::Invalid, "checksum can't be specified for multiple sources", None));
            }
            if !is_url(&sources[0]) {
                return Err(loc.error(ErrorKind::Invalid, "checksum can't be specified for non-HTTP(S) sources", None));
            }
        }
        let dest = dest_path(&st.image.config.working_dir, &dest_raw);
        if sources.len() + c.contents.len() > 1 && !dest.ends_with('/') {
            return Err(loc.error(ErrorKind::Invalid, copy::CopyError::NeedsDirectory.to_string(), None));
        }
        Ok(CopyArgs { sources, dest, dest_raw, excludes, chmod, chmod_text, chown, checksum })
    }

    async fn copy_run(
        &mut self,
        st: &mut StageState,
        c: &Copy,
        add: bool,
        line: usize,
        a: CopyArgs,
        step: &Vertex,
    ) -> Result<bool> {
        let loc = self.loc(line);
        let verb = if add { "ADD" } else { "COPY" };
        let target = self.stage_fs(st)?.clone();
        let chown = match &a.chown {
            Some(spec) => {
                Some(crate::users::resolve(&target, spec).map_err(|m| loc.error(ErrorKind::Invalid, m, Some(spec)))?)
            }
            None => None,
        };
        let (urls, local): (Vec<String>, Vec<String>) = a.sources.iter().cloned().partition(|s| add && is_url(s));
        if let Some(u) = a.sources.iter().find(|s| !add && is_url(s)) {
            return Err(loc.error(ErrorKind::Invalid, "source can't be a URL for COPY", Some(u)));
        }
        if let Some(g) = local.iter().find(|s| add && (s.starts_with("git@") || s.ends_with(".git"))) {
            return Err(loc.error(ErrorKind::Unsupported, format!("ADD from git ({g}) is not supported yet"), Some(g)));
        }
        let spec = CopySpec {
            sources: Vec::new(),
            dest: a.dest.clone(),
            chown,
            chmod: a.chmod,
            excludes: a.excludes.clone(),
            parents: c.parents,
            unpack: add && c.unpack != Some(false),
            keep_owner: false,
            now: 0,
            spill: Some(Arc::new(Spill::new(self.b.store.root().join("run")))),
        };
        let mut jobs: Vec<(Arc<MemFs>, CopySpec)> = Vec::new();
        let mut label = String::new();
        if !local.is_empty() {
            let src = self.copy_source(st, c, line, step).await?;
            label.push_str(&src.label);
            let sources = if c.parents {
                local.iter().map(|s| s.trim_start_matches('/').to_string()).collect()
            } else {
                local.iter().map(|s| clean(s)).collect()
            };
            jobs.push((src.fs, CopySpec { sources, keep_owner: src.keep_owner, ..spec.clone() }));
        }
        for url in &urls {
            let spill = spec.spill.clone().unwrap_or_else(|| Arc::new(Spill::temp()));
            let dl = crate::remote::fetch(url, &spill)
                .await
                .map_err(|e| loc.error(ErrorKind::Io, e.to_string(), Some(url)))?;
            if let Some(sum) = &a.checksum {
                let actual = dl.data.digest()?;
                if &actual.to_string() != sum {
                    let e = Error::Checksum { url: url.clone(), expected: sum.clone(), actual };
                    return Err(loc.error(ErrorKind::Invalid, e.to_string(), Some(url)));
                }
            }
            label.push_str(&format!("|url:{url}"));
            let mut fs = MemFs::new();
            let node = Node::new(Kind::File(dl.data), 0o600, 0, 0, dl.mtime.unwrap_or(0));
            fs.insert(dl.name.clone(), node);
            // Downloads are never unpacked.
            jobs.push((
                Arc::new(fs),
                CopySpec { sources: vec![dl.name], unpack: false, parents: false, ..spec.clone() },
            ));
        }
        if !c.contents.is_empty() {
            // Here-documents become files (0644, as BuildKit's Mkfile).
            let mut fs = MemFs::new();
            let mut names = Vec::new();
            for f in &c.contents {
                let data = if f.expand { self.expand_text(st, &f.data, line)? } else { f.data.clone() };
                fs.insert(f.name.clone(), Node::new(Kind::File(Content::bytes(data.into_bytes())), 0o644, 0, 0, 0));
                names.push(f.name.clone());
                label.push_str(&format!("|heredoc:{}", f.name));
            }
            jobs.push((Arc::new(fs), CopySpec { sources: names, unpack: false, parents: false, ..spec.clone() }));
        }
        let link = c.link && a.chmod.is_none();
        let empty = MemFs::new();
        let base = if link { &empty } else { &target };
        // One plan serves the key and the layer: the key leaves times out.
        let planned = plan_jobs(&jobs, base, self.now).map_err(|e| copy_error(&loc, e, &a.sources))?;
        let mut key = KeyBuilder::new(&st.key, &st.platform);
        key.part(verb)
            .part(&format!(
                "{:?}",
                (&a.sources, &a.dest, spec.chown, spec.chmod, &spec.excludes, spec.parents, spec.unpack, link)
            ))
            .part(&label)
            .part(&content_digest(&planned.changes)?);
        let key = self.layer_key(key);
        let mut history = String::from(verb);
        if c.parents {
            history.push_str(" --parents");
        }
        if let Some(ch) = &a.chown {
            history.push_str(&format!(" --chown={ch}"));
        }
        if let Some(m) = &a.chmod_text {
            history.push_str(&format!(" --chmod={m}"));
        }
        let mut words = a.sources.clone();
        words.extend(c.contents.iter().map(|f| format!("<<{}", f.name)));
        history.push_str(&format!(" {} {} # buildkit", words.join(" "), a.dest_raw));
        let (cached, ran_at) = self.apply_step(st, &key, || Ok((planned, link)))?;
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
        let no_cache = self.opts.no_cache || self.opts.no_cache_filter.iter().any(|s| s.eq_ignore_ascii_case(&st.name));
        if !no_cache {
            if let Some(rec) = self.cache.get(key) {
                if let Some(layer) = &rec.layer {
                    self.push_cached_layer(st, layer);
                }
                self.cache.noted(&st.key, key, &st.platform, &rec);
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
            let tmp = self.b.store.root().join("run");
            let layer =
                write_layer(&self.b.store, &tmp, entries.iter().map(|(p, n)| (p.as_str(), n)), self.opts.compression)?;
            // The stage's tree is what the layer gives, its contents still
            // where they were copied from.
            self.stage_fs(st)?.apply_entries(&entries);
            push_layer(st, layer.clone());
            Some(layer)
        };
        let rec = Record { layer, created: Some(self.now) };
        self.cache.put(key, &rec)?;
        self.cache.noted(&st.key, key, &st.platform, &rec);
        st.key = key.to_string();
        self.executed += 1;
        Ok((false, self.now))
    }

    pub(super) fn workdir(&mut self, st: &mut StageState, cmd: &Command, p: &str) -> Result<()> {
        let line = cmd.start_line;
        let p = self.expand(st, p, line)?;
        let wd = normalize_workdir(&st.image.config.working_dir, &p);
        st.image.config.working_dir = wd.clone();
        if polyarch_dockerfile::clean(&wd) == "/" {
            self.commit_meta(st, format!("WORKDIR {wd}"));
            return Ok(());
        }
        let step = self.start(self.step_vertex(st, &format!("WORKDIR {wd}")));
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
            copy::mkdir_all(&mut merged, &mut changes, &polyarch_dockerfile::clean(&wd), owner, now);
            Ok((Planned { changes, merged }, false))
        })?;
        if cached {
            self.cached_step(&step);
        }
        self.done(step);
        self.commit_fs(st, format!("WORKDIR {wd}"), ran_at);
        Ok(())
    }
}

/// The expanded words of a COPY or ADD.
struct CopyArgs {
    sources: Vec<String>,
    dest: String,
    dest_raw: String,
    excludes: Vec<String>,
    chmod: Option<u32>,
    chmod_text: Option<String>,
    chown: Option<String>,
    checksum: Option<String>,
}

/// Plans each source group in turn, each on top of the previous result.
fn plan_jobs(jobs: &[(Arc<MemFs>, CopySpec)], base: &MemFs, now: i64) -> std::result::Result<Planned, copy::CopyError> {
    let mut merged = base.clone();
    let mut changes = MemFs::new();
    for (src, spec) in jobs {
        let mut spec = spec.clone();
        spec.now = now;
        let p = copy::plan(src, &merged, &spec)?;
        for (k, n) in p.changes.iter() {
            changes.insert(k.clone(), n.clone());
        }
        merged = p.merged;
    }
    Ok(Planned { changes, merged })
}

fn copy_error(loc: &crate::error::Location, e: copy::CopyError, sources: &[String]) -> Error {
    let token = match &e {
        copy::CopyError::NotFound(p) => sources.iter().find(|s| clean(s) == clean(p)).cloned(),
        _ => None,
    };
    let kind = if matches!(e, copy::CopyError::NotFound(_)) { ErrorKind::NotFound } else { ErrorKind::Invalid };
    loc.error(kind, e.to_string(), token.as_deref())
}

fn push_layer(st: &mut StageState, layer: Layer) {
    st.image.diff_ids.push(layer.diff_id.clone());
    st.layers.push(layer);
}

/// The absolute destination of COPY/ADD: relative to the working directory,
/// keeping a trailing `/` (also for `.` and `..`) that marks a directory.
pub(crate) fn dest_path(workdir: &str, dest: &str) -> String {
    let dir_syntax =
        dest.ends_with('/') || dest == "." || dest == ".." || dest.ends_with("/.") || dest.ends_with("/..");
    let joined =
        if dest.starts_with('/') { dest.to_string() } else { format!("{}/{dest}", workdir.trim_end_matches('/')) };
    let c = format!("/{}", clean(&joined));
    if dir_syntax && c != "/" {
        format!("{c}/")
    } else {
        c
    }
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
        assert_eq!(normalize_workdir("/", "/a/b/./c/../d/"), "/a/b/./c/../d/");
        assert_eq!(normalize_workdir("/a/./b/", "c/"), "/a/b/c");
        assert_eq!(normalize_workdir("rel", "x"), "/rel/x");
    }
}
