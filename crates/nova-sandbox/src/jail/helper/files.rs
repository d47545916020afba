//! Files in and out of the work directory: input files written without following anything, output files
//! collected without following anything.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path};

use crate::{InputFile, OutputFile};

/// Writes one input file under /work; the path must be relative and plain (no `..`, no root, no NUL), and
/// nothing is followed through a symlink.
pub(super) fn write_input(file: &InputFile) -> io::Result<()> {
    let relative = checked_relative(&file.path)?;
    let path = Path::new("/work").join(relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&path)?
        .write_all(&file.contents)
}

/// `path` if it is a plain relative path, else an error.
pub(crate) fn checked_relative(path: &str) -> io::Result<&Path> {
    let p = Path::new(path);
    let plain = !path.is_empty()
        && !path.contains('\0')
        && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if plain {
        Ok(p)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("input file name {path:?} is not a plain relative path"),
        ))
    }
}

const MAX_OUTPUT_FILES: usize = 1000;

/// Regular files under `dir`, depth first, within `budget` bytes in total. Symlinks, devices and the like
/// are skipped (and mark the result truncated), never followed.
pub(super) fn collect_files(dir: &Path, budget: u64) -> (Vec<OutputFile>, bool) {
    let mut files = Vec::new();
    let mut truncated = false;
    let mut left = budget;
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((current, depth)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() && depth < 16 {
                stack.push((path, depth + 1));
            } else if meta.is_file() && files.len() < MAX_OUTPUT_FILES && meta.len() <= left {
                let opened = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path);
                let mut contents = Vec::new();
                if opened.and_then(|f| f.take(left).read_to_end(&mut contents)).is_ok() {
                    left -= contents.len() as u64;
                    let relative = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().into_owned();
                    files.push(OutputFile { path: relative, contents });
                } else {
                    truncated = true;
                }
            } else {
                truncated = true;
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    (files, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_paths_must_be_plain_and_relative() {
        for ok in ["a.txt", "dir/b.csv", "./c"] {
            assert!(checked_relative(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/..", "nul\0byte"] {
            assert!(checked_relative(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn output_files_skip_symlinks_and_respect_the_budget() {
        let dir = std::env::temp_dir().join(format!("nova-collect-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("a.txt"), "aaaa").unwrap();
        fs::write(dir.join("sub/b.txt"), "bb").unwrap();
        fs::write(dir.join("big.bin"), vec![0u8; 100]).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("link")).unwrap();
        let (files, truncated) = collect_files(&dir, 10);
        let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["a.txt", "sub/b.txt"]);
        assert!(truncated);
        fs::remove_dir_all(&dir).unwrap();
    }
}
