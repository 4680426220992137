//! Progress bars (`indicatif`) on a large upload, its download, and a registry import.
//!
//! `cargo run --example progress`
//!
//! The upload and the download run offline against the embedded server (or your Contree).
//! The import needs a registry: set `CONTREE_EXAMPLE_REGISTRY` to an image reference, e.g.
//! `127.0.0.1:5000/team/app:1` (the embedded server pulls plain HTTP from a loopback
//! registry); without it the example explains the import and skips it.
//!
//! A `contree::Progress` is observed in one of two ways, both shown here: a callback called
//! after each chunk (the upload, the import), or a watch handle read whenever you like (the
//! download, drawn by a ticker task).

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

/// Draws one update on `bar`: cheap (a few atomics), as a callback on the transfer's path must be.
fn draw(bar: &ProgressBar, update: &ProgressUpdate<'_>) {
    if let Some(total) = update.total {
        bar.set_length(total);
    }
    bar.set_position(update.done);
    if let Some(phase) = update.phase {
        // Only imports (a few times each) and uploads (twice) have phases: no per-chunk cost.
        bar.set_message(phase.to_string());
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let conn = common::connect().await?;
    let dir = tempfile::tempdir()?;

    // 64 MiB of content the server has not seen (so the bytes really go), written in pieces.
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
    let stored = conn.client.files().upload_with_progress(path.as_path(), &progress).await?;
    bar.finish_with_message("uploaded");
    println!("stored {} ({} bytes)", stored.sha256, stored.size);

    // Download it back out of an image: a watch handle, read by a ticker task.
    let image = conn.base.apply_files([("/data/big.bin", stored)]).await?;
    let (progress, watch) = Progress::watch();
    let bar = bytes_bar();
    bar.set_message("downloading");
    let ticker = tokio::spawn({
        let bar = bar.clone();
        async move {
            loop {
                let now = watch.snapshot();
                if let Some(total) = now.total {
                    bar.set_length(total);
                }
                bar.set_position(now.done);
                if now.finished {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let local = image.download_with_progress("/data/big.bin", dir.path().join("copy.bin"), &progress).await?;
    ticker.await?;
    bar.finish_with_message("downloaded");
    println!("downloaded to {} ({} bytes)", local.display(), std::fs::metadata(&local)?.len());

    // Import: the phase comes from the import's events, the bytes once its manifest is read.
    match std::env::var("CONTREE_EXAMPLE_REGISTRY") {
        Ok(reference) if !reference.trim().is_empty() => {
            // The phase (a line of the server's log) goes last, cut to the terminal's width.
            let bar = ProgressBar::no_length().with_style(
                ProgressStyle::with_template("[{bar:30}] {bytes}/{total_bytes} {wide_msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            let progress = Progress::callback({
                let bar = bar.clone();
                move |update| draw(&bar, update)
            });
            let imported = conn.client.images().import_from(reference.trim()).progress(&progress).send().await?;
            bar.finish_with_message("imported");
            println!("imported {reference} as {:?}", imported.uuid());
        }
        _ => println!(
            "import skipped: set CONTREE_EXAMPLE_REGISTRY to an image reference (e.g. 127.0.0.1:5000/team/app:1) \
             to see an import's bar; `client.images().import_from(r).progress(&progress)` reports each step \
             (resolving, manifest, each layer downloaded and unpacked) and the layers' bytes"
        ),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
