//! `--check` / `--call=check` (the build checks without building, printed
//! as `buildx build --check` prints them), `--call=targets`, and the
//! warnings printed after a build, as buildx's `printWarnings`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use polyarch_builder::{BuildOptions, Builder};
use polyarch_dockerfile::ignore::PatternMatcher;
use polyarch_dockerfile::lint::{self, Report};

use super::BuildArgs;

/// What `--call` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Build,
    Check,
    Targets,
    Outline,
}

/// `--check` is `--call=check`; `build` is the default; the other
/// methods of buildx are refused by name.
pub(super) fn method(a: &BuildArgs) -> Result<Method> {
    if a.check {
        return Ok(Method::Check);
    }
    let call = a.inputs.print.as_deref().unwrap_or(&a.call);
    let name = call.split(',').next().unwrap_or("").trim();
    match name {
        "" | "build" => Ok(Method::Build),
        "check" | "lint" => Ok(Method::Check),
        "targets" => Ok(Method::Targets),
        "outline" => Ok(Method::Outline),
        "subrequests.describe" => {
            bail!("--call={name} is not supported by polyarch (supported: build, check, outline, targets)")
        }
        other => bail!("invalid --call {other:?}: want build, check, outline or targets"),
    }
}

/// The `.dockerignore` of a directory context, for CopyIgnoredFile.
fn ignore_matcher(a: &BuildArgs) -> Result<Option<PatternMatcher>> {
    if a.context == "-" {
        return Ok(None);
    }
    let root = PathBuf::from(&a.context);
    let df = match &a.file {
        Some(f) if f == "-" => None,
        Some(f) => Some(PathBuf::from(f)),
        None => Some(root.join("Dockerfile")),
    };
    let patterns = polyarch_builder::context::ignore_patterns(&root, df.as_deref())?;
    if patterns.is_empty() {
        return Ok(None);
    }
    Ok(Some(PatternMatcher::new(&patterns)?))
}

/// Runs the checks: on the stages the target needs, or on all of them
/// (`all_stages`, as `--check` without `--target`).
pub(super) fn report(
    rt: &tokio::runtime::Runtime,
    builder: &Builder,
    opts: &BuildOptions,
    a: &BuildArgs,
    all_stages: bool,
) -> Result<Report> {
    let ignore = ignore_matcher(a)?;
    Ok(rt.block_on(builder.check(opts, ignore.as_ref(), all_stages))?)
}

/// `--check`: prints the result on stdout; exits 1 when there are warnings.
pub(super) fn run(rt: &tokio::runtime::Runtime, builder: &Builder, opts: &BuildOptions, a: &BuildArgs) -> Result<u8> {
    let rep = report(rt, builder, opts, a, a.target.as_deref().is_none_or(str::is_empty))?;
    let source = String::from_utf8_lossy(&opts.dockerfile);
    let n = rep.warnings.len();
    if n == 0 {
        crate::outln!("Check complete, no warnings found.")?;
        return Ok(0);
    }
    let count = if n == 1 { "1 warning has been found!".to_string() } else { format!("{n} warnings have been found!") };
    crate::outln!("Check complete, {count}")?;
    crate::out!("{}", lint::render(&rep.warnings, &opts.dockerfile_name, &source))?;
    Ok(1)
}

/// Before a build: `error=true` (directive or `BUILDKIT_DOCKERFILE_CHECK`)
/// with warnings fails it, as BuildKit fails before solving.
pub(super) fn before_build(rep: &Report, progress: &str) -> Result<()> {
    if let Some(e) = rep.error() {
        print_after(rep, progress, None);
        bail!("{e}");
    }
    Ok(())
}

/// After a build: buildx's summary of the warnings on stderr (see
/// [`crate::progress::build::print_warnings`]).
pub(super) fn print_after(rep: &Report, progress: &str, expand: Option<&(String, String)>) {
    crate::progress::build::print_warnings(rep, progress, expand)
}

/// `--call=targets`: the stages with their description comments
/// (`# name text` right above the FROM), the last one the default, in
/// buildx's `TARGET  DESCRIPTION` table.
pub(super) fn targets(dockerfile: &[u8], file: &str) -> Result<u8> {
    use polyarch_dockerfile::instructions::{parse_instruction, Instruction};
    let source = String::from_utf8_lossy(dockerfile);
    let diag = |e: polyarch_dockerfile::Error| anyhow::anyhow!("{}", e.diagnostic(file, &source).render());
    let ast = polyarch_dockerfile::parse(dockerfile).map_err(diag)?;
    let mut rows: Vec<(String, String)> = Vec::new();
    for node in &ast.nodes {
        let Instruction::From(f) = parse_instruction(node).map_err(diag)?.instruction else { continue };
        let name = f.name.unwrap_or_default();
        let prefix = format!("{name} ");
        let desc = if name.is_empty() {
            String::new()
        } else {
            node.prev_comment.iter().find_map(|c| c.strip_prefix(&prefix)).unwrap_or("").to_string()
        };
        rows.push((name, desc));
    }
    if let Some(last) = rows.last_mut() {
        last.0 = if last.0.is_empty() { "(default)".into() } else { format!("{} (default)", last.0) };
    }
    let width = rows.iter().map(|r| r.0.chars().count()).chain(["TARGET".len()]).max().unwrap_or(0) + 1;
    let mut out = format!("{:<width$}DESCRIPTION\n", "TARGET");
    for (name, desc) in rows {
        out.push_str(&format!("{name:<width$}{desc}\n"));
    }
    crate::out!("{out}")?;
    Ok(0)
}

/// The warnings under the `[internal] load build definition` step
/// (`#1 WARN: ...`), as BuildKit's plain progress shows them.
pub(super) fn print_inline(progress: &super::Progress, rep: &Report) {
    if progress.mode != "plain" {
        return;
    }
    for w in &rep.warnings {
        progress.line(&format!("#1 WARN: {}", w.short()));
    }
}
