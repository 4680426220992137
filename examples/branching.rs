//! Branching: fork N branches from one state in parallel, score them, keep the winner.
//!
//! `cargo run --example branching`

mod common;

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let conn = common::connect().await?;
    let root = conn.base.shell("echo 0 > /score").disposable(false).await?;

    // Each branch tries a different "strategy"; all start from the same image.
    let strategies = [3, 14, 7, 11, 5];
    let branches = strategies.iter().map(|n| {
        root.shell(format!("echo $(( $(cat /score) + {n} * 3 % 17 )) > /score; cat /score"))
            .disposable(false)
            .into_future()
    });
    let results = futures_util::future::try_join_all(branches).await?;

    let mut best = None;
    for (n, result) in strategies.iter().zip(&results) {
        let score: i64 = result.stdout_text()?.trim().parse()?;
        println!(
            "strategy {n:>2}: score {score:>2} image {}",
            result.uuid().map(|u| u.to_string()).unwrap_or_default()
        );
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, result.clone()));
        }
    }
    let (score, winner) = best.expect("at least one branch");
    println!("winner: score {score}, image {:?}", winner.uuid());

    // Continue from the winner; the other branches are still there to roll back to.
    let next = winner.shell("echo continued from $(cat /score)").await?;
    print!("{}", next.stdout_text()?);
    println!("root is untouched: /score = {}", String::from_utf8_lossy(&root.read("/score").await?).trim());
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
