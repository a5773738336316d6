//! The platform label of a step's name in a multi-platform build, as
//! BuildKit's dockerfile2llb writes it (`prefixCommand`): the platform the
//! stage runs as, then `->ARCH` when the step's environment names another
//! target (`formatTargetPlatform`, `platformFromEnv`). A stage `FROM
//! --platform=$BUILDPLATFORM` with `ARG TARGETARCH` shows its RUN steps as
//! `[linux/amd64->arm64 build 2/3]`; its FROM, whose environment is empty,
//! as `[linux/amd64 build 1/3]`. The plan and the build both name steps
//! with these functions.

use std::collections::HashMap;

use polyarch_oci::Platform;

/// The target platform a step's environment names (BuildKit's
/// `platformFromEnv`): `TARGETPLATFORM` when it parses, else whatever of
/// `TARGETOS`, `TARGETARCH` and `TARGETVARIANT` is set (the rest left
/// empty, for [`label`] to fill from the stage's platform); `None` when
/// none of them is set.
pub fn target_from_env(vars: &HashMap<String, String>) -> Option<Platform> {
    let mut p = Platform::default();
    let mut set = false;
    for (k, v) in vars {
        match k.as_str() {
            "TARGETPLATFORM" => {
                if let Ok(t) = Platform::parse(v) {
                    return Some(t);
                }
            }
            "TARGETOS" => (p.os, set) = (v.to_string(), true),
            "TARGETARCH" => (p.architecture, set) = (v.to_string(), true),
            "TARGETVARIANT" => (p.variant, set) = ((!v.is_empty()).then(|| v.to_string()), true),
            _ => {}
        }
    }
    set.then_some(p)
}

/// The label of a step of a stage running as `stage` whose environment
/// names `target` ([`target_from_env`]): `linux/amd64`, `linux/amd64->arm64`,
/// `linux/amd64->windows/amd64` (BuildKit's `FormatAll` and
/// `formatTargetPlatform`; a variant alone does not make a cross step).
pub fn label(stage: &Platform, target: Option<&Platform>) -> String {
    let mut out = stage.format_all();
    let Some(target) = target else { return out };
    let mut t = target.clone();
    if t.os.is_empty() {
        t.os = stage.os.clone();
    }
    if t.architecture.is_empty() {
        t.architecture = stage.architecture.clone();
    }
    let t = t.normalize();
    if t.os == stage.os && t.architecture != stage.architecture {
        out.push_str("->");
        out.push_str(&t.architecture);
        if let Some(v) = t.variant.as_deref().filter(|v| !v.is_empty()) {
            out.push('/');
            out.push_str(v);
        }
    } else if t.os != stage.os {
        out.push_str("->");
        out.push_str(&t.format_all());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap().normalize()
    }

    fn env(vars: &[(&str, &str)]) -> Option<Platform> {
        target_from_env(&vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn labels_as_buildkit() {
        let amd64 = p("linux/amd64");
        assert_eq!(label(&amd64, None), "linux/amd64");
        assert_eq!(label(&amd64, env(&[("TARGETPLATFORM", "linux/arm64")]).as_ref()), "linux/amd64->arm64");
        assert_eq!(label(&amd64, env(&[("TARGETPLATFORM", "linux/amd64")]).as_ref()), "linux/amd64");
        assert_eq!(label(&amd64, env(&[("TARGETARCH", "arm")]).as_ref()), "linux/amd64->arm/v7");
        assert_eq!(
            label(&amd64, env(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v6")]).as_ref()),
            "linux/amd64->arm/v6"
        );
        assert_eq!(label(&amd64, env(&[("TARGETOS", "windows")]).as_ref()), "linux/amd64->windows/amd64");
        // A variant alone is no other target; TARGETPLATFORM wins.
        assert_eq!(label(&p("linux/arm/v7"), env(&[("TARGETPLATFORM", "linux/arm/v6")]).as_ref()), "linux/arm/v7");
        assert_eq!(
            label(&amd64, env(&[("TARGETARCH", "s390x"), ("TARGETPLATFORM", "linux/ppc64le")]).as_ref()),
            "linux/amd64->ppc64le"
        );
        // An unparsable TARGETPLATFORM and nothing else: no target.
        assert_eq!(env(&[("TARGETPLATFORM", "no/such/plat/form")]), None);
        assert_eq!(env(&[("PATH", "/bin")]), None);
    }
}
