//! `polyarch completion bash|zsh|fish|...` and `polyarch man --dir DIR`:
//! shell completions and one man page per command, both generated from
//! the command line definition so they never drift from it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;

#[derive(Args)]
pub struct CompletionArgs {
    /// The shell (`source <(polyarch completion bash)`;
    /// `polyarch completion fish > ~/.config/fish/completions/polyarch.fish`).
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write `polyarch.1` and one `polyarch-COMMAND.1` per command here
    /// (e.g. /usr/local/share/man/man1); without it, print `polyarch.1`.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn completion(a: CompletionArgs, mut cmd: clap::Command) -> Result<u8> {
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "polyarch", &mut out);
    super::images::emit(&String::from_utf8_lossy(&out))?;
    Ok(0)
}

fn render(cmd: &clap::Command) -> Result<(String, Vec<u8>)> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render(&mut page).with_context(|| format!("rendering the man page of {}", cmd.get_name()))?;
    Ok((man.get_filename(), page))
}

/// Every visible command, depth first (the command before its subcommands).
fn pages(cmd: &clap::Command, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    out.push(render(cmd)?);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, out)?;
    }
    Ok(())
}

/// Writes `bytes` to `dir/name` through a temporary file renamed into place.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    polyarch_store::AtomicFile::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

pub fn man(a: ManArgs, cmd: clap::Command) -> Result<u8> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = a.dir else {
        super::images::emit(&String::from_utf8_lossy(&render(&cmd)?.1))?;
        return Ok(0);
    };
    let mut all = Vec::new();
    pages(&cmd, &mut all)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, page) in &all {
        write_atomic(&dir, name, page)?;
    }
    eprintln!("wrote {} man pages to {}", all.len(), dir.display());
    Ok(0)
}
