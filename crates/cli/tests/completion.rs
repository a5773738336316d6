//! Shell completions and man pages generated from the command line.

use std::process::Command;

use crate::util::*;

/// The visible top-level commands `polyarch --help` lists.
fn commands(env: &Env) -> Vec<String> {
    let help = env.ok(&["--help"]);
    let start = help.find("Commands:\n").expect("a Commands section") + "Commands:\n".len();
    help[start..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_completes_commands_and_flags() {
    if !require(have("bash"), "bash") {
        return;
    }
    let env = Env::new();
    let script = env.dir.path().join("polyarch.bash");
    std::fs::write(&script, env.ok(&["completion", "bash"])).unwrap();
    let complete = |words: &str| {
        let n = words.split(' ').count() - 1;
        sh(Command::new("bash").arg("-c").arg(format!(
            "source {} && COMP_WORDS=({words}) && COMP_CWORD={n} && COMP_LINE='{words}' && COMP_POINT=${{#COMP_LINE}} && _polyarch polyarch \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\" && echo \"${{COMPREPLY[@]}}\"",
            s(&script)
        )))
    };
    let top = complete("polyarch ''");
    for c in commands(&env) {
        assert!(top.split_whitespace().any(|w| w == c), "{c} missing from {top}");
    }
    assert_eq!(complete("polyarch manifest an").trim(), "annotate");
    assert!(complete("polyarch manifest annotate --ar").contains("--arch"));
    assert!(complete("polyarch completion ''").contains("fish"));
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    let env = Env::new();
    let zsh = env.ok(&["completion", "zsh"]);
    assert!(zsh.starts_with("#compdef polyarch"), "{}", &zsh[..80.min(zsh.len())]);
    let fish = env.ok(&["completion", "fish"]);
    for c in commands(&env) {
        assert!(zsh.contains(&format!("'{c}:")), "zsh lacks {c}");
        assert!(fish.contains(&format!("-a \"{c}\"")), "fish lacks {c}");
    }
    if have("fish") {
        let path = env.dir.path().join("polyarch.fish");
        std::fs::write(&path, &fish).unwrap();
        let out =
            sh(Command::new("fish").arg("-c").arg(format!("source {}; complete -C 'polyarch manifest an'", s(&path))));
        assert!(out.starts_with("annotate"), "{out}");
    }
    let err = env.fails(&["completion", "tcsh"]);
    assert!(err.contains("tcsh"), "{err}");
}

#[test]
fn one_man_page_per_command() {
    let env = Env::new();
    let dir = env.dir.path().join("man1");
    env.ok(&["man", "--dir", s(&dir)]);
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert!(files.iter().all(|f| f.starts_with("polyarch") && f.ends_with(".1")), "no temporary files: {files:?}");
    assert!(files.contains(&"polyarch.1".to_string()));
    for c in commands(&env) {
        assert!(files.contains(&format!("polyarch-{c}.1")), "no page for {c}: {files:?}");
    }
    for sub in ["manifest-annotate", "builder-create", "imagetools-inspect", "binfmt-install", "debug-platform"] {
        assert!(files.contains(&format!("polyarch-{sub}.1")), "no page for {sub}");
    }
    assert!(!files.iter().any(|f| f.contains("worker") || f.contains("plugin-metadata")), "hidden commands: {files:?}");
    let page = std::fs::read_to_string(dir.join("polyarch-manifest-annotate.1")).unwrap();
    assert!(page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH polyarch-manifest-annotate 1"), "{page}");
    assert!(page.contains("\\-\\-arch") && page.contains("x86_64"), "{page}");
    if have("man") {
        let text = sh(Command::new("man")
            .arg("-l")
            .arg(dir.join("polyarch-manifest-annotate.1"))
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat"));
        assert!(text.contains("NAME") && text.contains("polyarch-manifest-annotate"), "{text}");
    }
    // Without --dir, the top page goes to stdout.
    assert!(env.ok(&["man"]).contains(".TH polyarch 1"));
}
