//! Pushing what a build on nodes made: every node pushes the images it
//! built, by digest, from its own store; this machine pushes the images it
//! built and, once every child exists, the index under every name.

use std::collections::BTreeSet;
use std::sync::Mutex;

use polyarch_builder::export::IndexImage;
use polyarch_builder::BuildResult;
use polyarch_oci::{Digest, Reference};
use polyarch_registry::Client;
use polyarch_store::Store;

use crate::error::{Error, Result};
use crate::session::Session;

/// The sessions of the nodes that hold images, with the manifests each
/// one built.
pub struct Pushers {
    nodes: Vec<Mutex<(Session, Vec<Digest>)>>,
}

fn reference(name: &str) -> Result<Reference> {
    Reference::parse_normalized(name)
        .map(|r| r.with_default_tag())
        .map_err(|source| Error::Reference { reference: name.to_string(), source })
}

async fn put_manifest(client: &Client, at: &Reference, raw: &polyarch_oci::RawManifest) -> Result<()> {
    client
        .put_manifest(at, raw)
        .await
        .map(|_| ())
        .map_err(|e| Error::Push { reference: at.to_string(), source: Box::new(e) })
}

/// A session whose lock a panicked push thread poisoned.
fn broken(s: &std::sync::PoisonError<impl Sized>) -> Error {
    Error::Session { message: format!("a node session broke ({s})") }
}

impl Pushers {
    pub(crate) fn new(nodes: Vec<(Session, Vec<Digest>)>) -> Pushers {
        Pushers { nodes: nodes.into_iter().map(Mutex::new).collect() }
    }

    /// Manifests the nodes built.
    fn remote(&self) -> BTreeSet<Digest> {
        self.nodes.iter().filter_map(|p| p.lock().ok()).flat_map(|p| p.1.clone()).collect()
    }

    /// Pushes a one-platform image under every name: the node that built
    /// it pushes its blobs and manifest by digest, then each name is set
    /// here; an image built here is pushed from the local store.
    pub fn push_image(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &Client,
        store: &Store,
        r: &BuildResult,
        names: &[String],
    ) -> Result<()> {
        let digest = &r.manifest.digest;
        let Some(p) = self.nodes.iter().find(|p| p.lock().is_ok_and(|p| p.1.contains(digest))) else {
            let built = polyarch_builder::export::Built::Image(Box::new(r.clone()));
            return Ok(rt.block_on(polyarch_builder::export::push(client, store, &built, names))?);
        };
        p.lock().map_err(|e| broken(&e))?.0.push(names, std::slice::from_ref(digest))?;
        let raw = store.get_manifest(&r.manifest)?;
        rt.block_on(async {
            for n in names {
                put_manifest(client, &reference(n)?, &raw).await?;
            }
            Ok(())
        })
    }

    /// Pushes an index: nodes push their children (all at once), this
    /// machine pushes the children it built and then the index under
    /// every name. Nothing of the index is pushed when a node's push
    /// failed.
    pub fn push_index(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &Client,
        store: &Store,
        img: &IndexImage,
        names: &[String],
    ) -> Result<()> {
        let references = names.iter().map(|n| reference(n)).collect::<Result<Vec<_>>>()?;
        let remote = self.remote();
        let outcomes: Vec<Result<()>> = std::thread::scope(|sc| {
            let handles: Vec<_> = self
                .nodes
                .iter()
                .map(|p| {
                    sc.spawn(move || {
                        let mut guard = p.lock().map_err(|e| broken(&e))?;
                        let (session, manifests) = &mut *guard;
                        session.push(names, manifests)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(Error::Session { message: "a push thread failed".into() })))
                .collect()
        });
        outcomes.into_iter().collect::<Result<Vec<()>>>()?;
        rt.block_on(async {
            for reference in &references {
                for c in img.children.iter().filter(|c| !remote.contains(&c.result.manifest.digest)) {
                    let at = reference.with_digest(c.result.manifest.digest.clone());
                    polyarch_builder::export::push_image(client, store, &c.result, &at).await?;
                }
                put_manifest(client, reference, &img.raw).await?;
            }
            Ok(())
        })
    }

    /// Ends every session.
    pub fn close(self) {
        for p in self.nodes {
            if let Ok((s, _)) = p.into_inner() {
                s.close();
            }
        }
    }
}
