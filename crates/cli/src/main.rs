//! `polyarch`: build, assemble, check and ship multi-architecture container
//! images, with no daemon.

mod argv;
mod cmd;
mod progress;
mod report;
mod template;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "polyarch",
    version,
    about = "Build, assemble, check and ship multi-architecture container images, with no daemon"
)]
struct Cli {
    #[command(flatten)]
    global: cmd::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile, for one platform or several (as `docker buildx build`).
    Build(Box<cmd::build::BuildArgs>),
    /// Assemble, inspect and push local manifest lists (as `docker manifest`).
    #[command(subcommand)]
    Manifest(cmd::manifest::ManifestCommand),
    /// Create and inspect indexes in registries (as `docker buildx imagetools`).
    #[command(subcommand)]
    Imagetools(cmd::imagetools::ImagetoolsCommand),
    /// Store credentials for a registry in the docker config.
    Login(cmd::login::LoginArgs),
    /// Remove stored credentials for a registry.
    Logout(cmd::login::LogoutArgs),
    /// List images in the local store (as `docker images`).
    Images(cmd::images::ImagesArgs),
    /// Show a stored image's manifest and config as JSON (as `docker image inspect`).
    Inspect(cmd::images::InspectArgs),
    /// Show the history of a stored image (as `docker history`).
    History(cmd::history::HistoryArgs),
    /// Commands on stored images, under docker's names (`image ls`, `image rm`, `image history`, ...).
    #[command(subcommand)]
    Image(cmd::image::ImageCommand),
    /// Give a stored image another name (as `docker tag`).
    Tag(cmd::images::TagArgs),
    /// Remove names from the store (as `docker rmi`); `prune` frees the space.
    Rmi(cmd::images::RmiArgs),
    /// Pull an image from a registry into the store (as `docker pull`).
    Pull(cmd::pull::PullArgs),
    /// Push a stored image to the registry its name points at (as `docker push`).
    Push(cmd::pull::PushArgs),
    /// Write stored images to a tar archive (as `docker save`).
    Save(cmd::archive::SaveArgs),
    /// Load images from a tar archive (as `docker load`).
    Load(cmd::archive::LoadArgs),
    /// Show the build cache's disk usage (as `docker buildx du`).
    Du(cmd::cache::DuArgs),
    /// Remove build cache and blobs no image references (as `docker buildx prune`).
    Prune(cmd::cache::PruneArgs),
    /// Run a command in a new container from an image (as `docker run --rm`).
    Run(Box<cmd::run::RunArgs>),
    /// Troubleshooting commands that print JSON.
    #[command(subcommand)]
    Debug(cmd::debug::DebugCommand),
    /// Show, install and remove QEMU emulators in binfmt_misc (as tonistiigi/binfmt).
    #[command(subcommand)]
    Binfmt(cmd::binfmt::BinfmtCommand),
    /// Check what multi-platform builds need, with a fix for each problem.
    Doctor(cmd::doctor::DoctorArgs),
    /// Manage builders and their nodes (as `docker buildx create/use/inspect/ls/rm/stop`).
    #[command(subcommand)]
    Builder(cmd::builder::BuilderCommand),
    /// Runs on a build node for another machine's polyarch.
    #[command(hide = true)]
    Worker(cmd::worker::WorkerArgs),
    /// Show the version and commit (as `docker buildx version`).
    Version(cmd::version::VersionArgs),
    /// Print a shell completion script.
    Completion(cmd::completion::CompletionArgs),
    /// Write the man pages, one per command.
    #[command(hide = true)]
    Man(cmd::completion::ManArgs),
    /// Install polyarch as a docker CLI plugin (`docker polyarch`, or `docker buildx` with `--as buildx`).
    InstallPlugin(cmd::plugin::InstallArgs),
    /// What docker asks a CLI plugin for.
    #[command(name = "docker-cli-plugin-metadata", hide = true)]
    PluginMetadata,
}

/// The command line, where a flag given twice takes its last value, as a
/// Go (cobra) command line does (`--progress plain --progress tty`), rather
/// than failing.
fn command() -> clap::Command {
    fn overriding(cmd: clap::Command) -> clap::Command {
        cmd.args_override_self(true).mut_subcommands(overriding)
    }
    overriding(Cli::command())
}

fn main() -> ExitCode {
    // Usage errors exit 1 like every other error (125 for `run`, as docker
    // run's); --help and --version exit 0.
    // As a docker CLI plugin (docker-polyarch, docker-buildx), docker's way
    // of calling is turned into polyarch's command line first.
    let argv = argv::go_bools(Cli::command, cmd::plugin::argv(std::env::args_os().collect()));
    let cli = match command().try_get_matches_from(argv).and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(e) => {
            let args: Vec<String> = std::env::args().collect();
            let usage = if cmd::build::inputs::subcommand(&args) == Some("run") { 125 } else { 1 };
            let named = cmd::build::inputs::unsupported_flag(&args, &e)
                .or_else(|| cmd::build::inputs::unknown_flag(&args, &e))
                .or_else(|| cmd::run::unsupported_flag(&args, &e));
            if let Some(message) = named {
                eprintln!("error: {message}");
                return ExitCode::from(usage);
            }
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { usage } else { 0 });
        }
    };
    let g = &cli.global;
    let result = match cli.command {
        Command::Build(a) => {
            // Held until the image is exported and tagged: a prune waits.
            let lease = cmd::cache::build_lease(g);
            let code = cmd::build::run(g, *a);
            drop(lease);
            if let Ok(0) = code {
                cmd::cache::after_build(g);
            }
            code
        }
        Command::Manifest(c) => cmd::manifest::run(g, c),
        Command::Imagetools(c) => cmd::imagetools::run(g, c),
        Command::Login(a) => cmd::login::login(g, a),
        Command::Logout(a) => cmd::login::logout(a),
        Command::Images(a) => cmd::images::images(g, a),
        Command::Inspect(a) => cmd::images::inspect(g, a),
        Command::History(a) => cmd::history::history(g, a),
        Command::Image(c) => cmd::image::run(g, c),
        Command::Tag(a) => cmd::images::tag(g, a),
        Command::Rmi(a) => cmd::images::rmi(g, a),
        Command::Pull(a) => cmd::pull::pull(g, a),
        Command::Push(a) => cmd::pull::push(g, a),
        Command::Save(a) => cmd::archive::save(g, a),
        Command::Load(a) => cmd::archive::load(g, a),
        Command::Du(a) => cmd::cache::du(g, a),
        Command::Prune(a) => cmd::cache::prune(g, a),
        Command::Run(a) => cmd::run::run(g, *a),
        Command::Debug(c) => cmd::debug::run(g, c),
        Command::Binfmt(c) => cmd::binfmt::run(g, c),
        Command::Doctor(a) => cmd::doctor::run(g, a),
        Command::Builder(c) => cmd::builder::run(g, c),
        Command::Worker(a) => cmd::worker::run(g, a),
        Command::Version(a) => cmd::version::run(a),
        Command::Completion(a) => cmd::completion::completion(a, Cli::command()),
        Command::Man(a) => cmd::completion::man(a, Cli::command()),
        Command::InstallPlugin(a) => cmd::plugin::install(a),
        Command::PluginMetadata => cmd::plugin::metadata(),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) if report::is_stdout_closed(&err) => ExitCode::SUCCESS,
        Err(err) => {
            if g.debug {
                eprintln!("DEBUG: {err:?}");
            }
            eprintln!("error: {}", report::Chain(&err));
            ExitCode::from(1)
        }
    }
}
