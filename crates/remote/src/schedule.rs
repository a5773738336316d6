//! Which node builds which platform, as buildx assigns platforms to the
//! nodes of a builder, with emulation only where no node is native:
//!
//! 1. a node that declares the platform (`--platform` on `builder create`);
//! 2. else a node that runs it natively;
//! 3. else a node whose emulators run it.
//!
//! Among the nodes of the best kind, the one with the fewest platforms so
//! far is chosen (the first on a tie), so targets of one architecture
//! spread over the nodes that have it. A node that is down keeps the
//! platforms it would get (from what it declared or last reported): they
//! fail with its reason, or are built locally with `--fallback-emulation`.

use polyarch_oci::Platform;

/// What a node offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// The node's name.
    pub name: String,
    /// Platforms given with `--platform`.
    pub pinned: Vec<String>,
    /// Platforms it runs natively.
    pub native: Vec<String>,
    /// Platforms its emulators run.
    pub emulated: Vec<String>,
    /// Why the node cannot take work, when it cannot.
    pub down: Option<String>,
}

/// How a node runs a platform it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum How {
    /// Declared on the node.
    Pinned,
    /// Natively.
    Native,
    /// Under emulation.
    Emulated,
}

/// Where a platform goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// To node `node` (an index into the offers).
    Node {
        /// The node.
        node: usize,
        /// How it runs the platform.
        how: How,
    },
    /// The node that should build it is down.
    Down {
        /// The node.
        node: usize,
        /// Why.
        reason: String,
    },
    /// No node offers the platform.
    Nowhere,
}

fn same(list: &[String], target: &str) -> bool {
    list.iter().any(|p| Platform::parse(p).ok().map(|p| p.normalize().format()).as_deref() == Some(target))
}

fn how(offer: &Offer, target: &str) -> Option<How> {
    if same(&offer.pinned, target) {
        Some(How::Pinned)
    } else if same(&offer.native, target) {
        Some(How::Native)
    } else if same(&offer.emulated, target) {
        Some(How::Emulated)
    } else {
        None
    }
}

/// Places every target, in order.
pub fn assign(targets: &[Platform], offers: &[Offer]) -> Vec<Placement> {
    let mut load = vec![0usize; offers.len()];
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        let t = t.normalize().format();
        let able: Vec<(usize, How)> =
            offers.iter().enumerate().filter_map(|(i, o)| how(o, &t).map(|h| (i, h))).collect();
        let best = able.iter().map(|(_, h)| *h).min();
        let chosen = best.and_then(|b| able.iter().filter(|(_, h)| *h == b).min_by_key(|(i, _)| (load[*i], *i)));
        out.push(match chosen {
            Some(&(i, h)) => {
                load[i] += 1;
                match &offers[i].down {
                    None => Placement::Node { node: i, how: h },
                    Some(reason) => Placement::Down { node: i, reason: reason.clone() },
                }
            }
            None => Placement::Nowhere,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    fn offer(name: &str, pinned: &[&str], native: &[&str], emulated: &[&str]) -> Offer {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Offer { name: name.into(), pinned: v(pinned), native: v(native), emulated: v(emulated), down: None }
    }

    fn nodes(got: &[Placement]) -> Vec<Option<(usize, How)>> {
        got.iter()
            .map(|pl| match pl {
                Placement::Node { node, how } => Some((*node, *how)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn native_beats_emulated_and_pinned_beats_native() {
        let amd = offer("amd", &[], &["linux/amd64", "linux/386"], &["linux/arm64", "linux/s390x"]);
        let arm = offer("arm", &[], &["linux/arm64", "linux/arm/v7"], &["linux/amd64"]);
        let got = assign(&[p("linux/amd64"), p("linux/aarch64"), p("linux/s390x"), p("linux/armhf")], &[amd, arm]);
        assert_eq!(
            nodes(&got),
            [Some((0, How::Native)), Some((1, How::Native)), Some((0, How::Emulated)), Some((1, How::Native))]
        );
        let a = offer("a", &[], &["linux/amd64"], &["linux/arm64"]);
        let b = offer("b", &["linux/arm64"], &["linux/amd64"], &[]);
        let got = assign(&[p("linux/arm64"), p("linux/amd64")], &[a, b]);
        assert_eq!(nodes(&got), [Some((1, How::Pinned)), Some((0, How::Native))]);
    }

    #[test]
    fn one_architecture_spreads_over_its_nodes() {
        let a = offer("a", &[], &["linux/arm64", "linux/arm/v7", "linux/arm/v6"], &[]);
        let b = offer("b", &[], &["linux/arm64", "linux/arm/v7", "linux/arm/v6"], &[]);
        let got = assign(&[p("linux/arm64"), p("linux/arm/v7"), p("linux/arm/v6")], &[a, b]);
        assert_eq!(nodes(&got), [Some((0, How::Native)), Some((1, How::Native)), Some((0, How::Native))]);
    }

    #[test]
    fn down_nodes_and_platforms_nobody_offers() {
        let mut a = offer("a", &["linux/arm64"], &[], &[]);
        a.down = Some("connection refused".into());
        let b = offer("b", &[], &["linux/amd64"], &["linux/arm64"]);
        let got = assign(&[p("linux/arm64"), p("linux/amd64"), p("linux/riscv64")], &[a, b]);
        assert_eq!(got[0], Placement::Down { node: 0, reason: "connection refused".into() });
        assert_eq!(got[1], Placement::Node { node: 1, how: How::Native });
        assert_eq!(got[2], Placement::Nowhere);
    }
}
