//! Instructions that change the file system: COPY, ADD and WORKDIR. Each
//! is keyed by content; a hit applies the cached layer, a miss writes a new
//! deterministic layer.

use std::sync::Arc;

use polyarch_dockerfile::instructions::{Command, Copy, Instruction};

use super::{Run, StageState};
use crate::cache::keys::{self, Layering, Origin};
use crate::cache::{content_digest, Claim, Record, Running};
use crate::copy::{self, CopySpec, Planned};
use crate::error::{Error, ErrorKind, Result};
use crate::fs::{clean, Content, Kind, MemFs, Node, Spill};
use crate::layer::{write_layer, Layer};
use crate::Vertex;
use polyarch_dockerfile::values::{dest_path, is_url, normalize_workdir};
use polyarch_oci::Digest;
use polyarch_solver::op::{Copy as CopyOp, HttpSource, Merge, Mkdir, Mkfile, Op, Source as SourceOp};
use polyarch_solver::DepKey;

/// Whether an instruction becomes a step of its own (and a layer).
pub(super) fn is_fs_step(c: &Command) -> bool {
    matches!(c.instruction, Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_) | Instruction::Run(_))
}

/// Where copied or mounted files come from.
pub(super) struct Source {
    pub(super) fs: Arc<MemFs>,
    pub(super) keep_owner: bool,
    /// What the key names as the source.
    pub(super) origin: Origin,
}

/// What reads a named source: a COPY step (its vertex shows the pull) or
/// a RUN mount.
#[derive(Clone, Copy)]
pub(super) enum Reading<'a> {
    Copy(&'a Vertex),
    Mount,
}

impl Run<'_> {
    async fn copy_source(&mut self, st: &StageState, c: &Copy, line: usize, step: &Vertex) -> Result<Source> {
        let Some(from) = &c.from else {
            return Ok(Source { fs: self.opts.context.clone(), keep_owner: false, origin: Origin::Context });
        };
        let from = self.expand(st, from, line)?;
        self.source_named(st, &from, line, Reading::Copy(step)).await
    }

    /// The files of `from` (a stage defined before, a named context or an
    /// image for the stage's platform) for a COPY `--from` or a RUN
    /// `--mount=from=`; an image's pull is shown under the COPY's step.
    pub(super) async fn source_named(
        &mut self,
        st: &StageState,
        from: &str,
        line: usize,
        reading: Reading<'_>,
    ) -> Result<Source> {
        if let Some(j) = self.stage_named(from, self.stages.len()) {
            let Some(mut other) = self.stages[j].take() else {
                let msg = match reading {
                    Reading::Copy(_) => format!(
                        "cannot copy from stage {from:?}, it needs to be defined before current stage {:?}",
                        st.name
                    ),
                    Reading::Mount => format!("cannot mount from stage {from:?}: it is not built before {:?}", st.name),
                };
                return Err(self.loc(line).error(ErrorKind::Dockerfile, msg, Some(from)));
            };
            let fs = self.stage_fs(&mut other).map(|f| f.clone());
            let key = other.key.clone();
            self.stages[j] = Some(other);
            return Ok(Source { fs: Arc::new(fs?), keep_owner: true, origin: Origin::State(key) });
        }
        if let Some(fs) = self.named_files(from) {
            return Ok(Source { fs, keep_owner: false, origin: Origin::Named(from.to_string()) });
        }
        let img = self.image(from, &st.platform.clone(), line).await?;
        let step = match reading {
            Reading::Copy(step) => Some(step),
            Reading::Mount => None,
        };
        let fs = self.image_fs(&img, step).await?;
        let key = keys::image(from, &img.manifest.digest, &st.platform)?;
        Ok(Source { fs: Arc::new(fs), keep_owner: true, origin: Origin::State(key) })
    }

    pub(super) async fn copy(&mut self, st: &mut StageState, cmd: &Command, c: &Copy, add: bool) -> Result<()> {
        let line = cmd.start_line;
        let verb = if add { "ADD" } else { "COPY" };
        let args = self.copy_args(st, c, line)?;
        let rest = cmd.original.split_once(' ').map(|x| x.1).unwrap_or("").trim();
        let text = polyarch_frontend::meta::step_text(&self.lex, &format!("{verb} {rest}"), &self.env(st), false);
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
            if !is_url(&sources[0]) && !crate::git::GitRef::is_git(&sources[0]) {
                return Err(loc.error(ErrorKind::Invalid, "checksum requires HTTP(S) or Git sources", None));
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
        if let Some(u) = a.sources.iter().find(|s| !add && is_url(s)) {
            return Err(loc.error(ErrorKind::Invalid, "source can't be a URL for COPY", Some(u)));
        }
        // ADD takes a Git repository (`https://host/repo.git#ref:dir`,
        // `git@host:repo`, `ssh://`, `git://`) as BuildKit's
        // `gitutil.ParseGitRef` tells one, a URL as a download, anything
        // else from the context.
        let (gits, rest): (Vec<String>, Vec<String>) =
            a.sources.iter().cloned().partition(|s| add && crate::git::GitRef::is_git(s));
        let (urls, local): (Vec<String>, Vec<String>) = rest.into_iter().partition(|s| add && is_url(s));
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
        let mut groups: Vec<Group> = Vec::new();
        let layering = self.layering(st);
        if !local.is_empty() {
            let src = self.copy_source(st, c, line, step).await?;
            let sources: Vec<String> = if c.parents {
                local.iter().map(|s| s.trim_start_matches('/').to_string()).collect()
            } else {
                local.iter().map(|s| clean(s)).collect()
            };
            let paths = sources.iter().map(|s| format!("/{s}")).collect();
            groups.push(Group { source: src.origin, paths, wildcard: true, unpack: spec.unpack, parents: c.parents });
            jobs.push((src.fs, CopySpec { sources, keep_owner: src.keep_owner, ..spec.clone() }));
        }
        let mut checkouts = Vec::new();
        for g in &gits {
            let (fs, origin, dir) = self.git_source(g, c.keep_git_dir, a.checksum.as_deref(), &layering, &loc).await?;
            checkouts.push(dir);
            groups.push(Group {
                source: origin,
                paths: vec!["/".into()],
                wildcard: false,
                unpack: false,
                parents: false,
            });
            jobs.push((
                Arc::new(fs),
                CopySpec { sources: vec![String::new()], unpack: false, parents: false, ..spec.clone() },
            ));
        }
        for url in &urls {
            let spill = spec.spill.clone().unwrap_or_else(|| Arc::new(Spill::temp()));
            // Once for every platform of the build.
            let dl = self
                .b
                .fetches
                .download(url, || async move { crate::remote::fetch(url, &spill).await })
                .await
                .map_err(|e| loc.error(ErrorKind::Io, e.to_string(), Some(url)))?;
            let actual = dl.data.digest()?;
            if let Some(sum) = &a.checksum {
                if &actual.to_string() != sum {
                    let e = Error::Checksum { url: url.clone(), expected: sum.clone(), actual };
                    return Err(loc.error(ErrorKind::Invalid, e.to_string(), Some(url)));
                }
            }
            let op = Op::Source(SourceOp::Http(HttpSource {
                url: url.clone(),
                checksum: a.checksum.as_ref().map(|_| actual.clone()),
                filename: Some(dl.name.clone()),
                mode: 0o600,
                ..HttpSource::default()
            }));
            let content = a.checksum.is_none().then_some(&actual);
            let source = Origin::State(layering.op(&op, url, &[], content)?);
            let paths = vec![format!("/{}", dl.name)];
            groups.push(Group { source, paths, wildcard: false, unpack: false, parents: false });
            let mut fs = MemFs::new();
            let node = Node::new(Kind::File(dl.data.clone()), 0o600, 0, 0, dl.mtime.unwrap_or(0));
            fs.insert(dl.name.clone(), node);
            // Downloads are never unpacked.
            jobs.push((
                Arc::new(fs),
                CopySpec { sources: vec![dl.name.clone()], unpack: false, parents: false, ..spec.clone() },
            ));
        }
        if !c.contents.is_empty() {
            // Here-documents become files (0644, as BuildKit's Mkfile).
            let mut fs = MemFs::new();
            let mut names = Vec::new();
            let mut files = Vec::new();
            for f in &c.contents {
                let data = if f.expand { self.expand_text(st, &f.data, line)? } else { f.data.clone() };
                let path = format!("/{}", f.name);
                let op = Op::Mkfile(Mkfile { path, data: data.clone().into_bytes(), mode: 0o644, ..Mkfile::default() });
                files.push(keys::dep(&layering.op(&op, &f.name, &[], None)?, None));
                fs.insert(f.name.clone(), Node::new(Kind::File(Content::bytes(data.into_bytes())), 0o644, 0, 0, 0));
                names.push(f.name.clone());
            }
            let source = match files.as_slice() {
                [one] => one.key.clone(),
                _ => {
                    let op = Op::Merge(Merge { inputs: (0..files.len()).collect() });
                    layering.op(&op, "heredocs", &files, None)?
                }
            };
            let paths = names.iter().map(|n| format!("/{n}")).collect();
            groups.push(Group { source: Origin::State(source), paths, wildcard: false, unpack: false, parents: false });
            jobs.push((Arc::new(fs), CopySpec { sources: names, unpack: false, parents: false, ..spec.clone() }));
        }
        let link = c.link && a.chmod.is_none();
        let empty = MemFs::new();
        let base = if link { &empty } else { &target };
        // One plan serves the key and the layer: the key leaves times out.
        let (planned, changes) = plan_jobs(&jobs, base, self.now).map_err(|e| copy_error(&loc, e, &a.sources))?;
        let words = CopyWords { dest: &a.dest, owner: spec.chown, mode: a.chmod, excludes: &a.excludes };
        let (key, shared) = copy_key(&layering, &st.key, &groups, &changes, &words, link, verb)?;
        let history = polyarch_frontend::copy_history(
            verb,
            c,
            a.chown.as_deref(),
            a.chmod_text.as_deref(),
            &a.sources,
            &a.dest_raw,
        );
        let (cached, ran_at) = self.apply_step(st, &key, shared.as_ref(), || Ok((planned, link))).await?;
        self.commit_fs(st, history, ran_at);
        Ok(cached)
    }

    /// How the build keys the steps of `st`'s platform.
    /// An ADD source that is a Git repository: the checkout of its ref
    /// (and directory) as a tree, keyed by its commit, and the directory
    /// the tree's files live in (kept until the copy is done).
    async fn git_source(
        &self,
        source: &str,
        keep_git_dir: bool,
        checksum: Option<&str>,
        layering: &Layering,
        loc: &crate::error::Location,
    ) -> Result<(MemFs, Origin, Arc<crate::fetched::Checkout>)> {
        let invalid = |msg: String| loc.error(ErrorKind::Invalid, msg, Some(source));
        let git = match crate::git::parse(source).map_err(|e| invalid(e.to_string()))? {
            Some(g) => g.with_flags(checksum, keep_git_dir).map_err(invalid)?,
            None => return Err(invalid(format!("not a Git repository: {source}"))),
        };
        let run = self.b.store.root().join("run");
        let checked = git.clone();
        let agent = self.opts.run.ssh.get("default").cloned();
        // Once for every platform of the build (the same ref and flags).
        let key = format!("{source}\n{keep_git_dir}\n{}", checksum.unwrap_or(""));
        let checkout = self
            .b
            .fetches
            .checkout(&key, || async move {
                let dir = crate::materialize::temp_in(&run)?;
                let at = dir.path().to_path_buf();
                let (tree, commit) = tokio::task::spawn_blocking(move || {
                    use crate::git::Checkout as _;
                    let (root, commit) = checked.checkout_commit(&at, false, agent.as_deref())?;
                    Ok::<_, Error>((MemFs::from_dir(&root, &|_, _| (true, true))?, commit))
                })
                .await
                .map_err(|e| Error::Option(format!("checking out {source}: {e}")))??;
                Ok(crate::fetched::Checkout { tree, commit, _dir: dir })
            })
            .await
            .map_err(|e| loc.error(ErrorKind::Io, e.to_string(), Some(source)))?;
        let op = Op::Source(SourceOp::Git(polyarch_frontend::git_source(&git, Some(checkout.commit.clone()))));
        // Keyed by the commit, as BuildKit's git source: the checkout's
        // `.git` (kept with --keep-git-dir) differs from one fetch to the next.
        let origin = Origin::State(layering.op(&op, &git.display(), &[], None)?);
        Ok((checkout.tree.clone(), origin, checkout))
    }

    pub(super) fn layering(&self, st: &StageState) -> Layering {
        Layering::new(&st.platform, self.opts.compression, self.opts.source_date_epoch, self.opts.rewrite_timestamp)
    }

    /// Looks `key` up; on a hit applies the cached layer, on a miss plans,
    /// writes and records (or awaits the build that does, sharing the
    /// merge table). Returns whether it was a hit. A `COPY --link` names
    /// its layer's own key in `shared` (the copy onto nothing, which does
    /// not depend on the parent): a layer another platform or an earlier
    /// build on another base made under that key is used as it is, as
    /// BuildKit's merge reuses a `--link` copy.
    async fn apply_step(
        &mut self,
        st: &mut StageState,
        key: &Digest,
        shared: Option<&Digest>,
        plan: impl FnOnce() -> Result<(Planned, bool)>,
    ) -> Result<(bool, i64)> {
        st.layers_before_step = st.image.diff_ids.len();
        let no_cache = self.opts.no_cache || self.opts.no_cache_filter.iter().any(|s| s.eq_ignore_ascii_case(&st.name));
        let text = key.to_string();
        let mut running = None;
        if !no_cache {
            match self.cache.claim(&text).await? {
                Claim::Hit(rec) => {
                    if let Some(layer) = &rec.layer {
                        self.push_cached_layer(st, layer);
                    }
                    self.cache.noted(&st.key.to_string(), &text, &st.platform, &rec);
                    st.key = key.clone();
                    self.cached += 1;
                    return Ok((true, rec.created.unwrap_or(self.now)));
                }
                Claim::Run(r) => running = Some(r),
            }
        }
        let mut reused = false;
        let made = match shared {
            Some(layer_key) if !no_cache => self.shared_layer(st, layer_key, plan).await.map(|(rec, hit)| {
                reused = hit;
                rec
            }),
            _ => self.write_step(st, plan).map(|layer| Record { layer: Some(layer), created: Some(self.now) }),
        };
        let made = made.and_then(|rec| self.cache.put(&text, &rec).map(|()| rec));
        Running::settle(running, &made);
        let rec = made?;
        self.cache.noted(&st.key.to_string(), &text, &st.platform, &rec);
        st.key = key.clone();
        if reused {
            self.cached += 1;
            return Ok((true, rec.created.unwrap_or(self.now)));
        }
        self.executed += 1;
        Ok((false, self.now))
    }

    /// The layer of a `--link` copy keyed `layer_key`: the one recorded
    /// (applied to the stage as a cached layer; `true`), or written now
    /// and recorded under that key too (`false`), sharing the merge table
    /// with the platforms that ask for it at once.
    async fn shared_layer(
        &mut self,
        st: &mut StageState,
        layer_key: &Digest,
        plan: impl FnOnce() -> Result<(Planned, bool)>,
    ) -> Result<(Record, bool)> {
        let text = layer_key.to_string();
        let running = match self.cache.claim(&text).await? {
            Claim::Hit(rec) => {
                if let Some(layer) = &rec.layer {
                    self.push_cached_layer(st, layer);
                }
                return Ok((*rec, true));
            }
            Claim::Run(r) => r,
        };
        let made = self.write_step(st, plan).and_then(|layer| {
            let rec = Record { layer: Some(layer), created: Some(self.now) };
            self.cache.put(&text, &rec).map(|()| rec)
        });
        Running::settle(Some(running), &made);
        Ok((made?, false))
    }

    /// Plans a missed step and writes its layer (BuildKit's empty layer
    /// when it changed nothing), applied to the stage.
    fn write_step(&mut self, st: &mut StageState, plan: impl FnOnce() -> Result<(Planned, bool)>) -> Result<Layer> {
        let (planned, _link) = plan()?;
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
            write_layer(&self.b.store, &tmp, entries.iter().map(|(p, n)| (p.as_str(), n)), self.opts.encoding())?;
        // The stage's tree is what the layer gives, its contents still
        // where they were copied from.
        self.stage_fs(st)?.apply_entries(&entries);
        push_layer(st, layer.clone());
        Ok(layer)
    }

    pub(super) async fn workdir(&mut self, st: &mut StageState, cmd: &Command, p: &str) -> Result<()> {
        let line = cmd.start_line;
        let p = self.expand(st, p, line)?;
        let wd = normalize_workdir(&st.image.config.working_dir, &p);
        st.image.config.working_dir = wd.clone();
        if polyarch_dockerfile::clean(&wd) == "/" {
            self.commit_meta(st, format!("WORKDIR {wd}"));
            return Ok(());
        }
        // The step shows the instruction as written, the history the path.
        let shown = polyarch_frontend::meta::step_text(&self.lex, &cmd.original, &self.env(st), false);
        let step = self.start(self.step_vertex(st, &shown));
        let user = st.image.config.user.clone();
        let target = self.stage_fs(st)?.clone();
        let owner = crate::users::workdir_owner(&target, &user);
        let op = Op::Mkdir(Mkdir {
            input: Some(0),
            path: wd.clone(),
            mode: 0o755,
            parents: true,
            owner: Some(keys::owner(owner)),
            timestamp: None,
        });
        let key = self.layering(st).step(&op, &format!("WORKDIR {wd}"), &[keys::dep(&st.key, None)], &[])?;
        let now = self.now;
        let (cached, ran_at) = self
            .apply_step(st, &key, None, || {
                let mut merged = target.clone();
                let mut changes = MemFs::new();
                copy::mkdir_all(&mut merged, &mut changes, &polyarch_dockerfile::clean(&wd), owner, now);
                Ok((Planned { changes, merged }, false))
            })
            .await?;
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

/// One source group of a COPY or ADD as its key names it: where the
/// files come from and how they are read.
struct Group {
    source: Origin,
    paths: Vec<String>,
    wildcard: bool,
    unpack: bool,
    parents: bool,
}

/// The words of a COPY or ADD that every group shares, resolved.
struct CopyWords<'a> {
    dest: &'a str,
    owner: Option<(u64, u64)>,
    mode: Option<u32>,
    excludes: &'a [String],
}

/// The key of a COPY or ADD: as the frontend makes it, one copy op per
/// source group, each onto the previous result (the first onto the
/// parent, or onto nothing with `--link`, then merged onto the parent),
/// each keyed by the checksum of the changes it planned. With `--link`,
/// also the key of the layer alone (the last copy's own step).
fn copy_key(
    layering: &Layering,
    parent: &Digest,
    groups: &[Group],
    changes: &[MemFs],
    w: &CopyWords<'_>,
    link: bool,
    verb: &str,
) -> Result<(Digest, Option<Digest>)> {
    let mut last: Option<(Op, Vec<DepKey>)> = None;
    for (g, planned) in groups.iter().zip(changes) {
        let onto = match &last {
            Some((op, deps)) => Some(layering.op(op, verb, deps, None)?),
            None if link => None,
            None => Some(parent.clone()),
        };
        let checksum = content_digest(planned)?;
        let mut deps = vec![g.source.dep(&checksum)?];
        deps.extend(onto.as_ref().map(|k| keys::dep(k, None)));
        let op = Op::Copy(CopyOp {
            dest: onto.map(|_| 1),
            owner: w.owner.map(keys::owner),
            mode: w.mode,
            unpack: g.unpack,
            parents: g.parents,
            exclude: w.excludes.to_vec(),
            ..CopyOp::dockerfile(g.paths.clone(), w.dest.to_string(), g.wildcard)
        });
        last = Some((op, deps));
    }
    let Some((mut op, mut deps)) = last else {
        return Err(Error::Option(format!("{verb} without sources")));
    };
    let mut shared = None;
    if link {
        // The copy onto nothing, written as a layer this build's way: its
        // own step, whatever the parent.
        shared = Some(layering.step(&op, verb, &deps, &[])?);
        let layer = layering.op(&op, verb, &deps, None)?;
        op = Op::Merge(Merge { inputs: vec![0, 1] });
        deps = vec![keys::dep(parent, None), keys::dep(&layer, None)];
    }
    Ok((layering.step(&op, verb, &deps, &[])?, shared))
}

/// Plans each source group in turn, each on top of the previous result;
/// also returns the changes of each group.
fn plan_jobs(
    jobs: &[(Arc<MemFs>, CopySpec)],
    base: &MemFs,
    now: i64,
) -> std::result::Result<(Planned, Vec<MemFs>), copy::CopyError> {
    let mut merged = base.clone();
    let mut changes = MemFs::new();
    let mut each = Vec::with_capacity(jobs.len());
    for (src, spec) in jobs {
        let mut spec = spec.clone();
        spec.now = now;
        let p = copy::plan(src, &merged, &spec)?;
        for (k, n) in p.changes.iter() {
            changes.insert(k.clone(), n.clone());
        }
        each.push(p.changes);
        merged = p.merged;
    }
    Ok((Planned { changes, merged }, each))
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
