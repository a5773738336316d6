//! The fuzz target of `polyarch-frontend`, run bounded under `cargo test`
//! by `tests/fuzz.rs`: any Dockerfile gives a plan or an error, never a
//! panic, within the time and memory bounds.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use polyarch_frontend::{BoxError, Options, ResolvedImage, Resolver};
use polyarch_oci::{Digest, Platform, Reference};

/// Tokens for Dockerfiles the frontend turns into graphs.
#[rustfmt::skip]
pub const PLAN_DICT: &[&str] = &[
    "FROM ", "RUN ", "COPY ", "ADD ", "ARG ", "ENV ", "ONBUILD ", "WORKDIR ", "USER ", " AS ", "--from=", "--link ",
    "--mount=type=bind,", "--mount=type=cache,", "--mount=type=secret,", "--mount=type=ssh", "--mount=type=tmpfs,",
    "target=", "source=", "from=", "id=", "size=", "--platform=$BUILDPLATFORM ", "$TARGETARCH", "${TARGETPLATFORM}",
    "scratch", "busybox", "stage", "https://example.com/a", "x.git#main", "<<EOF\n", "\nEOF\n", "0", "1", "\n", " ",
];

/// Every image exists, with a small config; `fail` fails.
struct Images;

impl Resolver for Images {
    async fn resolve(&self, reference: &Reference, platform: &Platform) -> Result<ResolvedImage, BoxError> {
        if reference.path.contains("fail") {
            return Err("manifest unknown".into());
        }
        let key = format!("{reference}|{}", platform.format());
        let config = format!(
            r#"{{"architecture":"{}","os":"linux","config":{{"Env":["PATH=/bin"],"OnBuild":["RUN echo {}"]}}}}"#,
            platform.architecture,
            reference.path.len()
        );
        Ok(ResolvedImage::new(reference.with_digest(Digest::sha256(key.as_bytes())), config.into_bytes()))
    }
}

/// Polls a future that never waits on anything outside it to its end.
fn block_on<T>(f: impl Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// A Dockerfile planned for two platforms: a plan (rendered) or an error
/// with a message.
pub fn plan(input: &[u8]) {
    let platforms = [Platform::new("linux", "amd64", None), Platform::new("linux", "arm", Some("v7"))];
    let opts = Options::new(platforms[0].clone()).with_platforms(platforms).with_build_arg("A", "1");
    match block_on(polyarch_frontend::plan(input, "Dockerfile", &opts, &Images)) {
        Ok(plan) => {
            let _ = (plan.to_json(), plan.to_dot());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
