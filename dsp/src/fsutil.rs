//! File-system helpers for files the user cares about: written whole or not at all.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A temporary path next to `path` (same directory, so a rename is atomic on one file system).
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fxtwin".to_string());
    // Process id and a per-process counter keep concurrent writers to one target apart.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_name = format!(".{name}.{}.{n}.tmp", std::process::id());
    path.with_file_name(tmp_name)
}

/// Writes `bytes` to `path` atomically: into a temporary file beside it, flushed to disk, then
/// renamed over the target. On any error the temporary file is removed and an existing file at
/// `path` is left untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path_for(path);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_keeps_old_file_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("fxtwin-fsutil-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("a.json");
        write_atomic(&target, b"old").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"old");

        // A target whose directory does not exist cannot be written; nothing is created.
        let bad = dir.join("missing-dir").join("b.json");
        assert!(write_atomic(&bad, b"new").is_err());
        assert!(!dir.join("missing-dir").exists());

        write_atomic(&target, b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        let leftovers = fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "only the target remains");
        fs::remove_dir_all(&dir).unwrap();
    }
}
