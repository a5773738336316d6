//! Build checks of a build's Dockerfile (`--check`, and the warnings of a
//! build): BuildKit's linter, with the variables of the base images
//! resolved so that UndefinedVar knows them.

use std::collections::HashMap;

use polyarch_dockerfile::ignore::PatternMatcher;
use polyarch_dockerfile::instructions;
use polyarch_dockerfile::lint::{self, Config, Options, Report};
use polyarch_oci::{Platform, Reference};

use crate::base::{self, ResolveMode};
use crate::dispatch::{builtin_args, Builder};
use crate::error::{Error, ErrorKind, Result};
use crate::BuildOptions;

/// The build argument that replaces the `# check=` directive.
pub const CHECK_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

impl Builder {
    /// Runs the build checks on `opts`' Dockerfile without building; base
    /// images are resolved (from the store when they are there) for their
    /// variables. `ignore` holds the context's `.dockerignore`, for
    /// CopyIgnoredFile. Instructions are checked in the stages a build of
    /// the target needs, or in all of them when `all_stages` (BuildKit's
    /// `--check` without `--target`).
    pub async fn check(
        &self,
        opts: &BuildOptions,
        ignore: Option<&PatternMatcher>,
        all_stages: bool,
    ) -> Result<Report> {
        let source = String::from_utf8_lossy(&opts.dockerfile).into_owned();
        let df_err = |e: polyarch_dockerfile::Error| Error::At {
            kind: ErrorKind::Dockerfile,
            diagnostic: Box::new(e.diagnostic(&opts.dockerfile_name, &source)),
        };
        let ast = polyarch_dockerfile::parse(&opts.dockerfile).map_err(df_err)?;
        let df = instructions::parse(&ast).map_err(df_err)?;
        let builtins = builtin_args(&opts.platform);
        let build_args: HashMap<String, String> = opts.build_args.clone().into_iter().collect();
        let froms = instructions::expand_from(&df, ast.escape, &build_args, &builtins).map_err(df_err)?;
        let stages =
            if all_stages { None } else { Some(reachable(&df, df.target(opts.target.as_deref()).map_err(df_err)?)) };
        // Only the images of the stages checked are resolved.
        let envs = futures_util::future::join_all(froms.iter().enumerate().map(|(i, f)| {
            let is_stage = df.stages[..i].iter().any(|s| s.name.as_deref() == Some(f.base.to_lowercase().as_str()));
            // A named context stands for the image, or for the whole stage.
            let named = opts.named_contexts.get(&f.base).is_some()
                || df.stages[i].name.as_deref().is_some_and(|n| opts.named_contexts.get(n).is_some());
            let skip = is_stage || named || stages.as_ref().is_some_and(|s| !s.contains(&i));
            let platform = match &f.platform {
                Some(p) => Platform::parse(p).ok(),
                None => Some(opts.platform.clone()),
            };
            self.base_image(&f.base, platform, skip)
        }))
        .await;
        let (envs, platforms): (Vec<_>, Vec<_>) = envs.into_iter().unzip();
        let config = match build_args.get(CHECK_ARG) {
            Some(v) => {
                Some(Config::parse(v).map_err(|e| Error::Option(format!("failed to parse check options: {e}")))?)
            }
            None => None,
        };
        let stages =
            if all_stages { None } else { Some(reachable(&df, df.target(opts.target.as_deref()).map_err(df_err)?)) };
        let base_env = |i: usize| envs.get(i).cloned().flatten();
        let base_platform = |i: usize| platforms.get(i).cloned().flatten();
        let lint_opts = Options {
            build_args,
            builtins,
            base_env: Some(&base_env),
            base_platform: Some(&base_platform),
            ignore,
            config,
            stages,
        };
        lint::lint(&ast, &lint_opts).map_err(df_err)
    }

    /// The environment of a registry image a stage starts from (`None`
    /// for scratch, a stage, a stage not checked, or an image that cannot
    /// be resolved: without a registry client only stored images are),
    /// and, when the image's platform is not the one asked for, the image
    /// and both platforms (BuildKit's InvalidBaseImagePlatform).
    async fn base_image(&self, name: &str, platform: Option<Platform>, skip: bool) -> (Option<Vec<String>>, Mismatch) {
        if skip || name.eq_ignore_ascii_case("scratch") {
            return (None, None);
        }
        let (Ok(reference), Some(platform)) = (Reference::parse_normalized(name), platform) else {
            return (None, None);
        };
        let reference = reference.with_default_tag();
        let mode = ResolveMode::PreferLocal;
        let Ok(img) = base::resolve_metadata(self.client(), self.store(), &reference, &platform, mode).await else {
            return (None, None);
        };
        // As BuildKit's validateBaseImagePlatform: OS and architecture
        // count, not the variant; both shown normalized (`FormatAll`).
        let (want, actual) = (platform.normalize(), img.image.platform.normalize());
        let mismatch = (want.os != actual.os || want.architecture != actual.architecture)
            .then(|| (name.to_string(), want.format_all(), actual.format_all()));
        (Some(img.image.config.env), mismatch)
    }
}

/// A base image of another platform: the image, expected and actual.
type Mismatch = Option<(String, String, String)>;

/// The stages a build of `target` dispatches: it and, transitively, the
/// stages it is based on or copies from.
fn reachable(df: &instructions::Dockerfile, target: usize) -> Vec<usize> {
    let mut seen = vec![target];
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        for (j, _) in df.dependencies(i) {
            if !seen.contains(&j) {
                seen.push(j);
                todo.push(j);
            }
        }
    }
    seen
}
