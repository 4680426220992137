//! Host-side permissions of the data dir.
//!
//! Runs leave files in `layers/` whose modes they chose: setuid bits, file capabilities,
//! device nodes. The database holds every run's env, stdin and output. None of it may be
//! reachable by other host users, so the data dir and every directory the server makes in it
//! are `0700`, and the database files, the blobs and the token file are `0600`. A layer's own
//! modes stay as the run left them (an image must read back the way it was written); the
//! `0700` directories above it are what keep host users out.
//!
//! A data dir made by an older server (0755 dirs, a 0644 database) is tightened on start.
//! A directory that is open to other users and is neither empty nor a data dir is refused
//! rather than chmod-ed: it is most likely a shared directory such as `/tmp` given by mistake.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use contree_core::{Error, Result};

/// Mode of the data dir and of every directory the server creates directly in it.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of the database files, blobs and the token file.
pub(crate) const FILE_MODE: u32 = 0o600;

/// The directories the server keeps directly in the data dir.
const SUBDIRS: [&str; 4] = ["blobs", "layers", "runs", "base"];
/// The database and its WAL companions.
const DB_FILES: [&str; 3] = ["db.sqlite", "db.sqlite-wal", "db.sqlite-shm"];
/// The token file the `contree-local` binary writes when it generates a token.
pub(crate) const TOKEN_FILE: &str = "token";

/// Creates `dir` (and missing parents) as `0700`, or checks an existing one and makes it
/// `0700`. Call before anything is written into it.
///
/// Errors: `InvalidArgument` naming `data_dir` for an existing directory that other users
/// can reach and that is neither empty nor a contree-local data dir; `Io` otherwise.
pub(crate) fn create_private(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
            // The umask may have cleared bits, never added any; set it exactly anyway.
            chmod(dir, DIR_MODE)
        }
        Err(e) => Err(Error::io(format!("cannot read {}", dir.display()), e)),
        Ok(meta) => {
            let meta = if meta.file_type().is_symlink() {
                fs::metadata(dir).map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?
            } else {
                meta
            };
            if !meta.is_dir() {
                return Err(Error::invalid_argument("data_dir", format!("{} is not a directory", dir.display())));
            }
            if meta.permissions().mode() & 0o077 != 0 && !is_data_dir_or_empty(dir)? {
                return Err(Error::invalid_argument(
                    "data_dir",
                    format!(
                        "{} is open to other users and is not a contree-local data dir; \
                         use a new or empty directory (it is made private, mode 0700)",
                        dir.display()
                    ),
                ));
            }
            chmod(dir, DIR_MODE)
        }
    }
}

/// Creates `dir` (a directory inside the data dir) with mode `0700` unless it exists.
pub(crate) fn create_private_subdir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))
}

/// Makes everything the server keeps in `data_dir` private: the directories it makes `0700`,
/// the database, its WAL files, the token file and every blob `0600`. Missing entries are
/// skipped. Run once at start, after the store and the base image are ready.
pub(crate) fn tighten(data_dir: &Path) -> Result<()> {
    chmod(data_dir, DIR_MODE)?;
    for sub in SUBDIRS {
        chmod_if_exists(&data_dir.join(sub), DIR_MODE)?;
    }
    for file in DB_FILES.iter().chain(&[TOKEN_FILE]) {
        chmod_if_exists(&data_dir.join(file), FILE_MODE)?;
    }
    let blobs = data_dir.join("blobs");
    if blobs.is_dir() {
        let list_err = |e| Error::io(format!("cannot list {}", blobs.display()), e);
        for entry in fs::read_dir(&blobs).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let meta = entry.metadata().map_err(list_err)?;
            if meta.is_file() && meta.permissions().mode() & 0o7777 != FILE_MODE {
                chmod_if_exists(&entry.path(), FILE_MODE)?;
            }
        }
    }
    Ok(())
}

/// Whether `dir` is empty or holds a contree-local database.
fn is_data_dir_or_empty(dir: &Path) -> Result<bool> {
    if dir.join(DB_FILES[0]).is_file() {
        return Ok(true);
    }
    let mut entries = fs::read_dir(dir).map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
    Ok(entries.next().is_none())
}

fn chmod(p: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("cannot set the mode of {} to {mode:o}", p.display()), e))
}

fn chmod_if_exists(p: &Path, mode: u32) -> Result<()> {
    // symlink_metadata: never follow a link planted in the data dir to chmod something else.
    match fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => Ok(()),
        Ok(_) => chmod(p, mode),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("cannot read {}", p.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_new_data_dir_and_its_parents_are_private() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b/data");
        create_private(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&t.path().join("a")), 0o700);
    }

    #[test]
    fn an_old_open_data_dir_is_tightened() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("data");
        for sub in ["blobs", "layers", "runs", "base", "layers/l1"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        for (f, m) in [("db.sqlite", 0o644), ("db.sqlite-wal", 0o644), ("blobs/abc", 0o644), ("token", 0o640)] {
            fs::write(d.join(f), b"x").unwrap();
            fs::set_permissions(d.join(f), fs::Permissions::from_mode(m)).unwrap();
        }
        fs::set_permissions(d.join("layers/l1"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();

        create_private(&d).unwrap();
        tighten(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        for sub in ["blobs", "layers", "runs", "base"] {
            assert_eq!(mode(&d.join(sub)), 0o700, "{sub}");
        }
        for f in ["db.sqlite", "db.sqlite-wal", "blobs/abc", "token"] {
            assert_eq!(mode(&d.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(&d.join("layers/l1")), 0o4755, "a layer keeps the modes its run gave it");
    }

    #[test]
    fn a_shared_directory_is_refused_not_chmodded() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("shared");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("someone-elses-file"), b"x").unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o1777)).unwrap();
        let e = create_private(&d).unwrap_err();
        assert_eq!(e.argument(), Some("data_dir"), "{e}");
        assert_eq!(mode(&d), 0o1777, "left alone");
        // An empty open directory is fine: it becomes private.
        let empty = t.path().join("empty");
        fs::create_dir(&empty).unwrap();
        fs::set_permissions(&empty, fs::Permissions::from_mode(0o755)).unwrap();
        create_private(&empty).unwrap();
        assert_eq!(mode(&empty), 0o700);
    }

    #[test]
    fn symlinks_in_the_data_dir_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("data");
        create_private(&d).unwrap();
        let outside = t.path().join("outside");
        fs::write(&outside, b"x").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, d.join("db.sqlite")).unwrap();
        tighten(&d).unwrap();
        assert_eq!(mode(&outside), 0o644);
    }
}
