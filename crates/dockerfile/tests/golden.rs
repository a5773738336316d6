//! Golden tests: `testdata/<case>/Dockerfile` must parse to
//! `testdata/<case>/result.json` (the `debug dockerfile` JSON) and, when a
//! `result` file exists, to BuildKit's s-expression dump; every
//! `testdata-negative/<case>/Dockerfile` must be rejected with the message
//! in `error.txt` and, when a `lines.txt` file exists, located at the
//! `start-end` line range it holds (BuildKit's range for the same file).
//! `testdata-check/<case>/Dockerfile` must give the build-check text in
//! `check.txt` (`build --check`'s output after its count line).
//! `UPDATE_GOLDEN=1` rewrites `result.json`, `error.txt` and `check.txt`.

use std::fs;
use std::path::{Path, PathBuf};

fn cases(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    v.sort();
    v
}

fn update() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

fn reject(src: &[u8]) -> Option<polyarch_dockerfile::Error> {
    let ast = match polyarch_dockerfile::parse(src) {
        Ok(a) => a,
        Err(e) => return Some(e),
    };
    let df = match polyarch_dockerfile::instructions::parse(&ast) {
        Ok(d) => d,
        Err(e) => return Some(e),
    };
    df.check_sources().and_then(|()| df.check_cycles()).err()
}

/// `start-end` from `lines.txt`, if the case has one.
fn want_lines(dir: &Path) -> Option<String> {
    fs::read_to_string(dir.join("lines.txt")).ok().map(|s| s.trim().to_string())
}

#[test]
fn positive_cases() {
    let mut failures = Vec::new();
    let all = cases("testdata");
    assert!(all.len() >= 40, "only {} cases", all.len());
    for dir in &all {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let src = fs::read(dir.join("Dockerfile")).unwrap_or_default();
        let ast = match polyarch_dockerfile::parse(&src) {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("{name}: parse error: {e}"));
                continue;
            }
        };
        let json = serde_json::to_string_pretty(&polyarch_dockerfile::debug_json(&ast)).unwrap_or_default() + "\n";
        let want_path = dir.join("result.json");
        if update() {
            fs::write(&want_path, &json).unwrap_or_else(|e| panic!("{e}"));
        } else if fs::read_to_string(&want_path).ok().as_deref() != Some(json.as_str()) {
            failures.push(format!("{name}: result.json differs; got:\n{json}"));
        }
        if let Ok(want) = fs::read_to_string(dir.join("result")) {
            let got = polyarch_dockerfile::dump(&ast);
            if got != want {
                failures.push(format!("{name}: dump differs:\n--- want\n{want}--- got\n{got}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn negative_cases() {
    let mut failures = Vec::new();
    let all = cases("testdata-negative");
    assert!(all.len() >= 15, "only {} cases", all.len());
    for dir in &all {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let src = fs::read(dir.join("Dockerfile")).unwrap_or_default();
        let Some(err) = reject(&src) else {
            failures.push(format!("{name}: accepted"));
            continue;
        };
        let got = err.to_string();
        if let Some(want) = want_lines(dir) {
            let lines = err.lines().map(|(a, b)| format!("{a}-{b}")).unwrap_or_default();
            if lines != want {
                failures.push(format!("{name}: want lines {want}, got {lines:?}"));
            }
        }
        let want_path = dir.join("error.txt");
        if update() {
            fs::write(&want_path, format!("{got}\n")).unwrap_or_else(|e| panic!("{e}"));
        } else {
            let want = fs::read_to_string(&want_path).unwrap_or_default();
            if want.trim_end_matches('\n') != got {
                failures.push(format!("{name}: want {:?}, got {got:?}", want.trim_end()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `testdata-check/<case>/Dockerfile` → `check.txt`: the `--check` text,
/// with every base image's environment known to be `PATH` only.
#[test]
fn check_cases() {
    use polyarch_dockerfile::lint;
    let mut failures = Vec::new();
    let all = cases("testdata-check");
    assert!(all.len() >= 5, "only {} cases", all.len());
    let env = |_: usize| Some(vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_string()]);
    for dir in &all {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let src = fs::read_to_string(dir.join("Dockerfile")).unwrap_or_default();
        let ast = polyarch_dockerfile::parse(src.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let builtins = [("TARGETPLATFORM", "linux/amd64"), ("BUILDPLATFORM", "linux/amd64")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let opts = lint::Options { builtins, base_env: Some(&env), ..lint::Options::default() };
        let report = lint::lint(&ast, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = lint::render(&report.warnings, "Dockerfile", &src);
        let want_path = dir.join("check.txt");
        if update() {
            fs::write(&want_path, &got).unwrap_or_else(|e| panic!("{e}"));
        } else if fs::read_to_string(&want_path).ok().as_deref() != Some(got.as_str()) {
            failures.push(format!("{name}: check.txt differs; got:\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
