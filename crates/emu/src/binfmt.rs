//! The `binfmt_misc` file system (Linux Documentation/admin-guide/binfmt-misc.rst):
//! one file per handler, `register` to add one, `status` to switch all off.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::arch::magic_matches;
use crate::Error;

/// Where `binfmt_misc` is mounted on every distribution.
pub const DEFAULT_MOUNT: &str = "/proc/sys/fs/binfmt_misc";

/// A handler's flags (the last field of a registration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Flags {
    /// `P`: preserve `argv[0]`, the interpreter gets the original name.
    pub preserve_argv0: bool,
    /// `O`: the kernel opens the binary and passes its descriptor.
    pub open_binary: bool,
    /// `C`: credentials from the binary, not the interpreter (implies `O`).
    pub credentials: bool,
    /// `F`: the interpreter is opened at registration, so it works inside
    /// other mount namespaces and chroots (containers).
    pub fix_binary: bool,
}

impl Flags {
    /// Parses flag letters (`"PF"`, `"OCF"`); unknown letters are an error.
    pub fn parse(s: &str) -> Result<Flags, String> {
        let mut f = Flags::default();
        for c in s.chars() {
            match c {
                'P' => f.preserve_argv0 = true,
                'O' => f.open_binary = true,
                'C' => f.credentials = true,
                'F' => f.fix_binary = true,
                c => return Err(format!("unknown flag {c:?}")),
            }
        }
        Ok(f)
    }
}

/// The letters in the kernel's order (`POCF`).
impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, c) in
            [(self.preserve_argv0, 'P'), (self.open_binary, 'O'), (self.credentials, 'C'), (self.fix_binary, 'F')]
        {
            if on {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// How a handler recognises its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Bytes at an offset, under an optional mask (type `M`).
    Magic {
        /// Where the magic starts in the file.
        offset: usize,
        /// The bytes to compare.
        #[serde(serialize_with = "ser_hex")]
        magic: Vec<u8>,
        /// Which bits count; `None` for all.
        #[serde(serialize_with = "ser_hex_opt")]
        mask: Option<Vec<u8>>,
    },
    /// A file name extension (type `E`).
    Extension(String),
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ser_hex<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&to_hex(b))
}

fn ser_hex_opt<S: serde::Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_str(&to_hex(b)),
        None => s.serialize_none(),
    }
}

fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("invalid hex {s:?}");
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            if text.len() != 2 || !pair.iter().all(u8::is_ascii_hexdigit) {
                return Err(bad());
            }
            u8::from_str_radix(text, 16).map_err(|_| bad())
        })
        .collect()
}

/// An installed handler, as its file under the mount point describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Handler {
    /// The file name.
    pub name: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// The interpreter's path as registered.
    pub interpreter: PathBuf,
    /// Its flags.
    pub flags: Flags,
    /// What it matches.
    pub rule: Rule,
}

impl Handler {
    /// Parses a handler file:
    ///
    /// ```text
    /// enabled
    /// interpreter /usr/bin/qemu-aarch64-static
    /// flags: OCF
    /// offset 0
    /// magic 7f454c46...
    /// mask ffffffff...
    /// ```
    ///
    /// or `extension .jar` in place of offset, magic and mask. `path` is
    /// only used in errors.
    pub fn parse(name: &str, text: &str, path: &Path) -> Result<Handler, Error> {
        let bad = |reason: String| Error::Handler { path: path.to_path_buf(), reason };
        let mut lines = text.lines();
        let enabled = match lines.next().map(str::trim) {
            Some("enabled") => true,
            Some("disabled") => false,
            other => return Err(bad(format!("expected enabled or disabled, found {other:?}"))),
        };
        let (mut interpreter, mut flags) = (None, Flags::default());
        let (mut offset, mut magic, mut mask, mut extension) = (0, None, None, None);
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let value = value.trim();
            match key {
                "interpreter" => interpreter = Some(PathBuf::from(value)),
                "flags:" => flags = Flags::parse(value).map_err(bad)?,
                "offset" => offset = value.parse().map_err(|_| bad(format!("invalid offset {value:?}")))?,
                "magic" => magic = Some(from_hex(value).map_err(bad)?),
                "mask" => mask = Some(from_hex(value).map_err(bad)?),
                "extension" => extension = Some(value.to_string()),
                _ => {}
            }
        }
        let interpreter = interpreter.ok_or_else(|| bad("no interpreter line".to_string()))?;
        let rule = match (magic, extension) {
            (Some(magic), None) => Rule::Magic { offset, magic, mask },
            (None, Some(ext)) => Rule::Extension(ext.trim_start_matches('.').to_string()),
            _ => return Err(bad("expected either magic or extension".to_string())),
        };
        Ok(Handler { name: name.to_string(), enabled, interpreter, flags, rule })
    }

    /// Whether this handler's magic matches a file starting with `header`
    /// (extension handlers never match by content).
    pub fn matches(&self, header: &[u8]) -> bool {
        match &self.rule {
            Rule::Magic { offset, magic, mask } => magic_matches(header, *offset, magic, mask.as_deref()),
            Rule::Extension(_) => false,
        }
    }

    /// The registration that recreates this handler exactly.
    pub fn registration(&self) -> Registration {
        Registration {
            name: self.name.clone(),
            rule: self.rule.clone(),
            interpreter: self.interpreter.clone(),
            flags: self.flags,
        }
    }
}

/// A handler to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The name of the handler file.
    pub name: String,
    /// What it matches.
    pub rule: Rule,
    /// The interpreter's absolute path.
    pub interpreter: PathBuf,
    /// Its flags.
    pub flags: Flags,
}

impl Registration {
    /// The line written to `register`:
    /// `:name:type:offset:magic:mask:interpreter:flags`, with every magic
    /// and mask byte escaped as `\xHH` so that none can be read as the `:`
    /// separator.
    pub fn line(&self) -> Result<String, Error> {
        let bad = |reason: &str| Error::Registration { name: self.name.clone(), reason: reason.to_string() };
        let name_ok = !self.name.is_empty()
            && !matches!(self.name.as_str(), "." | ".." | "register" | "status")
            && !self.name.contains(['/', ':', '\n']);
        if !name_ok {
            return Err(bad("names must be non-empty, without '/' or ':', and not register, status, . or .."));
        }
        let interp = self.interpreter.to_str().ok_or_else(|| bad("interpreter path is not UTF-8"))?;
        if !interp.starts_with('/') || interp.contains([':', '\n']) {
            return Err(bad("interpreter must be an absolute path without ':'"));
        }
        let esc = |b: &[u8]| b.iter().map(|x| format!("\\x{x:02x}")).collect::<String>();
        let body = match &self.rule {
            Rule::Magic { offset, magic, mask } => {
                if magic.is_empty() || mask.as_ref().is_some_and(|m| m.len() != magic.len()) {
                    return Err(bad("magic must be non-empty and as long as its mask"));
                }
                format!("M:{offset}:{}:{}", esc(magic), mask.as_deref().map(esc).unwrap_or_default())
            }
            Rule::Extension(ext) => {
                if ext.is_empty() || ext.contains([':', '/', '\n']) {
                    return Err(bad("invalid extension"));
                }
                format!("E::{ext}:")
            }
        };
        Ok(format!(":{}:{body}:{interp}:{}", self.name, self.flags))
    }
}

/// Writes `text` in one `write` to a file that must exist, without
/// `O_CREAT` or `O_TRUNC`: `binfmt_misc` files refuse truncation.
fn write_existing(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let n = f.write(text.as_bytes())?;
    if n != text.len() {
        return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, format!("short write ({n} of {})", text.len())));
    }
    Ok(())
}

/// A `binfmt_misc` mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinfmtMisc {
    root: PathBuf,
}

impl Default for BinfmtMisc {
    fn default() -> Self {
        BinfmtMisc::new(DEFAULT_MOUNT)
    }
}

impl BinfmtMisc {
    /// The file system mounted (or to be mounted) at `root`.
    pub fn new(root: impl Into<PathBuf>) -> BinfmtMisc {
        BinfmtMisc { root: root.into() }
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the file system is mounted there (its `register` file exists).
    pub fn is_mounted(&self) -> bool {
        self.root.join("register").exists()
    }

    /// Mounts `binfmt_misc` at the mount point unless it is mounted;
    /// returns whether it mounted it.
    pub fn ensure_mounted(&self) -> Result<bool, Error> {
        if self.is_mounted() {
            return Ok(false);
        }
        rustix::mount::mount("binfmt_misc", &self.root, "binfmt_misc", rustix::mount::MountFlags::empty(), None)
            .map_err(|e| Error::Mount { path: self.root.clone(), source: e.into() })?;
        Ok(true)
    }

    fn not_mounted(&self) -> Result<(), Error> {
        if self.is_mounted() {
            Ok(())
        } else {
            Err(Error::NotMounted { path: self.root.clone() })
        }
    }

    /// Whether handlers are enabled globally (the `status` file).
    pub fn enabled(&self) -> Result<bool, Error> {
        self.not_mounted()?;
        let p = self.root.join("status");
        let s = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        Ok(s.trim() == "enabled")
    }

    /// Switches all handlers on or off.
    pub fn set_enabled(&self, on: bool) -> Result<(), Error> {
        self.not_mounted()?;
        let p = self.root.join("status");
        write_existing(&p, if on { "1" } else { "0" }).map_err(|e| Error::io(&p, e))
    }

    /// Every handler, sorted by name.
    pub fn handlers(&self) -> Result<Vec<Handler>, Error> {
        self.not_mounted()?;
        let rd = std::fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&self.root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if matches!(name.as_str(), "register" | "status") {
                continue;
            }
            // A handler removed while listing is simply gone.
            if let Some(h) = self.handler(&name)? {
                out.push(h);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One handler by name, `None` if there is none.
    pub fn handler(&self, name: &str) -> Result<Option<Handler>, Error> {
        let p = self.root.join(name);
        match std::fs::read_to_string(&p) {
            Ok(text) => Handler::parse(name, &text, &p).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&p, e)),
        }
    }

    /// Writes a registration to `register` (one `write`, as the kernel
    /// requires).
    pub fn register(&self, reg: &Registration) -> Result<(), Error> {
        self.not_mounted()?;
        let line = reg.line()?;
        let p = self.root.join("register");
        write_existing(&p, &line).map_err(|e| Error::io(&p, e))
    }

    /// Removes a handler by writing `-1` to its file; `false` if there was
    /// none.
    pub fn remove(&self, name: &str) -> Result<bool, Error> {
        self.not_mounted()?;
        if name.contains('/') || matches!(name, "register" | "status" | "." | "..") {
            return Err(Error::Registration { name: name.to_string(), reason: "not a handler name".to_string() });
        }
        let p = self.root.join(name);
        match write_existing(&p, "-1") {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&p, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n\
        offset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
    const JAR: &str = "enabled\ninterpreter /usr/bin/jexec\nflags: \noffset 0\nmagic 504b0304\n";
    const EXT: &str = "disabled\ninterpreter /usr/bin/wine\nflags: OC\nextension .exe\n";

    fn parse(name: &str, text: &str) -> Handler {
        Handler::parse(name, text, Path::new("/x")).unwrap()
    }

    #[test]
    fn parses_a_qemu_handler() {
        let h = parse("qemu-aarch64", DEBIAN_AARCH64);
        assert!(h.enabled);
        assert_eq!(h.interpreter, Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P"));
        assert_eq!(h.flags, Flags { preserve_argv0: true, fix_binary: true, ..Flags::default() });
        let Rule::Magic { offset, magic, mask } = &h.rule else { panic!("{h:?}") };
        assert_eq!(*offset, 0);
        assert_eq!(magic.len(), 20);
        assert_eq!(magic[18], 0xb7);
        assert_eq!(mask.as_ref().unwrap()[7], 0);
        assert!(h.matches(&crate::Arch::Arm64.probe_program()));
        assert!(!h.matches(&crate::Arch::Arm.probe_program()));
    }

    #[test]
    fn parses_handlers_without_mask_or_flags_and_extension_handlers() {
        let jar = parse("jar", JAR);
        assert_eq!(jar.flags, Flags::default());
        assert_eq!(jar.rule, Rule::Magic { offset: 0, magic: vec![0x50, 0x4b, 3, 4], mask: None });
        assert!(jar.matches(b"PK\x03\x04rest"));
        let exe = parse("wine", EXT);
        assert!(!exe.enabled);
        assert_eq!(exe.rule, Rule::Extension("exe".to_string()));
        assert_eq!(exe.flags.to_string(), "OC");
        assert!(!exe.matches(b"MZ"));
    }

    #[test]
    fn rejects_malformed_handler_files() {
        for text in [
            "",
            "maybe\n",
            "enabled\nflags: F\nmagic 00\n",
            "enabled\ninterpreter /x\nmagic 0g\n",
            "enabled\ninterpreter /x\nflags: Z\nmagic 00\n",
            "enabled\ninterpreter /x\n",
        ] {
            let err = Handler::parse("h", text, Path::new("/b/h")).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Invalid, "{text:?}");
            assert!(err.to_string().starts_with("/b/h: "), "{err}");
        }
    }

    #[test]
    fn flags_round_trip_in_kernel_order() {
        let f = Flags::parse("FCOP").unwrap();
        assert_eq!(f.to_string(), "POCF");
        assert_eq!(Flags::parse("CF").unwrap().to_string(), "CF");
    }

    #[test]
    fn registration_lines() {
        let reg = Registration {
            name: "qemu-aarch64".to_string(),
            rule: Rule::Magic { offset: 0, magic: vec![0x7f, b'E', b':'], mask: Some(vec![0xff, 0xfe, 0x00]) },
            interpreter: PathBuf::from("/usr/bin/qemu-aarch64-static"),
            flags: Flags::parse("CF").unwrap(),
        };
        assert_eq!(reg.line().unwrap(), r":qemu-aarch64:M:0:\x7f\x45\x3a:\xff\xfe\x00:/usr/bin/qemu-aarch64-static:CF");
        let ext = Registration { rule: Rule::Extension("jar".into()), flags: Flags::default(), ..reg.clone() };
        assert_eq!(ext.line().unwrap(), ":qemu-aarch64:E::jar::/usr/bin/qemu-aarch64-static:");
        let nomask = Registration { rule: Rule::Magic { offset: 2, magic: vec![1], mask: None }, ..reg.clone() };
        assert_eq!(nomask.line().unwrap(), r":qemu-aarch64:M:2:\x01::/usr/bin/qemu-aarch64-static:CF");
        for bad in [
            Registration { name: "a:b".into(), ..reg.clone() },
            Registration { name: "status".into(), ..reg.clone() },
            Registration { interpreter: "relative/qemu".into(), ..reg.clone() },
            Registration { rule: Rule::Magic { offset: 0, magic: vec![1, 2], mask: Some(vec![1]) }, ..reg.clone() },
        ] {
            assert_eq!(bad.line().unwrap_err().kind(), crate::ErrorKind::Invalid, "{bad:?}");
        }
    }

    #[test]
    fn a_parsed_handler_re_registers_as_itself() {
        let h = parse("qemu-aarch64", DEBIAN_AARCH64);
        let line = h.registration().line().unwrap();
        assert!(line.starts_with(r":qemu-aarch64:M:0:\x7f\x45\x4c\x46\x02"), "{line}");
        assert!(line.ends_with(r"\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:PF"), "{line}");
    }

    #[test]
    fn reads_a_directory_laid_out_like_the_mount() {
        let dir = tempfile::tempdir().unwrap();
        let fs = BinfmtMisc::new(dir.path());
        assert!(!fs.is_mounted());
        assert_eq!(fs.handlers().unwrap_err().kind(), crate::ErrorKind::NotFound);
        std::fs::write(dir.path().join("register"), "").unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        std::fs::write(dir.path().join("qemu-aarch64"), DEBIAN_AARCH64).unwrap();
        std::fs::write(dir.path().join("jar"), JAR).unwrap();
        assert!(fs.is_mounted());
        assert!(fs.enabled().unwrap());
        let names: Vec<String> = fs.handlers().unwrap().into_iter().map(|h| h.name).collect();
        assert_eq!(names, ["jar", "qemu-aarch64"]);
        assert!(fs.handler("qemu-arm").unwrap().is_none());
        assert!(fs.remove("../etc").is_err());
    }
}
