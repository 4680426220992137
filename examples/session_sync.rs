//! Sessions, blocking flavor.
//!
//! `cargo run --example session_sync --features blocking`

mod common;

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let conn = common::connect_sync()?;
    let mut session = conn.base.session();

    session.shell("mkdir -p /app && echo 'print(1)' > /app/main.py").wait()?;
    session.shell("echo 'print(2)' >> /app/main.py").wait()?;
    let listing = session.run("cat").arg("/app/main.py").wait()?;
    print!("main.py:\n{}", listing.stdout_text()?);

    let scratch = session.shell("rm -rf /app && ls /").disposable(true).wait()?;
    println!("disposable run saw / without /app: {}", !scratch.stdout_text()?.contains("app"));
    println!("/app still there: {}", session.image().read("/app/main.py").is_ok());

    let before = session.image().uuid();
    let failed = session.run("/no/such/program").wait();
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

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
