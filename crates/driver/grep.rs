//! Searching an image's files without running it (`GET /inspect/{uuid}/grep`).

use std::time::Duration;

use contree_core::models::{GrepCase, GrepResult};
use contree_core::{Error, Result, validate};
use reqwest::Method;

use super::http::Timeout;
use super::image::Image;

/// The spec's caps: at most 16 patterns and 16 paths, 1024 characters per pattern, at most
/// 10,000 matches per file or in all, 50 context lines.
const MAX_PATTERNS: usize = 16;
const MAX_PATHS: usize = 16;
const MAX_PATTERN_CHARS: usize = 1024;
const MAX_MATCHES: u32 = 10_000;
const MAX_CONTEXT: u32 = 50;
/// A search may take the server a while (contree-local stops at 10 s); the answer is waited
/// for at least this long, whatever `transport_timeout` says.
const MIN_WAIT: Duration = Duration::from_secs(60);

impl Image {
    /// Searches the image's files for `pattern` (a Rust regex), without running anything
    /// (`GET /inspect/{uuid}/grep`). Add patterns (OR-ed), paths, globs and limits on the
    /// returned builder, then `send()` (or `.await` it in async).
    ///
    /// The server walks the image like ripgrep: symlinks are never followed, hidden files are
    /// searched, binary files are skipped. The answer lists matching lines in file order, plus
    /// context lines when asked; `truncated` says a limit stopped the search early.
    #[doc = crate::doc_examples::example!(image_grep)]
    pub fn grep(&self, pattern: impl Into<String>) -> GrepImage {
        GrepImage {
            image: self.clone(),
            error: None,
            patterns: Vec::new(),
            paths: Vec::new(),
            globs: Vec::new(),
            max_count: None,
            max_total: None,
            case: None,
            before: 0,
            after: 0,
            timeout: None,
        }
        .pattern(pattern)
    }
}

crate::flavor::declare! {
    /// Builder for a search of an image's files. Ends in `send()`.
    #[doc = crate::doc_examples::example!(image_grep)]
    #[derive(Debug, Clone)]
    pub struct GrepImage {
        image: Image,
        /// The first bad argument, reported by `send()` before any request.
        error: Option<Error>,
        patterns: Vec<String>,
        paths: Vec<String>,
        globs: Vec<String>,
        max_count: Option<u32>,
        max_total: Option<u32>,
        case: Option<GrepCase>,
        before: u32,
        after: u32,
        timeout: Option<Duration>,
    }
}

impl GrepImage {
    fn reject(&mut self, arg: &'static str, why: String) {
        self.error.get_or_insert_with(|| Error::invalid_argument(arg, why));
    }

    /// Another pattern; a line matches when any pattern does (at most 16, 1024 characters
    /// each, not empty).
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        let pattern = pattern.into();
        if pattern.is_empty() {
            self.reject("pattern", "must not be empty".into());
        } else if pattern.chars().count() > MAX_PATTERN_CHARS {
            self.reject("pattern", format!("is longer than {MAX_PATTERN_CHARS} characters"));
        } else if self.patterns.len() == MAX_PATTERNS {
            self.reject("pattern", format!("at most {MAX_PATTERNS} patterns may be given"));
        }
        self.patterns.push(pattern);
        self
    }

    /// A file or directory of the image to search (absolute; at most 16). Several paths are
    /// searched in the order given and share `max_total`. Default: the whole image (`/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        if let Err(e) = validate::absolute_path("path", &path) {
            self.error.get_or_insert(e);
        } else if self.paths.len() == MAX_PATHS {
            self.reject("path", format!("at most {MAX_PATHS} paths may be given"));
        }
        self.paths.push(path);
        self
    }

    /// Several paths at once (see [`path`](Self::path)).
    pub fn paths<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for p in paths {
            self = self.path(p);
        }
        self
    }

    /// Only files matching this glob, or with a leading `!`, not those (ripgrep's `-g`: the
    /// last matching glob wins; `*.rs`, `!*.min.js`, `src/**`). May be repeated.
    pub fn glob(mut self, glob: impl Into<String>) -> Self {
        let glob = glob.into();
        if glob.trim_start_matches('!').trim_matches('/').is_empty() {
            self.reject("glob", format!("`{glob}` matches nothing"));
        }
        self.globs.push(glob);
        self
    }

    /// At most `n` matches per file (1..=10000).
    pub fn max_count(mut self, n: u32) -> Self {
        if !(1..=MAX_MATCHES).contains(&n) {
            self.reject("max_count", format!("{n} is out of range (1..={MAX_MATCHES})"));
        }
        self.max_count = Some(n);
        self
    }

    /// At most `n` matches in all (1..=10000; the server's default is 1000). Reaching it
    /// ends the search with `truncated` set.
    pub fn max_total(mut self, n: u32) -> Self {
        if !(1..=MAX_MATCHES).contains(&n) {
            self.reject("max_total", format!("{n} is out of range (1..={MAX_MATCHES})"));
        }
        self.max_total = Some(n);
        self
    }

    /// How letters are compared (default: [`GrepCase::Sensitive`]).
    pub fn case(mut self, case: GrepCase) -> Self {
        self.case = Some(case);
        self
    }

    /// Case-insensitive matching (`case(GrepCase::Insensitive)`).
    pub fn ignore_case(self) -> Self {
        self.case(GrepCase::Insensitive)
    }

    /// Lines of context before each match (0..=50), as `context` rows.
    pub fn before(mut self, lines: u32) -> Self {
        if lines > MAX_CONTEXT {
            self.reject("before", format!("{lines} is out of range (0..={MAX_CONTEXT})"));
        }
        self.before = lines;
        self
    }

    /// Lines of context after each match (0..=50), as `context` rows.
    pub fn after(mut self, lines: u32) -> Self {
        if lines > MAX_CONTEXT {
            self.reject("after", format!("{lines} is out of range (0..={MAX_CONTEXT})"));
        }
        self.after = lines;
        self
    }

    /// Lines of context on both sides (`grep -C`): `before(lines).after(lines)`.
    pub fn context(mut self, lines: u32) -> Self {
        if lines > MAX_CONTEXT {
            self.reject("context", format!("{lines} is out of range (0..={MAX_CONTEXT})"));
        }
        self.before = lines;
        self.after = lines;
        self
    }

    /// How long to wait for the answer (default: `transport_timeout`, but at least 60 s: the
    /// server searches before it answers).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if timeout.is_zero() {
            self.reject("timeout", "must be more than zero".into());
        }
        self.timeout = Some(timeout);
        self
    }

    /// The query, in the spec's names; repeated parameters are repeated keys.
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q: Vec<(&'static str, String)> = Vec::new();
        q.extend(self.patterns.iter().map(|p| ("pattern", p.clone())));
        q.extend(self.paths.iter().map(|p| ("path", p.clone())));
        q.extend(self.globs.iter().map(|g| ("glob", g.clone())));
        if let Some(n) = self.max_count {
            q.push(("max_count", n.to_string()));
        }
        if let Some(n) = self.max_total {
            q.push(("max_total", n.to_string()));
        }
        if let Some(c) = self.case {
            q.push(("case", c.as_str().to_string()));
        }
        if self.before > 0 {
            q.push(("before", self.before.to_string()));
        }
        if self.after > 0 {
            q.push(("after", self.after.to_string()));
        }
        q
    }

    /// Runs the search. Bad arguments are an InvalidArgument error naming the first one,
    /// before any request; a path missing from the image is NotFound.
    #[crate::maybe]
    pub async fn send(self) -> Result<GrepResult> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let uuid = self.image.resolved_uuid().await?.to_string();
        let client = self.image.client();
        let http = client.http();
        let mut call = http.call_with_query(Method::GET, &["inspect", &uuid, "grep"], self.query());
        let wait = self.timeout.unwrap_or_else(|| client.config().transport_timeout.max(MIN_WAIT));
        call.timeout = Timeout::Unary(wait);
        http.json(&call).await
    }
}
