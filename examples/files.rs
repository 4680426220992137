//! Files: upload (deduplicated by SHA-256), place files in runs, bake them into an image,
//! download results.
//!
//! `cargo run --example files`

mod common;

use contree::UploadFileSpec;

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let conn = common::connect().await?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("greet.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"hello, $1\"\n")?;
    #[cfg(unix)]
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;

    // Uploads are content-addressed: the second upload of the same bytes sends nothing.
    let first = conn.client.files().upload(script.as_path()).await?;
    let again = conn.client.files().upload(script.as_path()).await?;
    println!(
        "uploaded {} ({} bytes); same file again -> same uuid: {}",
        first.sha256,
        first.size,
        first.uuid == again.uuid
    );

    // Files in a run: the executable bit of a local file is kept.
    let out = conn
        .base
        .run("/usr/local/bin/greet.sh")
        .arg("sandbox")
        .file("/usr/local/bin/greet.sh", script.as_path())
        .file_spec(UploadFileSpec::new("/etc/app.conf", b"mode=demo\n".to_vec()).mode(0o600))
        .await?;
    print!("{}", out.stdout_text()?);

    // Bake files into a new image, then build on it.
    let baked = conn.base.apply_files([("/opt/data.csv", b"a,b\n1,2\n".to_vec())]).await?;
    let summed =
        baked.shell("tail -n +2 /opt/data.csv | awk -F, '{print $1+$2}' > /opt/sum.txt").disposable(false).await?;

    // Download a result, atomically.
    let local = summed.download("/opt/sum.txt", dir.path().join("sum.txt")).await?;
    println!("downloaded {} -> {}", local.display(), std::fs::read_to_string(&local)?.trim());
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
