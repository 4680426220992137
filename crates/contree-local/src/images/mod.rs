//! Images as stacks of overlayfs layers, and the built-in base image.
//!
//! An image is a stack of layer directories, topmost first, ending with the base image's
//! skeleton ([`base`]). Each layer is the upper directory of the run that produced it, in
//! overlayfs format: deleted entries are whiteouts (0/0 character devices), replaced
//! directories carry `trusted.overlay.opaque=y`. Runs are mounted with `redirect_dir`,
//! `metacopy` and `index` off, so a layer never refers to data in another layer and can be
//! read top-down on its own.
//!
//! The host-backed directories of the base image (`/usr`, and on hosts without merged
//! `/usr` also `/bin`, `/lib`, …) are separate overlays: their lower dirs are each layer's
//! `usr/` subdirectory (when present), then the base image's mask, then the host's
//! directory. [`overlay_stacks`] computes both kinds of stacks for an image; the sandbox
//! and anything that needs a read-only view of an image should use it.
//!
//! Limits: overlayfs stacks at most 500 lower dirs, so an image may have at most
//! [`MAX_LAYERS`] layers above the base. Layer paths must be absolute and must not contain
//! `,`, `:` or `\` (overlayfs option syntax).

pub mod base;
pub(crate) mod registry;
pub(crate) mod unpack;

use std::path::{Path, PathBuf};

use base::BaseImage;

/// The most layers (above the base skeleton) an image may have: overlayfs' limit of 500
/// lower dirs, minus the base mask and the host directory of the `/usr` overlay.
pub const MAX_LAYERS: usize = 498;

/// One overlay mount of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayStack {
    /// Where it is mounted inside the image: `/` for the root, `/usr` etc. for host dirs.
    pub mount_point: String,
    /// The lower dirs, topmost first.
    pub lowers: Vec<PathBuf>,
}

/// The overlay mounts of an image with `layers` (topmost first; the base skeleton may be
/// the last entry or absent), the root first.
///
/// An image with its `own_root` (imported from a registry) is its layers alone: one overlay,
/// nothing of the base image or the host below it.
///
/// Stats each layer's host-dir subdirectories, so call it once per mount.
pub fn overlay_stacks(layers: &[PathBuf], base: &BaseImage, own_root: bool) -> Vec<OverlayStack> {
    let image_layers = image_layers(layers, base);
    let mut root: Vec<PathBuf> = image_layers.to_vec();
    if own_root {
        return vec![OverlayStack { mount_point: "/".to_owned(), lowers: root }];
    }
    root.push(base.skeleton.clone());
    let mut stacks = vec![OverlayStack { mount_point: "/".to_owned(), lowers: root }];
    for (name, host_path) in base.host_mounts() {
        let mut lowers: Vec<PathBuf> = image_layers.iter().map(|l| l.join(name)).filter(|p| is_real_dir(p)).collect();
        let mask = base.mask.join(name);
        if is_real_dir(&mask) {
            lowers.push(mask);
        }
        lowers.push(host_path.to_path_buf());
        stacks.push(OverlayStack { mount_point: format!("/{name}"), lowers });
    }
    stacks
}

/// `layers` without a trailing base skeleton.
pub(crate) fn image_layers<'a>(layers: &'a [PathBuf], base: &BaseImage) -> &'a [PathBuf] {
    match layers.split_last() {
        Some((last, rest)) if *last == base.skeleton => rest,
        _ => layers,
    }
}

fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

#[cfg(test)]
mod tests {
    use super::base::{BASE_IMAGE_UUID, BaseImage};
    use super::*;

    #[test]
    fn root_and_usr_stacks_end_in_the_base() {
        let base = BaseImage {
            uuid: BASE_IMAGE_UUID,
            skeleton: "/data/base/rootfs".into(),
            host_usr: "/usr".into(),
            host_dirs: vec![],
            mask: "/data/base/mask".into(),
        };
        let layers: [PathBuf; 2] = ["/data/layers/b".into(), "/data/layers/a".into()];
        let stacks = overlay_stacks(&layers, &base, false);
        assert_eq!(stacks[0].mount_point, "/");
        assert_eq!(stacks[0].lowers.last().unwrap(), &PathBuf::from("/data/base/rootfs"));
        assert_eq!(stacks[1].mount_point, "/usr");
        assert_eq!(stacks[1].lowers.last().unwrap(), &PathBuf::from("/usr"));

        // An imported image is its layers alone: no skeleton, no host directories.
        let own = overlay_stacks(&layers, &base, true);
        assert_eq!(own, vec![OverlayStack { mount_point: "/".to_owned(), lowers: layers.to_vec() }]);
    }
}
