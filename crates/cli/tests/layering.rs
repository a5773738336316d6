//! Dependencies point down: each workspace crate may depend only on crates
//! of a lower layer (see docs/design.md).

use std::path::Path;

/// Layer of each crate; a crate may depend only on crates of lower layers.
const LAYERS: &[(&str, u32)] = &[
    ("polyarch-oci", 0),
    ("polyarch-fuzzing", 0),
    ("polyarch-dockerfile", 1),
    ("polyarch-registry", 1),
    ("polyarch-engine", 1),
    ("polyarch-store", 1),
    ("polyarch-solver", 1),
    ("polyarch-emu", 2),
    ("polyarch-exec", 2),
    ("polyarch-frontend", 2),
    ("polyarch-index", 2),
    ("polyarch-snapshot", 2),
    ("polyarch-transfer", 2),
    ("polyarch-builder", 3),
    ("polyarch-remote", 4),
    ("polyarch", 5),
];

fn layer(name: &str) -> Option<u32> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

#[test]
fn dependencies_point_down() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for entry in std::fs::read_dir(&crates).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{}: no package name", manifest.display()));
        let own = layer(name).unwrap_or_else(|| panic!("crate {name} has no layer in LAYERS: add it"));
        let mut section = "";
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                section = line;
                continue;
            }
            if section != "[dependencies]" {
                continue;
            }
            let dep = line.split(['=', '.', ' ']).next().unwrap_or("");
            if let Some(l) = dep.starts_with("polyarch").then(|| layer(dep)).flatten() {
                assert!(l < own, "{name} (layer {own}) must not depend on {dep} (layer {l})");
            }
        }
        if name == "polyarch-solver" {
            only_deps(&text, name, &["polyarch-oci"]);
        }
        if name == "polyarch-frontend" {
            only_deps(&text, name, &["polyarch-oci", "polyarch-dockerfile", "polyarch-solver"]);
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} crates found");
}

/// The solver knows no Dockerfile, store or registry: of the workspace's
/// crates it uses only the image model. The frontend turns a Dockerfile
/// into a graph without executing anything: it uses the image model, the
/// Dockerfile parser and the solver, never the builder, store or registry.
fn only_deps(manifest: &str, name: &str, allowed: &[&str]) {
    let mut section = "";
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let dep = line.split(['=', '.', ' ']).next().unwrap_or("");
        if section == "[dependencies]" && dep.starts_with("polyarch") {
            assert!(allowed.contains(&dep), "{name} must not depend on {dep} (only on {allowed:?})");
        }
    }
}
