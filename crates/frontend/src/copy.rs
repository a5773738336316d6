//! COPY and ADD: copy vertices from the context, a stage, an image, a
//! here-document, a URL (an http source) or a git repository onto the
//! stage's root, or with `--link` onto nothing and then merged over it, as
//! BuildKit's `dispatchCopy`.

use polyarch_dockerfile::gitref::GitRef;
use polyarch_dockerfile::instructions::{self, Command};
use polyarch_oci::Digest;
use polyarch_solver::op::{Copy, GitSource, HttpSource, Merge, Mkfile, Op, Owner, Source};
use polyarch_solver::{VertexId, VertexSpec};

use crate::convert::{parse_owner, Converter, PlatformCtx, StageState};
use crate::error::{ErrorKind, Result};
use crate::Resolver;
use polyarch_dockerfile::values::{dest_path, is_url, url_file_name};

/// One source input of a COPY and the paths taken from it.
struct Group {
    source: VertexId,
    paths: Vec<String>,
    /// Paths may hold wildcards (not for a download).
    wildcard: bool,
    /// Archives are unpacked (ADD of local files, or `--unpack`).
    unpack: bool,
}

/// The expanded words of a COPY or ADD.
struct Words {
    sources: Vec<String>,
    dest: String,
    /// The destination as written, expanded (for the history text).
    dest_text: String,
    /// `--chown` and `--chmod` as written, expanded.
    chown_text: Option<String>,
    chmod_text: Option<String>,
    excludes: Vec<String>,
    owner: Option<Owner>,
    mode: Option<u32>,
    checksum: Option<Digest>,
    /// `--checksum` of a Git source: a commit id or a prefix of one.
    git_checksum: Option<String>,
}

impl<R: Resolver> Converter<'_, R> {
    pub(crate) async fn copy(
        &mut self,
        st: &mut StageState,
        cmd: &Command,
        c: &instructions::Copy,
        add: bool,
        pc: &PlatformCtx,
    ) -> Result<()> {
        let line = cmd.start_line;
        let w = self.words(st, c, add, line)?;
        let groups = self.groups(st, c, add, &w, line, pc).await?;
        let verb = if add { "ADD" } else { "COPY" };
        let rest = cmd.original.trim().split_once(' ').map_or("", |x| x.1).trim();
        let shown = self.display(st, &format!("{verb} {rest}"), false);
        let name = self.step_name(st, &shown);
        let mut cur = if c.link { None } else { st.root };
        for g in groups {
            let mut inputs = vec![g.source];
            let dest = cur.map(|v| {
                inputs.push(v);
                1
            });
            let op = Op::Copy(Copy {
                dest,
                owner: w.owner.clone(),
                mode: w.mode,
                unpack: g.unpack,
                parents: c.parents,
                exclude: w.excludes.clone(),
                timestamp: self.opts.source_date_epoch,
                ..Copy::dockerfile(g.paths, w.dest.clone(), g.wildcard)
            });
            cur = Some(self.add(st, op, inputs, name.clone())?);
        }
        if let (true, Some(base), Some(layer)) = (c.link, st.root, cur) {
            let op = Op::Merge(Merge { inputs: vec![0, 1] });
            cur = Some(self.add(st, op, vec![base, layer], name)?);
        }
        st.root = cur.or(st.root);
        let history = copy_history(verb, c, w.chown_text.as_deref(), w.chmod_text.as_deref(), &w.sources, &w.dest_text);
        st.config.commit(history, true);
        Ok(())
    }

    /// The inputs a COPY or ADD reads, in the order BuildKit chains its
    /// copy actions: local (or `--from`) paths, downloads, repositories,
    /// here-documents.
    async fn groups(
        &mut self,
        st: &StageState,
        c: &instructions::Copy,
        add: bool,
        w: &Words,
        line: usize,
        pc: &PlatformCtx,
    ) -> Result<Vec<Group>> {
        let mut groups = Vec::new();
        let (gits, rest): (Vec<&String>, Vec<&String>) = w.sources.iter().partition(|s| add && GitRef::is_git(s));
        let (urls, local): (Vec<&String>, Vec<&String>) = rest.into_iter().partition(|s| add && is_url(s));
        if !local.is_empty() {
            let source = match &c.from {
                Some(f) => self.named_source(st, f, line, pc).await?,
                None => self.context()?,
            };
            let paths = local.iter().map(|s| format!("/{}", polyarch_dockerfile::clean(s).trim_start_matches('/')));
            let unpack = add && c.unpack != Some(false);
            groups.push(Group { source, paths: paths.collect(), wildcard: true, unpack });
        }
        for u in urls {
            groups.push(self.download(st, u, w.checksum.clone(), c.unpack == Some(true))?);
        }
        for g in gits {
            groups.push(self.git(st, g, c.keep_git_dir, w.git_checksum.as_deref(), line).await?);
        }
        for f in &c.contents {
            let data = if f.expand { self.expand_text(st, &f.data, line)? } else { f.data.clone() };
            let path = format!("/{}", f.name);
            let mode = w.mode.unwrap_or(0o644);
            let op = Op::Mkfile(Mkfile {
                input: None,
                path: path.clone(),
                data: data.into_bytes(),
                mode,
                ..Mkfile::default()
            });
            let spec = VertexSpec::new(op, st.platform.clone()).with_name("[internal] preparing inline document");
            let source = self.graph.add(spec)?;
            groups.push(Group { source, paths: vec![path], wildcard: false, unpack: false });
        }
        Ok(groups)
    }

    /// An http source for `url`: one file, named as BuildKit names it.
    fn download(&mut self, st: &StageState, url: &str, checksum: Option<Digest>, unpack: bool) -> Result<Group> {
        let filename = url_file_name(url);
        let op = Op::Source(Source::Http(HttpSource {
            url: url.to_string(),
            checksum,
            filename: Some(filename.clone()),
            mode: 0o600,
            ..HttpSource::default()
        }));
        let spec = VertexSpec::new(op, st.platform.clone()).with_name(format!("[internal] download {url}"));
        let source = self.graph.add(spec.with_ignore_cache(st.ignore_cache))?;
        Ok(Group { source, paths: vec![format!("/{filename}")], wildcard: false, unpack })
    }

    /// A git source for `spec` (as `polyarch_dockerfile::gitref` reads
    /// one), pinned to the commit the resolver gives; its whole tree is
    /// copied. The flags and the reference's query must agree, as in
    /// BuildKit's frontend.
    async fn git(
        &mut self,
        st: &StageState,
        spec: &str,
        keep_git_dir: bool,
        checksum: Option<&str>,
        line: usize,
    ) -> Result<Group> {
        let invalid = |msg: String| self.src.error(ErrorKind::Invalid, line, msg, Some(spec));
        let g = match GitRef::parse(spec).and_then(|g| g.map(|g| g.with_flags(checksum, keep_git_dir)).transpose()) {
            Ok(Some(g)) => g,
            Ok(None) => return Err(invalid(format!("not a Git repository: {spec}"))),
            Err(e) => return Err(invalid(e)),
        };
        let reference = g.reference.clone().unwrap_or_default();
        // With fetch-by-commit the checksum is the commit: nothing to resolve.
        let pinned = g.checksum.clone().filter(|c| g.fetch_by_commit && c.len() >= 40);
        let commit = match pinned {
            Some(c) => Some(c),
            None => self.resolver.resolve_git(&g.remote, &reference).await.map_err(|e| {
                let msg = format!("failed to resolve git {}#{reference}: {e}", g.remote);
                self.src.error(ErrorKind::Resolve, line, msg, Some(spec))
            })?,
        };
        let op = Op::Source(Source::Git(git_source(&g, commit)));
        let vspec = VertexSpec::new(op, st.platform.clone()).with_name(format!("[internal] git {spec}"));
        let source = self.graph.add(vspec.with_ignore_cache(st.ignore_cache))?;
        Ok(Group { source, paths: vec!["/".into()], wildcard: false, unpack: false })
    }

    /// Expands and checks the words of a COPY or ADD.
    fn words(&self, st: &StageState, c: &instructions::Copy, add: bool, line: usize) -> Result<Words> {
        let err = |msg: String, token: Option<&str>| self.src.error(ErrorKind::Invalid, line, msg, token);
        let sources = c.sources.iter().map(|s| self.expand(st, s, line)).collect::<Result<Vec<_>>>()?;
        let excludes = c.excludes.iter().map(|s| self.expand(st, s, line)).collect::<Result<Vec<_>>>()?;
        let dest_text = self.expand(st, &c.dest, line)?;
        let dest = dest_path(&st.config.config.working_dir, &dest_text);
        if sources.len() + c.contents.len() > 1 && !dest.ends_with('/') {
            let msg =
                "When using COPY with more than one source file, the destination must be a directory and end with a /";
            return Err(err(msg.into(), None));
        }
        if let Some(u) = sources.iter().find(|s| !add && is_url(s)) {
            return Err(err("source can't be a URL for COPY".into(), Some(u)));
        }
        let chmod_text = self.expand_opt(st, &c.chmod, line)?;
        let mode = match chmod_text.clone() {
            Some(m) => Some(u32::from_str_radix(&m, 8).ok().filter(|v| *v <= 0o7777).ok_or_else(|| {
                err(
                    format!("invalid chmod parameter: '{m}'. it should be octal string and between 0 and 07777"),
                    Some(&m),
                )
            })?),
            None => None,
        };
        let chown_text = self.expand_opt(st, &c.chown, line)?;
        let owner = chown_text.as_deref().filter(|o| !o.is_empty()).map(parse_owner);
        let (mut checksum, mut git_checksum) = (None, None);
        if let Some(s) = self.expand_opt(st, &c.checksum, line)? {
            if sources.len() != 1 {
                return Err(err("checksum can't be specified for multiple sources".into(), None));
            }
            if add && GitRef::is_git(&sources[0]) {
                git_checksum = Some(s);
            } else if is_url(&sources[0]) {
                checksum =
                    Some(s.parse::<Digest>().map_err(|e| err(format!("invalid checksum {s:?}: {e}"), Some(&s)))?);
            } else {
                return Err(err("checksum requires HTTP(S) or Git sources".into(), None));
            }
        }
        Ok(Words { sources, dest, dest_text, chown_text, chmod_text, excludes, owner, mode, checksum, git_checksum })
    }
}

/// A COPY or ADD's history text, as BuildKit's `dispatchCopy` writes it:
/// the verb, then `--parents`, `--chown=` and `--chmod=` as given
/// (expanded; left out when empty), the sources, `<<NAME` for each of
/// `c`'s here-documents and the destination as written (expanded, not
/// resolved against WORKDIR). `--from`, `--link` and `--exclude` are not in it.
pub fn copy_history(
    verb: &str,
    c: &instructions::Copy,
    chown: Option<&str>,
    chmod: Option<&str>,
    sources: &[String],
    dest: &str,
) -> String {
    let mut out = String::from(verb);
    if c.parents {
        out.push_str(" --parents");
    }
    if let Some(o) = chown.filter(|o| !o.is_empty()) {
        out.push_str(&format!(" --chown={o}"));
    }
    if let Some(m) = chmod.filter(|m| !m.is_empty()) {
        out.push_str(&format!(" --chmod={m}"));
    }
    for s in sources {
        out.push(' ');
        out.push_str(s);
    }
    for f in &c.contents {
        out.push_str(" <<");
        out.push_str(&f.name);
    }
    out.push(' ');
    out.push_str(dest);
    out.push_str(" # buildkit");
    out
}

/// The solver's git source of `g` (flags merged, see
/// [`GitRef::with_flags`]) checked out at `commit`: one mapping for the
/// plan and the build, so both key a repository alike.
pub fn git_source(g: &GitRef, commit: Option<String>) -> GitSource {
    GitSource {
        remote: g.remote.clone(),
        reference: g.reference.clone().unwrap_or_default(),
        commit,
        subdir: g.subdir.clone().unwrap_or_default(),
        keep_git_dir: g.keep_git_dir == Some(true),
        skip_submodules: g.submodules == Some(false),
        mtime_commit: g.mtime_commit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_gits_and_destinations() {
        assert_eq!(url_file_name("https://example.com/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(url_file_name("https://example.com"), "__unnamed__");
        assert_eq!(url_file_name("https://example.com/dir/"), "dir");
        assert_eq!(dest_path("/", "app"), "/app");
        assert_eq!(dest_path("/w", "app/"), "/w/app/");
        assert_eq!(dest_path("/w", "."), "/w/");
        assert_eq!(dest_path("", "/x/../y"), "/y");
    }

    #[test]
    fn history_texts_as_dispatch_copy() {
        let copy_of = |df: &str| {
            let ast = polyarch_dockerfile::parse(df.as_bytes()).unwrap();
            let df = instructions::parse(&ast).unwrap();
            match &df.stages[0].commands[0].instruction {
                instructions::Instruction::Copy(c) | instructions::Instruction::Add(c) => c.clone(),
                other => panic!("{other:?}"),
            }
        };
        let c = copy_of("FROM scratch\nCOPY --parents a b/ <<EOT ./d/\nx\nEOT\n");
        let src = ["a".to_string(), "b/".to_string()];
        let h = copy_history("COPY", &c, Some("1:2"), Some("640"), &src, "./d/");
        assert_eq!(h, "COPY --parents --chown=1:2 --chmod=640 a b/ <<EOT ./d/ # buildkit");
        let c = copy_of("FROM scratch\nADD a /x\n");
        assert_eq!(copy_history("ADD", &c, Some(""), None, &src[..1], "/x"), "ADD a /x # buildkit");
    }
}
