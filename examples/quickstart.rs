//! Quickstart: run commands in sandboxes, keep a filesystem state, branch from it.
//!
//! `cargo run --example quickstart` — uses your Contree credentials if configured, else an
//! embedded contree-local server.

mod common;

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Keep the connection alive: it owns the embedded server when there is one.
    let conn = common::connect().await?;
    let base = &conn.base;

    // 1. A one-off command. Image runs are disposable by default: output, no new image.
    let hello = base.run("echo").arg("hello from a sandbox").await?;
    print!("1. {}", hello.stdout_text()?);

    // 2. A run that keeps its filesystem: the result is a new image with its own uuid.
    let project = base.shell("mkdir -p /project && echo 'v1' > /project/VERSION").disposable(false).await?;
    println!("2. new image {}", project.uuid().expect("non-disposable runs produce an image"));

    // 3. Branch: two runs from the same image never see each other's changes.
    let (a, b) = tokio::try_join!(
        project.shell("echo 'v2-a' > /project/VERSION").disposable(false).into_future(),
        project.shell("echo 'v2-b' > /project/VERSION").disposable(false).into_future(),
    )?;
    for (name, branch) in [("a", &a), ("b", &b), ("original", &project)] {
        let version = branch.read("/project/VERSION").await?;
        print!(
            "3. branch {name:<8} {} VERSION={}",
            branch.uuid().map(|u| u.to_string()).unwrap_or_default(),
            String::from_utf8_lossy(&version)
        );
    }

    // 4. Non-zero exits are results, not errors; check() turns them into errors.
    let failing = base.shell("echo 'something broke' >&2; exit 3").await?;
    println!("4. exit code {} stderr {:?}", failing.exit_code()?, failing.stderr_text()?);
    if let Err(e) = failing.check() {
        println!("   check(): {e}");
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
