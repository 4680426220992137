//! Layer directories: `<data>/layers/<id>/`, each the upper dir of a finished run, immutable
//! once adopted.
//!
//! Where runs are capped by btrfs qgroups ([`crate::layer_quota`]) a run's directory is a
//! subvolume, and a directory can't be renamed out of its subvolume (`EXDEV`): such a layer is
//! the whole subvolume, `<data>/layers/<id>-vol/`, with its content in `upper/`. The `-vol`
//! suffix of the id says which layout a layer has, so finding it costs no `stat`.
//!
//! A run's upper dir becomes a layer by one `rename(2)` inside the data dir, so a layer is
//! either entirely there or not at all; the layers directory is fsynced after the rename so
//! the rename is on disk before the image that names the layer is committed. The layer's file
//! contents themselves are not fsynced one by one (that would cost more than a whole run);
//! after a power loss, files of the most recent layers may be incomplete.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use contree_core::{Error, Result};
use uuid::Uuid;

use super::{Store, conflict, db_error, fsync_dir};

/// Longest layer id accepted; generated ids are 32 characters.
const MAX_LAYER_ID_LEN: usize = 64;

fn check_layer_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_LAYER_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        // Ids become path components: anything else could name a path outside layers/.
        Err(Error::invalid_argument(
            "layer",
            format!("`{id}` is not a layer id (1 to {MAX_LAYER_ID_LEN} letters, digits, `_` or `-`)"),
        ))
    }
}

impl Store {
    /// A fresh, unused layer id (32 hex digits).
    pub fn new_layer_id(&self) -> String {
        Uuid::new_v4().simple().to_string()
    }

    /// `<data>/layers/<id>` (`<data>/layers/<id>/upper` for a subvolume layer).
    /// `InvalidArgument` when `id` is not a layer id (so it can never point outside the
    /// layers directory). The directory may not exist.
    pub fn layer_path(&self, id: &str) -> Result<PathBuf> {
        check_layer_id(id)?;
        let dir = self.layers_dir().join(id);
        Ok(if id.ends_with(VOLUME_SUFFIX) { dir.join(VOLUME_CONTENT) } else { dir })
    }

    /// Turns a finished run's upper directory into a new layer by renaming it into
    /// `<data>/layers/`, atomically, and returns the new layer id. `from_upper` must be a
    /// directory on the data dir's filesystem (like `<data>/runs/<op>/upper`).
    pub fn adopt_layer(&self, from_upper: &Path) -> Result<String> {
        let meta = fs::symlink_metadata(from_upper)
            .map_err(|e| Error::io(format!("cannot adopt {} as a layer", from_upper.display()), e))?;
        if !meta.is_dir() {
            return Err(Error::invalid_argument("from_upper", format!("{} is not a directory", from_upper.display())));
        }
        if let Some(volume) = run_volume(from_upper) {
            return self.adopt_volume(volume);
        }
        let id = self.new_layer_id();
        let dest = self.layers_dir().join(&id);
        fs::rename(from_upper, &dest).map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EXDEV) {
                " (it must be on the same filesystem as the data dir)"
            } else {
                ""
            };
            Error::io(format!("cannot move {} into the layers directory{hint}", from_upper.display()), e)
        })?;
        fsync_dir(self.layers_dir())?;
        Ok(id)
    }

    /// Adopts a run's whole subvolume, whose `upper/` is the layer; anything else left in it
    /// (nothing, after [`crate::sandbox::finish`]) is deleted first.
    fn adopt_volume(&self, volume: &Path) -> Result<String> {
        let read_err = |e| Error::io(format!("cannot adopt {} as a layer", volume.display()), e);
        for entry in fs::read_dir(volume).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            if entry.file_name() != VOLUME_CONTENT {
                remove_dir(&entry.path())?;
            }
        }
        let id = format!("{}{VOLUME_SUFFIX}", self.new_layer_id());
        let dest = self.layers_dir().join(&id);
        fs::rename(volume, &dest).map_err(|e| {
            Error::io(format!("cannot move the subvolume {} into the layers directory", volume.display()), e)
        })?;
        fsync_dir(self.layers_dir())?;
        Ok(id)
    }

    /// Deletes layer `id` (for a run whose image could not be recorded). A missing layer is
    /// not an error; a layer some image uses is `Conflict`.
    #[cfg_attr(not(test), expect(dead_code, reason = "layer garbage collection is not wired into the server yet"))]
    pub fn remove_layer(&self, id: &str) -> Result<()> {
        check_layer_id(id)?;
        let used = self.with_conn(|conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM images WHERE layer = ?1)
                     OR EXISTS (SELECT 1 FROM images, json_each(images.lower_layers) WHERE json_each.value = ?1)",
            )
            .and_then(|mut st| st.query_row([id], |r| r.get::<_, bool>(0)))
            .map_err(db_error)
        })?;
        if used {
            return Err(conflict(format!("layer `{id}` is used by an image")));
        }
        remove_dir(&self.layers_dir().join(id))
    }

    /// Deletes every directory in `<data>/layers/` that no image refers to: layers adopted by
    /// runs that crashed before their image was recorded. Call it at startup only, before any
    /// run starts (a run adopts its layer a moment before recording its image). Returns how
    /// many were removed.
    #[cfg_attr(not(test), expect(dead_code, reason = "layer garbage collection is not wired into the server yet"))]
    pub fn remove_orphan_layers(&self) -> Result<usize> {
        let used: HashSet<String> = self.with_conn(|conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT layer FROM images WHERE layer IS NOT NULL
                     UNION SELECT json_each.value FROM images, json_each(images.lower_layers)",
                )
                .map_err(db_error)?;
            let rows = st.query_map([], |r| r.get(0)).map_err(db_error)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db_error)
        })?;
        let read_err = |e| Error::io(format!("cannot list {}", self.layers_dir().display()), e);
        let mut removed = 0;
        for entry in fs::read_dir(self.layers_dir()).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| used.contains(n)) {
                continue;
            }
            remove_dir(&entry.path())?;
            removed += 1;
        }
        Ok(removed)
    }
}
/// The id suffix of layers that are whole subvolumes.
const VOLUME_SUFFIX: &str = "-vol";
/// Where a subvolume layer keeps its content.
const VOLUME_CONTENT: &str = "upper";

/// The subvolume `from_upper` is the content dir of, if it is a run's upper dir on a capped
/// (btrfs subvolume) run directory.
fn run_volume(from_upper: &Path) -> Option<&Path> {
    let parent = from_upper.parent()?;
    (from_upper.file_name()? == VOLUME_CONTENT && crate::layer_quota::btrfs::is_subvolume_root(parent))
        .then_some(parent)
}

fn remove_dir(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(format!("cannot remove layer {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ImageRecord;

    #[test]
    fn layer_ids_are_confined_to_the_layers_dir() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = store.new_layer_id();
        assert_eq!(id.len(), 32);
        assert_ne!(id, store.new_layer_id());
        assert_eq!(store.layer_path(&id).unwrap(), dir.path().join("layers").join(&id));
        for bad in ["", "..", "a/b", "../etc", ".hidden", "a b", &"x".repeat(65)] {
            assert_eq!(store.layer_path(bad).unwrap_err().argument(), Some("layer"), "{bad:?}");
        }
        // A subvolume layer keeps its content one level down.
        let vol = format!("{id}{VOLUME_SUFFIX}");
        assert_eq!(store.layer_path(&vol).unwrap(), dir.path().join("layers").join(&vol).join("upper"));
    }

    #[test]
    fn an_upper_dir_that_is_not_in_a_subvolume_is_adopted_alone() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("run").join(VOLUME_CONTENT);
        fs::create_dir_all(&upper).unwrap();
        // A plain directory (ext4, tmpfs) named like a run dir is no volume.
        assert_eq!(run_volume(&upper), None);
    }

    #[test]
    fn adopt_moves_the_upper_dir_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let upper = dir.path().join("runs/op/upper");
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/hello"), b"hi").unwrap();

        let id = store.adopt_layer(&upper).unwrap();
        let layer = store.layer_path(&id).unwrap();
        assert_eq!(fs::read(layer.join("etc/hello")).unwrap(), b"hi");
        assert!(!upper.exists());

        // Not a directory / missing: typed errors, nothing created.
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert_eq!(store.adopt_layer(&file).unwrap_err().argument(), Some("from_upper"));
        assert!(store.adopt_layer(&upper).unwrap_err().is_io());
        assert_eq!(fs::read_dir(store.layers_dir()).unwrap().count(), 1);
    }

    #[test]
    fn remove_layer_refuses_used_layers_and_orphans_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mk = |name: &str| {
            let upper = dir.path().join(name);
            fs::create_dir_all(upper.join("sub")).unwrap();
            fs::write(upper.join("sub/f"), b"x").unwrap();
            store.adopt_layer(&upper).unwrap()
        };
        let used = mk("a");
        let orphan1 = mk("b");
        let orphan2 = mk("c");
        store.insert_image(&ImageRecord::new(Uuid::new_v4(), None, Some(used.clone()))).unwrap();

        assert!(store.remove_layer(&used).unwrap_err().is_conflict());
        store.remove_layer(&orphan1).unwrap();
        assert!(!store.layer_path(&orphan1).unwrap().exists());
        store.remove_layer(&orphan1).unwrap(); // already gone: fine

        assert_eq!(store.remove_orphan_layers().unwrap(), 1);
        assert!(!store.layer_path(&orphan2).unwrap().exists());
        assert!(store.layer_path(&used).unwrap().join("sub/f").is_file());
        assert_eq!(store.remove_orphan_layers().unwrap(), 0);

        // An imported image's lower layers are in use too.
        let top = mk("d");
        let lower = mk("e");
        let mut imported = ImageRecord::new(Uuid::new_v4(), None, Some(top));
        imported.lower_layers = vec![lower.clone()];
        imported.own_root = true;
        store.insert_image(&imported).unwrap();
        assert!(store.remove_layer(&lower).unwrap_err().is_conflict());
        assert_eq!(store.remove_orphan_layers().unwrap(), 0);
        assert!(store.layer_path(&lower).unwrap().join("sub/f").is_file());
    }
}
