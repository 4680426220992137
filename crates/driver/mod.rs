//! The shared driver source: the client logic of both flavors, written once as async code.
//!
//! `contree-async` compiles this folder with `maybe_async::must_be_async` and
//! `contree-blocking` with `maybe_async::must_be_sync`, each under the alias `crate::maybe`.
//! Whatever truly differs per flavor (the reqwest client type, sleeping, file I/O, streams
//! versus iterators) lives in each crate's `transport` module, which has the same item names
//! in both. Never copy code from here into a flavor crate.

pub(crate) mod client;
pub(crate) mod events;
pub(crate) mod files;
pub(crate) mod http;
pub(crate) mod image;
pub(crate) mod images;
pub(crate) mod operation;
pub(crate) mod operations;
pub(crate) mod process;
pub(crate) mod run;
pub(crate) mod session;

/// A type's own name (the last path segment), for `Debug` output that shows the flavor's
/// public name.
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}
