//! Quickstart, blocking flavor: run commands in sandboxes, keep a state, branch from it.
//!
//! `cargo run --example quickstart_sync --features blocking`

mod common;

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Keep the connection alive: it owns the embedded server when there is one.
    let conn = common::connect_sync()?;
    let base = &conn.base;

    let hello = base.run("echo").arg("hello from a sandbox").wait()?;
    print!("1. {}", hello.stdout_text()?);

    let project = base.shell("mkdir -p /project && echo 'v1' > /project/VERSION").disposable(false).wait()?;
    println!("2. new image {}", project.uuid().expect("non-disposable runs produce an image"));

    // Branches in parallel, one thread each.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| project.shell("echo 'v2-a' > /project/VERSION").disposable(false).wait());
        let b = s.spawn(|| project.shell("echo 'v2-b' > /project/VERSION").disposable(false).wait());
        (a.join().expect("branch a"), b.join().expect("branch b"))
    });
    let (a, b) = (a?, b?);
    for (name, branch) in [("a", &a), ("b", &b), ("original", &project)] {
        let version = branch.read("/project/VERSION")?;
        print!("3. branch {name:<8} VERSION={}", String::from_utf8_lossy(&version));
    }

    let failing = base.shell("echo 'something broke' >&2; exit 3").wait()?;
    println!("4. exit code {} stderr {:?}", failing.exit_code()?, failing.stderr_text()?);
    if let Err(e) = failing.check() {
        println!("   check(): {e}");
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
