//! The registry client: construction, ping, manifests and tags.

use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use polyarch_oci::{media_type, Descriptor, Digest, RawManifest, Reference, MAX_MANIFEST_SIZE};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LINK};
use reqwest::{Response, StatusCode};

use crate::challenge::{Access, Scopes};
use crate::transport::{BodyFailure, Endpoint, Inner, Target};
use crate::{DockerConfig, Error, Event, RegistryConfig, RetryPolicy};

/// The header registries use to name the digest of what they serve.
pub(crate) const DIGEST_HEADER: &str = "docker-content-digest";

/// A registry client. Cheap to clone: clones share HTTP connections, the
/// auth state and the token cache.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("insecure", &self.inner.insecure).finish_non_exhaustive()
    }
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    config: RegistryConfig,
    insecure: bool,
    docker: Option<DockerConfig>,
    user_agent: String,
    retry: RetryPolicy,
    chunk_threshold: u64,
    chunk_size: usize,
    timeouts: Timeouts,
    progress: Option<Arc<dyn Fn(Event) + Send + Sync>>,
}

/// How long the client waits on the network before a request counts as
/// failed (and is retried like a dropped connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Setting up a connection (TCP and TLS).
    pub connect: Duration,
    /// Waiting for any bytes: the response's head, then each read of its
    /// body. A registry that accepts a request and goes silent is given up
    /// on after this long.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(30), read: Duration::from_secs(120) }
    }
}

impl Timeouts {
    /// Both bounds at most `read`: the connect timeout stays 30 s unless
    /// `read` is shorter.
    pub fn with_read(read: Duration) -> Timeouts {
        let d = Timeouts::default();
        Timeouts { connect: d.connect.min(read), read }
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder::new()
    }
}

impl ClientBuilder {
    /// Defaults: no registry configuration, TLS verified, Docker's
    /// `config.json` read at `build`, the default retry policy, chunked
    /// uploads above 32 MiB in 8 MiB chunks.
    pub fn new() -> ClientBuilder {
        ClientBuilder {
            config: RegistryConfig::default(),
            insecure: false,
            docker: None,
            user_agent: concat!("polyarch/", env!("CARGO_PKG_VERSION")).to_string(),
            retry: RetryPolicy::default(),
            chunk_threshold: 32 * 1024 * 1024,
            chunk_size: 8 * 1024 * 1024,
            timeouts: Timeouts::default(),
            progress: None,
        }
    }

    /// Per-registry settings (mirrors, plain HTTP, TLS).
    pub fn with_config(mut self, config: RegistryConfig) -> Self {
        self.config = config;
        self
    }

    /// The command line's `--insecure`: allow plain HTTP and skip TLS
    /// verification for every registry.
    pub fn with_insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// Where credentials come from (default: [`DockerConfig::load`]).
    pub fn with_docker_config(mut self, docker: DockerConfig) -> Self {
        self.docker = Some(docker);
        self
    }

    /// The `User-Agent` header.
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// How temporary failures are retried.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Blobs larger than this are uploaded in chunks (PATCH), smaller ones
    /// in one PUT.
    pub fn with_chunk_threshold(mut self, bytes: u64) -> Self {
        self.chunk_threshold = bytes;
        self
    }

    /// Network timeouts (default: 30 s to connect, 120 s without a byte).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The size of one chunk of a chunked upload (held in memory).
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.max(1);
        self
    }

    /// A sink for progress events (called on the transferring task; keep
    /// it cheap).
    pub fn with_progress(mut self, sink: impl Fn(Event) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(sink));
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client, Error> {
        install_crypto_provider();
        let docker = match self.docker {
            Some(d) => d,
            None => DockerConfig::load()?,
        };
        let inner = Inner::new(
            self.config,
            self.insecure,
            docker,
            self.user_agent,
            self.retry,
            self.chunk_threshold,
            self.chunk_size,
            self.timeouts,
            self.progress,
        );
        Ok(Client { inner: Arc::new(inner) })
    }
}

/// Installs rustls' ring provider as the process default, once; an already
/// installed provider is kept.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `domain/path[:tag][@digest]`.
pub(crate) fn ref_string(r: &Reference) -> String {
    let mut s = format!("{}/{}", r.domain, r.path);
    if let Some(t) = &r.tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = &r.digest {
        s.push('@');
        s.push_str(&d.to_string());
    }
    s
}

pub(crate) fn target(r: &Reference, reference: String) -> Target {
    Target { registry: r.domain.clone(), repository: Some(r.path.clone()), reference }
}

pub(crate) fn header(resp: &Response, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

pub(crate) fn content_length(resp: &Response) -> Option<u64> {
    header(resp, CONTENT_LENGTH).and_then(|v| v.parse().ok())
}

fn manifest_accept() -> String {
    let mut v: Vec<&str> = media_type::MANIFEST_ACCEPT.to_vec();
    // Asked for so that a schema 1 image gets a clear error, not a 404.
    v.push(media_type::DOCKER_SCHEMA1_SIGNED);
    v.push(media_type::DOCKER_SCHEMA1_MANIFEST);
    v.join(", ")
}

fn manifest_ident(r: &Reference) -> Result<String, Error> {
    match (&r.digest, &r.tag) {
        (Some(d), _) => Ok(d.to_string()),
        (None, Some(t)) => Ok(t.clone()),
        (None, None) => Err(Error::InvalidReference { reference: ref_string(r), reason: "neither tag nor digest" }),
    }
}

impl Client {
    /// A builder with defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// Contacts `GET /v2/` of `domain` (picking HTTPS or plain HTTP and
    /// learning how to authenticate).
    pub async fn ping(&self, domain: &str) -> Result<(), Error> {
        let ep = self.inner.origin(domain);
        let t = Target { registry: domain.to_string(), repository: None, reference: domain.to_string() };
        self.inner.ping(&ep, &t).await.map(|_| ())
    }

    /// Checks that the configured credentials for `domain` are accepted,
    /// as `docker login` does: a fresh `GET /v2/`, then the same request
    /// authenticated (Basic, or a Bearer token without scope). A refusal is
    /// an [`Error::Unauthorized`].
    pub async fn check_login(&self, domain: &str) -> Result<(), Error> {
        let ep = self.inner.origin(domain);
        let t = Target { registry: domain.to_string(), repository: None, reference: domain.to_string() };
        let base = self.inner.ping(&ep, &t).await?;
        let (resp, attempts) = self.inner.execute(&ep, &t, Some(&Scopes::default()), true, &|c| c.get(&base)).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.inner.status_error(resp, &t, attempts).await)
        }
    }

    /// Runs `op` on each pull endpoint (mirrors first) until one succeeds.
    /// When all fail, the origin's error is returned; if the origin gave
    /// no answer (unreachable, TLS, network), it also says what each
    /// mirror answered, so a mirror's "manifest unknown" is not hidden
    /// behind an origin this machine cannot reach.
    pub(crate) async fn on_pull_endpoints<T, F, Fut>(&self, domain: &str, op: F) -> Result<T, Error>
    where
        F: Fn(Endpoint) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let eps = self.inner.pull_endpoints(domain);
        let mut mirrors: Vec<(String, Error)> = Vec::new();
        for ep in eps {
            let (mirror, name) = (ep.mirror, format!("{}{}", ep.host, ep.prefix));
            match op(ep).await {
                Ok(v) => return Ok(v),
                Err(e) if mirror => mirrors.push((name, e)),
                Err(e) if mirrors.is_empty() || e.status().is_some() => return Err(e),
                Err(e) => return Err(Error::Mirrors { origin: Box::new(e), mirrors }),
            }
        }
        match mirrors.pop() {
            Some((_, e)) => Err(e),
            None => Err(Error::Connect { registry: domain.to_string(), reason: "no endpoint".into() }),
        }
    }

    /// Fetches a manifest or index by tag or digest. The bytes are checked
    /// against the reference's digest, or the `Docker-Content-Digest` header
    /// when fetched by tag; more than 4 MiB is refused.
    pub async fn get_manifest(&self, r: &Reference) -> Result<RawManifest, Error> {
        self.on_pull_endpoints(&r.domain, |ep| async move { self.get_manifest_at(&ep, r).await }).await
    }

    async fn get_manifest_at(&self, ep: &Endpoint, r: &Reference) -> Result<RawManifest, Error> {
        self.inner.retry_body(|| self.get_manifest_once(ep, r)).await
    }

    /// One request for a manifest; a body cut short is a [`BodyFailure::Cut`].
    async fn get_manifest_once(&self, ep: &Endpoint, r: &Reference) -> Result<RawManifest, BodyFailure> {
        let reference = ref_string(r);
        let t = target(r, reference.clone());
        let base = self.inner.base(ep, &t).await?;
        let url = format!("{base}{}/manifests/{}", r.path, manifest_ident(r)?);
        let accept = manifest_accept();
        let scopes = Scopes::repo(&r.path, Access::Pull);
        let (resp, attempts) =
            self.inner.execute(ep, &t, Some(&scopes), true, &|c| c.get(&url).header(ACCEPT, &accept)).await?;
        if !resp.status().is_success() {
            return Err(self.inner.status_error(resp, &t, attempts).await.into());
        }
        let limit = MAX_MANIFEST_SIZE;
        if let Some(len) = content_length(&resp).filter(|l| *l > limit) {
            return Err(Error::TooLarge { reference, what: "manifest", size: len, limit }.into());
        }
        let content_type = header(&resp, CONTENT_TYPE).map(str::to_string);
        let header_digest = header(&resp, DIGEST_HEADER).and_then(|d| d.parse::<Digest>().ok());
        let mut body = BytesMut::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BodyFailure::Cut(self.inner.transport_error(ep, &t, &e)))?;
            body.extend_from_slice(&chunk);
            if body.len() as u64 > limit {
                return Err(Error::TooLarge { reference, what: "manifest", size: body.len() as u64, limit }.into());
            }
        }
        let bytes = body.freeze();
        let expected = r.digest.clone().or(header_digest);
        if let Some(expected) = expected {
            let actual = expected.of_same_kind(&bytes);
            if actual != expected {
                return Err(Error::DigestMismatch { reference, expected, actual }.into());
            }
        }
        RawManifest::from_bytes(bytes, content_type.as_deref())
            .map_err(|source| Error::Manifest { reference, source }.into())
    }

    /// Asks for a manifest's descriptor without its body; `None` when the
    /// registry does not have it.
    pub async fn head_manifest(&self, r: &Reference) -> Result<Option<Descriptor>, Error> {
        let res = self.on_pull_endpoints(&r.domain, |ep| async move { self.head_manifest_at(&ep, r).await }).await;
        match res {
            Ok(Some(d)) => Ok(Some(d)),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn head_manifest_at(&self, ep: &Endpoint, r: &Reference) -> Result<Option<Descriptor>, Error> {
        let reference = ref_string(r);
        let t = target(r, reference.clone());
        let base = self.inner.base(ep, &t).await?;
        let url = format!("{base}{}/manifests/{}", r.path, manifest_ident(r)?);
        let accept = manifest_accept();
        let scopes = Scopes::repo(&r.path, Access::Pull);
        let (resp, attempts) =
            self.inner.execute(ep, &t, Some(&scopes), true, &|c| c.head(&url).header(ACCEPT, &accept)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            if ep.mirror {
                // Let the next endpoint answer.
                return Err(self.inner.status_error(resp, &t, attempts).await);
            }
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.inner.status_error(resp, &t, attempts).await);
        }
        let media_type = header(&resp, CONTENT_TYPE).map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
        let digest = header(&resp, DIGEST_HEADER).and_then(|d| d.parse::<Digest>().ok()).or_else(|| r.digest.clone());
        match (media_type, digest, content_length(&resp)) {
            (Some(m), Some(d), Some(size)) if !m.is_empty() => Ok(Some(Descriptor::new(m, d, size))),
            // Not enough in the headers: fetch the manifest itself.
            _ => self.get_manifest_at(ep, r).await.map(|m| Some(m.descriptor())),
        }
    }

    /// Pushes a manifest under the reference's tag (or digest). Returns
    /// the digest, checked against what the registry reports.
    pub async fn put_manifest(&self, r: &Reference, manifest: &RawManifest) -> Result<Digest, Error> {
        let reference = ref_string(r);
        if let Some(d) = &r.digest {
            let actual = d.of_same_kind(manifest.bytes());
            if &actual != d {
                return Err(Error::DigestMismatch { reference, expected: d.clone(), actual });
            }
        }
        let ep = self.inner.origin(&r.domain);
        let t = target(r, reference.clone());
        let base = self.inner.base(&ep, &t).await?;
        let url = format!("{base}{}/manifests/{}", r.path, manifest_ident(r)?);
        let scopes = Scopes::repo(&r.path, Access::Push);
        let body: Bytes = manifest.bytes().clone();
        let mt = manifest.media_type().to_string();
        let (resp, attempts) = self
            .inner
            .execute(&ep, &t, Some(&scopes), true, &|c| c.put(&url).header(CONTENT_TYPE, &mt).body(body.clone()))
            .await?;
        if !resp.status().is_success() {
            return Err(self.inner.status_error(resp, &t, attempts).await);
        }
        let expected = manifest.digest().clone();
        if let Some(got) = header(&resp, DIGEST_HEADER).and_then(|d| d.parse::<Digest>().ok()) {
            if got.algorithm() == expected.algorithm() && got != expected {
                return Err(Error::DigestMismatch { reference, expected, actual: got });
            }
        }
        Ok(expected)
    }

    /// Lists the tags of the reference's repository (following pagination).
    pub async fn tags(&self, r: &Reference) -> Result<Vec<String>, Error> {
        let ep = self.inner.origin(&r.domain);
        let t = target(r, format!("{}/{}", r.domain, r.path));
        let base = self.inner.base(&ep, &t).await?;
        let scopes = Scopes::repo(&r.path, Access::Pull);
        let mut url = url::Url::parse(&format!("{base}{}/tags/list", r.path))
            .map_err(|e| Error::InvalidReference { reference: t.reference.clone(), reason: url_reason(e) })?;
        let mut tags = Vec::new();
        for _ in 0..10_000 {
            let (page, next) = self.inner.retry_body(|| self.tags_page(&ep, &t, &scopes, &url)).await?;
            tags.extend(page);
            match next {
                Some(n) => url = n,
                None => break,
            }
        }
        Ok(tags)
    }

    /// One page of a tag list and the URL of the next.
    async fn tags_page(
        &self,
        ep: &Endpoint,
        t: &Target,
        scopes: &Scopes,
        url: &url::Url,
    ) -> Result<(Vec<String>, Option<url::Url>), BodyFailure> {
        let (resp, attempts) = self.inner.execute(ep, t, Some(scopes), true, &|c| c.get(url.clone())).await?;
        if !resp.status().is_success() {
            return Err(self.inner.status_error(resp, t, attempts).await.into());
        }
        let next = header(&resp, LINK).and_then(next_link).and_then(|l| resp.url().join(&l).ok());
        let bytes = crate::transport::read_limited(resp, 16 * 1024 * 1024)
            .await
            .map_err(|e| BodyFailure::Cut(self.inner.transport_error(ep, t, &e)))?;
        #[derive(serde::Deserialize)]
        struct List {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let list: List = serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidResponse { registry: ep.host.clone(), reason: format!("tag list: {e}") })?;
        Ok((list.tags.unwrap_or_default(), next))
    }
}

fn url_reason(_: url::ParseError) -> &'static str {
    "does not make a valid URL"
}

/// The target of `Link: <url>; rel="next"`.
fn next_link(v: &str) -> Option<String> {
    v.split(',').find_map(|part| {
        let (u, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| u.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_strings() {
        let d = Digest::sha256(b"");
        let r = Reference {
            domain: "127.0.0.1:5000".into(),
            path: "library/busybox".into(),
            tag: Some("nope".into()),
            digest: None,
        };
        assert_eq!(ref_string(&r), "127.0.0.1:5000/library/busybox:nope");
        let r2 = Reference { digest: Some(d.clone()), tag: None, ..r.clone() };
        assert_eq!(ref_string(&r2), format!("127.0.0.1:5000/library/busybox@{d}"));
        assert_eq!(manifest_ident(&r2).unwrap(), d.to_string());
        let none = Reference { tag: None, digest: None, ..r };
        assert!(manifest_ident(&none).is_err());
    }

    #[test]
    fn link_header() {
        assert_eq!(
            next_link(r#"</v2/x/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/x/tags/list?n=2&last=b")
        );
        assert_eq!(next_link("<x>; rel=\"prev\""), None);
    }

    #[test]
    fn accept_includes_schema1() {
        let a = manifest_accept();
        assert!(a.contains(media_type::OCI_INDEX) && a.contains("prettyjws"));
    }
}
