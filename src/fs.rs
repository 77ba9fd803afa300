//! Filesystem primitives every writer of volley's files uses: create without
//! following a symlink, create private to the owner, positional writes, fsync
//! of a directory, free space, and reserving space up front.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use bytes::Bytes;

use crate::options::FileAllocation;

/// A file the user named for volley to read or write (a netrc, a
/// cookies.txt): it cannot be used. A usage error (exit 2) when reading.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the file is to the user (`cannot read netrc file`, `cookie file`).
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS reason.
        source: io::Error,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The directory `path` is in: `.` for a bare name.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Open or create a file without following a symlink at its path, for writing
/// and for reading back (checksums).
pub fn create_nofollow(path: &Path, truncate: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Create (or truncate) a file only its owner may read, without following a
/// symlink at its path: state files, which hold the URL, and lists of failed
/// downloads, which may hold credentials. An existing file is made private too.
pub fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::PermissionsExt;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Write `bytes` to a temp file beside `path` (owner-only permissions), flush
/// it and rename it over `path`: the file is whole or as it was, and only its
/// owner reads it (a cookie jar, a list that may hold passwords).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "volley".to_string());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    replace_private(&tmp, path, bytes)
}

/// Write `bytes` to `tmp` (owner-only permissions, not following a link),
/// flush it and rename it over `path`; `tmp` is removed when that fails.
pub fn replace_private(tmp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let written = (|| {
        let mut file = create_private(tmp)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        std::fs::rename(tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written
}

/// fsync a directory so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Remove a file; one that is not there is fine.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Bytes available to an unprivileged user on the filesystem of `dir`.
pub fn free_space(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::useless_conversion)] // the field types differ between platforms
    Ok(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}

/// Reserve space for a file of `size` bytes from `from` on (`--file-allocation`):
/// `falloc` asks the filesystem for the blocks (falling back to a sparse size
/// where it cannot), `prealloc` sets the size (sparse), `none` does nothing.
pub fn reserve_space(file: &File, mode: FileAllocation, from: u64, size: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if size <= from {
        return Ok(());
    }
    match mode {
        FileAllocation::None => Ok(()),
        FileAllocation::Prealloc => file.set_len(size),
        FileAllocation::Falloc => {
            let len = (size - from) as libc::off_t;
            // SAFETY: a valid open file descriptor.
            match unsafe { libc::posix_fallocate(file.as_raw_fd(), from as libc::off_t, len) } {
                0 => Ok(()),
                libc::EOPNOTSUPP | libc::EINVAL => file.set_len(size),
                err => Err(io::Error::from_raw_os_error(err)),
            }
        }
    }
}

/// Write `bufs` one after the other from `offset` on (positional writes:
/// several writers share one file).
pub fn write_at(file: &File, bufs: &[Bytes], mut offset: u64) -> io::Result<()> {
    for b in bufs {
        file.write_all_at(b, offset)?;
        offset += b.len() as u64;
    }
    Ok(())
}
