//! Wire models: every schema and request/response body of the Contree HTTP API.
//!
//! The authority is the Contree OpenAPI spec (`Contree API` 1.0.0, `components/schemas` and
//! the bodies of each path); field names here are the spec's, and each type names the schema
//! it models. Both the SDK clients and the local server (`contree-local`) use these types.
//!
//! Conventions:
//! - **Parsing is lenient.** Unknown fields are ignored, optional fields may be missing,
//!   `null` lists and maps read as empty, integers may arrive as floats, and open-ended
//!   strings (operation kinds, event types, grep row types, shutdown reasons) keep unknown
//!   values in an `Other(String)` variant. Parts that still do not fit are kept raw instead
//!   of failing the whole answer: see [`OperationMetadata::Raw`] and [`EventPayload::Unknown`].
//! - **Request bodies omit what is unset** (`None`, empty lists and maps), so the server's
//!   defaults apply. Field docs name those defaults.
//! - **Response bodies** serialize nullable fields as `null`, as the real server does.
//! - UUIDs are [`uuid::Uuid`]; fields the server may send as `null` (or `""`) are
//!   `Option<Uuid>`. Timestamps stay the ISO 8601 strings that were sent.
//! - Byte payloads use the codec in [`crate::codec`]: see [`StreamRepr`].
//!
//! | Area | Endpoints | Types |
//! |---|---|---|
//! | [`image`] | `/images`, `/images/import`, `/images/{uuid}/tag`, `/inspect/{uuid}/` | [`Image`], [`ImageListResponse`], [`ImageImportRequest`], [`ImageImportResponse`], [`ImageImportMetadata`], [`TagRequest`] |
//! | [`file`](mod@file) | `/files`, `/files/{sha256}` | [`FileResponse`], [`FileInfo`], [`FilesListResponse`], [`FileSpec`] |
//! | [`inspect`] | `/inspect/{uuid}/list`, `/inspect/{uuid}/grep` | [`DirectoryList`], [`FileItem`], [`GrepResult`] |
//! | [`instance`] | `/instances`, `/operations/{id}/subprocesses` | [`InstanceSpawnRequest`], [`InstanceSpawnResponse`], [`ExecSpec`], [`InstanceResult`], [`ImageSource`] |
//! | [`operation`] | `/operations`, `/operations/{id}` | [`OperationSummary`], [`OperationResponse`], [`OperationStatus`], [`OperationKind`], [`SubprocessCreated`] |
//! | [`event`] | `/operations/{id}/events` | [`OperationEvent`], [`EventPayload`] |
//! | [`stream`] | (inside the above) | [`StreamRepr`], [`ClosableStreamRepr`] |
//! | [`whoami`] | `/whoami` | [`WhoAmIResponse`] |
//! | [`error_body`] | every 4xx/5xx | [`ErrorBody`] |

mod serde_util;

pub mod error_body;
pub mod event;
pub mod file;
pub mod image;
pub mod inspect;
pub mod instance;
pub mod operation;
pub mod stream;
pub mod whoami;

pub use error_body::*;
pub use event::*;
pub use file::*;
pub use image::*;
pub use inspect::*;
pub use instance::*;
pub use operation::*;
pub use stream::*;
pub use whoami::*;
