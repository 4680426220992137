//! Helpers shared by the test binaries that run the `contree-local` binary.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts `cmd` with stdout piped (stderr discarded) and waits at most `timeout` for the
/// `CONTREE_URL=…` line of its banner; returns the child and the URL. Panics when the line
/// does not come in time (the child is killed first).
pub fn spawn_and_read_url(cmd: &mut Command, timeout: Duration) -> (Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let url = std::io::BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("CONTREE_URL=").map(str::to_owned));
        let _ = tx.send(url);
    });
    match rx.recv_timeout(timeout).ok().flatten() {
        Some(url) => (child, url),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the binary did not print its URL within {timeout:?}");
        }
    }
}
