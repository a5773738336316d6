//! Blob downloads (streamed, verified, resumed with `Range` after a
//! dropped connection), existence checks, cross-repository mounts and
//! copies.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use polyarch_oci::{Descriptor, Digest, Digester, Reference};
use reqwest::header::{LOCATION, RANGE};
use reqwest::StatusCode;

use crate::challenge::{Access, Scopes};
use crate::client::{content_length, header, target};
use crate::transport::{Endpoint, Inner, Target};
use crate::upload::{PushOutcome, PushSource};
use crate::{Client, Error, Event};

/// A stream of bytes that may fail.
pub type ByteStream = BoxStream<'static, Result<Bytes, Error>>;

/// Which way bytes flow, in progress events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a registry.
    Download,
    /// To a registry.
    Upload,
}

/// Checks a byte stream against a descriptor as it flows: fails as soon as
/// more than `size` bytes arrive, and at the end if the size or digest is
/// wrong.
pub(crate) struct Verify {
    inner: ByteStream,
    digester: Option<Digester>,
    expected: Digest,
    size: u64,
    seen: u64,
    reference: String,
    done: bool,
    progress: Option<(Arc<Inner>, Direction)>,
}

impl Verify {
    pub(crate) fn new(inner: ByteStream, desc: &Descriptor, reference: String) -> Verify {
        Verify {
            inner,
            digester: Some(desc.digest.digester()),
            expected: desc.digest.clone(),
            size: desc.size,
            seen: 0,
            reference,
            done: false,
            progress: None,
        }
    }

    pub(crate) fn with_progress(mut self, inner: Arc<Inner>, dir: Direction) -> Verify {
        if inner.progress.is_some() {
            self.progress = Some((inner, dir));
        }
        self
    }

    fn finish(&mut self) -> Option<Error> {
        if self.seen != self.size {
            return Some(Error::SizeMismatch {
                reference: self.reference.clone(),
                digest: self.expected.clone(),
                expected: self.size,
                actual: self.seen,
                more: false,
            });
        }
        let actual = self.digester.take()?.finish();
        (actual != self.expected).then(|| Error::DigestMismatch {
            reference: self.reference.clone(),
            expected: self.expected.clone(),
            actual,
        })
    }
}

impl Stream for Verify {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = match self.inner.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        let this = &mut *self;
        match item {
            Some(Ok(b)) => {
                this.seen += b.len() as u64;
                if this.seen > this.size {
                    this.done = true;
                    return Poll::Ready(Some(Err(Error::SizeMismatch {
                        reference: this.reference.clone(),
                        digest: this.expected.clone(),
                        expected: this.size,
                        actual: this.seen,
                        more: true,
                    })));
                }
                if let Some(d) = this.digester.as_mut() {
                    d.update(&b);
                }
                if let Some((inner, dir)) = &this.progress {
                    inner.emit(Event::Bytes {
                        digest: this.expected.clone(),
                        direction: *dir,
                        transferred: this.seen,
                        total: this.size,
                    });
                }
                Poll::Ready(Some(Ok(b)))
            }
            Some(Err(e)) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.done = true;
                Poll::Ready(this.finish().map(Err))
            }
        }
    }
}

/// A blob being downloaded: a stream of chunks whose size and digest are
/// checked as they arrive (the last item is an error if they are wrong).
/// Memory use is bounded by the chunk size of the connection.
pub struct BlobStream {
    inner: Verify,
    size: u64,
}

impl BlobStream {
    /// The size the descriptor announced.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Collects the whole blob (for small blobs only).
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        let mut out = BytesMut::with_capacity(usize::try_from(self.size.min(64 * 1024 * 1024)).unwrap_or(0));
        while let Some(chunk) = self.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out.freeze())
    }

    /// The stream as a boxed [`ByteStream`].
    pub fn boxed(self) -> ByteStream {
        self.inner.boxed()
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream").field("digest", &self.inner.expected).field("size", &self.size).finish()
    }
}

/// What a copy or push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyOutcome {
    /// The target already had the blob.
    Existed,
    /// The registry mounted it from the source repository.
    Mounted,
    /// The bytes were uploaded.
    Uploaded,
}

impl From<PushOutcome> for CopyOutcome {
    fn from(p: PushOutcome) -> CopyOutcome {
        match p {
            PushOutcome::Existed => CopyOutcome::Existed,
            PushOutcome::Uploaded => CopyOutcome::Uploaded,
        }
    }
}

struct Download {
    inner: Arc<Inner>,
    ep: Endpoint,
    target: Target,
    url: String,
    scopes: Scopes,
}

impl Download {
    /// GET the blob from `offset` on; returns the body and how many leading
    /// bytes of it to drop (a server ignoring `Range` sends it all).
    async fn open(&self, offset: u64) -> Result<(BoxStream<'static, Result<Bytes, Error>>, u64), Error> {
        let range = format!("bytes={offset}-");
        let (resp, attempts) = self
            .inner
            .execute(&self.ep, &self.target, Some(&self.scopes), true, &|c| {
                let rb = c.get(&self.url);
                if offset > 0 {
                    rb.header(RANGE, &range)
                } else {
                    rb
                }
            })
            .await?;
        let skip = match resp.status() {
            StatusCode::PARTIAL_CONTENT if offset > 0 => 0,
            s if s.is_success() => offset,
            _ => return Err(self.inner.status_error(resp, &self.target, attempts).await),
        };
        let (inner, ep, target) = (self.inner.clone(), self.ep.clone(), self.target.clone());
        let body = resp.bytes_stream().map(move |r| r.map_err(|e| inner.transport_error(&ep, &target, &e))).boxed();
        Ok((body, skip))
    }
}

struct Resume {
    dl: Download,
    body: BoxStream<'static, Result<Bytes, Error>>,
    skip: u64,
    received: u64,
    size: u64,
    resumes: u32,
    start: Instant,
    failed: bool,
}

/// The raw body, reopened with `Range` when the connection drops before
/// `size` bytes arrived (bounded by the retry policy).
fn resuming(dl: Download, body: BoxStream<'static, Result<Bytes, Error>>, skip: u64, size: u64) -> ByteStream {
    let st = Resume { dl, body, skip, received: 0, size, resumes: 0, start: Instant::now(), failed: false };
    futures_util::stream::unfold(st, |mut st| async move {
        if st.failed {
            return None;
        }
        loop {
            match st.body.next().await {
                Some(Ok(mut chunk)) => {
                    if st.skip > 0 {
                        let n = st.skip.min(chunk.len() as u64);
                        st.skip -= n;
                        chunk = chunk.slice(n as usize..);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    st.received += chunk.len() as u64;
                    return Some((Ok(chunk), st));
                }
                Some(Err(e)) => {
                    let wait = st.dl.inner.retry.next_wait(st.resumes + 1, st.start.elapsed(), None);
                    match wait.filter(|_| e.is_temporary() && st.received < st.size) {
                        Some(w) => {
                            st.resumes += 1;
                            tokio::time::sleep(w).await;
                            match st.dl.open(st.received).await {
                                Ok((body, skip)) => {
                                    st.body = body;
                                    st.skip = skip;
                                }
                                Err(e) => {
                                    st.failed = true;
                                    return Some((Err(e), st));
                                }
                            }
                        }
                        None => {
                            st.failed = true;
                            return Some((Err(e), st));
                        }
                    }
                }
                None => return None,
            }
        }
    })
    .boxed()
}

impl Client {
    /// Streams a blob, mirrors first. The stream checks size and digest as
    /// bytes flow; redirects to blob storage are followed without sending
    /// the registry's `Authorization` to other hosts.
    pub async fn get_blob(&self, r: &Reference, desc: &Descriptor) -> Result<BlobStream, Error> {
        self.on_pull_endpoints(&r.domain, |ep| async move { self.get_blob_at(ep, r, desc).await }).await
    }

    async fn get_blob_at(&self, ep: Endpoint, r: &Reference, desc: &Descriptor) -> Result<BlobStream, Error> {
        let reference = blob_ref(r, &desc.digest);
        let t = target(r, reference.clone());
        let base = self.inner.base(&ep, &t).await?;
        let dl = Download {
            inner: self.inner.clone(),
            url: format!("{base}{}/blobs/{}", r.path, desc.digest),
            ep,
            target: t,
            scopes: Scopes::repo(&r.path, Access::Pull),
        };
        let (body, skip) = dl.open(0).await?;
        let raw = resuming(dl, body, skip, desc.size);
        let verify = Verify::new(raw, desc, reference).with_progress(self.inner.clone(), Direction::Download);
        Ok(BlobStream { inner: verify, size: desc.size })
    }

    /// Fetches a small blob (an image config) into memory, refusing one
    /// whose descriptor says it is larger than `limit`.
    pub async fn get_blob_bytes(&self, r: &Reference, desc: &Descriptor, limit: u64) -> Result<Bytes, Error> {
        if desc.size > limit {
            return Err(Error::TooLarge { reference: blob_ref(r, &desc.digest), what: "blob", size: desc.size, limit });
        }
        self.get_blob(r, desc).await?.bytes().await
    }

    /// Whether the repository has the blob: its size if so.
    pub async fn blob_exists(&self, r: &Reference, digest: &Digest) -> Result<Option<u64>, Error> {
        let ep = self.inner.origin(&r.domain);
        let t = target(r, blob_ref(r, digest));
        let base = self.inner.base(&ep, &t).await?;
        let url = format!("{base}{}/blobs/{digest}", r.path);
        let scopes = Scopes::repo(&r.path, Access::Pull);
        let (resp, attempts) = self.inner.execute(&ep, &t, Some(&scopes), true, &|c| c.head(&url)).await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(content_length(&resp).unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.inner.status_error(resp, &t, attempts).await),
        }
    }

    /// Asks the registry to mount a blob from `from_repo` (same registry)
    /// into the reference's repository. `true` when mounted; `false` when
    /// the registry declined (the upload it started instead is cancelled).
    pub async fn mount_blob(&self, r: &Reference, from_repo: &str, digest: &Digest) -> Result<bool, Error> {
        let ep = self.inner.origin(&r.domain);
        let t = target(r, blob_ref(r, digest));
        let base = self.inner.base(&ep, &t).await?;
        let mut url = url::Url::parse(&format!("{base}{}/blobs/uploads/", r.path)).map_err(|_| {
            Error::InvalidReference { reference: t.reference.clone(), reason: "does not make a valid URL" }
        })?;
        url.query_pairs_mut().append_pair("mount", &digest.to_string()).append_pair("from", from_repo);
        let scopes = Scopes::repo(&r.path, Access::Push).with(from_repo, Access::Pull);
        let (resp, attempts) = self.inner.execute(&ep, &t, Some(&scopes), true, &|c| c.post(url.clone())).await?;
        match resp.status() {
            StatusCode::CREATED => {
                self.inner.emit(Event::Mounted { digest: digest.clone(), from: from_repo.to_string() });
                Ok(true)
            }
            StatusCode::ACCEPTED => {
                if let Some(loc) = header(&resp, LOCATION).and_then(|l| resp.url().join(l).ok()) {
                    // Best effort: an abandoned upload expires on its own.
                    let _ = self.inner.execute(&ep, &t, Some(&scopes), false, &|c| c.delete(loc.clone())).await;
                }
                Ok(false)
            }
            _ => Err(self.inner.status_error(resp, &t, attempts).await),
        }
    }

    /// Copies a blob between repositories: nothing if the target has it, a
    /// mount within one registry, else a verified stream from source to
    /// target (never held whole in memory).
    pub async fn copy_blob(&self, src: &Reference, dst: &Reference, desc: &Descriptor) -> Result<CopyOutcome, Error> {
        let mounts = if src.domain == dst.domain { vec![src.path.clone()] } else { Vec::new() };
        let source = FromRegistry { client: self.clone(), src: src.clone(), desc: desc.clone() };
        Ok(crate::RepoSink::new(self, dst).put_blob(desc, &mounts, &source, &|| {}).await?.outcome)
    }
}

/// Re-openable source that streams a blob from another repository.
struct FromRegistry {
    client: Client,
    src: Reference,
    desc: Descriptor,
}

impl PushSource for FromRegistry {
    fn open(&self) -> futures_util::future::BoxFuture<'_, Result<ByteStream, Error>> {
        Box::pin(async move { Ok(self.client.get_blob(&self.src, &self.desc).await?.boxed()) })
    }
}

/// `domain/path@digest`.
pub(crate) fn blob_ref(r: &Reference, digest: &Digest) -> String {
    format!("{}/{}@{}", r.domain, r.path, digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(parts: &[&'static [u8]]) -> ByteStream {
        futures_util::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>()).boxed()
    }

    async fn collect(v: Verify) -> Vec<Result<Bytes, Error>> {
        v.collect().await
    }

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn futures_and_streams_are_send() {
        let c = crate::ClientBuilder::new().with_docker_config(crate::DockerConfig::empty()).build().unwrap();
        let r = Reference { domain: "localhost:1".into(), path: "a".into(), tag: Some("t".into()), digest: None };
        let desc = Descriptor::new("x", Digest::sha256(b""), 0);
        let data = Bytes::new();
        assert_send(&c.get_manifest(&r));
        assert_send(&c.head_manifest(&r));
        assert_send(&c.get_blob(&r, &desc));
        assert_send(&c.push_blob(&r, &desc, &data));
        assert_send(&c.copy_blob(&r, &r, &desc));
        assert_send(&c.mount_blob(&r, "b", &desc.digest));
        assert_send(&c.tags(&r));
        fn stream_is_send_unpin<T: Send + Unpin + 'static>() {}
        stream_is_send_unpin::<BlobStream>();
    }

    #[tokio::test]
    async fn verify_accepts_good_and_flags_bad() {
        let desc = Descriptor::new("x", Digest::sha256(b"hello world"), 11);
        let ok = collect(Verify::new(stream_of(&[b"hello ", b"world"]), &desc, "r".into())).await;
        assert!(ok.iter().all(Result::is_ok) && ok.len() == 2);
        let bad = collect(Verify::new(stream_of(&[b"hello ", b"WORLD"]), &desc, "r".into())).await;
        assert!(matches!(bad.last(), Some(Err(Error::DigestMismatch { .. }))));
        let short = collect(Verify::new(stream_of(&[b"hello"]), &desc, "r".into())).await;
        assert!(matches!(short.last(), Some(Err(Error::SizeMismatch { more: false, .. }))));
        let long = collect(Verify::new(stream_of(&[b"hello world", b"!", b"never"]), &desc, "r".into())).await;
        assert_eq!(long.len(), 2);
        assert!(matches!(long[1], Err(Error::SizeMismatch { more: true, .. })));
    }
}
