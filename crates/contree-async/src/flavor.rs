//! The names this flavor gives the shared driver's types.
//!
//! The driver declares each public type once, under a neutral name (`Client`, `Image`, …),
//! through [`declare!`]. This crate expands the declaration under the public async name
//! (`Contree`, `ContreeImage`, …) plus a crate-private alias with the neutral name, so the
//! driver's code is the same in both flavors while rustdoc and compiler messages only ever show
//! the public names (rustdoc replaces private aliases by what they name).
//!
//! The rule, for both flavors: the async name is the type's name (the client and its main
//! values carry the `Contree` prefix: `Contree`, `ContreeBuilder`, `ContreeImage`,
//! `ContreeSession`, `ContreeProcess`); the blocking name is the async name followed by `Sync`.

/// Declares a driver type under this flavor's public name. See the module doc.
macro_rules! declare {
    ($(#[$meta:meta])* $vis:vis $kw:ident $name:ident $($rest:tt)*) => {
        $crate::flavor::declare!(@name $name ($(#[$meta])* $vis $kw) ($($rest)*));
    };
    (@name Client ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* Contree $($rest)*
        pub(crate) type Client = Contree;
    };
    (@name ClientBuilder ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ContreeBuilder $($rest)*
        pub(crate) type ClientBuilder = ContreeBuilder;
    };
    (@name Image ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ContreeImage $($rest)*
        pub(crate) type Image = ContreeImage;
    };
    (@name Session ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ContreeSession $($rest)*
        pub(crate) type Session = ContreeSession;
    };
    (@name Subprocess ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ContreeSubprocess $($rest)*
        pub(crate) type Subprocess = ContreeSubprocess;
    };
    (@name Process ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* ContreeProcess $($rest)*
        pub(crate) type Process = ContreeProcess;
    };
    // Every other type keeps its name in the async flavor.
    (@name $name:ident ($($head:tt)*) ($($rest:tt)*)) => {
        $($head)* $name $($rest)*
    };
}
pub(crate) use declare;
