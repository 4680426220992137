//! Uses the main types at their `contree::` paths in whichever flavors are enabled, and prints
//! one line per flavor with the Display of a transport error (an unreachable server).
#![allow(dead_code)]

// Flavor-independent types: at the same path whatever the features.
use contree::models::{ImageListResponse, OperationStatus};
use contree::{
    ContreeConfig, Error, ErrorKind, ExitStatus, FileSource, ImageRef, ImageState, ProcessFailure, RetryPolicy,
    RunOutput, UploadFileSpec,
};

fn independent(_: ExitStatus, _: &RunOutput, _: &ProcessFailure, _: ErrorKind, _: ImageState, _: ImageRef) {}
fn wire(_: OperationStatus, _: ImageListResponse, _: ContreeConfig, _: FileSource, _: UploadFileSpec) {}
fn io_question_mark(r: std::io::Result<()>) -> contree::Result<()> {
    r?;
    Ok(())
}

#[cfg(feature = "async")]
mod with_async {
    use contree::{
        Contree, ContreeBuilder, ContreeImage, ContreeProcess, ContreeSession, Files, Images, Operations,
        OutputTarget, PreparedRun,
    };

    pub fn names(
        _: &Contree,
        _: ContreeBuilder,
        _: &ContreeImage,
        _: &ContreeProcess,
        _: &ContreeSession,
        _: &Files,
        _: &Images,
        _: &Operations,
        _: &PreparedRun,
    ) {
    }

    pub fn main() {
        let _ = OutputTarget::discard();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let client = Contree::builder()
            .base_url("http://127.0.0.1:9")
            .token("consumer")
            .retry(contree::RetryPolicy::none())
            .build()
            .expect("client");
        match rt.block_on(client.whoami()) {
            Ok(_) => println!("async: unexpected answer"),
            Err(e) => println!("async: {e}"),
        }
    }
}

#[cfg(feature = "blocking")]
mod with_blocking {
    use contree::blocking::{
        ContreeBuilderSync, ContreeImageSync, ContreeProcessSync, ContreeSessionSync, ContreeSync, FilesSync,
        ImagesSync, OperationsSync, OutputTargetSync, PreparedRunSync,
    };

    pub fn names(
        _: &ContreeSync,
        _: ContreeBuilderSync,
        _: &ContreeImageSync,
        _: &ContreeProcessSync,
        _: &ContreeSessionSync,
        _: &FilesSync,
        _: &ImagesSync,
        _: &OperationsSync,
        _: &PreparedRunSync,
    ) {
    }

    pub fn main() {
        let _ = OutputTargetSync::discard();
        let client = ContreeSync::builder()
            .base_url("http://127.0.0.1:9")
            .token("consumer")
            .retry(contree::RetryPolicy::none())
            .build()
            .expect("client");
        match client.whoami() {
            Ok(_) => println!("blocking: unexpected answer"),
            Err(e) => println!("blocking: {e}"),
        }
    }
}

fn main() {
    let _ = (RetryPolicy::none(), Error::config("unused"));
    #[cfg(feature = "async")]
    with_async::main();
    #[cfg(feature = "blocking")]
    with_blocking::main();
}
