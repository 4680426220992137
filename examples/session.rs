//! Sessions: a cursor that follows each run's result, like a shell that remembers its files.
//!
//! `cargo run --example session`

mod common;

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let conn = common::connect().await?;
    let mut session = conn.base.session();

    // Session runs keep their filesystem by default: each one starts where the last ended.
    session.shell("mkdir -p /app && echo 'print(1)' > /app/main.py").await?;
    session.shell("echo 'print(2)' >> /app/main.py").await?;
    let listing = session.run("cat").arg("/app/main.py").await?;
    print!("main.py:\n{}", listing.stdout_text()?);

    // A disposable run sees the state but does not move the session.
    let scratch = session.shell("rm -rf /app && ls /").disposable(true).await?;
    println!("disposable run saw / without /app: {}", !scratch.stdout_text()?.contains("app"));
    println!("/app still there: {}", session.image().read("/app/main.py").await.is_ok());

    // A command that fails is a result (exit 127 here); the session stays on its image.
    let before = session.image().uuid();
    let failed = session.run("/no/such/program").await;
    match &failed {
        Ok(done) => println!("missing program -> exit code {}", done.exit_code()?),
        Err(e) => println!("missing program -> error: {e}"),
    }
    assert_eq!(session.image().uuid(), before);

    println!("history:");
    for (i, image) in session.history().iter().enumerate() {
        println!("  {i}: {}", image.uuid().map(|u| u.to_string()).unwrap_or_else(|| format!("tag {:?}", image.tag())));
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
