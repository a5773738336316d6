//! Choosing the image of an index for a platform, as containerd does:
//! [`Platform::only`] decides which entries can run and which is best
//! (e.g. `linux/arm/v7` also accepts `v6` and `v5`, preferring `v7`).
//! Attestation manifests (`unknown/unknown`) are never chosen.

use polyarch_oci::{Descriptor, Platform};

/// The entries of an index that are images for some platform, in order:
/// attestations and entries without a platform are left out.
pub fn platform_entries(children: &[Descriptor]) -> impl Iterator<Item = (&Descriptor, &Platform)> {
    children.iter().filter(|d| !d.is_attestation()).filter_map(|d| d.platform.as_ref().map(|p| (d, p)))
}

/// The entry that best matches `want`, or `None`. Among equally good
/// entries the first wins, as containerd's sort is stable.
pub fn best_match<'a>(children: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    let m = want.only();
    platform_entries(children).filter(|(_, p)| m.matches(p)).min_by(|a, b| m.compare(a.1, b.1)).map(|(d, _)| d)
}

/// The platforms an index offers, formatted (`linux/arm/v7`), in order.
pub fn offered(children: &[Descriptor]) -> Vec<String> {
    platform_entries(children).map(|(_, p)| p.format()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyarch_oci::descriptor::ANNOTATION_REFERENCE_TYPE;
    use polyarch_oci::{media_type as mt, Digest};

    fn entry(i: u8, p: Option<&str>) -> Descriptor {
        let platform = p.map(|p| Platform::parse(p).unwrap());
        Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(&[i]), 10).with_platform(platform)
    }

    fn busybox() -> Vec<Descriptor> {
        ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/arm/v5", "linux/386"]
            .iter()
            .enumerate()
            .map(|(i, p)| entry(i as u8, Some(p)))
            .collect()
    }

    #[test]
    fn exact_match_wins() {
        let idx = busybox();
        let pick = |p: &str| best_match(&idx, &Platform::parse(p).unwrap()).map(|d| d.digest.clone());
        assert_eq!(pick("linux/arm64"), Some(idx[1].digest.clone()));
        assert_eq!(pick("linux/arm/v7"), Some(idx[2].digest.clone()));
        assert_eq!(pick("linux/amd64"), Some(idx[0].digest.clone()));
    }

    #[test]
    fn compatible_variant_is_accepted_best_first() {
        let idx = busybox();
        // arm/v6 can run v5 but not v7.
        let got = best_match(&idx, &Platform::parse("linux/arm/v6").unwrap()).unwrap();
        assert_eq!(got.digest, idx[3].digest);
        // arm/v8 prefers v7 over v5.
        let got = best_match(&idx, &Platform::parse("linux/arm/v8").unwrap()).unwrap();
        assert_eq!(got.digest, idx[2].digest);
    }

    #[test]
    fn no_match_and_offered_list() {
        let idx = busybox();
        assert!(best_match(&idx, &Platform::parse("linux/sparc64").unwrap()).is_none());
        assert_eq!(offered(&idx), ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/arm/v5", "linux/386"]);
    }

    #[test]
    fn attestations_and_unplatformed_entries_are_skipped() {
        let mut att = entry(9, Some("linux/amd64"));
        att.annotations = Some([(ANNOTATION_REFERENCE_TYPE.to_string(), "attestation-manifest".to_string())].into());
        let idx = vec![att, entry(8, None), entry(7, Some("linux/amd64"))];
        let got = best_match(&idx, &Platform::parse("linux/amd64").unwrap()).unwrap();
        assert_eq!(got.digest, idx[2].digest);
        assert_eq!(offered(&idx), ["linux/amd64"]);
    }
}
