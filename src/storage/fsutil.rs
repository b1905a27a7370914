//! Small file-system helpers: atomic replacement of a file, directory fsync, segment file names.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Suffix of temporary files; files with it are junk of an interrupted operation.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `bytes` atomically: write `path.tmp`, fsync it, rename over `path`, and,
/// with `sync_dir`, fsync the directory so that the rename itself is durable.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], sync_dir: bool) -> Result<()> {
    let tmp = with_suffix(path, TMP_SUFFIX);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .ctx(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .ctx(|| format!("writing {}", tmp.display()))?;
    file.sync_all()
        .ctx(|| format!("syncing {}", tmp.display()))?;
    drop(file);
    fs::rename(&tmp, path).ctx(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    if sync_dir {
        if let Some(parent) = path.parent() {
            sync_dir_of(parent)?;
        }
    }
    Ok(())
}

/// Fsyncs a directory, making the creation, deletion and renaming of its entries durable.
pub(crate) fn sync_dir_of(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing directory {}", dir.display()))
}

/// `path` with `suffix` appended to its file name (`a.log` + `.swap` = `a.log.swap`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Kafka's file name for a segment file: the base offset as 20 digits, then the extension.
pub(crate) fn segment_file(dir: &Path, base_offset: u64, extension: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{extension}"))
}

/// Parses `00000000000000001234.log` style names into `(base_offset, rest after the digits)`.
pub(crate) fn parse_segment_name(name: &str) -> Option<(u64, &str)> {
    let digits = name.get(..20)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = &name[20..];
    if !rest.starts_with('.') {
        return None;
    }
    // Kafka offsets are signed 64-bit: a larger name was not written by tidelog or Kafka.
    digits.parse::<i64>().ok().map(|base| (base as u64, rest))
}

/// Takes the lock file `name` in `dir` (`flock`, exclusive), failing with
/// [`Error::DirectoryLocked`](crate::Error::DirectoryLocked) if another handle, in this process or
/// another, holds it. The lock lasts as long as the returned file is open.
pub(crate) fn lock_dir(dir: &Path, name: &str) -> Result<File> {
    let path = dir.join(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .ctx(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(crate::Error::DirectoryLocked {
            path: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(crate::Error::io(format!("locking {}", path.display()), e))
        }
    }
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(crate::Error::io(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let p = segment_file(Path::new("/d"), 1234, "log");
        assert_eq!(p, Path::new("/d/00000000000000001234.log"));
        assert_eq!(
            parse_segment_name("00000000000000001234.log.swap"),
            Some((1234, ".log.swap"))
        );
        assert_eq!(parse_segment_name("0000000000000000123x.log"), None);
        assert_eq!(parse_segment_name("99999999999999999999.log"), None);
        assert_eq!(parse_segment_name("18446744073709551615.log"), None);
        assert_eq!(
            parse_segment_name("09223372036854775807.log"),
            Some((i64::MAX as u64, ".log"))
        );
        assert_eq!(
            with_suffix(&p, ".tmp"),
            Path::new("/d/00000000000000001234.log.tmp")
        );
    }
}
