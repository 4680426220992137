//! The names this flavor gives the shared driver's types.
//!
//! The driver declares each public type once, under a neutral name (`Client`, `Image`, …),
//! through [`declare!`]. This crate expands the declaration under the public blocking name
//! (`ContreeSync`, `ContreeImageSync`, …) plus a crate-private alias with the neutral name, so
//! the driver's code is the same in both flavors while rustdoc and compiler messages only ever
//! show the public names (rustdoc replaces private aliases by what they name).
//!
//! The rule, for both flavors: the async name is the type's name (the client and its main
//! values carry the `Contree` prefix: `Contree`, `ContreeBuilder`, `ContreeImage`,
//! `ContreeSession`, `ContreeProcess`); the blocking name is the async name followed by `Sync`.
//! Types that exist only here (the iterators `ImageIter`, `RunEventIter`, `OperationIter`) are
//! named for what they are.

/// Declares a driver type under this flavor's public name. See the module doc.
macro_rules! declare {
    ($(#[$meta:meta])* $vis:vis $kw:ident $name:ident $($rest:tt)*) => {
        $crate::flavor::declare!(@name $name ($(#[$meta])* $vis $kw) ($($rest)*));
    };
    (@name Client ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ContreeSync $($rest)*
        pub(crate) type Client = ContreeSync;
    };
    (@name ClientBuilder ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ContreeBuilderSync $($rest)*
        pub(crate) type ClientBuilder = ContreeBuilderSync;
    };
    (@name Image ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ContreeImageSync $($rest)*
        pub(crate) type Image = ContreeImageSync;
    };
    (@name Session ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ContreeSessionSync $($rest)*
        pub(crate) type Session = ContreeSessionSync;
    };
    (@name Subprocess ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ContreeSubprocessSync $($rest)*
        pub(crate) type Subprocess = ContreeSubprocessSync;
    };
    (@name PreparedExec ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* PreparedExecSync $($rest)*
        pub(crate) type PreparedExec = PreparedExecSync;
    };
    (@name Process ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ContreeProcessSync $($rest)*
        pub(crate) type Process = ContreeProcessSync;
    };
    (@name PreparedRun ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* PreparedRunSync $($rest)*
        pub(crate) type PreparedRun<T = Detached> = PreparedRunSync<T>;
    };
    (@name SessionTarget ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* SessionTargetSync $($rest)*
        pub(crate) type SessionTarget<'a> = SessionTargetSync<'a>;
    };
    (@name Images ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ImagesSync $($rest)*
        pub(crate) type Images = ImagesSync;
    };
    (@name ListImages ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ListImagesSync $($rest)*
        pub(crate) type ListImages = ListImagesSync;
    };
    (@name ImportImage ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ImportImageSync $($rest)*
        pub(crate) type ImportImage = ImportImageSync;
    };
    (@name Files ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* FilesSync $($rest)*
        pub(crate) type Files = FilesSync;
    };
    (@name UploadSource ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* UploadSourceSync $($rest)*
        pub(crate) type UploadSource = UploadSourceSync;
    };
    (@name Archive ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ArchiveSync $($rest)*
        pub(crate) type Archive = ArchiveSync;
    };
    (@name RunEvent ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* RunEventSync $($rest)*
        pub(crate) type RunEvent = RunEventSync;
    };
    (@name RunEvents ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* RunEventsSync $($rest)*
        pub(crate) type RunEvents = RunEventsSync;
    };
    (@name Stdin ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* StdinSync $($rest)*
        pub(crate) type Stdin = StdinSync;
    };
    (@name OutputTarget ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* OutputTargetSync $($rest)*
        pub(crate) type OutputTarget = OutputTargetSync;
    };
    (@name Detached ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* DetachedSync $($rest)*
        pub(crate) type Detached = DetachedSync;
    };
    (@name Operations ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* OperationsSync $($rest)*
        pub(crate) type Operations = OperationsSync;
    };
    (@name ListOperations ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ListOperationsSync $($rest)*
        pub(crate) type ListOperations = ListOperationsSync;
    };
    (@name GrepImage ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* GrepImageSync $($rest)*
        pub(crate) type GrepImage = GrepImageSync;
    };
    (@name DirEntry ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* DirEntrySync $($rest)*
        pub(crate) type DirEntry = DirEntrySync;
    };
    (@name LineReader ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* LineReaderSync $($rest)*
        pub(crate) type LineReader = LineReaderSync;
    };
    (@name SessionProcess ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* SessionProcessSync $($rest)*
        pub(crate) type SessionProcess<'a> = SessionProcessSync<'a>;
    };
}
pub(crate) use declare;
