//! popen, blocking flavor: live output, stdin writes, kill.
//!
//! `cargo run --example popen_sync --features blocking`

mod common;

use std::io::BufRead;

use contree::blocking::StdinSync;

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let conn = common::connect_sync()?;

    let mut proc = conn.base.popen_shell("for i in 1 2 3; do echo tick $i; sleep 0.2; done")?;
    for line in std::io::BufReader::new(proc.stdout().expect("stdout")).lines() {
        println!("live: {}", line?);
    }
    println!("exit: {}", proc.wait()?);

    let mut calc = conn
        .base
        .run("sh")
        .arg("-c")
        .arg("while read x; do echo $((x * x)); done")
        .stdin(StdinSync::piped())
        .spawn()?;
    for n in [3, 4, 5] {
        calc.write_stdin(format!("{n}\n"))?;
    }
    let (stdout, _stderr) = calc.communicate(bytes::Bytes::new())?;
    print!("squares:\n{}", String::from_utf8_lossy(&stdout));

    let mut sleeper = conn.base.popen(["sleep", "300"])?;
    println!("sleeper running: {}", sleeper.try_wait()?.is_none());
    sleeper.kill()?;
    println!("sleeper: {}", sleeper.wait()?);
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
