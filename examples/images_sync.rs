//! Images, blocking flavor: list, tag, look up, untag.
//!
//! `cargo run --example images_sync --features blocking`

mod common;

use std::time::Duration;

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let conn = common::connect_sync()?;
    let images = conn.client.images();

    let built = conn.base.shell("echo built > /artifact").disposable(false).wait()?;
    let tag = format!("examples/artifact:{}", std::process::id());
    let tagged = built.tag_as(&tag)?;
    println!("tagged {:?} as {tag}", tagged.uuid());
    println!("lookup by tag -> {:?}", images.get_by_tag(&tag)?.uuid());

    println!("first 5 tagged images:");
    for image in images.list().tagged(true).limit(5) {
        let image = image?;
        println!("  {:?} {:?}", image.uuid(), image.tag());
    }
    println!("images created in the last hour:");
    for image in images.list().since(Duration::from_secs(3600)).limit(3).iter() {
        let image = image?;
        println!("  {:?} created {:?}", image.uuid(), image.created_at());
    }

    let untagged = tagged.untag()?;
    println!("untagged: tag is now {:?}", untagged.tag());
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
