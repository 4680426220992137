//! Files, blocking flavor: upload, apply_files, download.
//!
//! `cargo run --example files_sync --features blocking`

mod common;

use contree::UploadFileSpec;

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let conn = common::connect_sync()?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("greet.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"hello, $1\"\n")?;
    #[cfg(unix)]
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;

    let first = conn.client.files().upload(script.as_path())?;
    let again = conn.client.files().upload(script.as_path())?;
    println!(
        "uploaded {} ({} bytes); same file again -> same uuid: {}",
        first.sha256,
        first.size,
        first.uuid == again.uuid
    );

    let out = conn
        .base
        .run("/usr/local/bin/greet.sh")
        .arg("sandbox")
        .file("/usr/local/bin/greet.sh", script.as_path())
        .file_spec(UploadFileSpec::new("/etc/app.conf", b"mode=demo\n".to_vec()).mode(0o600))
        .wait()?;
    print!("{}", out.stdout_text()?);

    let baked = conn.base.apply_files([("/opt/data.csv", b"a,b\n1,2\n".to_vec())])?;
    let summed =
        baked.shell("tail -n +2 /opt/data.csv | awk -F, '{print $1+$2}' > /opt/sum.txt").disposable(false).wait()?;
    let local = summed.download("/opt/sum.txt", dir.path().join("sum.txt"))?;
    println!("downloaded {} -> {}", local.display(), std::fs::read_to_string(&local)?.trim());
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
