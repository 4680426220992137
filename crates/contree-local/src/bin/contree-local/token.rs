//! Where the binary's bearer token comes from. Never from the command line: argv is readable by
//! every host user (`ps`, `/proc/<pid>/cmdline`).
//!
//! In order: `--token-file PATH`, the `CONTREE_LOCAL_TOKEN` environment variable, the token
//! file a previous start generated (`<data-dir>/token`), or a new random one that is written
//! to `<data-dir>/token` (mode 0600) and printed once.
//!
//! A token file must be a regular file that only its owner can read or write (no group or
//! other bits, as `ssh` demands of private keys): a token that other users could already read
//! is refused rather than used, since it may have leaked.

use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The environment variable the token may come from.
pub const TOKEN_ENV: &str = "CONTREE_LOCAL_TOKEN";
/// The name of the generated token file in the data dir.
pub const TOKEN_FILE_NAME: &str = "token";
/// Longest token file accepted (a token is a header value, not a document).
const MAX_TOKEN_FILE: u64 = 4096;

/// What `--token` on the command line is answered with.
pub const TOKEN_FLAG_REFUSED: &str = "--token is not accepted: a command line is visible to every user of this \
     machine (ps, /proc/<pid>/cmdline). Give the token with --token-file PATH (a file only you can read, \
     mode 0600) or the CONTREE_LOCAL_TOKEN environment variable, or give neither to have one generated \
     into <data-dir>/token";

/// A token and where it came from. Its `Debug` never shows the token.
pub struct Token {
    /// The token itself.
    pub secret: String,
    /// Where it came from.
    pub origin: Origin,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("secret", &"<redacted>").field("origin", &self.origin).finish()
    }
}

/// Where a token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `--token-file PATH`.
    File(PathBuf),
    /// The environment variable.
    Env,
    /// The token file of an earlier start in the data dir.
    DataDir(PathBuf),
}

/// Picks the token source. `env` is the value of [`TOKEN_ENV`], if set. `None`: nothing was
/// given, so the server generates one, which [`save_generated`] then stores.
pub fn resolve(token_file: Option<&Path>, env: Option<OsString>, data_dir: &Path) -> Result<Option<Token>, String> {
    match (token_file, env) {
        (Some(_), Some(_)) => Err(format!("give the token either with --token-file or with {TOKEN_ENV}, not both")),
        (Some(path), None) => {
            Ok(Some(Token { secret: read_token_file(path)?, origin: Origin::File(path.to_path_buf()) }))
        }
        (None, Some(v)) => {
            let secret = v.into_string().map_err(|_| format!("{TOKEN_ENV} is not valid UTF-8"))?;
            let secret = secret.trim().to_owned();
            if secret.is_empty() {
                return Err(format!("{TOKEN_ENV} is empty"));
            }
            Ok(Some(Token { secret, origin: Origin::Env }))
        }
        (None, None) => {
            let path = data_dir.join(TOKEN_FILE_NAME);
            match std::fs::symlink_metadata(&path) {
                Ok(_) => Ok(Some(Token { secret: read_token_file(&path)?, origin: Origin::DataDir(path) })),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("cannot read {}: {e}", path.display())),
            }
        }
    }
}

/// Reads a token file: a regular file without group/other permissions, whose content, with
/// surrounding whitespace trimmed, is the token.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open the token file {}: {e}", path.display()))?;
    // fstat the opened file: what is checked is what is read.
    let meta = file.metadata().map_err(|e| format!("cannot stat the token file {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("the token file {} is not a regular file", path.display()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "the token file {} can be read or written by other users (mode {mode:o}); \
             run `chmod 600 {}` and, since it may have been read, consider a new token",
            path.display(),
            path.display()
        ));
    }
    if meta.len() > MAX_TOKEN_FILE {
        return Err(format!("the token file {} is larger than {MAX_TOKEN_FILE} bytes", path.display()));
    }
    let mut content = String::new();
    file.take(MAX_TOKEN_FILE + 1)
        .read_to_string(&mut content)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let token = content.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(token.to_owned())
}

/// Stores a generated token at `path` with mode 0600, atomically (a temp file in the same
/// directory, then a rename that never replaces an existing file).
pub fn save_generated(path: &Path, token: &str) -> Result<(), String> {
    let dir = path.parent().ok_or_else(|| format!("{} has no parent directory", path.display()))?;
    // tempfile creates its files with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".token-")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot create a token file in {}: {e}", dir.display()))?;
    tmp.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| format!("cannot write the token file in {}: {e}", dir.display()))?;
    tmp.persist_noclobber(path).map_err(|e| format!("cannot create the token file {}: {}", path.display(), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn write(path: &Path, content: &str, mode: u32) {
        fs::write(path, content).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_token_file_is_read_and_trimmed() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("t");
        write(&f, "  s3cret-token\n", 0o600);
        let t = resolve(Some(&f), None, d.path()).unwrap().unwrap();
        assert_eq!(t.secret, "s3cret-token");
        assert_eq!(t.origin, Origin::File(f));
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn an_open_empty_or_odd_token_file_is_refused_without_showing_the_token() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("t");
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            write(&f, "s3cret-token", mode);
            let e = read_token_file(&f).unwrap_err();
            assert!(e.contains("chmod 600"), "{mode:o}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        write(&f, " \n", 0o600);
        assert!(read_token_file(&f).unwrap_err().contains("empty"));
        assert!(read_token_file(d.path()).is_err(), "a directory");
        assert!(read_token_file(&d.path().join("missing")).is_err());
        write(&f, &"x".repeat(5000), 0o600);
        assert!(read_token_file(&f).unwrap_err().contains("larger"));
    }

    #[test]
    fn env_then_data_dir_file_then_generate() {
        let d = tempfile::tempdir().unwrap();
        let t = resolve(None, Some("from-env\n".into()), d.path()).unwrap().unwrap();
        assert_eq!((t.secret.as_str(), t.origin), ("from-env", Origin::Env));
        assert!(resolve(None, Some("".into()), d.path()).is_err());

        let path = d.path().join(TOKEN_FILE_NAME);
        assert!(resolve(None, None, d.path()).unwrap().is_none(), "nothing given: generate");
        save_generated(&path, "generated-token").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        let t = resolve(None, None, d.path()).unwrap().unwrap();
        assert_eq!((t.secret.as_str(), t.origin), ("generated-token", Origin::DataDir(path.clone())));
        assert!(save_generated(&path, "other").is_err(), "never replaces an existing token file");
        assert_eq!(read_token_file(&path).unwrap(), "generated-token");
    }

    #[test]
    fn file_and_env_together_are_ambiguous() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("t");
        write(&f, "a", 0o600);
        assert!(resolve(Some(&f), Some("b".into()), d.path()).unwrap_err().contains("not both"));
    }
}
