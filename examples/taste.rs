use contree::{Contree, Stdin};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match taste().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn taste() -> contree::Result<()> {
    // CONTREE_TOKEN and CONTREE_URL, or a `contree auth` profile (`contree-local` prints both).
    let client = Contree::from_env()?;
    let base = client.images().use_image("contree-local/base:latest")?;

    // A prepared run is a value: execute it as often as you like; each execution is a branch.
    let setup = base.shell("echo hello > /greeting").disposable(false).await?;
    let (a, b) = tokio::try_join!(
        setup.shell("echo a >> /greeting; cat /greeting").into_future(),
        setup.shell("echo b >> /greeting; cat /greeting").into_future(),
    )?;
    println!("{:?} {:?}", a.stdout_text()?, b.stdout_text()?); // "hello\na\n" "hello\nb\n"

    // A session follows each run's result, like a shell that remembers its filesystem.
    let mut session = base.session();
    session.shell("mkdir -p /work && echo done > /work/status").await?;
    let out = session.run("cat").arg("/work/status").await?;
    print!("{}", out.stdout_text()?);

    // popen: live output as lines, stdin writes.
    let mut process =
        base.run("sh").arg("-c").arg("while read x; do echo \"got $x\"; done").stdin(Stdin::piped()).spawn().await?;
    process.write_stdin("1\n2\n").await?;
    process.close_stdin().await?;
    let mut lines = process.stdout_lines().expect("taken once");
    while let Some(line) = lines.next_line().await? {
        println!("live: {line}");
    }
    println!("{}", process.wait().await?);
    Ok(())
}
