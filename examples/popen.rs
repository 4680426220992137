//! popen: start a command, stream its output live, talk to its stdin, kill it.
//!
//! `cargo run --example popen`

mod common;

use contree::Stdin;
use tokio::io::AsyncBufReadExt;

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let conn = common::connect().await?;

    // Live output, line by line, as the sandbox produces it.
    let mut proc = conn.base.popen_shell("for i in 1 2 3; do echo tick $i; sleep 0.2; done").await?;
    let mut lines = tokio::io::BufReader::new(proc.stdout().expect("stdout")).lines();
    while let Some(line) = lines.next_line().await? {
        println!("live: {line}");
    }
    println!("exit: {}", proc.wait().await?);

    // An interactive process: write to its stdin while it runs.
    let mut calc = conn
        .base
        .run("sh")
        .arg("-c")
        .arg("while read x; do echo $((x * x)); done")
        .stdin(Stdin::piped())
        .spawn()
        .await?;
    for n in [3, 4, 5] {
        calc.write_stdin(format!("{n}\n")).await?;
    }
    let (stdout, _stderr) = calc.communicate(bytes::Bytes::new()).await?;
    print!("squares:\n{}", String::from_utf8_lossy(&stdout));

    // Kill a process that would run for a long time.
    let mut sleeper = conn.base.popen(["sleep", "300"]).await?;
    println!("sleeper running: {}", sleeper.try_wait()?.is_none());
    sleeper.kill().await?;
    println!("sleeper: {}", sleeper.wait().await?);
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
