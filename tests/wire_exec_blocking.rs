//! Execution wire suite, blocking flavor: the scenarios of `tests/wire/exec/` against wiremock.
//!
//! Plain `#[test]`s, outside any runtime (reqwest::blocking panics inside one); the mock
//! server runs on its own runtime in `support`.
#![cfg(feature = "blocking")]

pub(crate) use maybe_async::must_be_sync as maybe;

mod support;

mod flavor {
    pub use contree::UploadFileSpec;
    pub use contree::blocking::{
        ContreeImageSync as Image, ContreeSync as Client, DynReadSync as DynRead, DynWriteSync as DynWrite,
        OutputTargetSync as OutputTarget, PipeReaderSync as PipeReader, PreparedRunSync as PreparedRun,
        RunEventSync as RunEvent, StdinSync as Stdin,
    };

    pub fn sleep(d: std::time::Duration) {
        std::thread::sleep(d)
    }

    /// Every item of the run's event `Iterator`.
    pub fn collect_events(run: &PreparedRun) -> Vec<contree::Result<RunEvent>> {
        run.clone().stream().collect()
    }

    /// Every line of a text-mode reader, through its `Iterator` face.
    pub fn collect_lines(lines: contree::blocking::LineReaderSync) -> contree::Result<Vec<String>> {
        lines.collect()
    }

    /// A live reader (`Read`) to its end.
    pub fn read_to_end(reader: &mut PipeReader) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).expect("read");
        out
    }
}

#[path = "wire/exec/mod.rs"]
mod scenarios;

macro_rules! blocking_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                scenarios::$name()
            }
        )*
    };
}

exec_scenarios!(blocking_tests);
