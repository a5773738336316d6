//! Typed operations, as BuildKit's LLB ops (solver/pb/ops.proto): an
//! [`Exec`] of a process on mounts, file actions ([`Copy`](struct@Copy), [`Mkdir`],
//! [`Mkfile`], [`Rm`], [`Symlink`]), a [`Merge`] of inputs and
//! [`Source`]s (an image, the build context, a git repository, an http
//! download).
//!
//! Inputs are named by their position in the vertex's input list
//! ([`crate::graph::VertexSpec::inputs`]), so an op is a plain value that
//! can be compared, serialised and hashed. No field holds a secret's value:
//! secrets and ssh agents are named by id and supplied by the worker.

use std::collections::BTreeMap;

use polyarch_oci::Digest;
use serde::{Deserialize, Serialize};

/// One operation of a build graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Run a process.
    Exec(Exec),
    /// Copy files from one input onto another (or onto nothing).
    Copy(Copy),
    /// Make a directory.
    Mkdir(Mkdir),
    /// Write a file.
    Mkfile(Mkfile),
    /// Remove a path.
    Rm(Rm),
    /// Make a symbolic link.
    Symlink(Symlink),
    /// Lay inputs over each other (`COPY --link` onto its base), as
    /// BuildKit's MergeOp.
    Merge(Merge),
    /// Bring files in from outside the graph.
    Source(Source),
}

impl Op {
    /// The op's type name (`exec`, `copy`, `source.image`...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Op::Exec(_) => "exec",
            Op::Copy(_) => "copy",
            Op::Mkdir(_) => "mkdir",
            Op::Mkfile(_) => "mkfile",
            Op::Rm(_) => "rm",
            Op::Symlink(_) => "symlink",
            Op::Merge(_) => "merge",
            Op::Source(Source::Image(_)) => "source.image",
            Op::Source(Source::Context(_)) => "source.context",
            Op::Source(Source::Git(_)) => "source.git",
            Op::Source(Source::Http(_)) => "source.http",
        }
    }

    /// The version tag of the op's cache keys; bumped whenever what the op
    /// produces for the same key changes (as BuildKit's `buildkit.exec.v0`).
    pub fn cache_version(&self) -> &'static str {
        match self {
            Op::Exec(_) => "polyarch.exec.v0",
            Op::Copy(_) => "polyarch.file.copy.v0",
            Op::Mkdir(_) => "polyarch.file.mkdir.v0",
            Op::Mkfile(_) => "polyarch.file.mkfile.v0",
            Op::Rm(_) => "polyarch.file.rm.v0",
            Op::Symlink(_) => "polyarch.file.symlink.v0",
            Op::Merge(_) => "polyarch.merge.v0",
            Op::Source(Source::Image(_)) => "polyarch.source.image.v0",
            Op::Source(Source::Context(_)) => "polyarch.source.context.v0",
            Op::Source(Source::Git(_)) => "polyarch.source.git.v0",
            Op::Source(Source::Http(_)) => "polyarch.source.http.v0",
        }
    }

    /// Whether the result depends on the platform the op runs for: an
    /// exec's programs and an image's manifest do; copying files or
    /// reading a context does not, so those are shared between platforms.
    pub fn platform_matters(&self) -> bool {
        matches!(self, Op::Exec(_) | Op::Source(Source::Image(_)))
    }

    /// The input positions the op reads, each with how it reads it.
    pub fn input_uses(&self) -> Vec<InputUse> {
        match self {
            Op::Exec(e) => e.mounts.iter().filter_map(Mount::input_use).collect(),
            Op::Copy(c) => {
                let mut v = vec![InputUse { input: c.source, selector: Some(c.selector()), content_based: true }];
                v.extend(c.dest.map(|input| InputUse { input, selector: None, content_based: false }));
                v
            }
            Op::Mkdir(Mkdir { input, .. })
            | Op::Mkfile(Mkfile { input, .. })
            | Op::Rm(Rm { input, .. })
            | Op::Symlink(Symlink { input, .. }) => {
                input.iter().map(|&input| InputUse { input, selector: None, content_based: false }).collect()
            }
            Op::Merge(m) => {
                m.inputs.iter().map(|&input| InputUse { input, selector: None, content_based: false }).collect()
            }
            Op::Source(_) => Vec::new(),
        }
    }
}

/// How an op reads one of its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputUse {
    /// Position in the vertex's inputs.
    pub input: usize,
    /// The part of the input read (for content checksums).
    pub selector: Option<Selector>,
    /// Whether the cache key may use a checksum of the selected content
    /// instead of only the input's key (BuildKit's `ComputeDigestFunc`).
    pub content_based: bool,
}

/// The files of an input an op reads, for [`crate::ContentChecksum`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Selector {
    /// Paths in the input (`/` for all of it).
    pub paths: Vec<String>,
    /// Paths may hold wildcards.
    pub wildcard: bool,
    /// Symbolic links named by `paths` are followed.
    pub follow_symlinks: bool,
    /// Only paths matching one of these (when any).
    pub include: Vec<String>,
    /// Paths matching these are left out.
    pub exclude: Vec<String>,
}

/// A user or group, by id or by name (resolved in the destination's files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Id {
    /// A numeric id.
    Id(u32),
    /// A name, looked up in `/etc/passwd` or `/etc/group`.
    Name(String),
}

/// The owner given to files an op writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// User.
    pub user: Id,
    /// Group; the user's primary group when not given.
    pub group: Option<Id>,
}

/// A process run on mounts, as BuildKit's ExecOp.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Exec {
    /// The program and its arguments.
    pub args: Vec<String>,
    /// `KEY=value` pairs, in order.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// `user[:group]`, as in an image config.
    pub user: String,
    /// Host name inside the container.
    pub hostname: String,
    /// Extra `/etc/hosts` entries, host name → address. The addresses are
    /// left out of cache keys (as BuildKit's): they change per run.
    pub extra_hosts: BTreeMap<String, String>,
    /// Proxy variables (`HTTP_PROXY`...): given to the process but not
    /// part of its cache key, as BuildKit's ProxyEnv.
    pub proxy_env: BTreeMap<String, String>,
    /// Mounts; the root file system is the mount at `/`.
    pub mounts: Vec<Mount>,
    /// Network.
    pub network: Network,
    /// Security mode.
    pub security: Security,
    /// Resource limits of the process, in order (none: the runtime's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// Size of `/dev/shm` in bytes (none: the runtime's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// The cgroup the container is placed under (none: the runtime's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
}

/// One resource limit of an exec (`--ulimit nofile=1024:2048`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// The resource, as `ulimit` names it (`nofile`, `nproc`...).
    pub name: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The network of an exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// The builder's default network.
    #[default]
    Sandbox,
    /// The host's network.
    Host,
    /// Loopback only.
    None,
}

/// The security mode of an exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// The default confinement.
    #[default]
    Sandbox,
    /// All capabilities, no confinement (needs an entitlement).
    Insecure,
}

/// One mount of an exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Where it is mounted in the container.
    pub target: String,
    /// What is mounted.
    pub kind: MountKind,
}

impl Mount {
    /// How the mount reads its input, if it has one. Only read-only mounts
    /// other than the root may be keyed by content (BuildKit's rule): a
    /// writable mount's result depends on everything in it.
    fn input_use(&self) -> Option<InputUse> {
        let (input, selector, readonly) = match &self.kind {
            MountKind::Input { input, selector, readonly } => (*input, selector, *readonly),
            MountKind::Cache { from: Some(input), selector, readonly, .. } => (*input, selector, *readonly),
            _ => return None,
        };
        let paths = vec![if selector.is_empty() { "/".to_string() } else { selector.clone() }];
        Some(InputUse {
            input,
            selector: Some(Selector { paths, follow_symlinks: true, ..Selector::default() }),
            content_based: readonly && self.target != "/",
        })
    }
}

/// What a mount holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A path of an input (the whole input when `selector` is empty).
    Input {
        /// Position in the vertex's inputs.
        input: usize,
        /// The path of the input mounted.
        selector: String,
        /// Mounted read-only.
        readonly: bool,
    },
    /// A persistent cache directory, shared between builds by id.
    Cache {
        /// The cache's id (part of the key: another id is another cache).
        id: String,
        /// How concurrent builds share it.
        sharing: Sharing,
        /// Seeded from this input, when given.
        from: Option<usize>,
        /// The path of `from` that seeds it.
        selector: String,
        /// Mounted read-only.
        readonly: bool,
        /// Mode of a new cache directory.
        mode: u32,
        /// Owner of a new cache directory.
        uid: u32,
        /// Group of a new cache directory.
        gid: u32,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// A secret file, by id; the value comes from the worker at run time.
    Secret {
        /// The secret's id.
        id: String,
        /// Fail when the secret is not supplied.
        required: bool,
        /// File mode.
        mode: u32,
        /// File owner.
        uid: u32,
        /// File group.
        gid: u32,
        /// Also (or instead) exposed as this environment variable.
        env: Option<String>,
    },
    /// An ssh agent socket, by id.
    Ssh {
        /// The agent's id.
        id: String,
        /// Fail when the agent is not supplied.
        required: bool,
        /// Socket mode.
        mode: u32,
        /// Socket owner.
        uid: u32,
        /// Socket group.
        gid: u32,
    },
}

/// How a cache mount is shared by concurrent users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sharing {
    /// Used by all at once.
    #[default]
    Shared,
    /// A new copy for a concurrent user.
    Private,
    /// One user at a time.
    Locked,
}

/// Copy paths of input `source` onto input `dest` (or an empty tree).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Copy {
    /// Input the files come from.
    pub source: usize,
    /// Input they are copied onto; `None` for an empty tree.
    pub dest: Option<usize>,
    /// Source paths.
    pub paths: Vec<String>,
    /// Destination path.
    pub dest_path: String,
    /// Owner of the copied files; kept from the source when `None`.
    pub owner: Option<Owner>,
    /// Mode of the copied files; kept from the source when `None`.
    pub mode: Option<u32>,
    /// Follow a symbolic link named as a source.
    pub follow_symlinks: bool,
    /// Copy a directory's contents rather than the directory.
    pub contents_only: bool,
    /// Source paths may hold wildcards.
    pub wildcard: bool,
    /// A wildcard matching nothing is not an error.
    pub allow_empty_wildcard: bool,
    /// Create missing parents of the destination.
    pub create_dest_path: bool,
    /// Unpack archives found as sources.
    pub unpack: bool,
    /// Keep the source's parent directories (`COPY --parents`).
    pub parents: bool,
    /// Only paths matching one of these (when any).
    pub include: Vec<String>,
    /// Paths matching these are left out.
    pub exclude: Vec<String>,
    /// Modification time given to the copied files (seconds since the epoch).
    pub timestamp: Option<i64>,
}

impl Copy {
    /// A copy of `paths` of input 0 to `dest_path` as a Dockerfile's COPY
    /// or ADD makes it (BuildKit's dockerfile2llb copy action): a symlink
    /// named as a source followed, a directory's contents copied, missing
    /// parents of the destination created and, with `wildcard`, wildcards
    /// that may match nothing. Callers set the rest.
    pub fn dockerfile(paths: Vec<String>, dest_path: String, wildcard: bool) -> Copy {
        Copy {
            paths,
            dest_path,
            follow_symlinks: true,
            contents_only: true,
            wildcard,
            allow_empty_wildcard: wildcard,
            create_dest_path: true,
            ..Copy::default()
        }
    }
}

impl Copy {
    /// What the copy reads from its source input.
    pub fn selector(&self) -> Selector {
        Selector {
            paths: self.paths.clone(),
            wildcard: self.wildcard,
            follow_symlinks: self.follow_symlinks,
            include: self.include.clone(),
            exclude: self.exclude.clone(),
        }
    }
}

/// Make a directory in input `input` (or an empty tree).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Mkdir {
    /// The input it changes; `None` for an empty tree.
    pub input: Option<usize>,
    /// The directory.
    pub path: String,
    /// Its mode.
    pub mode: u32,
    /// Make missing parents.
    pub parents: bool,
    /// Its owner (root when `None`).
    pub owner: Option<Owner>,
    /// Its modification time.
    pub timestamp: Option<i64>,
}

/// Write a file in input `input` (or an empty tree).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Mkfile {
    /// The input it changes; `None` for an empty tree.
    pub input: Option<usize>,
    /// The file.
    pub path: String,
    /// Its content.
    pub data: Vec<u8>,
    /// Its mode.
    pub mode: u32,
    /// Its owner (root when `None`).
    pub owner: Option<Owner>,
    /// Its modification time.
    pub timestamp: Option<i64>,
}

/// Remove a path of input `input`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rm {
    /// The input it changes.
    pub input: Option<usize>,
    /// The path.
    pub path: String,
    /// A missing path is not an error.
    pub allow_not_found: bool,
    /// The path may hold wildcards.
    pub wildcard: bool,
}

/// Make a symbolic link in input `input`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Symlink {
    /// The input it changes; `None` for an empty tree.
    pub input: Option<usize>,
    /// Where the link points.
    pub target: String,
    /// The link's path.
    pub path: String,
    /// Its owner (root when `None`).
    pub owner: Option<Owner>,
    /// Its modification time.
    pub timestamp: Option<i64>,
}

/// Inputs laid over each other, later ones over earlier ones.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Merge {
    /// Input positions, bottom first.
    pub inputs: Vec<usize>,
}

/// Files from outside the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An image's root file system.
    Image(ImageSource),
    /// Files of the build context.
    Context(ContextSource),
    /// A git repository.
    Git(GitSource),
    /// One downloaded file.
    Http(HttpSource),
}

/// An image, by reference and the digest it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSource {
    /// The reference as written (`busybox:1.36`).
    pub reference: String,
    /// The manifest digest it resolved to; needed for a cache key (a tag
    /// moves), and once known the key depends on it, not on the name.
    pub resolved: Option<Digest>,
}

/// Files of a local build context.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContextSource {
    /// Which context (`context`, or a named one).
    pub name: String,
    /// Only paths matching one of these (when any).
    pub include: Vec<String>,
    /// Paths matching these are left out (`.dockerignore`).
    pub exclude: Vec<String>,
}

/// A git repository at a commit.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GitSource {
    /// The remote (`https://host/repo.git`).
    pub remote: String,
    /// The branch, tag or commit asked for.
    pub reference: String,
    /// The commit it resolved to; needed for a cache key.
    pub commit: Option<String>,
    /// A subdirectory to use instead of the whole tree.
    pub subdir: String,
    /// Keep the `.git` directory.
    pub keep_git_dir: bool,
    /// Leave submodules out (`submodules=false`); absent from the key
    /// when false, so keys made before it existed stay the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_submodules: bool,
    /// Files get the commit's time (`mtime=commit`); absent from the key
    /// when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mtime_commit: bool,
}

/// One file downloaded over http(s).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HttpSource {
    /// The URL.
    pub url: String,
    /// The expected sha256 of the body (`ADD --checksum`); when given it
    /// keys the download instead of the URL.
    pub checksum: Option<Digest>,
    /// The file's name; from the URL when `None`.
    pub filename: Option<String>,
    /// The file's mode.
    pub mode: u32,
    /// The file's owner.
    pub uid: u32,
    /// The file's group.
    pub gid: u32,
}
