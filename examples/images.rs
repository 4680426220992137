//! Images: list with filters, tag, look up by tag, untag.
//!
//! `cargo run --example images`

mod common;

use std::time::Duration;

use futures_util::TryStreamExt;

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let conn = common::connect().await?;
    let images = conn.client.images();

    let built = conn.base.shell("echo built > /artifact").disposable(false).await?;
    let tag = format!("examples/artifact:{}", std::process::id());
    let tagged = built.tag_as(&tag).await?;
    println!("tagged {:?} as {tag}", tagged.uuid());

    let found = images.get_by_tag(&tag).await?;
    println!("lookup by tag -> {:?}", found.uuid());

    println!("first 5 tagged images:");
    for image in images.list().tagged(true).limit(5).send().await? {
        println!("  {:?} {:?}", image.uuid(), image.tag());
    }

    println!("images created in the last hour, lazily:");
    let mut stream = images.list().since(Duration::from_secs(3600)).limit(3).stream();
    while let Some(image) = stream.try_next().await? {
        println!("  {:?} created {:?}", image.uuid(), image.created_at());
    }

    let untagged = tagged.untag().await?;
    println!("untagged: tag is now {:?}", untagged.tag());
    println!("lookup after untag: {}", if images.get_by_tag(&tag).await.is_err() { "not found" } else { "found" });
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
