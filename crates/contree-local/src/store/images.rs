//! Images and their tags.
//!
//! An image is a layer directory stacked on its parent's filesystem. Tags are unique across
//! the store: giving a tag to one image takes it from whichever image had it (the API's
//! "assigning moves the tag"). An image carries at most one tag, like the API's `Image`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use contree_core::{Error, Result, validate};
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    DEFAULT_PAGE_LIMIT, Store, col_json, col_opt_uuid, col_time, col_uuid, constraint_code, db_error, not_found,
    opt_to_nanos, opt_uuid_text, page, to_nanos, uuid_text,
};

/// One image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// The image's id.
    pub uuid: Uuid,
    /// The image this one was made from; `None` for a root image (the built-in base).
    pub parent: Option<Uuid>,
    /// The layer directory id under `<data>/layers/` holding what this image adds to its
    /// parent; `None` when it adds nothing of its own (a root image whose filesystem lives
    /// elsewhere, like the built-in base).
    pub layer: Option<String>,
    /// The image's tag, unique across the store.
    pub tag: Option<String>,
    /// When the image was made.
    pub created_at: OffsetDateTime,
    /// The operation that made the image, if any.
    pub operation_uuid: Option<Uuid>,
    /// Environment preserved by the run that made the image (`preserve_env`), or the `ENV`
    /// of an image imported from a registry.
    pub env: BTreeMap<String, String>,
    /// Further layer ids below `layer`, topmost first: the layers of an image imported from a
    /// registry after its top one. Empty for run results.
    pub lower_layers: Vec<String>,
    /// The image's filesystem is its own layers alone (an import from a registry), not
    /// stacked on the built-in base image and the host's `/usr`. Only for root images.
    pub own_root: bool,
    /// The default working directory of runs on this image (saved by `preserve_cwd`);
    /// `None` means `/`.
    pub workdir: Option<String>,
}

impl ImageRecord {
    /// A new untagged image created now, with no operation and no preserved environment.
    pub fn new(uuid: Uuid, parent: Option<Uuid>, layer: Option<String>) -> ImageRecord {
        ImageRecord {
            uuid,
            parent,
            layer,
            tag: None,
            created_at: super::now(),
            operation_uuid: None,
            env: BTreeMap::new(),
            lower_layers: Vec::new(),
            own_root: false,
            workdir: None,
        }
    }

    /// Sets the tag.
    #[cfg(test)]
    pub fn with_tag(mut self, tag: impl Into<String>) -> ImageRecord {
        self.tag = Some(tag.into());
        self
    }

    /// Sets the operation that made the image.
    pub fn with_operation(mut self, operation_uuid: Uuid) -> ImageRecord {
        self.operation_uuid = Some(operation_uuid);
        self
    }

    /// Sets the preserved environment.
    pub fn with_env(mut self, env: BTreeMap<String, String>) -> ImageRecord {
        self.env = env;
        self
    }

    /// Sets the default working directory.
    pub fn with_workdir(mut self, workdir: Option<String>) -> ImageRecord {
        self.workdir = workdir;
        self
    }
}

/// Which images [`Store::list_images`] returns. The default lists every image, first page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFilter {
    /// Only images with a tag.
    pub tagged: bool,
    /// Only images whose tag starts with this (case-sensitive); implies `tagged`.
    pub tag_prefix: Option<String>,
    /// Only the image with this id.
    pub uuid: Option<Uuid>,
    /// Only images created at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only images created strictly before this time.
    pub until: Option<OffsetDateTime>,
    /// Page size, at least 1.
    pub limit: u32,
    /// How many matching images to skip.
    pub offset: u64,
}

impl Default for ImageFilter {
    fn default() -> Self {
        ImageFilter {
            tagged: false,
            tag_prefix: None,
            uuid: None,
            since: None,
            until: None,
            limit: DEFAULT_PAGE_LIMIT,
            offset: 0,
        }
    }
}

const COLUMNS: &str = "uuid, parent, layer, tag, created_ns, operation_uuid, env, lower_layers, own_root, workdir";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        uuid: col_uuid(row, 0)?,
        parent: col_opt_uuid(row, 1)?,
        layer: row.get(2)?,
        tag: row.get(3)?,
        created_at: col_time(row, 4)?,
        operation_uuid: col_opt_uuid(row, 5)?,
        env: col_json(row, 6)?,
        lower_layers: col_json(row, 7)?,
        own_root: row.get(8)?,
        workdir: row.get(9)?,
    })
}

pub(super) fn get(conn: &Connection, uuid: Uuid) -> Result<Option<ImageRecord>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM images WHERE uuid = ?1"))
        .and_then(|mut st| st.query_row([uuid_text(uuid)], from_row).optional())
        .map_err(db_error)
}

fn get_existing(conn: &Connection, uuid: Uuid) -> Result<ImageRecord> {
    get(conn, uuid)?.ok_or_else(|| not_found("image", uuid))
}

/// Takes `tag` from whichever image holds it, so it can be given to another.
fn release_tag(conn: &Connection, tag: &str) -> Result<()> {
    conn.prepare_cached("UPDATE images SET tag = NULL WHERE tag = ?1")
        .and_then(|mut st| st.execute([tag]))
        .map_err(db_error)?;
    Ok(())
}

/// Inserts `image` on an open connection or transaction (also used when an operation
/// completes). The caller provides the transaction when the tag may move.
pub(super) fn insert(store: &Store, conn: &Connection, image: &ImageRecord) -> Result<()> {
    if let Some(tag) = &image.tag {
        validate::tag("tag", tag)?;
    }
    if let Some(layer) = &image.layer {
        let path = store.layer_path(layer)?;
        if !path.is_dir() {
            return Err(Error::invalid_argument("layer", format!("no layer directory `{layer}`")));
        }
    }
    for layer in &image.lower_layers {
        let path = store.layer_path(layer)?;
        if !path.is_dir() {
            return Err(Error::invalid_argument("lower_layers", format!("no layer directory `{layer}`")));
        }
    }
    if image.layer.is_none() && !image.lower_layers.is_empty() {
        return Err(Error::invalid_argument("lower_layers", "an image with lower layers needs a top `layer`"));
    }
    if image.own_root && image.parent.is_some() {
        return Err(Error::invalid_argument("own_root", "only a root image (without a parent) has its own root"));
    }
    if let Some(parent) = image.parent {
        if parent == image.uuid {
            return Err(Error::invalid_argument("parent", "an image cannot be its own parent"));
        }
        if get(conn, parent)?.is_none() {
            return Err(Error::invalid_argument("parent", format!("no image `{parent}`")));
        }
    }
    let created = to_nanos("created_at", image.created_at)?;
    let env = serde_json::to_string(&image.env).map_err(|e| Error::decode("cannot encode image env", e))?;
    let lower_layers =
        serde_json::to_string(&image.lower_layers).map_err(|e| Error::decode("cannot encode image lower layers", e))?;
    if let Some(tag) = &image.tag {
        release_tag(conn, tag)?;
    }
    conn.prepare_cached(&format!("INSERT INTO images ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"))
        .and_then(|mut st| {
            st.execute(params![
                uuid_text(image.uuid),
                opt_uuid_text(image.parent),
                image.layer,
                image.tag,
                created,
                opt_uuid_text(image.operation_uuid),
                env,
                lower_layers,
                image.own_root,
                image.workdir,
            ])
        })
        .map_err(|e| match constraint_code(&e) {
            Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) => {
                super::conflict(format!("image `{}` already exists", image.uuid))
            }
            _ => db_error(e),
        })?;
    Ok(())
}

impl Store {
    /// Records a new image. When it has a tag held by another image, the tag moves to it.
    ///
    /// Fails with `InvalidArgument` for a malformed tag, an unknown parent or a missing layer
    /// directory, and with `Conflict` when the uuid is taken.
    pub fn insert_image(&self, image: &ImageRecord) -> Result<()> {
        self.with_conn(|conn| {
            let tx = conn.transaction().map_err(db_error)?;
            insert(self, &tx, image)?;
            tx.commit().map_err(db_error)
        })
    }

    /// The image with this id, if any.
    pub fn get_image(&self, uuid: Uuid) -> Result<Option<ImageRecord>> {
        self.with_read(|conn| get(conn, uuid))
    }

    /// The image holding `tag`, if any. A malformed tag is `InvalidArgument`.
    pub fn find_by_tag(&self, tag: &str) -> Result<Option<ImageRecord>> {
        validate::tag("tag", tag)?;
        self.with_read(|conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM images WHERE tag = ?1"))
                .and_then(|mut st| st.query_row([tag], from_row).optional())
                .map_err(db_error)
        })
    }

    /// One page of images matching `filter`, newest first (images created at the same instant:
    /// the one inserted last first).
    pub fn list_images(&self, filter: &ImageFilter) -> Result<Vec<ImageRecord>> {
        let (limit, offset) = page(filter.limit, filter.offset)?;
        let since = opt_to_nanos("since", filter.since)?;
        let until = opt_to_nanos("until", filter.until)?;
        let tagged = filter.tagged || filter.tag_prefix.is_some();
        self.with_read(|conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM images
                     WHERE (?1 = 0 OR tag IS NOT NULL)
                       AND (?2 IS NULL OR substr(tag, 1, length(?2)) = ?2)
                       AND (?3 IS NULL OR uuid = ?3)
                       AND (?4 IS NULL OR created_ns >= ?4)
                       AND (?5 IS NULL OR created_ns < ?5)
                     ORDER BY created_ns DESC, seq DESC
                     LIMIT ?6 OFFSET ?7"
                ))
                .map_err(db_error)?;
            let rows = st
                .query_map(
                    params![tagged, filter.tag_prefix, opt_uuid_text(filter.uuid), since, until, limit, offset],
                    from_row,
                )
                .map_err(db_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
        })
    }

    /// Gives `tag` to the image `uuid`, taking it from any other image, and replacing the
    /// image's previous tag. Returns the updated image.
    ///
    /// `InvalidArgument` for a malformed tag, `NotFound` for an unknown image.
    pub fn set_tag(&self, uuid: Uuid, tag: &str) -> Result<ImageRecord> {
        validate::tag("tag", tag)?;
        self.with_conn(|conn| {
            let tx = conn.transaction().map_err(db_error)?;
            get_existing(&tx, uuid)?;
            release_tag(&tx, tag)?;
            tx.prepare_cached("UPDATE images SET tag = ?1 WHERE uuid = ?2")
                .and_then(|mut st| st.execute(params![tag, uuid_text(uuid)]))
                .map_err(db_error)?;
            let image = get_existing(&tx, uuid)?;
            tx.commit().map_err(db_error)?;
            Ok(image)
        })
    }

    /// Removes the tag of image `uuid`: only if it is `tag` when given (`NotFound` otherwise),
    /// whatever it is when `None` (a no-op on an untagged image). Returns the updated image.
    ///
    /// `NotFound` for an unknown image.
    pub fn remove_tag(&self, uuid: Uuid, tag: Option<&str>) -> Result<ImageRecord> {
        if let Some(tag) = tag {
            validate::tag("tag", tag)?;
        }
        self.with_conn(|conn| {
            let tx = conn.transaction().map_err(db_error)?;
            let mut image = get_existing(&tx, uuid)?;
            if let Some(tag) = tag
                && image.tag.as_deref() != Some(tag)
            {
                return Err(not_found(&format!("tag on image `{uuid}`"), tag));
            }
            if image.tag.is_some() {
                tx.prepare_cached("UPDATE images SET tag = NULL WHERE uuid = ?1")
                    .and_then(|mut st| st.execute([uuid_text(uuid)]))
                    .map_err(db_error)?;
                tx.commit().map_err(db_error)?;
                image.tag = None;
            }
            Ok(image)
        })
    }

    /// The layer directories making up image `uuid`, topmost (the image's own) first, then its
    /// parent's, down to the root image, and whether that root stands on its own
    /// ([`ImageRecord::own_root`]). Images without a layer contribute nothing, so the built-in
    /// base's skeleton (kept outside `layers/`) is for the caller to append.
    ///
    /// `NotFound` for an unknown image.
    pub fn layer_stack(&self, uuid: Uuid) -> Result<LayerStack> {
        // A cycle cannot be inserted (parents must exist first), but a corrupt database must
        // not hang the server: the depth bound turns it into an error.
        const MAX_DEPTH: i64 = 100_000;
        type Row = (Option<String>, Option<String>, String, bool);
        let chain: Vec<Row> = self.with_read(|conn| {
            let mut st = conn
                .prepare_cached(
                    "WITH RECURSIVE chain(uuid, parent, layer, lower_layers, own_root, depth) AS (
                         SELECT uuid, parent, layer, lower_layers, own_root, 0 FROM images WHERE uuid = ?1
                         UNION ALL
                         SELECT i.uuid, i.parent, i.layer, i.lower_layers, i.own_root, c.depth + 1
                         FROM images i JOIN chain c ON i.uuid = c.parent
                         WHERE c.depth < ?2
                     )
                     SELECT layer, parent, lower_layers, own_root FROM chain ORDER BY depth",
                )
                .map_err(db_error)?;
            let rows = st
                .query_map(params![uuid_text(uuid), MAX_DEPTH], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(db_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
        })?;
        let own_root = match chain.last() {
            None => return Err(not_found("image", uuid)),
            Some((_, Some(parent), _, _)) => {
                return Err(Error::from_status(
                    500,
                    format!("corrupt store: the parent chain of image `{uuid}` breaks at `{parent}`"),
                    None,
                ));
            }
            Some((_, None, _, own_root)) => *own_root,
        };
        let mut layers = Vec::new();
        for (layer, _, lower, _) in chain {
            let lower: Vec<String> = serde_json::from_str(&lower)
                .map_err(|e| Error::decode(format!("corrupt store: the lower layers of an image below `{uuid}`"), e))?;
            for id in layer.into_iter().chain(lower) {
                layers.push(self.layer_path(&id)?);
            }
        }
        Ok(LayerStack { layers, own_root })
    }
}

/// The layers of an image ([`Store::layer_stack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerStack {
    /// Layer directories, topmost first (without the base skeleton).
    pub layers: Vec<PathBuf>,
    /// The image stands on its own layers (imported from a registry) rather than on the
    /// built-in base image.
    pub own_root: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::now;
    use time::Duration;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    /// An image whose layer directory exists, created `age_s` seconds ago.
    fn image_with_layer(store: &Store, parent: Option<Uuid>, age_s: i64) -> ImageRecord {
        let id = store.new_layer_id();
        std::fs::create_dir(store.layer_path(&id).unwrap()).unwrap();
        let mut img = ImageRecord::new(Uuid::new_v4(), parent, Some(id));
        img.created_at = now() - Duration::seconds(age_s);
        img
    }

    #[test]
    fn image_round_trip() {
        let (_d, store) = store();
        let base = ImageRecord::new(Uuid::new_v4(), None, None).with_tag("contree-local/base:latest");
        store.insert_image(&base).unwrap();
        let env = BTreeMap::from([("PATH".to_owned(), "/usr/bin".to_owned()), ("A".to_owned(), "b c".to_owned())]);
        let child = image_with_layer(&store, Some(base.uuid), 0)
            .with_operation(Uuid::new_v4())
            .with_env(env)
            .with_workdir(Some("/srv/app".to_owned()));
        store.insert_image(&child).unwrap();

        // Timestamps come back as the same instant, whatever their offset or precision.
        let mut odd = ImageRecord::new(Uuid::new_v4(), None, None);
        odd.created_at = time::macros::datetime!(2025-06-01 12:00:00.123456789 +02:00);
        store.insert_image(&odd).unwrap();
        assert_eq!(store.get_image(odd.uuid).unwrap().unwrap(), odd);

        assert_eq!(store.get_image(base.uuid).unwrap().unwrap(), base);
        assert_eq!(store.get_image(child.uuid).unwrap().unwrap(), child);
        assert_eq!(store.get_image(Uuid::new_v4()).unwrap(), None);
        assert_eq!(store.find_by_tag("contree-local/base:latest").unwrap().unwrap(), base);
        assert_eq!(store.find_by_tag("nope:latest").unwrap(), None);
        assert!(store.find_by_tag("bad tag").unwrap_err().is_invalid_argument());
    }

    #[test]
    fn insert_validates_input() {
        let (_d, store) = store();
        let img = ImageRecord::new(Uuid::new_v4(), None, None);
        store.insert_image(&img).unwrap();
        let err = store.insert_image(&img).unwrap_err();
        assert!(err.is_conflict(), "{err}");

        let err = store.insert_image(&ImageRecord::new(Uuid::new_v4(), Some(Uuid::new_v4()), None)).unwrap_err();
        assert_eq!(err.argument(), Some("parent"));
        let err = store.insert_image(&ImageRecord::new(Uuid::new_v4(), None, Some("0123abcd".into()))).unwrap_err();
        assert_eq!(err.argument(), Some("layer"));
        let err = store.insert_image(&ImageRecord::new(Uuid::new_v4(), None, Some("../x".into()))).unwrap_err();
        assert_eq!(err.argument(), Some("layer"));
        let err = store.insert_image(&ImageRecord::new(Uuid::new_v4(), None, None).with_tag("a b")).unwrap_err();
        assert_eq!(err.argument(), Some("tag"));
        let id = Uuid::new_v4();
        let err = store.insert_image(&ImageRecord::new(id, Some(id), None)).unwrap_err();
        assert_eq!(err.argument(), Some("parent"));
        let mut bad_time = ImageRecord::new(Uuid::new_v4(), None, None);
        bad_time.created_at = time::macros::datetime!(2300-01-01 0:00 UTC);
        assert_eq!(store.insert_image(&bad_time).unwrap_err().argument(), Some("created_at"));
        // Nothing of the failed inserts was kept.
        assert_eq!(store.list_images(&ImageFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn tags_are_unique_and_move() {
        let (_d, store) = store();
        let a = ImageRecord::new(Uuid::new_v4(), None, None).with_tag("app:1");
        let b = ImageRecord::new(Uuid::new_v4(), None, None);
        store.insert_image(&a).unwrap();
        store.insert_image(&b).unwrap();

        let b2 = store.set_tag(b.uuid, "app:1").unwrap();
        assert_eq!(b2.tag.as_deref(), Some("app:1"));
        assert_eq!(store.get_image(a.uuid).unwrap().unwrap().tag, None);
        assert_eq!(store.find_by_tag("app:1").unwrap().unwrap().uuid, b.uuid);

        // A second tag replaces the first: one tag per image.
        store.set_tag(b.uuid, "app:2").unwrap();
        assert_eq!(store.find_by_tag("app:1").unwrap(), None);
        assert_eq!(store.find_by_tag("app:2").unwrap().unwrap().uuid, b.uuid);

        // Re-tagging with the same tag is harmless.
        assert_eq!(store.set_tag(b.uuid, "app:2").unwrap().tag.as_deref(), Some("app:2"));

        // Inserting an image with a taken tag moves it too (imports replace tags).
        let c = ImageRecord::new(Uuid::new_v4(), None, None).with_tag("app:2");
        store.insert_image(&c).unwrap();
        assert_eq!(store.get_image(b.uuid).unwrap().unwrap().tag, None);
        assert_eq!(store.find_by_tag("app:2").unwrap().unwrap().uuid, c.uuid);

        assert!(store.set_tag(Uuid::new_v4(), "x").unwrap_err().is_not_found());
        assert_eq!(store.set_tag(a.uuid, "x:").unwrap_err().argument(), Some("tag"));
    }

    #[test]
    fn remove_one_tag_or_all() {
        let (_d, store) = store();
        let a = ImageRecord::new(Uuid::new_v4(), None, None).with_tag("keep:1");
        store.insert_image(&a).unwrap();

        // Naming a tag the image doesn't have is NotFound and changes nothing.
        let err = store.remove_tag(a.uuid, Some("other:1")).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(store.get_image(a.uuid).unwrap().unwrap().tag.as_deref(), Some("keep:1"));

        let untagged = store.remove_tag(a.uuid, Some("keep:1")).unwrap();
        assert_eq!(untagged.tag, None);
        assert_eq!(store.find_by_tag("keep:1").unwrap(), None);

        store.set_tag(a.uuid, "keep:2").unwrap();
        assert_eq!(store.remove_tag(a.uuid, None).unwrap().tag, None);
        assert_eq!(store.get_image(a.uuid).unwrap().unwrap().tag, None);
        // Removing all tags of an untagged image is a no-op.
        assert_eq!(store.remove_tag(a.uuid, None).unwrap().tag, None);

        assert!(store.remove_tag(Uuid::new_v4(), None).unwrap_err().is_not_found());
    }

    #[test]
    fn list_filters_order_and_pages() {
        let (_d, store) = store();
        let t0 = now();
        let mut all = Vec::new();
        for (i, tag) in [Some("ubuntu:22.04"), None, Some("ubuntu:24.04"), Some("alpine:3"), None].iter().enumerate() {
            let mut img = ImageRecord::new(Uuid::new_v4(), None, None);
            img.created_at = t0 - Duration::minutes(10 - i as i64);
            img.tag = tag.map(str::to_owned);
            store.insert_image(&img).unwrap();
            all.push(img);
        }
        let uuids = |v: Vec<ImageRecord>| v.into_iter().map(|i| i.uuid).collect::<Vec<_>>();
        let newest_first: Vec<Uuid> = all.iter().rev().map(|i| i.uuid).collect();

        assert_eq!(uuids(store.list_images(&ImageFilter::default()).unwrap()), newest_first);

        let page = |limit, offset| ImageFilter { limit, offset, ..ImageFilter::default() };
        assert_eq!(uuids(store.list_images(&page(2, 0)).unwrap()), newest_first[0..2]);
        assert_eq!(uuids(store.list_images(&page(2, 2)).unwrap()), newest_first[2..4]);
        assert_eq!(uuids(store.list_images(&page(2, 4)).unwrap()), newest_first[4..5]);
        assert!(store.list_images(&page(2, 9)).unwrap().is_empty());
        assert_eq!(store.list_images(&page(0, 0)).unwrap_err().argument(), Some("limit"));

        let tagged = store.list_images(&ImageFilter { tagged: true, ..ImageFilter::default() }).unwrap();
        assert_eq!(uuids(tagged), vec![all[3].uuid, all[2].uuid, all[0].uuid]);

        // A prefix implies tagged and is a plain prefix, not a pattern.
        let ubuntu =
            store.list_images(&ImageFilter { tag_prefix: Some("ubuntu:".into()), ..ImageFilter::default() }).unwrap();
        assert_eq!(uuids(ubuntu), vec![all[2].uuid, all[0].uuid]);
        let none =
            store.list_images(&ImageFilter { tag_prefix: Some("ubuntu%".into()), ..ImageFilter::default() }).unwrap();
        assert!(none.is_empty());

        let one = store.list_images(&ImageFilter { uuid: Some(all[1].uuid), ..ImageFilter::default() }).unwrap();
        assert_eq!(uuids(one), vec![all[1].uuid]);

        // since is inclusive, until exclusive.
        let window =
            ImageFilter { since: Some(all[1].created_at), until: Some(all[3].created_at), ..ImageFilter::default() };
        assert_eq!(uuids(store.list_images(&window).unwrap()), vec![all[2].uuid, all[1].uuid]);
    }

    #[test]
    fn equal_timestamps_list_last_inserted_first() {
        let (_d, store) = store();
        let t = now();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let mut img = ImageRecord::new(Uuid::new_v4(), None, None);
            img.created_at = t;
            store.insert_image(&img).unwrap();
            ids.push(img.uuid);
        }
        ids.reverse();
        let listed: Vec<Uuid> =
            store.list_images(&ImageFilter::default()).unwrap().into_iter().map(|i| i.uuid).collect();
        assert_eq!(listed, ids);
    }

    #[test]
    fn layer_stack_walks_parents_topmost_first() {
        let (_d, store) = store();
        let base = ImageRecord::new(Uuid::new_v4(), None, None);
        store.insert_image(&base).unwrap();
        let l1 = image_with_layer(&store, Some(base.uuid), 3);
        store.insert_image(&l1).unwrap();
        // A run that changed nothing: no layer of its own.
        let noop = ImageRecord::new(Uuid::new_v4(), Some(l1.uuid), None);
        store.insert_image(&noop).unwrap();
        let l3 = image_with_layer(&store, Some(noop.uuid), 1);
        store.insert_image(&l3).unwrap();

        let path = |img: &ImageRecord| store.layer_path(img.layer.as_deref().unwrap()).unwrap();
        assert_eq!(store.layer_stack(l3.uuid).unwrap().layers, vec![path(&l3), path(&l1)]);
        assert_eq!(store.layer_stack(noop.uuid).unwrap().layers, vec![path(&l1)]);
        assert_eq!(store.layer_stack(l1.uuid).unwrap().layers, vec![path(&l1)]);
        assert!(store.layer_stack(base.uuid).unwrap().layers.is_empty());
        assert!(store.layer_stack(Uuid::new_v4()).unwrap_err().is_not_found());

        // A root image with its own layer ends the stack.
        let root = image_with_layer(&store, None, 0);
        store.insert_image(&root).unwrap();
        let top = image_with_layer(&store, Some(root.uuid), 0);
        store.insert_image(&top).unwrap();
        assert_eq!(store.layer_stack(top.uuid).unwrap().layers, vec![path(&top), path(&root)]);
        assert!(!store.layer_stack(top.uuid).unwrap().own_root);
    }

    #[test]
    fn an_imported_image_stacks_its_lower_layers_on_its_own_root() {
        let (_d, store) = store();
        let layer = |name: &str| {
            std::fs::create_dir_all(store.layers_dir().join(name)).unwrap();
            name.to_owned()
        };
        let mut imported = ImageRecord::new(Uuid::new_v4(), None, Some(layer("oci-top")));
        imported.lower_layers = vec![layer("oci-mid"), layer("oci-bottom")];
        imported.own_root = true;
        store.insert_image(&imported).unwrap();
        assert_eq!(store.get_image(imported.uuid).unwrap().unwrap(), imported);
        let run = image_with_layer(&store, Some(imported.uuid), 0);
        store.insert_image(&run).unwrap();

        let stack = store.layer_stack(run.uuid).unwrap();
        let p = |id: &str| store.layer_path(id).unwrap();
        assert_eq!(stack.layers, vec![p(run.layer.as_deref().unwrap()), p("oci-top"), p("oci-mid"), p("oci-bottom")]);
        assert!(stack.own_root);

        // Only a root image stands on its own; lower layers need a top one and must exist.
        let mut bad = ImageRecord::new(Uuid::new_v4(), Some(imported.uuid), Some(layer("x")));
        bad.own_root = true;
        assert_eq!(store.insert_image(&bad).unwrap_err().argument(), Some("own_root"));
        let mut bad = ImageRecord::new(Uuid::new_v4(), None, None);
        bad.lower_layers = vec![layer("y")];
        assert_eq!(store.insert_image(&bad).unwrap_err().argument(), Some("lower_layers"));
        let mut bad = ImageRecord::new(Uuid::new_v4(), None, Some(layer("z")));
        bad.lower_layers = vec!["missing".to_owned()];
        assert_eq!(store.insert_image(&bad).unwrap_err().argument(), Some("lower_layers"));
    }
}
