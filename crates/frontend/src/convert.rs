//! The conversion: the stages the target needs, walked once per target
//! platform into one graph. Each stage's state (its root vertex, config,
//! ARGs in scope) is kept per platform, so a `COPY --from`, a `FROM
//! <stage>` or a mount of a stage reads that platform's state; a stage on
//! the build platform yields the same vertices for every platform, which
//! the graph merges.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;

use polyarch_dockerfile::instructions::{self, Command, Dockerfile, ExpandedFrom, Instruction, PROXY_ARGS};
use polyarch_dockerfile::{Lex, ParseResult};
use polyarch_oci::{Platform, Reference};
use polyarch_solver::op::{ContextSource, ImageSource, Mkdir, Op, Owner, Source as SourceOp};
use polyarch_solver::{Graph, VertexId, VertexSpec};

use crate::config::ImageConfig;
use crate::error::{Error, ErrorKind, Result, Source};
use crate::prefetch::{image_key, Prefetched};
use crate::NamedContext;
use crate::ResolvedImage;
use crate::{BoxError, Options, Plan, PlatformImage, Resolver};
pub(crate) use polyarch_dockerfile::values::normalize_workdir;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The built-in ARGs and expanded FROM lines of one target platform.
pub(crate) struct PlatformCtx {
    pub(crate) target: Platform,
    builtins: HashMap<String, String>,
    pub(crate) froms: Vec<ExpandedFrom>,
    global: HashMap<String, String>,
}

/// A stage's state for one target platform, after some instructions.
#[derive(Debug, Clone)]
pub(crate) struct StageState {
    pub(crate) name: String,
    /// The platform the stage's vertices are for (its `FROM --platform`).
    pub(crate) platform: Platform,
    /// The root file system; `None` while the stage is `scratch`.
    pub(crate) root: Option<VertexId>,
    pub(crate) config: ImageConfig,
    /// ARGs in scope: name and value (unset when `None`).
    pub(crate) args: Vec<(String, Option<String>)>,
    pub(crate) cmd_set: bool,
    index: usize,
    total: usize,
    /// The step being converted is an ONBUILD trigger.
    on_build: bool,
    /// The stage's file-system steps ignore the cache.
    pub(crate) ignore_cache: bool,
}

/// An image resolved for a platform: its source op and config.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    op: Op,
    platform: Platform,
    /// The reference pinned to what it resolved to at the top, which
    /// names the FROM step (as BuildKit's).
    shown: String,
    pub(crate) config: ImageConfig,
}

/// Turns one Dockerfile into a [`Plan`].
pub(crate) struct Converter<'a, R> {
    pub(crate) opts: &'a Options,
    pub(crate) src: Source,
    pub(crate) lex: Lex,
    pub(crate) df: Dockerfile,
    escape: char,
    pub(crate) target: usize,
    pub(crate) resolver: &'a R,
    pub(crate) graph: Graph,
    images: HashMap<String, Image>,
    pub(crate) prefetched: Prefetched,
    stages: HashMap<(usize, String), StageState>,
    context: Option<VertexId>,
    multi: bool,
    /// Proxy build arguments: given to RUN steps outside their cache keys.
    pub(crate) proxy_env: BTreeMap<String, String>,
}

impl<'a, R: Resolver> Converter<'a, R> {
    /// Parses and checks the Dockerfile: syntax, instructions, the target,
    /// `--from` stage indexes and stage cycles.
    pub(crate) fn new(dockerfile: &[u8], name: &str, opts: &'a Options, resolver: &'a R) -> Result<Converter<'a, R>> {
        let src = Source { file: name.to_string(), text: String::from_utf8_lossy(dockerfile).into_owned() };
        let ast: ParseResult = polyarch_dockerfile::parse(dockerfile).map_err(|e| src.dockerfile(e))?;
        let df = instructions::parse(&ast).map_err(|e| src.dockerfile(e))?;
        let target = df.target(opts.target.as_deref()).map_err(|e| src.dockerfile(e))?;
        df.check_sources().map_err(|e| src.dockerfile(e))?;
        df.check_cycles().map_err(|e| src.dockerfile(e))?;
        let proxy_env = opts
            .build_args
            .iter()
            .filter(|(k, _)| PROXY_ARGS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Converter {
            opts,
            src,
            lex: Lex::new(ast.escape),
            escape: ast.escape,
            df,
            target,
            resolver,
            graph: Graph::new(),
            images: HashMap::new(),
            prefetched: Prefetched::new(),
            stages: HashMap::new(),
            context: None,
            multi: false,
            proxy_env,
        })
    }

    /// Converts the target stage for every platform.
    pub(crate) async fn convert(mut self) -> Result<Plan> {
        let targets = self.opts.targets();
        // As BuildKit's `MultiPlatformRequested`: several platforms, or
        // BUILDKIT_MULTI_PLATFORM for one.
        self.multi = targets.len() > 1 || crate::meta::multi_platform_requested(&self.opts.build_args);
        let pcs = targets.iter().map(|t| self.platform_ctx(t)).collect::<Result<Vec<_>>>()?;
        self.prefetch(&pcs).await;
        let order = self.dependency_order();
        let mut images = Vec::new();
        for (t, pc) in targets.into_iter().zip(&pcs) {
            // Dependencies first, so that a long chain of stages is not a
            // deep recursion (only names known after expansion recurse).
            for &i in &order {
                self.stage(i, pc).await?;
            }
            let st = self.stage(self.target, pc).await?;
            let mut config = st.config;
            for (k, v) in &self.opts.labels {
                config.config.labels.insert(k.clone(), v.clone());
            }
            if let Some(v) = st.root {
                self.graph.target(t.clone(), v)?;
            }
            images.push(PlatformImage { platform: t, vertex: st.root, config });
        }
        Ok(Plan { graph: self.graph, images })
    }

    fn platform_ctx(&self, target: &Platform) -> Result<PlatformCtx> {
        let mut builtins = HashMap::new();
        for (prefix, p) in [("TARGET", target.normalize()), ("BUILD", self.opts.build_platform.normalize())] {
            builtins.insert(format!("{prefix}PLATFORM"), p.format());
            builtins.insert(format!("{prefix}OS"), p.os.clone());
            builtins.insert(format!("{prefix}ARCH"), p.architecture.clone());
            builtins.insert(format!("{prefix}VARIANT"), p.variant_str().to_string());
        }
        let build_args: HashMap<String, String> = self.opts.build_args.clone().into_iter().collect();
        let froms = instructions::expand_from(&self.df, self.escape, &build_args, &builtins)
            .map_err(|e| self.src.dockerfile(e))?;
        // The values of the ARGs before the first FROM, for a stage's ARG
        // without a default.
        let mut env = builtins.clone();
        let mut global = HashMap::new();
        for a in &self.df.meta_args {
            let v = match (build_args.get(&a.key), &a.value) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => self.lex.process_word(d, &env).ok(),
                (None, None) => None,
            };
            if let Some(v) = v {
                env.insert(a.key.clone(), v.clone());
                global.insert(a.key.clone(), v);
            }
        }
        Ok(PlatformCtx { target: target.clone(), builtins, froms, global })
    }

    /// The state of stage `i` at its end for `pc`'s platform, converted once.
    pub(crate) fn stage<'s>(&'s mut self, i: usize, pc: &'s PlatformCtx) -> BoxFuture<'s, Result<StageState>> {
        Box::pin(async move {
            let key = (i, pc.target.format());
            if let Some(st) = self.stages.get(&key) {
                return Ok(st.clone());
            }
            let st = self.convert_stage(i, pc).await?;
            self.stages.insert(key, st.clone());
            Ok(st)
        })
    }

    async fn convert_stage(&mut self, i: usize, pc: &PlatformCtx) -> Result<StageState> {
        let stage = self.df.stages[i].clone();
        let line = stage.line;
        let base = pc.froms[i].base.clone();
        let platform = match &pc.froms[i].platform {
            Some(p) => Platform::parse(p)
                .map_err(|e| self.src.error(ErrorKind::Invalid, line, format!("invalid platform {p:?}: {e}"), Some(p)))?
                .normalize(),
            None => pc.target.clone(),
        };
        let name = stage.name.clone().unwrap_or_else(|| format!("stage-{i}"));
        // A named context named like the stage replaces it: the stage is
        // `FROM <context>` with no instructions.
        let replaced = stage.name.as_deref().filter(|n| self.named(n).is_some()).map(String::from);
        let base = replaced.clone().unwrap_or(base);
        let named = if self.base_stage(&base, i).is_none() { self.named(&base).cloned() } else { None };
        let files_named = matches!(named, Some(NamedContext::Files));
        // A named context of files starts, as scratch does, from BuildKit's
        // empty image (its files are the FROM step's vertex, below).
        let (mut st, triggers, image) = if files_named || base.eq_ignore_ascii_case("scratch") {
            (StageState::new(name, platform.clone(), ImageConfig::scratch(&platform)), Vec::new(), None)
        } else if let Some(j) = self.base_stage(&base, i) {
            // As BuildKit's `dispatchState.init`: the child keeps the
            // parent's ARGs and runs its ONBUILD triggers, which do not
            // carry over into the child's config.
            let mut parent = self.stage(j, pc).await?;
            parent.name = name;
            parent.cmd_set = false;
            let triggers = std::mem::take(&mut parent.config.config.on_build);
            (parent, triggers, None)
        } else {
            let img = self.named_image(&base, named.as_ref(), &platform, line).await?;
            let mut config = img.config.clone();
            let triggers = std::mem::take(&mut config.config.on_build);
            (StageState::new(name, platform.clone(), config), triggers, Some(img))
        };
        let mut commands = Vec::new();
        for t in &triggers {
            commands.push(parse_trigger(t, line).map_err(|m| self.src.error(ErrorKind::Dockerfile, line, m, None))?);
        }
        let n_triggers = commands.len();
        if replaced.is_none() {
            commands.extend(stage.commands.iter().cloned());
        }
        st.index = 0;
        // As BuildKit numbers steps: FROM is a step (and a vertex) of a
        // stage on an image, not of one on scratch or on another stage (a
        // stage on a named context of files has one, as the build's).
        st.total = usize::from(image.is_some() || files_named) + commands.iter().filter(|c| is_fs_step(c)).count();
        st.on_build = false;
        st.ignore_cache =
            self.opts.no_cache || self.opts.no_cache_filter.iter().any(|s| s.eq_ignore_ascii_case(&st.name));
        // A named context's FROM is counted as the stage's first step but
        // named as BuildKit names the context's vertex.
        let context_step = |st: &mut StageState, c: &NamedContext| {
            st.index += 1;
            context_step_name(&base, c)
        };
        if files_named {
            let from_name = context_step(&mut st, &NamedContext::Files);
            st.root = Some(self.named_files(&base, from_name)?);
        } else if let Some(img) = image {
            let from_name = match &named {
                Some(c) => context_step(&mut st, c),
                None => self.name_step(&mut st, &format!("FROM {}", img.shown), true),
            };
            st.root = Some(self.image_vertex(&img, from_name, st.ignore_cache)?);
        }
        for (k, cmd) in commands.iter().enumerate() {
            st.on_build = k < n_triggers;
            self.dispatch(&mut st, cmd, pc).await?;
        }
        st.on_build = false;
        Ok(st)
    }

    async fn dispatch(&mut self, st: &mut StageState, cmd: &Command, pc: &PlatformCtx) -> Result<()> {
        match &cmd.instruction {
            Instruction::Run(r) => self.run(st, cmd, r, pc).await,
            Instruction::Copy(c) => self.copy(st, cmd, c, false, pc).await,
            Instruction::Add(c) => self.copy(st, cmd, c, true, pc).await,
            Instruction::Workdir(p) => self.workdir(st, cmd, p),
            Instruction::Arg(defs) => self.arg(st, cmd, defs, pc),
            Instruction::From(_) => Ok(()),
            other => self.meta(st, cmd, other),
        }
    }

    /// The stages the target reaches by name (FROM an earlier stage,
    /// `COPY --from`, `RUN --mount=from`), each after the ones it reads.
    pub(crate) fn dependency_order(&self) -> Vec<usize> {
        let mut state = vec![0u8; self.df.stages.len()];
        let mut out = Vec::new();
        let mut stack = vec![(self.target, false)];
        while let Some((i, done)) = stack.pop() {
            if done {
                if state[i] != 2 {
                    state[i] = 2;
                    out.push(i);
                }
                continue;
            }
            if state[i] != 0 {
                continue;
            }
            state[i] = 1;
            stack.push((i, true));
            stack.extend(self.df.dependencies(i).into_iter().filter(|(j, _)| state[*j] == 0).map(|(j, _)| (j, false)));
        }
        out
    }

    /// The stage a FROM names (by name only), if defined before `before`.
    pub(crate) fn base_stage(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_lowercase();
        self.df.stages[..before].iter().position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    /// The stage a `--from` names (by name or index), if any.
    pub(crate) fn stage_ref(&self, name: &str) -> Option<usize> {
        self.df.stage_index(name)
    }

    /// ARG: each name gets a built-in platform value, a build argument,
    /// its default or a global ARG's value, in that order.
    fn arg(
        &mut self,
        st: &mut StageState,
        cmd: &Command,
        defs: &[instructions::ArgDef],
        pc: &PlatformCtx,
    ) -> Result<()> {
        let mut parts = Vec::new();
        for a in defs {
            let value = if let Some(v) = pc.builtins.get(&a.key).filter(|_| a.value.is_none()) {
                Some(v.clone())
            } else if let Some(v) = self.opts.build_args.get(&a.key) {
                Some(v.clone())
            } else if let Some(d) = &a.value {
                Some(self.expand(st, d, cmd.start_line)?)
            } else {
                pc.global.get(&a.key).cloned()
            };
            parts.push(match &value {
                Some(v) => format!("{}={v}", a.key),
                None => a.key.clone(),
            });
            crate::meta::declare_arg(&mut st.args, &a.key, value);
        }
        st.config.commit(format!("ARG {}", parts.join(" ")), false);
        Ok(())
    }

    /// WORKDIR: the config's directory, made (with parents, owned by the
    /// USER) unless it is `/`.
    fn workdir(&mut self, st: &mut StageState, cmd: &Command, p: &str) -> Result<()> {
        let p = self.expand(st, p, cmd.start_line)?;
        let wd = normalize_workdir(&st.config.config.working_dir, &p);
        st.config.config.working_dir = wd.clone();
        let text = format!("WORKDIR {wd}");
        if polyarch_dockerfile::clean(&wd) == "/" {
            st.config.commit(text, false);
            return Ok(());
        }
        // The step shows the instruction as written, the history the path.
        let shown = self.display(st, &cmd.original, false);
        let user = st.config.config.user.clone();
        let owner = (!user.is_empty()).then(|| parse_owner(&user));
        let op = Op::Mkdir(Mkdir {
            input: st.root.map(|_| 0),
            path: wd,
            mode: 0o755,
            parents: true,
            owner,
            timestamp: self.opts.source_date_epoch,
        });
        let name = self.step_name(st, &shown);
        let v = self.add(st, op, st.root.into_iter().collect(), name)?;
        st.root = Some(v);
        st.config.commit(text, true);
        Ok(())
    }

    /// Adds a vertex of the stage's platform.
    pub(crate) fn add(&mut self, st: &StageState, op: Op, inputs: Vec<VertexId>, name: String) -> Result<VertexId> {
        let spec = VertexSpec::new(op, st.platform.clone())
            .with_inputs(inputs)
            .with_name(name)
            .with_ignore_cache(st.ignore_cache);
        Ok(self.graph.add(spec)?)
    }

    /// The stage's root, or an empty tree for a stage still `scratch`.
    pub(crate) fn root_or_empty(&mut self, st: &StageState) -> Result<VertexId> {
        match st.root {
            Some(v) => Ok(v),
            None => self.empty_tree(&st.platform),
        }
    }

    /// An empty tree: `/` made in nothing.
    pub(crate) fn empty_tree(&mut self, platform: &Platform) -> Result<VertexId> {
        let op = Op::Mkdir(Mkdir { input: None, path: "/".into(), mode: 0o755, parents: true, ..Mkdir::default() });
        let spec = VertexSpec::new(op, platform.clone()).with_name("[internal] scratch");
        Ok(self.graph.add(spec)?)
    }

    /// The build context, one vertex for every platform.
    pub(crate) fn context(&mut self) -> Result<VertexId> {
        if let Some(v) = self.context {
            return Ok(v);
        }
        let v = self.graph.add(context_spec(self.opts))?;
        self.context = Some(v);
        Ok(v)
    }

    /// The named context `name` is known by, if the build has one.
    pub(crate) fn named(&self, name: &str) -> Option<&NamedContext> {
        if self.opts.named_contexts.is_empty() {
            return None;
        }
        self.opts.named_contexts.get(&crate::context_name(name).ok()?)
    }

    /// The files of named context `name`: one source for every platform.
    fn named_files(&mut self, name: &str, shown: String) -> Result<VertexId> {
        Ok(self.graph.add(named_files_spec(self.opts, name, shown))?)
    }

    /// The image `name` names for `platform`, resolved once per plan.
    pub(crate) async fn image(&mut self, name: &str, platform: &Platform, line: usize) -> Result<Image> {
        let reference = Reference::parse_normalized(name)
            .map_err(|e| self.src.error(ErrorKind::Invalid, line, e.to_string(), Some(name)))?
            .with_default_tag();
        let key = image_key(&reference, platform);
        if let Some(img) = self.images.get(&key) {
            return Ok(img.clone());
        }
        let answer = match self.prefetched.remove(&key) {
            Some(answer) => answer.map_err(BoxError::from),
            None => self.resolver.resolve(&reference, platform).await,
        };
        let answer = answer.map_err(|cause| {
            let message = format!("failed to resolve source metadata for {reference}: {cause}");
            let diagnostic = self.src.diagnostic(line, message, Some(name));
            Error::Resolve { reference: reference.to_string(), platform: platform.format(), diagnostic, cause }
        })?;
        let img = self.resolved(reference, platform, answer)?;
        self.images.insert(key, img.clone());
        Ok(img)
    }

    /// The image `name` stands for: its named context's (`named`) or the
    /// image of that name.
    async fn named_image(
        &mut self,
        name: &str,
        named: Option<&NamedContext>,
        platform: &Platform,
        line: usize,
    ) -> Result<Image> {
        match named {
            Some(NamedContext::Image(r)) => self.image(r, platform, line).await,
            Some(NamedContext::Layout(layout)) => {
                let key = format!("{layout}|{}", platform.format());
                if let Some(img) = self.images.get(&key) {
                    return Ok(img.clone());
                }
                let answer = self.resolver.resolve_layout(layout, platform).await.map_err(|cause| {
                    let message = format!("failed to resolve source metadata for {layout}: {cause}");
                    let diagnostic = self.src.diagnostic(line, message, Some(name));
                    Error::Resolve { reference: layout.to_string(), platform: platform.format(), diagnostic, cause }
                })?;
                let reference = answer.pinned.trimmed();
                let img = self.resolved(reference, platform, answer)?;
                self.images.insert(key, img.clone());
                Ok(img)
            }
            Some(NamedContext::Files) | None => self.image(name, platform, line).await,
        }
    }

    /// The image of `reference` as the resolver answered for `platform`.
    fn resolved(&self, reference: Reference, platform: &Platform, answer: ResolvedImage) -> Result<Image> {
        let ResolvedImage { pinned, top, config } = answer;
        let Some(digest) = pinned.digest.clone() else {
            return Err(Error::Unpinned { reference: pinned.to_string(), platform: platform.format() });
        };
        let config = ImageConfig::from_base(&config)
            .map_err(|source| Error::Config { reference: pinned.to_string(), source })?;
        let pinned = reference.with_digest(digest.clone());
        let op = Op::Source(SourceOp::Image(ImageSource { reference: reference.to_string(), resolved: Some(digest) }));
        let shown = match top.digest {
            Some(d) => reference.with_digest(d).to_string(),
            None => pinned.to_string(),
        };
        Ok(Image { op, platform: platform.clone(), shown, config })
    }

    /// The source vertex of `img`, named `name` (merged with earlier uses).
    pub(crate) fn image_vertex(&mut self, img: &Image, name: String, ignore_cache: bool) -> Result<VertexId> {
        let spec =
            VertexSpec::new(img.op.clone(), img.platform.clone()).with_name(name).with_ignore_cache(ignore_cache);
        Ok(self.graph.add(spec)?)
    }

    /// The vertex a `from=`/`--from` names: a stage's root for this
    /// platform, or an image for the stage's platform.
    pub(crate) async fn named_source(
        &mut self,
        st: &StageState,
        from: &str,
        line: usize,
        pc: &PlatformCtx,
    ) -> Result<VertexId> {
        if let Some(j) = self.stage_ref(from) {
            let other = self.stage(j, pc).await?;
            return self.root_or_empty(&other);
        }
        let named = self.named(from).cloned();
        if let Some(c @ NamedContext::Files) = &named {
            return self.named_files(from, context_step_name(from, c));
        }
        let img = self.named_image(from, named.as_ref(), &st.platform, line).await?;
        let name = match &named {
            Some(c) => context_step_name(from, c),
            // BuildKit's implicit stage of the image has no steps to count:
            // `prefixCommand` leaves its name bare, platform and all.
            None => format!("FROM {}", img.shown),
        };
        self.image_vertex(&img, name, st.ignore_cache)
    }

    /// Variables visible to expansion: ARGs, then ENV over them.
    pub(crate) fn env(&self, st: &StageState) -> HashMap<String, String> {
        crate::meta::variables(&st.args, &st.config.config.env)
    }

    /// Expands a word with the stage's variables.
    pub(crate) fn expand(&self, st: &StageState, word: &str, line: usize) -> Result<String> {
        self.lex
            .process_word(word, &self.env(st))
            .map_err(|e| self.src.error(ErrorKind::Dockerfile, line, e.to_string(), None))
    }

    /// Expands an optional word.
    pub(crate) fn expand_opt(&self, st: &StageState, word: &Option<String>, line: usize) -> Result<Option<String>> {
        word.as_ref().map(|w| self.expand(st, w, line)).transpose()
    }

    /// Expands `$VAR` forms of here-document text, keeping quotes, as
    /// BuildKit expands it with `SkipProcessQuotes`.
    pub(crate) fn expand_text(&self, st: &StageState, text: &str, line: usize) -> Result<String> {
        let env = self.env(st);
        let mut out = Vec::new();
        for part in text.split('\n') {
            let escaped: String = part
                .chars()
                .flat_map(|c| match c {
                    '\'' | '"' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            out.push(
                self.lex
                    .process_word(&escaped, &env)
                    .map_err(|e| self.src.error(ErrorKind::Dockerfile, line, e.to_string(), None))?,
            );
        }
        Ok(out.join("\n"))
    }

    /// An instruction as progress shows it ([`crate::meta::step_text`]):
    /// a RUN's text as written (`raw`), a COPY's, ADD's or WORKDIR's words
    /// processed.
    pub(crate) fn display(&self, st: &StageState, text: &str, raw: bool) -> String {
        crate::meta::step_text(&self.lex, text, &self.env(st), raw)
    }

    /// `linux/amd64 ` (with `->arm64` when the stage's TARGETPLATFORM ARG
    /// differs), as BuildKit prefixes names in a multi-platform build.
    /// The platform label and a space in a multi-platform build (see
    /// [`crate::label`]): the stage's platform, then `->ARCH` for a target
    /// the step's environment names, unless `bare` (a FROM's, whose
    /// environment is empty).
    fn platform_prefix(&self, st: &StageState, bare: bool) -> String {
        if !self.multi {
            return String::new();
        }
        let target = match bare {
            true => None,
            false => crate::label::target_from_env(&self.env(st)),
        };
        format!("{} ", crate::label::label(&st.platform, target.as_ref()))
    }

    /// The next step's name: `[linux/arm64 build 2/3] RUN make`.
    pub(crate) fn step_name(&self, st: &mut StageState, text: &str) -> String {
        self.name_step(st, text, false)
    }

    /// [`Converter::step_name`], with the bare platform label of a FROM
    /// when `bare`.
    fn name_step(&self, st: &mut StageState, text: &str, bare: bool) -> String {
        st.index += 1;
        let width = st.total.to_string().len();
        let onbuild = if st.on_build { "ONBUILD " } else { "" };
        let prefix = self.platform_prefix(st, bare);
        // A build of one stage names its steps without it, as BuildKit.
        let stage = if self.df.names_stages() { format!("{} ", st.name) } else { String::new() };
        format!("[{prefix}{stage}{:>width$}/{}] {onbuild}{text}", st.index, st.total)
    }
}

/// The build context's vertex: one source for every platform.
fn context_spec(opts: &Options) -> VertexSpec {
    let op = Op::Source(SourceOp::Context(ContextSource {
        name: "context".into(),
        include: Vec::new(),
        exclude: opts.context_excludes.clone(),
    }));
    VertexSpec::new(op, opts.build_platform.normalize())
        .with_name("[internal] load build context")
        .with_ignore_cache(opts.no_cache)
}

/// The vertex of the files of named context `name`, shown as `shown`.
fn named_files_spec(opts: &Options, name: &str, shown: String) -> VertexSpec {
    let key = crate::context_name(name).unwrap_or_else(|_| name.to_string());
    let op = Op::Source(SourceOp::Context(ContextSource { name: key, include: Vec::new(), exclude: Vec::new() }));
    VertexSpec::new(op, opts.build_platform.normalize()).with_name(shown).with_ignore_cache(opts.no_cache)
}

/// The vertices of the contexts the client sends (the build context and
/// every named context of files), as the plan has them, whatever the
/// Dockerfile reads: they need no Dockerfile and no base image.
pub(crate) fn context_vertices(opts: &Options) -> Result<Graph> {
    let mut graph = Graph::new();
    graph.add(context_spec(opts))?;
    for (name, c) in &opts.named_contexts {
        if let NamedContext::Files = c {
            graph.add(named_files_spec(opts, name, context_step_name(name, c)))?;
        }
    }
    Ok(graph)
}

/// The name of the vertex that loads named context `name`, as BuildKit's
/// `dockerui` names it: `[context base] busybox:latest` (the
/// `docker-image://` reference as given), `[context base] OCI load from
/// client`, `[context base] load from client`; the context by its
/// familiar name.
fn context_step_name(name: &str, context: &NamedContext) -> String {
    let shown = crate::context_name(name).unwrap_or_else(|_| name.to_string());
    let text = match context {
        NamedContext::Image(r) => r.as_str(),
        NamedContext::Layout(_) => "OCI load from client",
        NamedContext::Files => "load from client",
    };
    format!("[context {shown}] {text}")
}

impl StageState {
    fn new(name: String, platform: Platform, config: ImageConfig) -> StageState {
        StageState {
            name,
            platform,
            root: None,
            config,
            args: Vec::new(),
            cmd_set: false,
            index: 0,
            total: 1,
            on_build: false,
            ignore_cache: false,
        }
    }
}

/// Instructions that make a vertex (and count in a step's `k/n`).
fn is_fs_step(c: &Command) -> bool {
    matches!(c.instruction, Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_) | Instruction::Run(_))
}

/// Parses an ONBUILD trigger as one instruction located at the FROM line.
fn parse_trigger(text: &str, line: usize) -> std::result::Result<Command, String> {
    let ast = polyarch_dockerfile::parse(text.as_bytes()).map_err(|e| format!("ONBUILD {text}: {e}"))?;
    if ast.nodes.len() != 1 {
        return Err(format!("ONBUILD {text}: an onbuild trigger should be a single expression"));
    }
    let mut cmd = instructions::parse_instruction(&ast.nodes[0]).map_err(|e| format!("ONBUILD {text}: {e}"))?;
    cmd.start_line = line;
    cmd.end_line = line;
    Ok(cmd)
}

/// `user[:group]` as an owner: numbers are ids, anything else names.
pub(crate) fn parse_owner(spec: &str) -> Owner {
    use polyarch_solver::op::Id;
    let id = |s: &str| s.parse::<u32>().map(Id::Id).unwrap_or_else(|_| Id::Name(s.to_string()));
    match spec.split_once(':') {
        Some((u, g)) => Owner { user: id(u), group: Some(id(g)) },
        None => Owner { user: id(spec), group: None },
    }
}
