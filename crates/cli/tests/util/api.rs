//! Asking a registry directly (with curl, not polyarch) what it holds.

use std::process::Command;

use super::Registry;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// `METHOD /v2/PATH` on `reg` itself: (status, body).
pub fn get(reg: &Registry, method: &str, path: &str) -> (u16, Vec<u8>) {
    let scheme = if reg.ca.is_some() { "https" } else { "http" };
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-H", &format!("Accept: {ACCEPT}"), "-w", "\n%{http_code}"]);
    if method == "HEAD" {
        cmd.arg("-I");
    } else {
        cmd.args(["-X", method]);
    }
    if let Some(ca) = &reg.ca {
        cmd.arg("--cacert").arg(ca);
    }
    if let (Some(u), Some(p)) = (&reg.user, &reg.password) {
        cmd.args(["-u", &format!("{u}:{p}")]);
    }
    let out = cmd.arg(format!("{scheme}://{}/v2/{path}", reg.host)).output().expect("running curl");
    let text = out.stdout;
    let split = text.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&text[split..]).trim().parse().unwrap_or(0);
    (status, text[..split].to_vec())
}

/// Whether `repo:tag` exists; when it does, every manifest it names and
/// every blob those name exist too (nothing half-published).
pub fn complete_or_absent(reg: &Registry, repo: &str, tag: &str) -> bool {
    let (status, body) = get(reg, "GET", &format!("{repo}/manifests/{tag}"));
    if status == 404 {
        return false;
    }
    assert_eq!(status, 200, "{repo}:{tag}: {}", String::from_utf8_lossy(&body));
    check_manifest(reg, repo, &body);
    true
}

fn check_manifest(reg: &Registry, repo: &str, body: &[u8]) {
    let v: serde_json::Value = serde_json::from_slice(body).expect("manifest JSON");
    if let Some(children) = v["manifests"].as_array() {
        for c in children {
            let d = c["digest"].as_str().expect("child digest");
            let (status, child) = get(reg, "GET", &format!("{repo}/manifests/{d}"));
            assert_eq!(status, 200, "{repo}: the index names {d}, which the registry lacks");
            check_manifest(reg, repo, &child);
        }
        return;
    }
    let blobs = std::iter::once(&v["config"]).chain(v["layers"].as_array().into_iter().flatten());
    for b in blobs {
        let d = b["digest"].as_str().expect("blob digest");
        let (status, _) = get(reg, "HEAD", &format!("{repo}/blobs/{d}"));
        assert_eq!(status, 200, "{repo}: a manifest names blob {d}, which the registry lacks");
    }
}

/// The digest the registry serves for `repo:reference`.
pub fn digest(reg: &Registry, repo: &str, reference: &str) -> String {
    let (status, body) = get(reg, "GET", &format!("{repo}/manifests/{reference}"));
    assert_eq!(status, 200, "{repo}:{reference}");
    super::sha256_hex(&body)
}
