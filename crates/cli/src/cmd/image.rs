//! `polyarch image ...`: the commands on stored images under the names
//! `docker image` gives them (`image ls`, `image inspect`, `image rm`,
//! `image history`, ...), each the same command as its top-level form.

use clap::Subcommand;

use super::{archive, history, images, pull, GlobalArgs};

#[derive(Subcommand)]
pub enum ImageCommand {
    /// List images in the local store (as `docker image ls`).
    #[command(visible_alias = "list")]
    Ls(images::ImagesArgs),
    /// Show a stored image's manifest and config as JSON (as `docker image inspect`).
    Inspect(images::InspectArgs),
    /// Show the history of a stored image (as `docker image history`).
    History(history::HistoryArgs),
    /// Give a stored image another name (as `docker image tag`).
    Tag(images::TagArgs),
    /// Remove names from the store (as `docker image rm`); `prune` frees the space.
    #[command(visible_alias = "remove")]
    Rm(images::RmiArgs),
    /// Pull an image from a registry into the store (as `docker image pull`).
    Pull(pull::PullArgs),
    /// Push a stored image to the registry its name points at (as `docker image push`).
    Push(pull::PushArgs),
    /// Write stored images to a tar archive (as `docker image save`).
    Save(archive::SaveArgs),
    /// Load images from a tar archive (as `docker image load`).
    Load(archive::LoadArgs),
}

pub fn run(global: &GlobalArgs, command: ImageCommand) -> anyhow::Result<u8> {
    match command {
        ImageCommand::Ls(a) => images::images(global, a),
        ImageCommand::Inspect(a) => images::inspect(global, a),
        ImageCommand::History(a) => history::history(global, a),
        ImageCommand::Tag(a) => images::tag(global, a),
        ImageCommand::Rm(a) => images::rmi(global, a),
        ImageCommand::Pull(a) => pull::pull(global, a),
        ImageCommand::Push(a) => pull::push(global, a),
        ImageCommand::Save(a) => archive::save(global, a),
        ImageCommand::Load(a) => archive::load(global, a),
    }
}
