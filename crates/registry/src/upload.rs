//! Blob uploads: one streamed PUT for small blobs, PATCH chunks with
//! `Content-Range` for large ones. A failed attempt is restarted from the
//! `POST` with a freshly opened source, never by re-sending one chunk.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use polyarch_oci::{Descriptor, Digest, Reference};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Response, StatusCode};
use url::Url;

use crate::blob::{blob_ref, ByteStream, Direction, Verify};
use crate::challenge::{Access, Scopes};
use crate::client::{header, target, DIGEST_HEADER};
use crate::transport::{Endpoint, Target};
use crate::{Client, Error, Event};

/// Content to push that can be read again from the start, so that a
/// failed upload can be retried.
pub trait PushSource: Send + Sync {
    /// A fresh stream of the whole content.
    fn open(&self) -> BoxFuture<'_, Result<ByteStream, Error>>;
}

impl PushSource for Bytes {
    fn open(&self) -> BoxFuture<'_, Result<ByteStream, Error>> {
        let b = self.clone();
        Box::pin(async move { Ok(futures_util::stream::iter([Ok(b)]).boxed()) })
    }
}

/// A [`PushSource`] from a closure that opens the content.
pub struct SourceFn<F>(pub F);

impl<F> PushSource for SourceFn<F>
where
    F: Fn() -> BoxFuture<'static, Result<ByteStream, Error>> + Send + Sync,
{
    fn open(&self) -> BoxFuture<'_, Result<ByteStream, Error>> {
        (self.0)()
    }
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The repository already had the blob.
    Existed,
    /// The bytes were uploaded.
    Uploaded,
}

const OCTET_STREAM: &str = "application/octet-stream";

/// Keeps the first error of a request body, which reqwest would otherwise
/// only report as "error sending request".
type Slot = Arc<Mutex<Option<Error>>>;

fn capture(stream: ByteStream, slot: Slot) -> ByteStream {
    stream
        .map(move |r| {
            r.map_err(|e| {
                let msg = e.to_string();
                if let Ok(mut s) = slot.lock() {
                    s.get_or_insert(e);
                }
                msg
            })
        })
        .map(|r| r.map_err(|m| Error::Source { reference: String::new(), reason: m }))
        .boxed()
}

fn take(slot: &Slot) -> Option<Error> {
    slot.lock().ok().and_then(|mut s| s.take())
}

impl Client {
    /// Pushes a blob to the reference's repository unless it is there
    /// already. Uploads up to the chunk threshold go in one PUT; larger
    /// ones in PATCH chunks. Temporary failures restart the upload.
    pub async fn push_blob(
        &self,
        r: &Reference,
        desc: &Descriptor,
        source: &dyn PushSource,
    ) -> Result<PushOutcome, Error> {
        if self.blob_exists(r, &desc.digest).await?.is_some() {
            self.inner.emit(Event::Skipped { digest: desc.digest.clone() });
            return Ok(PushOutcome::Existed);
        }
        self.upload(r, desc, source).await
    }

    /// Uploads without checking for the blob first.
    pub(crate) async fn upload(
        &self,
        r: &Reference,
        desc: &Descriptor,
        source: &dyn PushSource,
    ) -> Result<PushOutcome, Error> {
        let ep = self.inner.origin(&r.domain);
        let t = target(r, blob_ref(r, &desc.digest));
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.upload_once(&ep, &t, r, desc, source).await {
                Ok(()) => return Ok(PushOutcome::Uploaded),
                // An error that already went through retries is final.
                Err(e) if e.is_temporary() && !matches!(e, Error::GaveUp { .. }) => {
                    match self.inner.retry.next_wait(attempt, start.elapsed(), None) {
                        Some(w) => tokio::time::sleep(w).await,
                        None if attempt > 1 => return Err(Error::GaveUp { attempts: attempt, last: Box::new(e) }),
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn upload_once(
        &self,
        ep: &Endpoint,
        t: &Target,
        r: &Reference,
        desc: &Descriptor,
        source: &dyn PushSource,
    ) -> Result<(), Error> {
        let base = self.inner.base(ep, t).await?;
        let scopes = Scopes::repo(&r.path, Access::Push);
        let start = format!("{base}{}/blobs/uploads/", r.path);
        let (resp, attempts) =
            self.inner.execute(ep, t, Some(&scopes), false, &|c| c.post(&start).header(CONTENT_LENGTH, "0")).await?;
        if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::CREATED {
            return Err(self.inner.status_error(resp, t, attempts).await);
        }
        let mut location = self.location(&resp, ep)?;
        let stream = Verify::new(source.open().await?, desc, t.reference.clone())
            .with_progress(self.inner.clone(), Direction::Upload)
            .boxed();
        let res = if desc.size <= self.inner.chunk_threshold {
            self.put_whole(ep, t, &scopes, location.clone(), desc, stream).await
        } else {
            match self.patch_chunks(ep, t, &scopes, &mut location, stream).await {
                Ok(()) => self.finish(ep, t, &scopes, location.clone(), desc, None).await,
                Err(e) => Err(e),
            }
        };
        if res.is_err() {
            // Best effort: an abandoned upload expires on its own.
            let _ = self.inner.execute(ep, t, Some(&scopes), false, &|c| c.delete(location.clone())).await;
        }
        res
    }

    fn location(&self, resp: &Response, ep: &Endpoint) -> Result<Url, Error> {
        let loc = header(resp, LOCATION).ok_or_else(|| Error::InvalidResponse {
            registry: ep.host.clone(),
            reason: "upload response without Location".into(),
        })?;
        resp.url().join(loc).map_err(|e| Error::InvalidResponse {
            registry: ep.host.clone(),
            reason: format!("invalid upload Location {loc:?}: {e}"),
        })
    }

    async fn put_whole(
        &self,
        ep: &Endpoint,
        t: &Target,
        scopes: &Scopes,
        location: Url,
        desc: &Descriptor,
        stream: ByteStream,
    ) -> Result<(), Error> {
        // The body can be sent once: the request is not retried here.
        let slot: Slot = Arc::default();
        let body = Mutex::new(Some(reqwest::Body::wrap_stream(capture(stream, slot.clone()))));
        self.finish(ep, t, scopes, location, desc, Some((body, slot))).await
    }

    async fn patch_chunks(
        &self,
        ep: &Endpoint,
        t: &Target,
        scopes: &Scopes,
        location: &mut Url,
        mut stream: ByteStream,
    ) -> Result<(), Error> {
        let chunk_size = self.inner.chunk_size;
        let mut offset = 0u64;
        let mut buf = BytesMut::with_capacity(chunk_size);
        let mut ended = false;
        loop {
            while !ended && buf.len() < chunk_size {
                match stream.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => return Err(e),
                    None => ended = true,
                }
            }
            if buf.is_empty() {
                break;
            }
            let take = buf.len().min(chunk_size);
            let chunk = buf.split_to(take).freeze();
            let range = format!("{}-{}", offset, offset + chunk.len() as u64 - 1);
            let loc = location.clone();
            let (resp, attempts) = self
                .inner
                .execute(ep, t, Some(scopes), false, &|c| {
                    c.patch(loc.clone())
                        .header(CONTENT_TYPE, OCTET_STREAM)
                        .header("Content-Range", &range)
                        .header(CONTENT_LENGTH, chunk.len().to_string())
                        .body(chunk.clone())
                })
                .await?;
            if resp.status() != StatusCode::ACCEPTED && !resp.status().is_success() {
                return Err(self.inner.status_error(resp, t, attempts).await);
            }
            *location = self.location(&resp, ep)?;
            offset += chunk.len() as u64;
        }
        Ok(())
    }

    async fn finish(
        &self,
        ep: &Endpoint,
        t: &Target,
        scopes: &Scopes,
        mut location: Url,
        desc: &Descriptor,
        body: Option<(Mutex<Option<reqwest::Body>>, Slot)>,
    ) -> Result<(), Error> {
        location.query_pairs_mut().append_pair("digest", &desc.digest.to_string());
        let size = if body.is_some() { desc.size } else { 0 };
        let res = self
            .inner
            .execute(ep, t, Some(scopes), false, &|c| {
                let rb =
                    c.put(location.clone()).header(CONTENT_TYPE, OCTET_STREAM).header(CONTENT_LENGTH, size.to_string());
                match body.as_ref().and_then(|(b, _)| b.lock().ok().and_then(|mut b| b.take())) {
                    Some(b) => rb.body(b),
                    None => rb,
                }
            })
            .await;
        if let Some(e) = body.as_ref().and_then(|(_, slot)| take(slot)) {
            return Err(e);
        }
        let (resp, attempts) = res?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(self.inner.status_error(resp, t, attempts).await);
        }
        check_digest(&resp, &desc.digest, t)
    }
}

fn check_digest(resp: &Response, expected: &Digest, t: &Target) -> Result<(), Error> {
    match header(resp, DIGEST_HEADER).and_then(|d| d.parse::<Digest>().ok()) {
        Some(got) if got.algorithm() == expected.algorithm() && &got != expected => {
            Err(Error::DigestMismatch { reference: t.reference.clone(), expected: expected.clone(), actual: got })
        }
        _ => Ok(()),
    }
}
