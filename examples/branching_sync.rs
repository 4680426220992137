//! Branching, blocking flavor: N branches from one state on N threads, pick the winner.
//!
//! `cargo run --example branching_sync --features blocking`

mod common;

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let conn = common::connect_sync()?;
    let root = conn.base.shell("echo 0 > /score").disposable(false).wait()?;

    let strategies = [3, 14, 7, 11, 5];
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = strategies
            .iter()
            .map(|n| {
                let run = root
                    .shell(format!("echo $(( $(cat /score) + {n} * 3 % 17 )) > /score; cat /score"))
                    .disposable(false);
                s.spawn(move || run.wait())
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("branch thread")).collect::<Result<Vec<_>, _>>()
    })?;

    let mut best = None;
    for (n, result) in strategies.iter().zip(&results) {
        let score: i64 = result.stdout_text()?.trim().parse()?;
        println!("strategy {n:>2}: score {score:>2}");
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, result.clone()));
        }
    }
    let (score, winner) = best.expect("at least one branch");
    println!("winner: score {score}, image {:?}", winner.uuid());
    let next = winner.shell("echo continued from $(cat /score)").wait()?;
    print!("{}", next.stdout_text()?);
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
