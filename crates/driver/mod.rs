//! The shared driver source: the client logic of both flavors, written once as async code.
//!
//! `contree-async` compiles this folder with `maybe_async::must_be_async` and
//! `contree-blocking` with `maybe_async::must_be_sync`, each under the alias `crate::maybe`.
//! Whatever truly differs per flavor (the reqwest client type, sleeping, file I/O, streams
//! versus iterators) lives in each crate's `transport` module, which has the same item names
//! in both. Never copy code from here into a flavor crate.
//!
//! How each flavor package contains this folder: `crates/contree-async/src/driver` and
//! `crates/contree-blocking/src/driver` are symlinks to it, and each flavor says `mod driver;`.
//! `cargo package` packs the files a symlink points to, so each published `.crate` carries its
//! own copy of the driver (a `#[path]` leaving the package would not be packed), while the
//! repository keeps one source. `.ci/package` checks it with a verified `cargo package`.
//!
//! Names: each public type is declared through `crate::flavor::declare!`, which gives it the
//! flavor's public name (`Client` becomes `Contree` or `ContreeSync`) plus a crate-private
//! alias with the neutral name used here; rustdoc and compiler messages show the public
//! names. Doc examples come from `crate::doc_examples::example!`, one text per flavor.

pub(crate) mod client;
pub(crate) mod events;
pub(crate) mod files;
pub(crate) mod grep;
pub(crate) mod http;
pub(crate) mod image;
pub(crate) mod images;
pub(crate) mod operation;
pub(crate) mod operations;
pub(crate) mod paging;
pub(crate) mod process;
pub(crate) mod progress;
pub(crate) mod run;
pub(crate) mod session;
pub(crate) mod subprocess;
pub(crate) mod trace;
pub(crate) mod upload;

/// A type's own name (the last path segment), for `Debug` output that shows the flavor's
/// public name.
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}
