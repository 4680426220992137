//! # contree
//!
//! The Rust SDK for [Contree](https://github.com/contree-rs/contree-rs): sandboxes that branch
//! like git. Every command runs in an isolated sandbox and every run produces a new,
//! addressable filesystem image, so you can run, fork N branches from one state, compare and
//! roll back.
//!
//! ## Features
//!
//! | feature | what you get | for |
//! |---|---|---|
//! | `async` (default) | [`Contree`], [`ContreeImage`], [`ContreeSession`], [`ContreeProcess`], … | tokio services |
//! | `blocking` | [`blocking::ContreeSync`], [`blocking::ContreeImageSync`], … | scripts and tools |
//!
//! Both may be enabled in one build. With `default-features = false`, enable at least one of
//! them (the build says so otherwise). Types that do not depend on the flavor
//! ([`Error`], [`ExitStatus`], [`RunOutput`], [`ProcessFailure`], [`UploadFileSpec`],
//! [`ContreeConfig`], [`models`], …) sit at the same `contree::` path whatever the features.
//!
//! ## Names
//!
//! One rule: the async name is the type's name (the client and its main values carry the
//! `Contree` prefix: `Contree`, `ContreeImage`, `ContreeSession`, `ContreeProcess`); the
//! blocking name is the async name followed by `Sync` (`ContreeSync`, `ContreeImageSync`,
//! `ImagesSync`, `PreparedRunSync`, …), in [`blocking`]. Only the blocking iterators
//! (`ImageIter`, `RunEventIter`, `OperationIter`) have no async twin.
//!
//! ## Terminal verbs
//!
//! A builder is a value describing a request; it ends in a verb that takes it by value (clone
//! it to execute it again: clones are cheap). In async, every builder is also `IntoFuture`:
//! `.await` alone runs its first verb. Live handles follow `std::process::Child`.
//!
//! | value | verb | async | blocking | returns |
//! |---|---|---|---|---|
//! | listing ([`ListImages`], [`ListOperations`]) | `send(self)` | `.send().await` or `.await` | `.send()` | a `Vec` |
//! | listing, lazily | `stream(self)` / `iter(self)` | `Stream` | `Iterator` | items page by page |
//! | import ([`ImportImage`]) | `send(self)` | `.send().await` or `.await` | `.send()` | the image |
//! | prepared run ([`PreparedRun`], image or session) | `wait(self)` | `.wait().await` or `.await` | `.wait()` | the result image |
//! | prepared run | `spawn(self)` | `.spawn().await` | `.spawn()` | a live process |
//! | prepared image run | `stream(self)` | `Stream` of [`RunEvent`] | `Iterator` | live events |
//! | live process ([`ContreeProcess`]) | `wait(&mut self)` | `.wait().await` | `.wait()` | the exit status |
//! | live process | `wait_with_output(self)` | `.wait_with_output().await` | `.wait_with_output()` | the result image |
//! | live output ([`LineReader`]) | `next_line(&mut self)` | `.next_line().await` or `stream()` | `Iterator` | lines of text |
//!
//! ## A tour
//!
//! Run a command; a non-zero exit is a result, not an error (`check()` makes it one):
//!
//! ```no_run
//! # #[cfg(feature = "async")]
//! # async fn tour(client: contree::Contree) -> contree::Result<()> {
//! let base = client.images().use_image("contree-local/base:latest")?;
//! let hello = base.run("echo").arg("hello").await?;
//! assert_eq!(hello.stdout_text()?, "hello\n");
//! let failed = base.shell("exit 3").await?;
//! assert_eq!(failed.exit_code()?, 3);
//! # Ok(()) }
//! ```
//!
//! Branch: a non-disposable run keeps its filesystem as a new image; runs from one image never
//! see each other's changes.
//!
//! ```no_run
//! # #[cfg(feature = "async")]
//! # async fn tour(base: contree::ContreeImage) -> contree::Result<()> {
//! let setup = base.shell("echo v1 > /VERSION").disposable(false).await?;
//! let a = setup.shell("echo a >> /VERSION").disposable(false).await?;
//! let b = setup.shell("echo b >> /VERSION").disposable(false).await?;
//! assert_ne!(a.read("/VERSION").await?, b.read("/VERSION").await?);
//! # Ok(()) }
//! ```
//!
//! A session follows each run's result, like a shell that remembers its filesystem:
//!
//! ```no_run
//! # #[cfg(feature = "async")]
//! # async fn tour(base: contree::ContreeImage) -> contree::Result<()> {
//! let mut session = base.session();
//! session.shell("mkdir -p /work && echo hi > /work/a").await?;
//! let listing = session.run("ls").arg("/work").await?;
//! assert_eq!(listing.stdout_text()?, "a\n");
//! # Ok(()) }
//! ```
//!
//! popen: live output and stdin writes.
//!
//! ```no_run
//! # #[cfg(feature = "async")]
//! # async fn tour(base: contree::ContreeImage) -> contree::Result<()> {
//! use contree::Stdin;
//! let mut process = base.run("cat").stdin(Stdin::piped()).spawn().await?;
//! process.write_stdin("line 1\n").await?;
//! process.close_stdin().await?;
//! let mut lines = process.stdout_lines().expect("taken once");
//! while let Some(line) = lines.next_line().await? {
//!     println!("live: {line}");
//! }
//! println!("{}", process.wait().await?);
//! # Ok(()) }
//! ```
//!
//! Files: place files before the command starts, bake them into an image, read them back.
//!
//! ```no_run
//! # #[cfg(feature = "async")]
//! # async fn tour(base: contree::ContreeImage) -> contree::Result<()> {
//! use contree::UploadFileSpec;
//! let app = base
//!     .apply_files([UploadFileSpec::new("/app/run.sh", b"echo ok\n".to_vec()).mode(0o755)])
//!     .await?;
//! assert_eq!(app.run("/app/run.sh").await?.stdout_text()?, "ok\n");
//! let saved = app.download_here("/app/run.sh").await?; // ./run.sh
//! let listing = app.ls("/app").await?; // entries can be read, downloaded, listed
//! assert_eq!(listing[0].read().await?, saved_bytes(&saved));
//! # fn saved_bytes(p: &std::path::Path) -> Vec<u8> { std::fs::read(p).unwrap() }
//! # Ok(()) }
//! ```
//!
//! Errors: one [`Error`] type with a [`kind()`](Error::kind) and `is_*()` predicates, a
//! one-line `Display`, and `From<std::io::Error>` so `?` works on pipe reads.
//!
//! ```no_run
//! # #[cfg(feature = "async")]
//! # async fn tour(client: contree::Contree) {
//! match client.images().get_by_tag("no-such-tag").await {
//!     Ok(image) => println!("found {:?}", image.uuid()),
//!     Err(e) if e.is_not_found() => println!("no such image"),
//!     Err(e) => eprintln!("error: {e}"),
//! }
//! # }
//! ```
//!
//! The blocking flavor is the same API without `.await` ([`blocking`]).
//!
//! ## Configuration
//!
//! `Contree::from_env()` follows the official tools: `CONTREE_TOKEN`/`CONTREE_URL`/
//! `CONTREE_PROJECT` (or `NEBIUS_API_KEY`/`NEBIUS_PROJECT_ID`) over the active profile in
//! `$CONTREE_HOME/auth.ini`, so a user who ran `contree auth` needs no configuration.
//!
//! ## Where next
//!
//! - `examples/` in the repository: `quickstart`, `session`, `branching`, `popen`, `files`,
//!   `images`, each with a `_sync` twin; they run against an embedded server when no
//!   credentials are configured.
//! - [`contree-local`](https://docs.rs/contree-local): a real Contree server on your machine
//!   (Linux, root), for offline development and tests.
//! - [`core`]: the wire-level layer.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(not(any(feature = "async", feature = "blocking")))]
compile_error!(
    "contree needs a flavor: enable the `async` feature (the default) or the `blocking` feature, or both \
     (e.g. `contree = { version = \"0.1\", default-features = false, features = [\"blocking\"] }`)"
);

#[doc(inline)]
pub use contree_core::{
    ApiUrl, ContreeConfig, Error, ErrorKind, ExitStatus, FileSource, HttpVersion, ImageKind, ImageRef, ImageState,
    IntoImageRef, IntoUuid, OciReference, ProcessFailure, Result, RetryPolicy, RunOutput, Secret, TimeFilter,
    UploadFileSpec, UploadedFile, models,
};

/// The wire-level layer: request and response models, the stream codec, config resolution,
/// the retry policy and the SSE parser, as the SDK uses them.
///
/// Semver: `contree::core` follows the version of this crate like everything else, but it
/// mirrors the Contree HTTP API, so it grows when the API grows (new fields and variants;
/// enums that mirror the wire are `#[non_exhaustive]`). Code that only uses the flavor types
/// and the re-exports at the crate root never needs it.
pub use contree_core as core;

#[cfg(feature = "async")]
#[doc(inline)]
pub use contree_async::{
    Archive, Contree, ContreeBuilder, ContreeImage, ContreeProcess, ContreeSession, ContreeSubprocess, Detached,
    DirEntry, DynRead, DynWrite, Files, GrepImage, Images, ImportImage, LineReader, ListImages, ListOperations,
    Operations, OutputTarget, PipeReader, PreparedExec, PreparedRun, RunEvent, RunEvents, SessionProcess,
    SessionTarget, Stdin, UploadSource,
};

/// The blocking flavor: the same API without `async`, for scripts and tools. Every type is the
/// async type's name followed by `Sync`.
///
/// ```no_run
/// # fn demo() -> contree::Result<()> {
/// use contree::blocking::ContreeSync;
/// let client = ContreeSync::from_env()?;
/// let base = client.images().use_image("contree-local/base:latest")?;
/// let hello = base.run("echo").arg("hello").wait()?;
/// print!("{}", hello.stdout_text()?);
/// # Ok(()) }
/// ```
///
/// Sharp edge: like `reqwest::blocking`, it panics if used from inside an async runtime.
#[cfg(feature = "blocking")]
pub mod blocking {
    #[doc(inline)]
    pub use contree_blocking::{
        ArchiveSync, ContreeBuilderSync, ContreeImageSync, ContreeProcessSync, ContreeSessionSync,
        ContreeSubprocessSync, ContreeSync, DetachedSync, DirEntrySync, DynReadSync, DynWriteSync, FilesSync,
        GrepImageSync, ImageIter, ImagesSync, ImportImageSync, LineReaderSync, ListImagesSync, ListOperationsSync,
        OperationIter, OperationsSync, OutputTargetSync, PipeReaderSync, PreparedExecSync, PreparedRunSync,
        RunEventIter, RunEventSync, RunEventsSync, SessionProcessSync, SessionTargetSync, StdinSync, UploadSourceSync,
    };
}

/// The README's code blocks, compiled as doctests (the taste is `examples/taste.rs`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
