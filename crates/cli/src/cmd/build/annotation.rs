//! `--annotation` of `polyarch build`, as buildx's: `[TYPE[PLATFORM],...:]KEY=VALUE`
//! with the types `manifest` (the default), `index`, `manifest-descriptor`
//! and `index-descriptor` (see `polyarch_index::annotation`).

use anyhow::Result;
use clap::Args;
use polyarch_index::Annotation;

#[derive(Args, Debug, Default)]
pub struct AnnotationArgs {
    /// An annotation for the image: `KEY=VALUE` on each image manifest, or
    /// `TYPE:KEY=VALUE` with TYPE `manifest`, `index`, `manifest-descriptor`
    /// or `index-descriptor`, a platform selector (`manifest[linux/arm64]:`)
    /// and several types at once (`index,manifest:`); repeatable.
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE")]
    pub annotations: Vec<String>,
}

impl AnnotationArgs {
    /// Every annotation asked for, in order.
    pub fn parse(&self) -> Result<Vec<Annotation>> {
        let mut out = Vec::new();
        for a in &self.annotations {
            out.extend(Annotation::parse_build(a)?);
        }
        Ok(out)
    }
}
