//! Registry credentials from Docker's `config.json`: `auths` entries,
//! `credsStore` and `credHelpers` (the `docker-credential-*` protocol), and
//! `login`/`logout` that write the file like the docker CLI does.
//!
//! Secrets never appear in `Debug` output or in errors.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::Error;

/// The key Docker uses for Docker Hub credentials.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credential {
    /// User name (empty with an identity token alone).
    pub username: String,
    /// Password or access token.
    pub password: String,
    /// OAuth2 refresh token (`identitytoken`), used to get bearer tokens.
    pub identity_token: Option<String>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &if self.password.is_empty() { "" } else { "<redacted>" })
            .field("identity_token", &self.identity_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Docker's client configuration (`config.json`), kept whole so that a
/// login rewrites only what it must.
#[derive(Clone, Default)]
pub struct DockerConfig {
    path: Option<PathBuf>,
    doc: Map<String, Value>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&String> = self.auths().map(|a| a.keys().collect()).unwrap_or_default();
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .field("auths", &keys)
            .field("creds_store", &self.creds_store())
            .finish_non_exhaustive()
    }
}

/// The key under which credentials for `registry` (a reference domain) are
/// stored: Docker Hub's is [`DOCKER_HUB_KEY`].
pub fn server_key(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY,
        other => other,
    }
}

/// The host part of an `auths` key (`https://host/v1/` → `host`), as
/// docker's `ConvertToHostname`.
fn key_host(key: &str) -> &str {
    let s = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    s.split('/').next().unwrap_or(s)
}

fn same_registry(key: &str, registry: &str) -> bool {
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    let k = key_host(key);
    k == registry || (hub(k) && hub(registry))
}

impl DockerConfig {
    /// An empty configuration with no file behind it (anonymous access).
    pub fn empty() -> DockerConfig {
        DockerConfig::default()
    }

    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(d).join("config.json"));
        }
        let home = std::env::var_os("HOME").filter(|v| !v.is_empty())?;
        Some(PathBuf::from(home).join(".docker").join("config.json"))
    }

    /// Loads the default file; a missing file is an empty configuration
    /// that `login` will create.
    pub fn load() -> Result<DockerConfig, Error> {
        match Self::default_path() {
            Some(p) => Self::load_from(&p),
            None => Ok(DockerConfig::empty()),
        }
    }

    /// Loads `path`; a missing file is an empty configuration bound to
    /// `path`.
    pub fn load_from(path: &Path) -> Result<DockerConfig, Error> {
        let doc = match std::fs::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(bytes) => serde_json::from_slice::<Map<String, Value>>(&bytes)
                .map_err(|e| Error::Config { path: path.to_path_buf(), reason: format!("invalid JSON: {e}") })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(source) => return Err(Error::Io { path: path.to_path_buf(), source }),
        };
        Ok(DockerConfig { path: Some(path.to_path_buf()), doc })
    }

    /// The file this configuration is read from and written to.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn auths(&self) -> Option<&Map<String, Value>> {
        self.doc.get("auths")?.as_object()
    }

    /// The global credential store (`credsStore`), if any.
    pub fn creds_store(&self) -> Option<&str> {
        self.doc.get("credsStore")?.as_str().filter(|s| !s.is_empty())
    }

    /// The helper that holds credentials of `registry`: its `credHelpers`
    /// entry, else `credsStore`.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        let key = server_key(registry);
        let helpers = self.doc.get("credHelpers").and_then(Value::as_object);
        if let Some(h) = helpers.and_then(|m| m.iter().find(|(k, _)| k.as_str() == key || same_registry(k, registry))) {
            return h.1.as_str().filter(|s| !s.is_empty());
        }
        self.creds_store()
    }

    /// The credentials for `registry` (a reference domain such as
    /// `docker.io` or `127.0.0.1:5000`); `None` means anonymous. Runs the
    /// credential helper if one is configured.
    pub fn credential(&self, registry: &str) -> Result<Option<Credential>, Error> {
        if let Some(helper) = self.helper_for(registry) {
            if let Some(c) = helper_get(helper, registry)? {
                return Ok(Some(c));
            }
        }
        Ok(self.file_credential(registry))
    }

    fn file_credential(&self, registry: &str) -> Option<Credential> {
        let auths = self.auths()?;
        let key = server_key(registry);
        let entry = auths.get(key).or_else(|| auths.iter().find(|(k, _)| same_registry(k, registry)).map(|e| e.1))?;
        let entry = entry.as_object()?;
        let s = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let mut c = Credential { username: s("username"), password: s("password"), identity_token: None };
        let auth = s("auth");
        if !auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (u, p) = text.split_once(':')?;
            c.username = u.to_string();
            c.password = p.trim_end_matches('\n').to_string();
        }
        let token = s("identitytoken");
        if !token.is_empty() {
            c.identity_token = Some(token);
        }
        (!c.username.is_empty() || !c.password.is_empty() || c.identity_token.is_some()).then_some(c)
    }

    /// Sets credentials for `registry` in memory only (nothing is written
    /// and no helper is run), e.g. to check them before a login.
    pub fn set_credential(&mut self, registry: &str, username: &str, password: &str) {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let mut entry = Map::new();
        entry.insert("auth".into(), Value::String(auth));
        let auths = self.doc.entry("auths").or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Value::Object(m) = auths {
            m.insert(server_key(registry).to_string(), Value::Object(entry));
        }
        // In-memory credentials win over any helper.
        self.doc.remove("credsStore");
        self.doc.remove("credHelpers");
    }

    /// Stores credentials for `registry` like `docker login`: through the
    /// helper configured for it, else base64 in `auths`. The file is
    /// rewritten atomically with mode 0600, keeping all other keys.
    pub fn login(&mut self, registry: &str, username: &str, password: &str) -> Result<(), Error> {
        let key = server_key(registry).to_string();
        let entry = if let Some(helper) = self.helper_for(registry).map(str::to_string) {
            helper_store(&helper, registry, username, password)?;
            Map::new()
        } else {
            let mut e = Map::new();
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            e.insert("auth".into(), Value::String(auth));
            e
        };
        let auths = self.doc.entry("auths").or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Value::Object(m) = auths {
            m.insert(key, Value::Object(entry));
        }
        self.save()
    }

    /// Removes credentials for `registry` (helper `erase` and the `auths`
    /// entry). Returns whether anything was stored.
    pub fn logout(&mut self, registry: &str) -> Result<bool, Error> {
        let mut removed = false;
        if let Some(helper) = self.helper_for(registry).map(str::to_string) {
            removed |= helper_erase(&helper, registry)?;
        }
        if let Some(Value::Object(m)) = self.doc.get_mut("auths") {
            let keys: Vec<String> = m.keys().filter(|k| same_registry(k, registry)).cloned().collect();
            for k in keys {
                m.remove(&k);
                removed = true;
            }
        }
        self.save()?;
        Ok(removed)
    }

    fn save(&self) -> Result<(), Error> {
        let Some(path) = self.path.clone().or_else(Self::default_path) else {
            return Err(Error::Config {
                path: PathBuf::from("config.json"),
                reason: "no HOME or DOCKER_CONFIG".into(),
            });
        };
        let io = |source| Error::Io { path: path.clone(), source };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut bytes = serde_json::to_vec_pretty(&self.doc)
            .map_err(|e| Error::Config { path: path.clone(), reason: e.to_string() })?;
        bytes.push(b'\n');
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("config.json"),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

/// The server URL handed to credential helpers (docker's convention).
fn helper_server(registry: &str) -> &str {
    server_key(registry)
}

fn run_helper(helper: &str, registry: &str, action: &str, input: &[u8]) -> Result<(bool, Vec<u8>, String), Error> {
    let fail = |reason: String| Error::CredentialHelper { helper: helper.into(), registry: registry.into(), reason };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| fail(format!("writing to it: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(format!("waiting for it: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let msg = if stderr.is_empty() { String::from_utf8_lossy(&out.stdout).trim().to_string() } else { stderr };
    Ok((out.status.success(), out.stdout, msg))
}

fn helper_get(helper: &str, registry: &str) -> Result<Option<Credential>, Error> {
    let (ok, stdout, msg) = run_helper(helper, registry, "get", helper_server(registry).as_bytes())?;
    if !ok {
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        // The output of a failed `get` is shown: helpers print only errors then.
        return Err(Error::CredentialHelper { helper: helper.into(), registry: registry.into(), reason: msg });
    }
    #[derive(serde::Deserialize)]
    struct Out {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let out: Out = serde_json::from_slice(&stdout).map_err(|_| Error::CredentialHelper {
        helper: helper.into(),
        registry: registry.into(),
        reason: "its output is not the expected JSON".into(),
    })?;
    if out.username == "<token>" {
        return Ok(Some(Credential {
            username: String::new(),
            password: String::new(),
            identity_token: Some(out.secret),
        }));
    }
    if out.username.is_empty() && out.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential { username: out.username, password: out.secret, identity_token: None }))
}

fn helper_store(helper: &str, registry: &str, username: &str, password: &str) -> Result<(), Error> {
    let input = serde_json::json!({"ServerURL": helper_server(registry), "Username": username, "Secret": password});
    let (ok, _, msg) = run_helper(helper, registry, "store", input.to_string().as_bytes())?;
    if ok {
        Ok(())
    } else {
        Err(Error::CredentialHelper { helper: helper.into(), registry: registry.into(), reason: scrub(&msg, password) })
    }
}

fn helper_erase(helper: &str, registry: &str) -> Result<bool, Error> {
    let (ok, _, msg) = run_helper(helper, registry, "erase", helper_server(registry).as_bytes())?;
    if ok {
        Ok(true)
    } else if msg.contains("credentials not found") {
        Ok(false)
    } else {
        Err(Error::CredentialHelper { helper: helper.into(), registry: registry.into(), reason: msg })
    }
}

fn scrub(msg: &str, secret: &str) -> String {
    if secret.is_empty() {
        msg.to_string()
    } else {
        msg.replace(secret, "<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auth_forms_and_hub_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
                "https://127.0.0.1:5000/v2/":{"username":"u","password":"p"},
                "tok.example":{"identitytoken":"refresh"}
            },"proxies":{"default":{}}}"#,
        )
        .unwrap();
        let c = DockerConfig::load_from(&p).unwrap();
        let hub = c.credential("docker.io").unwrap().unwrap();
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("hub", "secret"));
        let local = c.credential("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(local.password, "p");
        assert_eq!(c.credential("tok.example").unwrap().unwrap().identity_token.as_deref(), Some("refresh"));
        assert!(c.credential("quay.io").unwrap().is_none());
        let dbg = format!("{hub:?} {c:?}");
        assert!(!dbg.contains("secret") && !dbg.contains("aHViOnNlY3JldA"), "{dbg}");
    }

    #[test]
    fn login_logout_keep_other_keys_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("config.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, r#"{"psFormat":"table","auths":{"other:1":{"auth":"eDp5"}}}"#).unwrap();
        let mut c = DockerConfig::load_from(&p).unwrap();
        c.login("127.0.0.1:5000", "testuser", "testpassword").unwrap();
        c.login("docker.io", "hub", "pw").unwrap();
        let again = DockerConfig::load_from(&p).unwrap();
        assert_eq!(again.credential("127.0.0.1:5000").unwrap().unwrap().password, "testpassword");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("psFormat") && text.contains("other:1") && text.contains(DOCKER_HUB_KEY));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let mut again = again;
        assert!(again.logout("127.0.0.1:5000").unwrap());
        assert!(!again.logout("127.0.0.1:5000").unwrap());
        let last = DockerConfig::load_from(&p).unwrap();
        assert!(last.credential("127.0.0.1:5000").unwrap().is_none());
        assert!(last.credential("other:1").unwrap().is_some());
    }

    #[test]
    fn in_memory_credentials() {
        let mut c = DockerConfig::empty();
        c.set_credential("docker.io", "u", "p w");
        let got = c.credential("docker.io").unwrap().unwrap();
        assert_eq!((got.username.as_str(), got.password.as_str()), ("u", "p w"));
        assert!(c.path().is_none());
    }

    #[test]
    fn missing_helper_is_a_clear_error_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, r#"{"credHelpers":{"r.example":"polyarch-no-such-helper"}}"#).unwrap();
        let c = DockerConfig::load_from(&p).unwrap();
        assert_eq!(c.helper_for("r.example"), Some("polyarch-no-such-helper"));
        assert_eq!(c.helper_for("other.example"), None);
        let e = c.credential("r.example").unwrap_err();
        assert!(e.to_string().contains("docker-credential-polyarch-no-such-helper"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn helper_protocol_get_store_erase() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let script = format!(
            "#!/bin/sh\nin=$(cat)\ncase \"$1\" in\n\
             get) if [ -f {s} ]; then cat {s}; else echo 'credentials not found in native keychain'; exit 1; fi;;\n\
             store) printf '%s' \"$in\" > {s};;\n\
             erase) rm {s};;\nesac\n",
            s = store.display()
        );
        let bin = dir.path().join("docker-credential-polyarchtest");
        std::fs::write(&bin, script).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let old = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir.path().to_path_buf()];
        paths.extend(std::env::split_paths(&old));
        // Only this test changes PATH, and it adds to it.
        std::env::set_var("PATH", std::env::join_paths(paths).unwrap());
        let p = dir.path().join("config.json");
        std::fs::write(&p, r#"{"credsStore":"polyarchtest"}"#).unwrap();
        let mut c = DockerConfig::load_from(&p).unwrap();
        assert!(c.credential("127.0.0.1:5000").unwrap().is_none());
        c.login("127.0.0.1:5000", "u", "pw").unwrap();
        assert!(!std::fs::read_to_string(&p).unwrap().contains("pw"));
        assert_eq!(c.credential("127.0.0.1:5000").unwrap().unwrap().password, "pw");
        assert!(c.logout("127.0.0.1:5000").unwrap());
        assert!(c.credential("127.0.0.1:5000").unwrap().is_none());
    }
}
