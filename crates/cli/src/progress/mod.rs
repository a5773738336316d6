//! Renders progress on stderr. Builds: [`build`] (every `--progress`
//! mode, [`rawjson`] the BuildKit stream). Pulls and pushes (this file): on
//! a terminal, one progress bar per blob fed by the registry's byte
//! counts; otherwise plain lines (`pulling sha256:0123456789ab 1.2MB`,
//! `done sha256:0123456789ab`).

pub mod build;
pub mod planned;
pub mod rawjson;

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use polyarch_oci::Digest;
use polyarch_registry::Event as RegistryEvent;
use polyarch_transfer::Event;

use crate::cmd::images::human_size;

/// Which way content moves, for the words shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Registry to store.
    Pull,
    /// Store to registry.
    Push,
}

impl Verb {
    fn ing(self) -> &'static str {
        match self {
            Verb::Pull => "pulling",
            Verb::Push => "pushing",
        }
    }
}

/// A progress renderer; share it as `Arc<Progress>` between the registry
/// client's sink and the transfer's event callback.
pub struct Progress {
    verb: Verb,
    tty: Option<MultiProgress>,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

/// `sha256:` and the first 12 hex digits.
pub fn short(d: &Digest) -> String {
    let hex = d.hex();
    format!("{}:{}", d.algorithm().name(), &hex[..hex.len().min(12)])
}

impl Progress {
    /// Bars when stderr is a terminal (and `plain` is not asked for),
    /// plain lines otherwise.
    pub fn new(verb: Verb, plain: bool) -> Arc<Progress> {
        let tty = (!plain && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Arc::new(Progress { verb, tty, bars: Mutex::new(HashMap::new()) })
    }

    fn style() -> ProgressStyle {
        ProgressStyle::with_template("{prefix} {wide_bar} {decimal_bytes}/{decimal_total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
    }

    fn bar(&self, multi: &MultiProgress, digest: &Digest, size: u64) -> ProgressBar {
        let Ok(mut bars) = self.bars.lock() else { return ProgressBar::hidden() };
        bars.entry(digest.clone())
            .or_insert_with(|| {
                let b = multi.add(ProgressBar::new(size));
                b.set_style(Self::style());
                b.set_prefix(short(digest));
                b.enable_steady_tick(Duration::from_millis(200));
                b
            })
            .clone()
    }

    /// A line above the bars, or on its own.
    pub fn line(&self, s: &str) {
        match &self.tty {
            Some(m) => {
                let _ = m.println(s);
            }
            None => eprintln!("{s}"),
        }
    }

    /// Byte counts from the registry client.
    pub fn registry(&self, e: &RegistryEvent) {
        let Some(multi) = &self.tty else { return };
        if let RegistryEvent::Bytes { digest, transferred, total, .. } = e {
            self.bar(multi, digest, *total).set_position(*transferred);
        }
    }

    /// Steps of the pull or push.
    pub fn transfer(&self, e: &Event) {
        match (&self.tty, e) {
            (Some(multi), Event::BlobStarted { digest, size, .. }) => {
                self.bar(multi, digest, *size).set_message(self.verb.ing());
            }
            (Some(multi), Event::BlobDone { digest, size } | Event::BlobExists { digest, size }) => {
                let b = self.bar(multi, digest, *size);
                b.set_position(*size);
                let word = if matches!(e, Event::BlobDone { .. }) { "done" } else { "exists" };
                b.finish_with_message(word);
            }
            (None, Event::BlobStarted { digest, size, .. }) => {
                eprintln!("{} {} {}", self.verb.ing(), short(digest), human_size(*size));
            }
            (None, Event::BlobDone { digest, .. }) => eprintln!("done {}", short(digest)),
            (None, Event::BlobExists { digest, .. }) => eprintln!("exists {}", short(digest)),
            (None, Event::BlobMounted { digest, from, .. }) => eprintln!("mounted {} from {from}", short(digest)),
            (Some(multi), Event::BlobMounted { digest, size, from }) => {
                let b = self.bar(multi, digest, *size);
                b.set_position(*size);
                b.finish_with_message(format!("mounted from {from}"));
            }
            (_, Event::Resolved { reference, digest, .. }) => {
                self.line(&format!("{reference}: resolved to {digest}"));
            }
            (_, Event::Note { message }) => self.line(&format!("note: {message}")),
            _ => {}
        }
    }

    /// Stops the bars, leaving their last state on screen (as Docker
    /// leaves its per-layer lines).
    pub fn finish(&self) {
        if let Ok(bars) = self.bars.lock() {
            for b in bars.values() {
                if !b.is_finished() {
                    b.abandon();
                }
            }
        }
    }
}
