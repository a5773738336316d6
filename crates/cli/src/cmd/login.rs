//! `polyarch login` and `polyarch logout`: credentials in the docker config.

use std::io::{IsTerminal as _, Read as _};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use polyarch_registry::{ClientBuilder, DockerConfig};

use super::context;
use super::GlobalArgs;

#[derive(Args)]
pub struct LoginArgs {
    #[arg(short, long)]
    username: Option<String>,
    /// The password (insecure: it shows in the process list and the shell
    /// history; prefer --password-stdin).
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    /// Allow plain HTTP and unverified TLS.
    #[arg(long)]
    insecure: bool,
    /// The registry host (default docker.io).
    #[arg(value_name = "REGISTRY")]
    registry: Option<String>,
}

#[derive(Args)]
pub struct LogoutArgs {
    #[arg(value_name = "REGISTRY")]
    registry: Option<String>,
}

/// `https://host/v1/` and `host` name the same registry.
fn registry_host(input: Option<&str>) -> String {
    let s = input.unwrap_or("docker.io");
    let s = s.trim_start_matches("https://").trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or(s);
    match s {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

pub fn login(global: &GlobalArgs, a: LoginArgs) -> Result<u8> {
    let registry = registry_host(a.registry.as_deref());
    let Some(username) = a.username.filter(|u| !u.is_empty()) else {
        bail!("login to {registry}: give a user name with -u USER");
    };
    let mut password = String::new();
    if a.password.is_some() && a.password_stdin {
        bail!("login to {registry}: --password and --password-stdin are mutually exclusive");
    }
    if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        password = p;
    } else if a.password_stdin {
        std::io::stdin().read_to_string(&mut password).context("reading the password from standard input")?;
    } else if std::io::stdin().is_terminal() {
        bail!("login to {registry}: pass the password on standard input with --password-stdin, or with -p");
    } else {
        bail!("login to {registry}: --password-stdin is required when standard input is not a terminal");
    }
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("login to {registry}: the password is empty");
    }
    // Check the credentials against the registry before storing them.
    let config = context::registry_config(global)?;
    let mut probe = DockerConfig::empty();
    probe.set_credential(&registry, &username, &password);
    let client = ClientBuilder::new()
        .with_config(config)
        .with_docker_config(probe)
        .with_insecure(a.insecure)
        .with_timeouts(context::timeouts()?)
        .build()?;
    context::runtime()?
        .block_on(client.check_login(&registry))
        .with_context(|| format!("login to {registry} as {username}"))?;
    let mut docker = DockerConfig::load().context("reading the docker config")?;
    docker.login(&registry, &username, &password).with_context(|| format!("storing credentials for {registry}"))?;
    crate::outln!("Login Succeeded")?;
    Ok(0)
}

pub fn logout(a: LogoutArgs) -> Result<u8> {
    let registry = registry_host(a.registry.as_deref());
    let mut docker = DockerConfig::load().context("reading the docker config")?;
    if docker.logout(&registry).with_context(|| format!("removing credentials for {registry}"))? {
        crate::outln!("Removing login credentials for {registry}")?;
    } else {
        crate::outln!("Not logged in to {registry}")?;
    }
    Ok(0)
}
