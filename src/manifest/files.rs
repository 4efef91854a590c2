//! Reading the files a manifest names: the compose files, pre-launch scripts, `${file:…}` and
//! `${secret:file:…}` values, and the manifest itself.
//!
//! Invariants: only regular files are read (a FIFO, a device or a directory is an error, never
//! a hang); every read is bounded ([`Limit`]); a path must lie inside the manifest's directory
//! tree or a directory the manifest allows (`allowed_dirs:`), after symlinks are resolved, and
//! never under `/proc`, `/sys` or `/dev`; a UTF-8 byte-order mark is not content. Errors name
//! the file and the reason, never its content.

use std::fmt;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// A UTF-8 byte-order mark. Editors on Windows write it; it is never part of a value.
const BOM: char = '\u{feff}';

/// Size limits, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The manifest. Ten thousand CVMs take about 2 MB.
    Manifest,
    /// A compose file or pre-launch script: the API's limit for the two together (reference
    /// §2a: `docker_compose_file` + `pre_launch_script` ≤ 200 KiB), so a larger one alone is
    /// already refused.
    Compose,
    /// A `${file:}` or `${secret:file:}` value. UNVERIFIED: the API documents no limit for
    /// one env value; this bound keeps a read finite and is far above any key or certificate.
    Value,
}

/// The API's limit for a compose file and pre-launch script together (reference §2a).
pub const COMPOSE_BYTES: u64 = 200 * 1024;

impl Limit {
    pub fn bytes(self) -> u64 {
        match self {
            Limit::Manifest => 16 << 20,
            Limit::Compose => COMPOSE_BYTES,
            Limit::Value => 1 << 20,
        }
    }
}

/// Shows a byte count the way limits are written (`200 KiB`, `16 MiB`).
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n.is_multiple_of(1 << 20) => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n.is_multiple_of(1 << 10) => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// Why a file cannot be read. The `Display` form completes "cannot read FILE: …".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    NotFound,
    /// Outside the manifest's directory tree and every allowed directory.
    Outside,
    /// Under `/proc`, `/sys` or `/dev`, whatever `allowed_dirs` says.
    System,
    /// Not a regular file: "a directory", "a FIFO", "a socket", "a device".
    NotRegular(&'static str),
    TooLarge(Limit),
    NotUtf8,
    PermissionDenied,
    /// Any other I/O error, as the OS describes it (never with content).
    Io(String),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::NotFound => write!(f, "no such file"),
            FileError::Outside => write!(f, "it is outside the manifest's directory"),
            FileError::System => write!(f, "files under /proc, /sys and /dev are never read"),
            FileError::NotRegular(what) => write!(f, "it is {what}, not a regular file"),
            FileError::TooLarge(limit) => write!(f, "it is larger than {}", human_bytes(limit.bytes())),
            FileError::NotUtf8 => write!(f, "it is not UTF-8 text"),
            FileError::PermissionDenied => write!(f, "permission denied"),
            FileError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl FileError {
    fn io(e: &std::io::Error) -> FileError {
        match e.kind() {
            std::io::ErrorKind::NotFound => FileError::NotFound,
            std::io::ErrorKind::PermissionDenied => FileError::PermissionDenied,
            std::io::ErrorKind::IsADirectory => FileError::NotRegular("a directory"),
            _ => FileError::Io(match e.raw_os_error() {
                // The OS's own words, without Rust's "(os error N)" suffix.
                Some(code) => std::io::Error::from_raw_os_error(code)
                    .to_string()
                    .split(" (os error")
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                None => e.kind().to_string(),
            }),
        }
    }
}

/// Where files may be read from: the manifest's directory tree and the directories the
/// manifest allows. Paths are resolved against the manifest's directory.
#[derive(Debug, Clone)]
pub struct FilePolicy {
    /// The manifest's directory, as given (paths are joined to it).
    base: PathBuf,
    /// Canonical roots: the manifest's directory, then the allowed directories.
    roots: Vec<PathBuf>,
    /// Canonical forms of directories already resolved: ten thousand compose files in one
    /// directory cost one `realpath` of it, then one `lstat` each.
    dirs: std::cell::RefCell<std::collections::HashMap<PathBuf, PathBuf>>,
}

impl FilePolicy {
    /// `base` is the manifest's directory (empty means the current directory); `allowed` are
    /// further directories, relative to `base` or absolute.
    pub fn new(base: &Path, allowed: &[PathBuf]) -> FilePolicy {
        let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base.to_path_buf() };
        let roots =
            std::iter::once(base.clone()).chain(allowed.iter().map(|d| base.join(d))).map(|d| resolve(&d)).collect();
        FilePolicy { base, roots, dirs: Default::default() }
    }

    /// The path as the manifest means it (joined to the manifest's directory).
    pub fn full(&self, path: &str) -> PathBuf {
        self.base.join(path)
    }

    /// Whether `path` (as written in the manifest) may be read; the file need not exist.
    pub fn check(&self, path: &str) -> Result<PathBuf, FileError> {
        let real = self.resolve(&self.full(path));
        if [Path::new("/proc"), Path::new("/sys"), Path::new("/dev")].iter().any(|p| real.starts_with(p)) {
            return Err(FileError::System);
        }
        if !self.roots.iter().any(|r| real.starts_with(r)) {
            return Err(FileError::Outside);
        }
        Ok(real)
    }

    /// [`resolve`], with the file's directory resolved once: a path whose last component is
    /// not a symlink (nor `.`/`..`) is its resolved directory plus its name.
    fn resolve(&self, p: &Path) -> PathBuf {
        let (Some(parent), Some(Component::Normal(name))) = (p.parent(), p.components().next_back()) else {
            return resolve(p);
        };
        if p.symlink_metadata().map_or(true, |m| m.is_symlink()) {
            return resolve(p);
        }
        let mut dirs = self.dirs.borrow_mut();
        let dir = dirs.entry(parent.to_path_buf()).or_insert_with(|| resolve(parent));
        dir.join(name)
    }

    /// Reads `path` (as written in the manifest) as text: checked by [`FilePolicy::check`],
    /// a regular file, at most `limit` bytes, UTF-8, without a leading byte-order mark.
    pub fn read(&self, path: &str, limit: Limit) -> Result<String, FileError> {
        let real = self.check(path)?;
        read_regular(&real, limit)
    }
}

/// Reads a regular file of at most `limit` bytes as UTF-8 text without a byte-order mark.
/// No policy: for the manifest itself, which defines the policy.
pub fn read_regular(path: &Path, limit: Limit) -> Result<String, FileError> {
    let meta = std::fs::metadata(path).map_err(|e| FileError::io(&e))?;
    regular(&meta)?;
    // Non-blocking, so a file swapped for a FIFO after the check cannot make us wait.
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| FileError::io(&e))?;
    let meta = file.metadata().map_err(|e| FileError::io(&e))?;
    regular(&meta)?;
    let mut bytes = Vec::with_capacity(meta.len().min(limit.bytes()) as usize + 1);
    file.take(limit.bytes() + 1).read_to_end(&mut bytes).map_err(|e| FileError::io(&e))?;
    if bytes.len() as u64 > limit.bytes() {
        return Err(FileError::TooLarge(limit));
    }
    let text = String::from_utf8(bytes).map_err(|_| FileError::NotUtf8)?;
    Ok(strip_bom(text))
}

fn regular(meta: &std::fs::Metadata) -> Result<(), FileError> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    match () {
        _ if t.is_file() => Ok(()),
        _ if t.is_dir() => Err(FileError::NotRegular("a directory")),
        _ if t.is_fifo() => Err(FileError::NotRegular("a FIFO")),
        _ if t.is_socket() => Err(FileError::NotRegular("a socket")),
        _ => Err(FileError::NotRegular("a device")),
    }
}

/// Drops one leading UTF-8 byte-order mark.
pub fn strip_bom(text: String) -> String {
    match text.strip_prefix(BOM) {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// The newline rule for a value read from a file (`${file:PATH}`, `${secret:file:PATH}`):
/// one final line break (`\n` or `\r\n`), which editors and `echo` add, is not part of the
/// value; everything else is, including a second line break (the plan shows it as `\n`).
pub fn file_value(text: String) -> String {
    match text.strip_suffix('\n') {
        Some(rest) => rest.strip_suffix('\r').unwrap_or(rest).to_string(),
        None => text,
    }
}

/// The canonical form of `p` with symlinks resolved; for a path that does not exist (yet),
/// its longest existing ancestor resolved and the rest appended with `..` applied. A dangling
/// symlink is followed to where it points.
fn resolve(p: &Path) -> PathBuf {
    resolve_hops(p, 40)
}

fn resolve_hops(p: &Path, hops: usize) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    };
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        let found = match cur.canonicalize() {
            Ok(real) => Some(real),
            Err(_) if hops > 0 && cur.symlink_metadata().is_ok_and(|m| m.is_symlink()) => {
                let target = std::fs::read_link(cur).unwrap_or_default();
                Some(resolve_hops(&cur.parent().unwrap_or(Path::new("/")).join(target), hops - 1))
            }
            Err(_) => None,
        };
        if let Some(real) = found {
            let mut out = real;
            for c in rest.iter().rev() {
                match c {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::CurDir => {}
                    c => out.push(c),
                }
            }
            return out;
        }
        match (cur.parent(), cur.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                cur = parent;
            }
            _ => return abs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(dir: &Path) -> FilePolicy {
        FilePolicy::new(dir, &[])
    }

    #[test]
    fn reads_regular_files_without_bom() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.txt"), "\u{feff}hello\n").unwrap();
        std::fs::write(d.path().join("b.txt"), "\u{feff}\u{feff}x").unwrap();
        let p = policy(d.path());
        assert_eq!(p.read("a.txt", Limit::Value).unwrap(), "hello\n");
        // Only the first mark is a byte-order mark; a second one is content.
        assert_eq!(p.read("b.txt", Limit::Value).unwrap(), "\u{feff}x");
    }

    #[test]
    fn refuses_what_is_not_a_regular_file_in_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let inner = d.path().join("project");
        std::fs::create_dir_all(inner.join("sub")).unwrap();
        std::fs::write(d.path().join("outside.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(d.path().join("outside.txt"), inner.join("link.txt")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", inner.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", inner.join("dangling")).unwrap();
        let fifo = inner.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::fs::write(inner.join("big"), vec![b'x'; (COMPOSE_BYTES + 1) as usize]).unwrap();
        std::fs::write(inner.join("bin"), [0xff, 0xfe, 0x00]).unwrap();
        let p = policy(&inner);
        let cases: &[(&str, Limit, FileError)] = &[
            ("missing", Limit::Value, FileError::NotFound),
            ("sub", Limit::Value, FileError::NotRegular("a directory")),
            ("fifo", Limit::Value, FileError::NotRegular("a FIFO")),
            ("big", Limit::Compose, FileError::TooLarge(Limit::Compose)),
            ("bin", Limit::Value, FileError::NotUtf8),
            ("../outside.txt", Limit::Value, FileError::Outside),
            ("link.txt", Limit::Value, FileError::Outside),
            ("etc-link", Limit::Value, FileError::Outside),
            ("/etc/passwd", Limit::Value, FileError::Outside),
            ("dangling", Limit::Value, FileError::Outside),
            ("/dev/zero", Limit::Value, FileError::System),
            ("/proc/self/environ", Limit::Value, FileError::System),
            ("sub/../../outside.txt", Limit::Value, FileError::Outside),
            ("missing-dir/../../outside.txt", Limit::Value, FileError::Outside),
        ];
        for (path, limit, want) in cases {
            assert_eq!(p.read(path, *limit).as_ref(), Err(want), "{path}");
        }
        // The same file is readable once its directory is allowed; /dev never is.
        let allowed = FilePolicy::new(&inner, &[PathBuf::from(".."), PathBuf::from("/")]);
        assert_eq!(allowed.read("../outside.txt", Limit::Value).unwrap(), "secret");
        assert_eq!(allowed.read("link.txt", Limit::Value).unwrap(), "secret");
        assert_eq!(allowed.read("/dev/zero", Limit::Value), Err(FileError::System));
        assert_eq!(allowed.read("fifo", Limit::Value), Err(FileError::NotRegular("a FIFO")));
    }

    #[test]
    fn one_final_line_break_is_not_part_of_a_value() {
        for (text, want) in [
            ("s3cret", "s3cret"),
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret\n\n", "s3cret\n"),
            ("a\nb\n", "a\nb"),
            ("\n", ""),
            ("", ""),
            ("x\r", "x\r"),
            ("  x  \n", "  x  "),
        ] {
            assert_eq!(file_value(text.to_string()), want, "{text:?}");
        }
    }

    #[test]
    fn limits_read_as_written() {
        assert_eq!(human_bytes(Limit::Compose.bytes()), "200 KiB");
        assert_eq!(human_bytes(Limit::Manifest.bytes()), "16 MiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }
}
