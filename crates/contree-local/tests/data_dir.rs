//! The server keeps its data dir private on the host, also one made by an older server.
//! Linux and root only (like the server itself).
#![cfg(target_os = "linux")]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use contree_local::{LocalConfig, LocalServer};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_loosened_data_dir_is_made_private_again_on_start() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    drop(LocalServer::start_blocking(LocalConfig::default().with_data_dir(&data)).unwrap());
    // As an older server (or a careless chmod -R) would have left it.
    for dir in ["", "blobs", "layers", "runs", "base"] {
        chmod(&data.join(dir), 0o755);
    }
    for file in ["db.sqlite", "db.sqlite-wal", "db.sqlite-shm"] {
        if data.join(file).exists() {
            chmod(&data.join(file), 0o644);
        }
    }
    std::fs::write(data.join("blobs/old-blob"), b"x").unwrap();
    chmod(&data.join("blobs/old-blob"), 0o644);

    let server = LocalServer::start_blocking(LocalConfig::default().with_data_dir(&data)).unwrap();
    for dir in ["", "blobs", "layers", "runs", "base"] {
        assert_eq!(mode(&data.join(dir)), 0o700, "{dir:?}");
    }
    for file in ["db.sqlite", "db.sqlite-wal", "db.sqlite-shm", "blobs/old-blob"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    drop(server);
}

#[test]
fn a_shared_directory_is_refused_as_a_data_dir() {
    let shared = tempfile::tempdir().unwrap();
    chmod(shared.path(), 0o1777);
    std::fs::write(shared.path().join("someone-elses-file"), b"x").unwrap();
    let err = LocalServer::start_blocking(LocalConfig::default().with_data_dir(shared.path())).unwrap_err();
    assert_eq!(err.argument(), Some("data_dir"), "{err}");
    assert_eq!(mode(shared.path()), 0o1777, "left as it was");
}
