//! Benchmark: one upload of a local file through the SDK (`client.files().upload(path)`), in
//! either flavor, with the client's wall time and peak RSS.
//!
//! ```text
//! CONTREE_BENCH_URL=http://127.0.0.1:PORT CONTREE_BENCH_TOKEN=T \
//! BENCH_FILE=/tmp/1g.bin BENCH_FLAVOR=async|blocking BENCH_PHASE=first|again BENCH_ROUND=1 \
//! BENCH_OUT=results.jsonl cargo bench --bench sdk_upload
//! ```
//!
//! Records `{"kind": "upload", "client", "round", "phase", "bytes", "seconds",
//! "peak_rss_kib"}`. `BENCH_PHASE` is only a label: whether the server already has the content
//! is up to the caller (give the file fresh content for a `first` round, upload it unchanged
//! for an `again` round). The timed part is the `upload` call alone (the client is built
//! before it), so a `first` round compares with `curl -T FILE -X POST` to the same server.

mod support;

use std::time::Instant;

use serde_json::json;
use support::{Target, env_string, env_usize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file =
        std::path::PathBuf::from(std::env::var("BENCH_FILE").map_err(|_| "set BENCH_FILE to the file to upload")?);
    let bytes = std::fs::metadata(&file)?.len();
    let target = Target::from_env()?;
    let flavor = env_string("BENCH_FLAVOR", "async");
    let phase = env_string("BENCH_PHASE", "first");
    let (seconds, stored_size) = match flavor.as_str() {
        "async" => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let client = contree::Contree::builder().base_url(&target.url).token(&target.token).build()?;
                let files = client.files();
                let t = Instant::now();
                let stored = files.upload(file.as_path()).await?;
                Ok::<_, Box<dyn std::error::Error>>((t.elapsed().as_secs_f64(), stored.size))
            })?
        }
        "blocking" => {
            let client =
                contree::blocking::ContreeSync::builder().base_url(&target.url).token(&target.token).build()?;
            let files = client.files();
            let t = Instant::now();
            let stored = files.upload(file.as_path())?;
            (t.elapsed().as_secs_f64(), stored.size)
        }
        other => return Err(format!("BENCH_FLAVOR must be async or blocking, not {other}").into()),
    };
    if stored_size != bytes as i64 {
        return Err(format!("the server stored {stored_size} bytes of a {bytes}-byte file").into());
    }
    eprintln!(
        "contree-rs {flavor} {phase}: {bytes} bytes in {seconds:.3} s ({:.0} MiB/s)",
        bytes as f64 / seconds / (1024.0 * 1024.0)
    );
    support::record(json!({
        "kind": "upload",
        "client": format!("contree-rs {flavor}"),
        "round": env_usize("BENCH_ROUND", 1),
        "phase": phase,
        "bytes": bytes,
        "seconds": seconds,
        "peak_rss_kib": if target.embedded { None } else { Some(support::peak_rss_kib()) },
    }));
    Ok(())
}
