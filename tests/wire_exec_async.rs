//! Execution wire suite, async flavor: the scenarios of `tests/wire/exec/` against wiremock.
#![cfg(feature = "async")]

pub(crate) use maybe_async::must_be_async as maybe;

mod support;

mod flavor {
    pub use contree::{
        Contree as Client, ContreeImage as Image, DynRead, DynWrite, OutputTarget, PipeReader, PreparedRun, RunEvent,
        Stdin, UploadFileSpec,
    };

    pub async fn sleep(d: std::time::Duration) {
        tokio::time::sleep(d).await
    }

    /// Every item of the run's event `Stream`.
    pub async fn collect_events(run: &PreparedRun) -> Vec<contree::Result<RunEvent>> {
        use futures_util::StreamExt;
        run.clone().stream().collect().await
    }

    /// Every line of a text-mode reader, through its `Stream` face.
    pub async fn collect_lines(lines: contree::LineReader) -> contree::Result<Vec<String>> {
        use futures_util::TryStreamExt;
        lines.stream().try_collect().await
    }

    /// A live reader (`AsyncRead`) to its end.
    pub async fn read_to_end(reader: &mut PipeReader) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.expect("read");
        out
    }
}

#[path = "wire/exec/mod.rs"]
mod scenarios;

#[path = "wire/exec/async_only.rs"]
mod async_only;

macro_rules! async_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                scenarios::$name().await
            }
        )*
    };
}

exec_scenarios!(async_tests);

macro_rules! async_only_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                async_only::$name().await
            }
        )*
    };
}

async_only_tests!(
    aborting_a_task_running_a_run_cancels_it,
    timing_out_a_run_future_cancels_it,
    dropping_a_run_stream_mid_run_cancels_it,
    awaiting_a_grep_builder_sends_it
);
