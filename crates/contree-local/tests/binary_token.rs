//! The `contree-local` binary never takes its token from the command line, where every host
//! user can read it (`ps`, `/proc/<pid>/cmdline`), and keeps a generated one in a private
//! file. Linux and root only (like the server itself).
#![cfg(target_os = "linux")]

use std::io::BufRead;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the binary may take to print its banner (the first start builds the base image).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running binary, killed when dropped.
struct Server {
    child: Child,
    /// Every `KEY=value` line of the banner, up to `data dir:`.
    banner: Vec<(String, String)>,
}

impl Server {
    fn value(&self, key: &str) -> Option<&str> {
        self.banner.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn url(&self) -> &str {
        self.value("CONTREE_URL").expect("the binary prints its URL")
    }

    /// `/proc/<pid>/cmdline`, what `ps` shows every user.
    fn cmdline(&self) -> Vec<u8> {
        std::fs::read(format!("/proc/{}/cmdline", self.child.id())).unwrap()
    }

    /// The HTTP status of `GET /v1/whoami` with `token`.
    fn whoami_status(&self, token: &str) -> u16 {
        let url = format!("{}/v1/whoami", self.url());
        let token = token.to_owned();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(data_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_contree-local"));
    c.args(["--bind", "127.0.0.1:0", "--data-dir"]).arg(data_dir).env_remove("CONTREE_LOCAL_TOKEN");
    c
}

/// Starts the binary and reads its banner (bounded by [`START_TIMEOUT`]).
fn start(mut cmd: Command) -> Server {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut banner = Vec::new();
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("data dir:") {
                break;
            }
            if let Some((k, v)) = line.split_once('=') {
                banner.push((k.to_owned(), v.to_owned()));
            }
        }
        let _ = tx.send(banner);
    });
    let mut server = Server { child, banner: Vec::new() };
    server.banner = rx.recv_timeout(START_TIMEOUT).expect("the binary prints its banner in time");
    assert!(server.value("CONTREE_URL").is_some(), "no URL in the banner: {:?}", server.banner);
    server
}

/// Runs the binary to completion (it is expected to refuse to start), bounded in time.
fn run_refused(mut cmd: Command) -> (i32, String) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the binary did not exit although it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn write_private(path: &Path, content: &str, mode: u32) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_token_file_is_used_and_the_token_is_not_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let token = "file-token-5c0e9b1d7a";
    let token_file = dir.path().join("tok");
    write_private(&token_file, &format!("{token}\n"), 0o600);
    let mut cmd = command(&dir.path().join("data"));
    cmd.arg("--token-file").arg(&token_file);
    let server = start(cmd);
    let cmdline = server.cmdline();
    assert!(contains(&cmdline, "--token-file"), "read the right process: {}", String::from_utf8_lossy(&cmdline));
    assert!(!contains(&cmdline, token), "the token is in /proc/<pid>/cmdline: {}", String::from_utf8_lossy(&cmdline));
    assert_eq!(server.value("CONTREE_TOKEN"), None, "a token the user gave is not printed");
    assert_eq!(server.value("CONTREE_TOKEN_FILE"), Some(token_file.to_str().unwrap()));
    assert_eq!(server.whoami_status(token), 200);
    assert_eq!(server.whoami_status("another-token"), 401);
}

#[test]
fn the_env_var_is_used_and_the_token_is_not_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let token = "env-token-94d1f0a2b3";
    let mut cmd = command(&dir.path().join("data"));
    cmd.env("CONTREE_LOCAL_TOKEN", token);
    let server = start(cmd);
    assert!(!contains(&server.cmdline(), token));
    assert_eq!(server.value("CONTREE_TOKEN"), None);
    assert_eq!(server.whoami_status(token), 200);
}

#[test]
fn a_generated_token_is_printed_once_and_kept_in_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = {
        let server = start(command(&data));
        let token = server.value("CONTREE_TOKEN").expect("a generated token is printed").to_owned();
        assert_eq!(token.len(), 64, "256 random bits, hex");
        assert!(!contains(&server.cmdline(), &token));
        let file = data.canonicalize().unwrap().join("token");
        assert_eq!(server.value("CONTREE_TOKEN_FILE"), Some(file.to_str().unwrap()));
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600, "the token file is private");
        assert_eq!(meta.uid(), 0);
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
        assert_eq!(std::fs::metadata(&data).unwrap().mode() & 0o7777, 0o700, "the data dir is private");
        assert_eq!(server.whoami_status(&token), 200);
        token
    };
    // A restart reuses the saved token and does not print it again.
    let server = start(command(&data));
    assert_eq!(server.value("CONTREE_TOKEN"), None, "printed once only");
    assert!(server.value("CONTREE_TOKEN_FILE").is_some());
    assert_eq!(server.whoami_status(&token), 200);
}

#[test]
fn a_token_on_the_command_line_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "cli-token-0b8e44c1";
    for args in
        [vec!["--token".to_owned(), secret.to_owned()], vec![format!("--token={secret}")], vec!["--token".to_owned()]]
    {
        let mut cmd = command(&dir.path().join("data"));
        cmd.args(&args);
        let (code, err) = run_refused(cmd);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("--token-file") && err.contains("CONTREE_LOCAL_TOKEN"), "{args:?}: {err}");
        assert!(!err.contains(secret), "the refusal echoes the token: {err}");
    }
    assert!(!dir.path().join("data/token").exists(), "nothing was started");
}

#[test]
fn a_token_file_other_users_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tok");
    write_private(&token_file, "open-token-7f3a", 0o644);
    let mut cmd = command(&dir.path().join("data"));
    cmd.arg("--token-file").arg(&token_file);
    let (code, err) = run_refused(cmd);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains("open-token-7f3a"), "{err}");
}

/// Every regular file under `dir` (bounded walk, symlinks not followed).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(Result::ok) {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
            assert!(out.len() + stack.len() < 100_000, "runaway walk of {}", dir.display());
        }
    }
    out
}

#[test]
fn the_embedded_server_keeps_its_token_in_memory_only() {
    let dir = tempfile::tempdir().unwrap();
    let token = "embedded-token-3e9c51a0d4";
    let server = contree_local::LocalServer::start_blocking(
        contree_local::LocalConfig::default().with_token(token).with_data_dir(dir.path().join("data")),
    )
    .unwrap();
    let data = server.data_dir().to_path_buf();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/v1/whoami", server.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 200);
    drop(server);
    assert!(!data.join("token").exists(), "the embedded server wrote a token file");
    let files = files_under(&data);
    assert!(files.iter().any(|f| f.ends_with("db.sqlite")), "the walk saw the database: {files:?}");
    for f in files {
        let content = std::fs::read(&f).unwrap();
        assert!(!contains(&content, token), "the token is stored in {}", f.display());
    }
}

/// A script that reads only part of the banner and closes its end of the pipe must not
/// bring the server down: what the server prints next hits a closed pipe (EPIPE), which
/// once panicked it. Here the pipe is closed before the server even starts, so every line
/// of the banner hits it.
#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_contree-local"));
    cmd.args(["--bind", &format!("127.0.0.1:{port}"), "--data-dir"]).arg(dir.path().join("data"));
    cmd.env("CONTREE_LOCAL_TOKEN", "closed-stdout-token-1");
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    drop(child.stdout.take());
    let mut server = Server { child, banner: vec![("CONTREE_URL".into(), format!("http://127.0.0.1:{port}"))] };
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    loop {
        assert!(server.child.try_wait().unwrap().is_none(), "the server exited: its stdout was closed");
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the server did not listen in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The banner is printed right after the listener is up: give it time to hit the pipe.
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.child.try_wait().unwrap().is_none(), "the server exited after printing to a closed stdout");
    assert_eq!(server.whoami_status("closed-stdout-token-1"), 200);
}
