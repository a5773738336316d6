//! Containers, volumes and images by name: create, start, stop, inspect
//! and remove a container (`/containers/...`), remove a volume
//! (`/volumes/...`), ask whether an image exists and pull one
//! (`/images/{name}/json`, `/images/create`). A missing object is `None`
//! or `false`, not an error.

use std::io::{Read, Write as _};

use serde::Deserialize;
use serde_json::Value;

use crate::{encode, http, Engine, Error, Result};

/// A named volume mounted into a container.
#[derive(Clone, Debug, Default)]
pub struct VolumeMount {
    /// The volume's name (created on first use).
    pub volume: String,
    /// Where it is mounted in the container.
    pub target: String,
}

/// What `POST /containers/create` is asked for.
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    pub image: String,
    /// Overrides the image's entrypoint when set.
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub privileged: bool,
    /// `HostConfig.CapAdd`: capabilities by name (`SYS_ADMIN`).
    pub cap_add: Vec<String>,
    /// `HostConfig.SecurityOpt` (`seccomp=unconfined`).
    pub security_opt: Vec<String>,
    /// No masked or read-only paths in `/proc` and `/sys`
    /// (`HostConfig.MaskedPaths` and `ReadonlyPaths` empty, as the CLI's
    /// `--security-opt systempaths=unconfined`).
    pub unmasked: bool,
    /// `HostConfig.NetworkMode` (`host`, `none`, a network name).
    pub network: Option<String>,
    pub mounts: Vec<VolumeMount>,
    /// Labels on the container.
    pub labels: Vec<(String, String)>,
}

impl ContainerSpec {
    fn to_json(&self) -> Value {
        let mounts: Vec<Value> = self
            .mounts
            .iter()
            .map(|m| serde_json::json!({"Type": "volume", "Source": m.volume, "Target": m.target}))
            .collect();
        let mut host = serde_json::json!({
            "Privileged": self.privileged,
            "CapAdd": self.cap_add,
            "SecurityOpt": self.security_opt,
            "Mounts": mounts,
        });
        if self.unmasked {
            host["MaskedPaths"] = serde_json::json!([]);
            host["ReadonlyPaths"] = serde_json::json!([]);
        }
        if let Some(n) = &self.network {
            host["NetworkMode"] = Value::String(n.clone());
        }
        let labels: serde_json::Map<String, Value> =
            self.labels.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let mut spec = serde_json::json!({
            "Image": self.image,
            "Cmd": self.cmd,
            "Env": self.env,
            "Labels": labels,
            "HostConfig": host,
        });
        if let Some(e) = &self.entrypoint {
            spec["Entrypoint"] = serde_json::json!(e);
        }
        spec
    }
}

/// `GET /containers/{name}/json`, the fields polyarch reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInfo {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub state: ContainerState,
}

/// A container's state.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    /// `created`, `running`, `paused`, `restarting`, `exited`, `dead`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub running: bool,
    #[serde(default)]
    pub exit_code: i64,
    #[serde(default)]
    pub error: String,
}

impl Engine {
    /// Sends `method path` with an optional JSON body; returns the status
    /// and the body (at most 16 MiB) of any answer, 2xx or not.
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Vec<u8>)> {
        let call = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let mut conn = self.connect()?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: polyarch\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(body.as_bytes())).map_err(self.io(&call))?;
        let mut resp = http::read_response(conn).map_err(self.io(&call))?;
        let mut text = Vec::new();
        resp.body.by_ref().take(16 << 20).read_to_end(&mut text).map_err(self.io(&call))?;
        Ok((resp.status, text))
    }

    /// [`Engine::call`] where any status but `ok` (or 2xx) is an
    /// [`Error::Api`] with the engine's message.
    fn expect(&self, method: &str, path: &str, body: Option<&Value>, ok: &[u16]) -> Result<(u16, Vec<u8>)> {
        let (status, text) = self.call(method, path, body)?;
        if (200..300).contains(&status) || ok.contains(&status) {
            return Ok((status, text));
        }
        let call = format!("{method} {}", path.split('?').next().unwrap_or(path));
        Err(self.api_error(&call, status, &text))
    }

    pub(crate) fn api_error(&self, call: &str, status: u16, text: &[u8]) -> Error {
        let text = String::from_utf8_lossy(text);
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string());
        Error::Api { endpoint: self.endpoint.to_string(), call: call.into(), status, message }
    }

    pub(crate) fn parse<T: for<'de> Deserialize<'de>>(&self, call: &str, text: &[u8]) -> Result<T> {
        serde_json::from_slice(text).map_err(|e| Error::Protocol {
            endpoint: self.endpoint.to_string(),
            call: call.into(),
            why: e.to_string(),
        })
    }

    /// `POST /containers/create?name=NAME`: the new container's ID. A
    /// missing image is [`Error::Api`] with status 404.
    pub fn create_container(&self, name: &str, spec: &ContainerSpec) -> Result<String> {
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "Id")]
            id: String,
        }
        let path = format!("/containers/create?name={}", encode(name));
        let (_, text) = self.expect("POST", &path, Some(&spec.to_json()), &[])?;
        Ok(self.parse::<Created>("POST /containers/create", &text)?.id)
    }

    /// `POST /containers/{id}/start`; a running container is fine.
    pub fn start_container(&self, id: &str) -> Result<()> {
        self.expect("POST", &format!("/containers/{}/start", encode(id)), None, &[304]).map(|_| ())
    }

    /// `POST /containers/{id}/stop?t=SECS`; a stopped container is fine.
    pub fn stop_container(&self, id: &str, secs: u32) -> Result<()> {
        self.expect("POST", &format!("/containers/{}/stop?t={secs}", encode(id)), None, &[304]).map(|_| ())
    }

    /// `GET /containers/{name}/json`, or `None` when there is none.
    pub fn inspect_container(&self, name: &str) -> Result<Option<ContainerInfo>> {
        let path = format!("/containers/{}/json", encode(name));
        match self.expect("GET", &path, None, &[404])? {
            (404, _) => Ok(None),
            (_, text) => self.parse("GET /containers/{name}/json", &text).map(Some),
        }
    }

    /// `DELETE /containers/{name}?force=1`, also removing anonymous
    /// volumes; `false` when there was none.
    pub fn remove_container(&self, name: &str) -> Result<bool> {
        let path = format!("/containers/{}?force=1&v=1", encode(name));
        Ok(self.expect("DELETE", &path, None, &[404])?.0 != 404)
    }

    /// `DELETE /volumes/{name}`; `false` when there was none.
    pub fn remove_volume(&self, name: &str) -> Result<bool> {
        Ok(self.expect("DELETE", &format!("/volumes/{}", encode(name)), None, &[404])?.0 != 404)
    }

    /// `GET /volumes/{name}`: whether the volume exists.
    pub fn volume_exists(&self, name: &str) -> Result<bool> {
        Ok(self.expect("GET", &format!("/volumes/{}", encode(name)), None, &[404])?.0 != 404)
    }

    /// `GET /images/{name}/json`: whether the engine has the image.
    pub fn image_exists(&self, name: &str) -> Result<bool> {
        Ok(self.expect("GET", &format!("/images/{}/json", encode(name)), None, &[404])?.0 != 404)
    }

    /// `POST /images/create?fromImage=REF`: the engine pulls `reference`
    /// itself; an error in its message stream fails.
    pub fn pull(&self, reference: &str) -> Result<()> {
        let call = "POST /images/create";
        let path = format!("/images/create?fromImage={}", encode(reference));
        let (status, text) = self.call("POST", &path, None)?;
        if !(200..300).contains(&status) {
            return Err(self.api_error(call, status, &text));
        }
        self.messages(call, &text[..]).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_body_has_what_the_engine_reads() {
        let spec = ContainerSpec {
            image: "w:1".into(),
            cmd: vec!["worker".into()],
            env: vec!["A=b".into()],
            privileged: true,
            network: Some("host".into()),
            mounts: vec![VolumeMount { volume: "v".into(), target: "/var/lib/polyarch".into() }],
            labels: vec![("k".into(), "v".into())],
            ..ContainerSpec::default()
        };
        let j = spec.to_json();
        assert_eq!(j["Image"], "w:1");
        assert_eq!(j["HostConfig"]["Privileged"], true);
        assert_eq!(j["HostConfig"]["NetworkMode"], "host");
        assert_eq!(j["HostConfig"]["Mounts"][0]["Source"], "v");
        assert_eq!(j["HostConfig"]["Mounts"][0]["Type"], "volume");
        assert_eq!(j["Env"][0], "A=b");
        assert_eq!(j["Labels"]["k"], "v");
        assert!(j.get("Entrypoint").is_none());
        let bare = ContainerSpec::default().to_json();
        assert!(bare["HostConfig"].get("NetworkMode").is_none());
    }

    #[test]
    fn container_state_parses() {
        let i: ContainerInfo =
            serde_json::from_str(r#"{"Id":"abc","State":{"Status":"exited","Running":false,"ExitCode":3}}"#).unwrap();
        assert_eq!((i.id.as_str(), i.state.status.as_str(), i.state.exit_code), ("abc", "exited", 3));
    }
}
