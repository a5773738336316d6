//! Endpoints, HTTP clients, the `/v2/` ping with scheme fallback,
//! authentication (Basic, Bearer tokens, OAuth2 refresh tokens) and retries.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use crate::auth::Credential;
use crate::challenge::{self, Challenge, Scopes};
use crate::config::Mirror;
use crate::error::{is_tls_error, parse_error_body, short_reason};
use crate::retry::{parse_retry_after, retryable_status};
use crate::{DockerConfig, Error, Event, KeyPair, RegistryConfig, RetryPolicy, Timeouts};

/// How to pick `http` or `https` for a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schemes {
    Https,
    Http,
    /// HTTPS, falling back to plain HTTP on TLS or connection failures.
    HttpsThenHttp,
}

/// One place a repository can be reached: the origin or a mirror.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The reference's domain, for messages and credentials of the origin.
    pub domain: String,
    /// Network `host[:port]`.
    pub host: String,
    /// Path before `/v2/`.
    pub prefix: String,
    pub schemes: Schemes,
    pub skip_verify: bool,
    pub ca: Vec<PathBuf>,
    /// The client certificate presented to this host, if any.
    pub keypair: Option<KeyPair>,
    pub mirror: bool,
}

impl Endpoint {
    /// The host whose credentials apply.
    fn cred_host(&self) -> &str {
        if self.mirror {
            &self.host
        } else {
            &self.domain
        }
    }
}

/// What an HTTP client is made for: skip verification, extra CAs, the
/// client certificate.
type TlsKey = (bool, Vec<PathBuf>, Option<KeyPair>);

/// What a request is about, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub registry: String,
    pub repository: Option<String>,
    pub reference: String,
}

#[derive(Clone)]
struct Token {
    value: String,
    expires: Instant,
}

#[derive(Default)]
struct HostState {
    base: Option<String>,
    challenge: Option<Challenge>,
}

/// The shared state behind a [`crate::Client`].
pub(crate) struct Inner {
    pub config: RegistryConfig,
    pub insecure: bool,
    pub docker: DockerConfig,
    pub user_agent: String,
    pub retry: RetryPolicy,
    pub chunk_threshold: u64,
    pub chunk_size: usize,
    pub timeouts: Timeouts,
    pub progress: Option<Arc<dyn Fn(Event) + Send + Sync>>,
    http: Mutex<HashMap<TlsKey, reqwest::Client>>,
    hosts: Mutex<HashMap<String, HostState>>,
    /// One ping at a time per host: concurrent first requests wait for it.
    pings: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    tokens: Mutex<HashMap<(String, Scopes), Token>>,
    creds: Mutex<HashMap<String, Option<Credential>>>,
}

/// Whether `host[:port]` is a loopback address or `localhost`.
pub(crate) fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    if name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: RegistryConfig,
        insecure: bool,
        docker: DockerConfig,
        user_agent: String,
        retry: RetryPolicy,
        chunk_threshold: u64,
        chunk_size: usize,
        timeouts: Timeouts,
        progress: Option<Arc<dyn Fn(Event) + Send + Sync>>,
    ) -> Inner {
        Inner {
            config,
            insecure,
            docker,
            user_agent,
            retry,
            chunk_threshold,
            chunk_size,
            timeouts,
            progress,
            http: Mutex::default(),
            hosts: Mutex::default(),
            pings: Mutex::default(),
            tokens: Mutex::default(),
            creds: Mutex::default(),
        }
    }

    fn endpoint_for(&self, domain: &str, host: &str, prefix: String, scheme: Option<&str>, mirror: bool) -> Endpoint {
        let hc = self
            .config
            .host(host)
            .or_else(|| self.config.host(domain).filter(|_| !mirror))
            .cloned()
            .unwrap_or_default();
        let schemes = match scheme {
            Some("http") => Schemes::Http,
            Some(_) => Schemes::Https,
            None if hc.http => Schemes::Http,
            None if self.insecure || hc.insecure || is_loopback(host) => Schemes::HttpsThenHttp,
            None => Schemes::Https,
        };
        Endpoint {
            domain: domain.to_string(),
            host: host.to_string(),
            prefix,
            schemes,
            skip_verify: self.insecure || hc.insecure,
            ca: hc.ca,
            keypair: hc.keypair.into_iter().next(),
            mirror,
        }
    }

    /// The origin endpoint of `domain` (`docker.io` talks to
    /// `registry-1.docker.io`).
    pub fn origin(&self, domain: &str) -> Endpoint {
        let host = if domain == "docker.io" || domain == "index.docker.io" { "registry-1.docker.io" } else { domain };
        self.endpoint_for(domain, host, String::new(), None, false)
    }

    /// Endpoints for pulls: mirrors in order, then the origin.
    pub fn pull_endpoints(&self, domain: &str) -> Vec<Endpoint> {
        let mut eps: Vec<Endpoint> = self
            .config
            .mirrors(domain)
            .into_iter()
            .map(|Mirror { scheme, host, prefix }| self.endpoint_for(domain, &host, prefix, scheme.as_deref(), true))
            .collect();
        eps.push(self.origin(domain));
        eps
    }

    fn http_client(&self, ep: &Endpoint) -> Result<reqwest::Client, Error> {
        let key = (ep.skip_verify, ep.ca.clone(), ep.keypair.clone());
        if let Some(c) = lock(&self.http).get(&key) {
            return Ok(c.clone());
        }
        let mut certs = Vec::new();
        for path in &ep.ca {
            let pem = std::fs::read(path).map_err(|source| Error::Io { path: path.clone(), source })?;
            let found = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Config { path: path.clone(), reason: format!("invalid CA certificate: {e}") })?;
            certs.extend(found);
        }
        let mut b = reqwest::Client::builder()
            .user_agent(self.user_agent.clone())
            .connect_timeout(self.timeouts.connect)
            .read_timeout(self.timeouts.read)
            .tls_danger_accept_invalid_certs(ep.skip_verify);
        if !certs.is_empty() {
            b = b.tls_certs_merge(certs);
        }
        if let Some(kp) = &ep.keypair {
            b = b.identity(identity(kp)?);
        }
        let client = b.build().map_err(|e| Error::Tls { registry: ep.host.clone(), reason: short_reason(&e) })?;
        lock(&self.http).insert(key, client.clone());
        Ok(client)
    }

    fn host_key(ep: &Endpoint) -> String {
        format!("{}{}", ep.host, ep.prefix)
    }

    /// Maps a transport failure to an error naming the registry.
    pub fn transport_error(&self, ep: &Endpoint, target: &Target, e: &reqwest::Error) -> Error {
        if is_tls_error(e) {
            Error::Tls { registry: ep.host.clone(), reason: short_reason(e) }
        } else if e.is_connect() {
            Error::Connect { registry: ep.host.clone(), reason: short_reason(e) }
        } else {
            Error::Network { reference: target.reference.clone(), reason: short_reason(e), timeout: e.is_timeout() }
        }
    }

    /// The base URL (`scheme://host/prefix/v2/`) of an endpoint, pinging it
    /// first if it was not contacted yet.
    pub async fn base(&self, ep: &Endpoint, target: &Target) -> Result<String, Error> {
        let key = Self::host_key(ep);
        if let Some(b) = lock(&self.hosts).get(&key).and_then(|h| h.base.clone()) {
            return Ok(b);
        }
        let gate = lock(&self.pings).entry(key.clone()).or_default().clone();
        let _turn = gate.lock().await;
        if let Some(b) = lock(&self.hosts).get(&key).and_then(|h| h.base.clone()) {
            return Ok(b);
        }
        self.ping(ep, target).await
    }

    /// `GET /v2/`: picks the scheme and records the auth challenge.
    pub async fn ping(&self, ep: &Endpoint, target: &Target) -> Result<String, Error> {
        let schemes: &[&str] = match ep.schemes {
            Schemes::Https => &["https"],
            Schemes::Http => &["http"],
            Schemes::HttpsThenHttp => &["https", "http"],
        };
        let mut last = None;
        for (i, scheme) in schemes.iter().enumerate() {
            let base = format!("{scheme}://{}{}/v2/", ep.host, ep.prefix);
            let url = base.clone();
            let res = self.execute(ep, target, None, true, &|c| c.get(&url)).await;
            match res {
                Ok((resp, attempts)) => {
                    let status = resp.status();
                    if let (Some(e), false) = (last.take(), status.is_success() || status == StatusCode::UNAUTHORIZED) {
                        // A TLS port answering plain HTTP with 400: the TLS error says more.
                        return Err(e);
                    }
                    if status.is_success() || status == StatusCode::UNAUTHORIZED {
                        let challenge = pick_challenge(resp.headers());
                        let mut hosts = lock(&self.hosts);
                        let st = hosts.entry(Self::host_key(ep)).or_default();
                        st.base = Some(base.clone());
                        st.challenge = challenge;
                        return Ok(base);
                    }
                    return Err(self.status_error(resp, target, attempts).await);
                }
                Err(e) if i + 1 < schemes.len() && matches!(e, Error::Tls { .. } | Error::Connect { .. }) => {
                    last = Some(e)
                }
                Err(e) => {
                    return Err(match (last.take(), &e) {
                        (Some(tls @ Error::Tls { .. }), _) => tls,
                        _ => e,
                    })
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Connect { registry: ep.host.clone(), reason: "no scheme to try".into() }))
    }

    /// Credentials for an endpoint's registry, looked up once.
    pub async fn credential(&self, ep: &Endpoint) -> Result<Option<Credential>, Error> {
        let host = ep.cred_host().to_string();
        if let Some(c) = lock(&self.creds).get(&host) {
            return Ok(c.clone());
        }
        let docker = self.docker.clone();
        let h = host.clone();
        let found = tokio::task::spawn_blocking(move || docker.credential(&h)).await.map_err(|e| {
            Error::CredentialHelper { helper: "(task)".into(), registry: host.clone(), reason: e.to_string() }
        })??;
        lock(&self.creds).insert(host, found.clone());
        Ok(found)
    }

    /// Sends a request built by `make` with auth for `scopes` (`None`: no
    /// auth), retrying temporary failures when `retry` is set. Returns the
    /// response (any status) and the number of attempts made.
    pub async fn execute(
        &self,
        ep: &Endpoint,
        target: &Target,
        scopes: Option<&Scopes>,
        retry: bool,
        make: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Sync),
    ) -> Result<(Response, u32), Error> {
        let http = self.http_client(ep)?;
        let start = Instant::now();
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            attempt += 1;
            let mut rb = make(&http);
            if let Some(scopes) = scopes {
                if let Some(h) = self.auth_header(ep, target, scopes).await? {
                    rb = rb.header(AUTHORIZATION, h);
                }
            }
            match rb.send().await {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && scopes.is_some() && !reauthed => {
                    reauthed = true;
                    attempt -= 1;
                    let fresh = pick_challenge(resp.headers());
                    let mut hosts = lock(&self.hosts);
                    let st = hosts.entry(Self::host_key(ep)).or_default();
                    let changed = fresh.is_some() && fresh != st.challenge;
                    if fresh.is_some() {
                        st.challenge = fresh;
                    }
                    drop(hosts);
                    let had_token = self.forget_token(ep, scopes);
                    if !changed && !had_token {
                        return Ok((resp, attempt + 1));
                    }
                }
                Ok(resp) if retry && retryable_status(resp.status().as_u16()) => {
                    let ra = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    match self.retry.next_wait(attempt, start.elapsed(), ra) {
                        Some(w) => tokio::time::sleep(w).await,
                        None => return Ok((resp, attempt)),
                    }
                }
                Ok(resp) => return Ok((resp, attempt)),
                Err(e) => {
                    let err = self.transport_error(ep, target, &e);
                    let again = retry && retryable_error(&err);
                    match self.retry.next_wait(attempt, start.elapsed(), None).filter(|_| again) {
                        Some(w) => tokio::time::sleep(w).await,
                        None => return Err(gave_up(err, attempt)),
                    }
                }
            }
        }
    }

    fn forget_token(&self, ep: &Endpoint, scopes: Option<&Scopes>) -> bool {
        match scopes {
            Some(s) => lock(&self.tokens).remove(&(Self::host_key(ep), s.clone())).is_some(),
            None => false,
        }
    }

    async fn auth_header(&self, ep: &Endpoint, target: &Target, scopes: &Scopes) -> Result<Option<String>, Error> {
        let challenge = lock(&self.hosts).get(&Self::host_key(ep)).and_then(|h| h.challenge.clone());
        let Some(ch) = challenge else { return Ok(None) };
        match ch.scheme.as_str() {
            "basic" => {
                Ok(self.credential(ep).await?.filter(|c| !c.username.is_empty() || !c.password.is_empty()).map(|c| {
                    let raw = format!("{}:{}", c.username, c.password);
                    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
                }))
            }
            "bearer" => {
                let key = (Self::host_key(ep), scopes.clone());
                let cached = lock(&self.tokens).get(&key).cloned();
                if let Some(t) = cached.filter(|t| t.expires > Instant::now()) {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let t = self.fetch_token_boxed(ep, target, &ch, scopes).await?;
                let value = format!("Bearer {}", t.value);
                lock(&self.tokens).insert(key, t);
                Ok(Some(value))
            }
            _ => Ok(None),
        }
    }

    fn fetch_token_boxed<'a>(
        &'a self,
        ep: &'a Endpoint,
        target: &'a Target,
        ch: &'a Challenge,
        scopes: &'a Scopes,
    ) -> futures_util::future::BoxFuture<'a, Result<Token, Error>> {
        Box::pin(self.fetch_token(ep, target, ch, scopes))
    }

    /// A token for `scopes`, asked for again when the answer is cut short.
    async fn fetch_token(
        &self,
        ep: &Endpoint,
        target: &Target,
        ch: &Challenge,
        scopes: &Scopes,
    ) -> Result<Token, Error> {
        self.retry_body(|| self.fetch_token_once(ep, target, ch, scopes)).await
    }

    async fn fetch_token_once(
        &self,
        ep: &Endpoint,
        target: &Target,
        ch: &Challenge,
        scopes: &Scopes,
    ) -> Result<Token, BodyFailure> {
        let realm = ch.param("realm").filter(|r| !r.is_empty()).ok_or_else(|| Error::InvalidResponse {
            registry: ep.host.clone(),
            reason: "bearer challenge without realm".into(),
        })?;
        let realm_url = url::Url::parse(realm).map_err(|e| Error::InvalidResponse {
            registry: ep.host.clone(),
            reason: format!("invalid token realm {realm:?}: {e}"),
        })?;
        let service = ch.param("service").unwrap_or("").to_string();
        let scope_list = scopes.strings();
        let cred = self.credential(ep).await?;
        let token_target =
            Target { registry: ep.host.clone(), repository: None, reference: format!("token for {}", ep.host) };
        if let Some(refresh) = cred.as_ref().and_then(|c| c.identity_token.clone()) {
            let (resp, attempts) =
                self.oauth_post(ep, &token_target, &realm_url, &service, &scope_list, refresh).await?;
            // Token servers without OAuth2 support answer 404/405: use GET.
            if !matches!(resp.status(), StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED) {
                return self.token_response(ep, target, resp, attempts, true).await;
            }
        }
        let mut u = realm_url;
        {
            let mut q = u.query_pairs_mut();
            if !service.is_empty() {
                q.append_pair("service", &service);
            }
            for s in &scope_list {
                q.append_pair("scope", s);
            }
        }
        let basic = cred.as_ref().filter(|c| !c.username.is_empty() || !c.password.is_empty()).cloned();
        let (resp, attempts) = self
            .execute(ep, &token_target, None, true, &|c| {
                let rb = c.get(u.clone());
                match &basic {
                    Some(b) => rb.basic_auth(&b.username, Some(&b.password)),
                    None => rb,
                }
            })
            .await?;
        self.token_response(ep, target, resp, attempts, cred.is_some()).await
    }

    /// The OAuth2 refresh-token grant (docker's `identitytoken`).
    async fn oauth_post(
        &self,
        ep: &Endpoint,
        t: &Target,
        realm: &url::Url,
        service: &str,
        scopes: &[String],
        refresh: String,
    ) -> Result<(Response, u32), Error> {
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", &refresh)
                .append_pair("service", service)
                .append_pair("client_id", "polyarch");
            if !scopes.is_empty() {
                form.append_pair("scope", &scopes.join(" "));
            }
            form.finish()
        };
        self.execute(ep, t, None, true, &|c| {
            c.post(realm.clone()).header("Content-Type", "application/x-www-form-urlencoded").body(body.clone())
        })
        .await
    }

    async fn token_response(
        &self,
        ep: &Endpoint,
        target: &Target,
        resp: Response,
        attempts: u32,
        had_credentials: bool,
    ) -> Result<Token, BodyFailure> {
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let errors = parse_error_body(&read_limited(resp, 64 * 1024).await.unwrap_or_default());
            return Err(Error::Unauthorized {
                registry: ep.domain.clone(),
                reference: target.reference.clone(),
                had_credentials,
                errors,
            }
            .into());
        }
        if !status.is_success() {
            return Err(self.status_error(resp, target, attempts).await.into());
        }
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let bytes = read_limited(resp, 1024 * 1024)
            .await
            .map_err(|e| BodyFailure::Cut(self.transport_error(ep, target, &e)))?;
        let b: Body = serde_json::from_slice(&bytes).map_err(|e| Error::InvalidResponse {
            registry: ep.host.clone(),
            reason: format!("token response: {e}"),
        })?;
        let value = if b.token.is_empty() { b.access_token } else { b.token };
        if value.is_empty() {
            return Err(Error::InvalidResponse {
                registry: ep.host.clone(),
                reason: "token response without token".into(),
            }
            .into());
        }
        // Refresh a little early; 60 s is the spec's default lifetime.
        let life = Duration::from_secs(b.expires_in.filter(|e| *e > 0).unwrap_or(60));
        let margin = if life > Duration::from_secs(20) { Duration::from_secs(10) } else { Duration::ZERO };
        Ok(Token { value, expires: Instant::now() + life - margin })
    }

    /// Turns an error response into an [`Error`], reading (a bounded part
    /// of) its JSON body.
    pub async fn status_error(&self, resp: Response, target: &Target, attempts: u32) -> Error {
        let status = resp.status().as_u16();
        let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
        let errors = parse_error_body(&body);
        let e = if status == 401 {
            let had_credentials = self.had_credentials(&target.registry);
            Error::Unauthorized {
                registry: target.registry.clone(),
                reference: target.reference.clone(),
                had_credentials,
                errors,
            }
        } else {
            Error::Status {
                registry: target.registry.clone(),
                repository: target.repository.clone(),
                reference: target.reference.clone(),
                status,
                errors,
            }
        };
        if retryable_status(status) {
            gave_up(e, attempts)
        } else {
            e
        }
    }

    fn had_credentials(&self, registry: &str) -> bool {
        lock(&self.creds).get(registry).is_some_and(Option::is_some)
    }

    /// Emits a progress event if a sink is set.
    pub fn emit(&self, event: Event) {
        if let Some(p) = &self.progress {
            p(event);
        }
    }
}

/// How one attempt of [`Inner::retry_body`] failed.
pub(crate) enum BodyFailure {
    /// The connection failed while the body was read (a reset, a body cut
    /// short, a timeout): the request is worth sending again.
    Cut(Error),
    /// Anything else, final (the request's own retries are done).
    Final(Error),
}

impl From<Error> for BodyFailure {
    fn from(e: Error) -> BodyFailure {
        BodyFailure::Final(e)
    }
}

impl Inner {
    /// Runs `op` (a request through [`Inner::execute`] and the reading of
    /// its body) again when the body was cut short, within the retry
    /// policy, as a dropped connection before the response is.
    pub async fn retry_body<T, F, Fut>(&self, op: F) -> Result<T, Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, BodyFailure>>,
    {
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match op().await {
                Ok(v) => return Ok(v),
                Err(BodyFailure::Final(e)) => return Err(e),
                Err(BodyFailure::Cut(e)) => match self.retry.next_wait(attempt, start.elapsed(), None) {
                    Some(w) => tokio::time::sleep(w).await,
                    None => return Err(gave_up(e, attempt)),
                },
            }
        }
    }
}

fn gave_up(e: Error, attempts: u32) -> Error {
    if attempts > 1 {
        Error::GaveUp { attempts, last: Box::new(e) }
    } else {
        e
    }
}

/// Resets, timeouts and early closes are retried; a refused connection is
/// not (a registry that is down stays down), as in go-containerregistry's
/// default retry predicate, nor a name that does not resolve (the system
/// resolver has retried its servers already).
fn retryable_error(e: &Error) -> bool {
    match e {
        Error::Network { .. } => true,
        Error::Connect { reason, .. } => {
            reason != "connection refused" && !reason.starts_with(crate::error::DNS_FAILED)
        }
        _ => false,
    }
}

/// The challenge to use: Bearer over Basic, as clients usually prefer.
fn pick_challenge(headers: &HeaderMap) -> Option<Challenge> {
    let values: Vec<&str> = headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).collect();
    let all = challenge::parse(&values);
    all.iter().find(|c| c.scheme == "bearer").or_else(|| all.iter().find(|c| c.scheme == "basic")).cloned()
}

/// Reads at most `limit` bytes of a body (the rest is dropped).
pub(crate) async fn read_limited(resp: Response, limit: usize) -> Result<Bytes, reqwest::Error> {
    let mut out = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out.freeze())
}

/// The client identity of a keypair: its key and certificate PEM files.
fn identity(kp: &KeyPair) -> Result<reqwest::Identity, Error> {
    let read = |path: &PathBuf| std::fs::read(path).map_err(|source| Error::Io { path: path.clone(), source });
    let mut pem = read(&kp.key)?;
    pem.push(b'\n');
    pem.extend(read(&kp.cert)?);
    reqwest::Identity::from_pem(&pem).map_err(|e| Error::Config {
        path: kp.cert.clone(),
        reason: format!("invalid client certificate or key {}: {}", kp.key.display(), short_reason(&e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_names_that_do_not_resolve_are_not_retried() {
        let connect = |reason: &str| Error::Connect { registry: "r".into(), reason: reason.into() };
        assert!(!retryable_error(&connect("connection refused")));
        assert!(!retryable_error(&connect("DNS lookup failed: Name or service not known")));
        assert!(retryable_error(&connect("connection reset")));
        assert!(retryable_error(&Error::Network {
            reference: "r/x".into(),
            reason: "timed out".into(),
            timeout: true
        }));
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000", "::1", "x.localhost:1"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["docker.io", "10.0.0.1:5000", "[fe80::1]:5000", "localhost.example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn endpoints_follow_config() {
        let cfg = RegistryConfig::parse(
            r#"
            [registry."docker.io"]
            mirrors = ["127.0.0.1:5000", "http://mirror.example:8080/cache"]
            [registry."127.0.0.1:5000"]
            http = true
            [registry."secure.example"]
            insecure = true
            ca = ["/x/ca.crt"]
            "#,
        )
        .unwrap();
        let inner = Inner::new(
            cfg,
            false,
            DockerConfig::empty(),
            "t".into(),
            RetryPolicy::fast(),
            1,
            1,
            Timeouts::default(),
            None,
        );
        let eps = inner.pull_endpoints("docker.io");
        assert_eq!(eps.len(), 3);
        assert_eq!((eps[0].host.as_str(), eps[0].schemes, eps[0].mirror), ("127.0.0.1:5000", Schemes::Http, true));
        assert_eq!(
            (eps[1].host.as_str(), eps[1].prefix.as_str(), eps[1].schemes),
            ("mirror.example:8080", "/cache", Schemes::Http)
        );
        assert_eq!(
            (eps[2].host.as_str(), eps[2].schemes, eps[2].mirror),
            ("registry-1.docker.io", Schemes::Https, false)
        );
        let s = inner.origin("secure.example");
        assert!(s.skip_verify && s.schemes == Schemes::HttpsThenHttp && s.ca.len() == 1);
        assert_eq!(inner.origin("localhost:5001").schemes, Schemes::HttpsThenHttp);
        assert!(!inner.origin("localhost:5001").skip_verify);
        let insecure = Inner::new(
            RegistryConfig::default(),
            true,
            DockerConfig::empty(),
            "t".into(),
            RetryPolicy::fast(),
            1,
            1,
            Timeouts::default(),
            None,
        );
        let q = insecure.origin("quay.io");
        assert!(q.skip_verify && q.schemes == Schemes::HttpsThenHttp);
    }
}
