//! Base images are resolved all at once before the stages are walked, as
//! the builder prefetches them: every image a stage the target reaches
//! names (its FROM, `COPY --from`, `RUN --mount=from`) for each platform,
//! so that a plan of six platforms waits for one round of registry
//! requests, not six in a row. Names only known after expansion are
//! resolved when the walk meets them.

use std::collections::HashMap;

use polyarch_dockerfile::instructions::Instruction;
use polyarch_oci::{Platform, Reference};

use crate::convert::{Converter, PlatformCtx};
use crate::{ResolvedImage, Resolver};

/// What a resolver answered, by `reference|platform`; a failure as its text.
pub(crate) type Prefetched = HashMap<String, Result<ResolvedImage, String>>;

impl<R: Resolver> Converter<'_, R> {
    /// Resolves the images of the stages the target reaches for every
    /// platform of `pcs`, concurrently.
    pub(crate) async fn prefetch(&mut self, pcs: &[PlatformCtx]) {
        let mut wanted: Vec<(String, Reference, Platform)> = Vec::new();
        let stages = self.dependency_order();
        for pc in pcs {
            for &i in &stages {
                let platform = match &pc.froms[i].platform {
                    Some(p) => match Platform::parse(p) {
                        Ok(p) => p.normalize(),
                        Err(_) => continue,
                    },
                    None => pc.target.clone(),
                };
                for name in self.images_named(i, &pc.froms[i].base) {
                    let Ok(r) = Reference::parse_normalized(&name).map(|r| r.with_default_tag()) else { continue };
                    let key = image_key(&r, &platform);
                    if !wanted.iter().any(|w| w.0 == key) && !self.prefetched.contains_key(&key) {
                        wanted.push((key, r, platform.clone()));
                    }
                }
            }
        }
        let resolver = self.resolver;
        let answers = futures_util::future::join_all(wanted.iter().map(|(_, r, p)| resolver.resolve(r, p))).await;
        for ((key, ..), answer) in wanted.into_iter().zip(answers) {
            self.prefetched.insert(key, answer.map_err(|e| e.to_string()));
        }
    }

    /// The image names stage `i` (based on the expanded `base`) reads,
    /// leaving out stages and names that need expansion.
    fn images_named(&self, i: usize, base: &str) -> Vec<String> {
        let mut names = Vec::new();
        // What a name stands for: its named context's image, none for one
        // of files or an OCI layout (resolved when used), else the name.
        let image_of = |name: &str| match self.named(name) {
            Some(crate::NamedContext::Image(r)) => Some(r.clone()),
            Some(crate::NamedContext::Files | crate::NamedContext::Layout(_)) => None,
            None => Some(name.to_string()),
        };
        if let Some(replaced) = self.df.stages[i].name.as_deref().filter(|n| self.named(n).is_some()) {
            return image_of(replaced).into_iter().collect();
        }
        if !base.eq_ignore_ascii_case("scratch") && self.base_stage(base, i).is_none() {
            names.extend(image_of(base));
        }
        for cmd in &self.df.stages[i].commands {
            let froms: Vec<&String> = match &cmd.instruction {
                Instruction::Copy(c) | Instruction::Add(c) => c.from.iter().collect(),
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_ref()).collect(),
                _ => Vec::new(),
            };
            for f in froms.into_iter().filter(|f| !f.contains('$') && self.stage_ref(f).is_none()) {
                names.extend(image_of(f));
            }
        }
        names
    }
}

/// The key of an image resolved for a platform.
pub(crate) fn image_key(reference: &Reference, platform: &Platform) -> String {
    format!("{reference}|{}", platform.format())
}
