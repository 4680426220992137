//! Progress bars (`indicatif`) on a large upload and its download, blocking flavor (the
//! import's bar is in `examples/progress.rs`, and works the same way here).
//!
//! `cargo run --example progress_sync --features blocking`

mod common;

use std::io::Write;
use std::time::Duration;

use contree::{Progress, ProgressUpdate};
use indicatif::{ProgressBar, ProgressStyle};

const SIZE: usize = 64 * 1024 * 1024;

fn bytes_bar() -> ProgressBar {
    let bar = ProgressBar::no_length();
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Draws one update on `bar`: cheap, as a callback on the transfer's path must be.
fn draw(bar: &ProgressBar, update: &ProgressUpdate<'_>) {
    if let Some(total) = update.total {
        bar.set_length(total);
    }
    bar.set_position(update.done);
    if let Some(phase) = update.phase {
        bar.set_message(phase.to_string());
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let conn = common::connect_sync()?;
    let dir = tempfile::tempdir()?;

    // 64 MiB of content the server has not seen, so the bytes really go.
    let path = dir.path().join("big.bin");
    let seed = *uuid::Uuid::new_v4().as_bytes();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut block = vec![0u8; 1024 * 1024];
    for n in 0..SIZE / block.len() {
        for (i, b) in block.iter_mut().enumerate() {
            *b = seed[i % 16] ^ (i / 16) as u8 ^ n as u8;
        }
        file.write_all(&block)?;
    }
    file.into_inner()?.sync_all()?;

    // Upload: a callback drives the bar.
    let bar = bytes_bar();
    let progress = Progress::callback({
        let bar = bar.clone();
        move |update| draw(&bar, update)
    });
    let stored = conn.client.files().upload_with_progress(path.as_path(), &progress)?;
    bar.finish_with_message("uploaded");
    println!("stored {} ({} bytes)", stored.sha256, stored.size);

    // Download: a watch handle, read by a ticker thread (no runtime needed).
    let image = conn.base.apply_files([("/data/big.bin", stored)])?;
    let (progress, watch) = Progress::watch();
    let bar = bytes_bar();
    bar.set_message("downloading");
    let ticker = std::thread::spawn({
        let bar = bar.clone();
        move || {
            loop {
                let now = watch.snapshot();
                if let Some(total) = now.total {
                    bar.set_length(total);
                }
                bar.set_position(now.done);
                if now.finished {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    let local = image.download_with_progress("/data/big.bin", dir.path().join("copy.bin"), &progress)?;
    ticker.join().map_err(|_| "the ticker thread panicked")?;
    bar.finish_with_message("downloaded");
    println!("downloaded to {} ({} bytes)", local.display(), std::fs::metadata(&local)?.len());
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
