//! `GET /inspect/{uuid}/grep`: a ripgrep-like content search of an image, without running it.
//!
//! The spec's semantics: Rust regex syntax (linear-time matching), every `pattern` OR-ed,
//! symlinks never followed during the walk, hidden files searched, no ignore files honoured,
//! binary files (any NUL byte) skipped, `glob` filters with ripgrep's `-g` rules, results in
//! file order (each directory sorted by name, depth first), `before`/`after` context lines.
//!
//! Everything is read through [`RootFs`], so paths stay inside the image and whiteouts hide
//! what an upper layer deleted. The image is hostile; every resource a search may use is
//! capped ([`Limits`]). When a cap stops the search early, the answer says `truncated: true`
//! (the spec names `max_total` and the deadline; contree-local also counts the caps below):
//!
//! * the deadline ([`Limits::deadline`], 10 s), checked between reads;
//! * bytes read across all files ([`Limits::max_bytes`], 512 MiB);
//! * entries walked ([`Limits::max_entries`], 200,000) and names read from one directory;
//! * directory depth below a searched root ([`Limits::max_depth`], 128);
//! * the size of the answer ([`Limits::max_response_bytes`], 32 MiB of text).
//!
//! And, without `truncated`: a line is searched in its first [`Limits::line_scan`] bytes
//! (1 MiB; `line_bytes` still gives its real length), `line_text` and each submatch's `text`
//! are cut at 4096 bytes (at a character boundary), and at most [`MAX_SUBMATCHES`] submatches
//! are listed per line. Text that is not UTF-8 is shown with U+FFFD replacements; `start`,
//! `end` and `absolute_offset` always count the file's raw bytes.
//!
//! `glob` rules: `!` negates; the last glob that matches decides; when any glob is not
//! negated, a file no glob matches is skipped; a glob without `/` matches the name at any
//! depth, one with `/` matches the path from the image root (a leading `/` is optional); a
//! trailing `/` matches directories only; a directory is skipped only when a negated glob
//! is the last to match it. A `path` that names a file is searched whatever the globs say.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use contree_core::models::{GrepCase as Case, GrepMatch, GrepMatchType, GrepSubmatch};
use globset::{GlobBuilder, GlobMatcher};
use regex::bytes::{Regex, RegexBuilder};

use super::rootfs::{Node, RootFs};
use crate::api::error::ApiError;
use crate::api::params::Query;

/// At most this many `pattern`s and `path`s (the spec's caps).
const MAX_PATTERNS: usize = 16;
const MAX_PATHS: usize = 16;
/// Longest pattern, in characters (the spec's cap).
const MAX_PATTERN_CHARS: usize = 1024;
/// `glob`s are unbounded in the spec; these caps keep the filter cheap.
const MAX_GLOBS: usize = 64;
const MAX_GLOB_CHARS: usize = 1024;
/// Hard caps of `max_count`/`max_total` and of `before`/`after` (the spec's).
const MAX_MATCHES: u64 = 10_000;
const DEFAULT_MAX_TOTAL: u64 = 1000;
const MAX_CONTEXT: usize = 50;
/// `line_text` and submatch `text` are cut here (the spec's 4096 bytes).
pub(crate) const LINE_TEXT_CAP: usize = 4096;
/// Submatches listed per line: a pattern such as `x*` matches at every byte of a long line.
pub(crate) const MAX_SUBMATCHES: usize = 256;
/// Compiled program size allowed for the OR of the patterns (bytes).
const REGEX_SIZE_LIMIT: usize = 8 << 20;
/// Size of one read from a file.
const CHUNK: usize = 64 * 1024;

/// Resource caps of one search. See the module doc.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Wall-clock budget of the search.
    pub deadline: Duration,
    /// Bytes read from files, all files together.
    pub max_bytes: u64,
    /// Directory entries visited (files, directories and anything else).
    pub max_entries: usize,
    /// How deep below a searched directory the walk goes.
    pub max_depth: usize,
    /// Text (paths, lines, submatches) in the answer.
    pub max_response_bytes: usize,
    /// How much of one line is searched.
    pub line_scan: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(10),
            max_bytes: 512 << 20,
            max_entries: 200_000,
            max_depth: 128,
            max_response_bytes: 32 << 20,
            line_scan: 1 << 20,
        }
    }
}

/// A validated grep request.
#[derive(Debug, Clone)]
pub(crate) struct GrepRequest {
    pub patterns: Vec<String>,
    pub paths: Vec<String>,
    pub globs: Vec<String>,
    pub max_count: Option<u64>,
    pub max_total: u64,
    pub case: Case,
    pub before: usize,
    pub after: usize,
}

impl GrepRequest {
    /// Reads and checks the query; every problem is a 400 naming the parameter.
    pub fn from_query(q: &Query) -> Result<Self, ApiError> {
        let patterns: Vec<String> = q.all("pattern").map(str::to_owned).collect();
        if patterns.is_empty() {
            return Err(ApiError::bad_request("the `pattern` query parameter is required"));
        }
        if patterns.len() > MAX_PATTERNS {
            return Err(ApiError::bad_request(format!("`pattern` may be given at most {MAX_PATTERNS} times")));
        }
        for p in &patterns {
            if p.is_empty() {
                return Err(ApiError::bad_request("`pattern` must not be empty"));
            }
            if p.chars().count() > MAX_PATTERN_CHARS {
                return Err(ApiError::bad_request(format!("`pattern` is longer than {MAX_PATTERN_CHARS} characters")));
            }
        }
        let mut paths: Vec<String> = q.all("path").map(str::to_owned).collect();
        if paths.len() > MAX_PATHS {
            return Err(ApiError::bad_request(format!("`path` may be given at most {MAX_PATHS} times")));
        }
        if paths.iter().any(|p| p.is_empty()) {
            return Err(ApiError::bad_request("`path` must not be empty"));
        }
        if paths.is_empty() {
            paths.push("/".to_owned());
        }
        let globs: Vec<String> = q.all("glob").map(str::to_owned).collect();
        if globs.len() > MAX_GLOBS {
            return Err(ApiError::bad_request(format!("`glob` may be given at most {MAX_GLOBS} times")));
        }
        let max_count = bounded(q, "max_count", 1, MAX_MATCHES)?;
        let max_total = bounded(q, "max_total", 1, MAX_MATCHES)?.unwrap_or(DEFAULT_MAX_TOTAL);
        let before = bounded(q, "before", 0, MAX_CONTEXT as u64)?.unwrap_or(0) as usize;
        let after = bounded(q, "after", 0, MAX_CONTEXT as u64)?.unwrap_or(0) as usize;
        let case = match q.get("case").map(str::trim) {
            None | Some("") => Case::Sensitive,
            Some(raw) => Case::from_wire(raw).ok_or_else(|| {
                ApiError::bad_request(format!("`case` must be `sensitive`, `insensitive` or `smart`, got `{raw}`"))
            })?,
        };
        Ok(GrepRequest { patterns, paths, globs, max_count, max_total, case, before, after })
    }
}

/// An integer parameter within `min..=max`, or a 400 naming it.
fn bounded(q: &Query, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
    match q.int(name)? {
        None => Ok(None),
        Some(n) if n >= min as i64 && n <= max as i64 => Ok(Some(n as u64)),
        Some(n) => Err(ApiError::bad_request(format!("`{name}` must be between {min} and {max}, got {n}"))),
    }
}

/// The OR of the patterns, compiled once. A pattern that does not compile is a 400 naming it.
pub(crate) fn build_matcher(patterns: &[String], case: Case) -> Result<Regex, ApiError> {
    let insensitive = match case {
        Case::Insensitive => true,
        Case::Smart => {
            let (literal, upper) =
                patterns.iter().map(|p| literal_case(p)).fold((false, false), |a, b| (a.0 | b.0, a.1 | b.1));
            literal && !upper
        }
        // Sensitive, and anything a newer spec adds until it is implemented here.
        _ => false,
    };
    let compile = |source: &str| {
        RegexBuilder::new(source)
            .case_insensitive(insensitive)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
    };
    // Each alone first: the error then names the pattern, and a pattern that compiles alone
    // is balanced, so it cannot change the meaning of its neighbours in the alternation.
    for p in patterns {
        compile(p).map_err(|e| ApiError::bad_request(format!("`pattern` `{p}` is not a valid regex: {e}")))?;
    }
    let joined = if patterns.len() == 1 {
        patterns[0].clone()
    } else {
        patterns.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|")
    };
    compile(&joined).map_err(|e| ApiError::bad_request(format!("the patterns together are too large: {e}")))
}

/// Whether `pattern` has literal characters, and whether one is upper case: ripgrep's
/// smart-case analysis (escapes such as `\W` and classes such as `\p{Lu}` are not literals).
fn literal_case(pattern: &str) -> (bool, bool) {
    use regex_syntax::ast::{self, Ast, ClassSetItem, Visitor};

    #[derive(Default)]
    struct Analysis {
        literal: bool,
        upper: bool,
    }
    impl Analysis {
        fn saw(&mut self, c: char) {
            self.literal = true;
            self.upper |= c.is_uppercase();
        }
    }
    impl Visitor for Analysis {
        type Output = (bool, bool);
        type Err = ();
        fn finish(self) -> Result<(bool, bool), ()> {
            Ok((self.literal, self.upper))
        }
        fn visit_pre(&mut self, ast: &Ast) -> Result<(), ()> {
            if let Ast::Literal(l) = ast {
                self.saw(l.c);
            }
            Ok(())
        }
        fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), ()> {
            match item {
                ClassSetItem::Literal(l) => self.saw(l.c),
                ClassSetItem::Range(r) => {
                    self.saw(r.start.c);
                    self.saw(r.end.c);
                }
                _ => {}
            }
            Ok(())
        }
    }
    match ast::parse::Parser::new().parse(pattern) {
        Ok(parsed) => ast::visit(&parsed, Analysis::default()).unwrap_or((false, false)),
        Err(_) => (false, false),
    }
}

/// The `glob` filter. See the module doc for the rules.
#[derive(Debug, Default)]
pub(crate) struct Globs {
    rules: Vec<GlobRule>,
    any_include: bool,
}

#[derive(Debug)]
struct GlobRule {
    matcher: GlobMatcher,
    negated: bool,
    dirs_only: bool,
    /// No `/` in the glob: it matches the entry's name, at any depth.
    name_only: bool,
}

impl Globs {
    pub fn parse(globs: &[String]) -> Result<Self, ApiError> {
        let mut out = Globs::default();
        for raw in globs {
            if raw.chars().count() > MAX_GLOB_CHARS {
                return Err(ApiError::bad_request(format!("`glob` is longer than {MAX_GLOB_CHARS} characters")));
            }
            let (negated, rest) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, raw.as_str()),
            };
            let dirs_only = rest.ends_with('/');
            let body = rest.trim_end_matches('/');
            let name_only = !body.contains('/');
            let body = body.strip_prefix('/').unwrap_or(body);
            if body.is_empty() {
                return Err(ApiError::bad_request(format!("`glob` `{raw}` matches nothing")));
            }
            let glob = GlobBuilder::new(body)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| ApiError::bad_request(format!("`glob` `{raw}` is not a valid glob: {e}")))?;
            out.any_include |= !negated;
            out.rules.push(GlobRule { matcher: glob.compile_matcher(), negated, dirs_only, name_only });
        }
        Ok(out)
    }

    /// The last matching rule's verdict: `Some(true)` include, `Some(false)` exclude.
    fn verdict(&self, node: &Node, is_dir: bool) -> Option<bool> {
        if self.rules.is_empty() {
            return None;
        }
        let rel: PathBuf = node.path.iter().collect();
        for rule in self.rules.iter().rev() {
            if rule.dirs_only && !is_dir {
                continue;
            }
            let hit = if rule.name_only { rule.matcher.is_match(node.name()) } else { rule.matcher.is_match(&rel) };
            if hit {
                return Some(!rule.negated);
            }
        }
        None
    }

    fn wants_file(&self, node: &Node) -> bool {
        self.verdict(node, false).unwrap_or(!self.any_include)
    }

    fn enters_dir(&self, node: &Node) -> bool {
        self.verdict(node, true) != Some(false)
    }
}

/// What the search produced so far. Shared with the request handler, which answers with it
/// even if the search overruns its deadline (a single regex call cannot be interrupted).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub rows: Mutex<Vec<GrepMatch>>,
    pub truncated: AtomicBool,
    /// Set by the handler when it stopped waiting: the search stops at its next check.
    pub cancel: AtomicBool,
}

/// One search over some roots of an image.
pub(crate) struct Search<'a> {
    fs: &'a RootFs,
    regex: Regex,
    globs: Globs,
    req: &'a GrepRequest,
    limits: &'a Limits,
    progress: &'a Progress,
    deadline: Instant,
    bytes_left: u64,
    entries: usize,
    total: u64,
    response_bytes: usize,
}

/// Whether the walk goes on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Go,
    /// A cap was reached: stop the whole search (`truncated` is already set).
    Stop,
}

impl<'a> Search<'a> {
    pub fn new(
        fs: &'a RootFs,
        req: &'a GrepRequest,
        limits: &'a Limits,
        progress: &'a Progress,
    ) -> Result<Self, ApiError> {
        let regex = build_matcher(&req.patterns, req.case)?;
        let globs = Globs::parse(&req.globs)?;
        Ok(Search {
            fs,
            regex,
            globs,
            req,
            limits,
            progress,
            deadline: Instant::now() + limits.deadline,
            bytes_left: limits.max_bytes,
            entries: 0,
            total: 0,
            response_bytes: 0,
        })
    }

    /// Searches `roots` in order (already resolved inside the image).
    pub fn run(&mut self, roots: &[Node]) {
        for root in roots {
            let flow = if root.is_dir() {
                self.walk(root)
            } else if root.is_file() {
                self.search_file(root)
            } else {
                Flow::Go
            };
            if flow == Flow::Stop {
                return;
            }
        }
    }

    fn truncate(&self) -> Flow {
        self.progress.truncated.store(true, Ordering::Relaxed);
        Flow::Stop
    }

    fn out_of_time(&self) -> bool {
        Instant::now() >= self.deadline || self.progress.cancel.load(Ordering::Relaxed)
    }

    /// Depth first, each directory sorted by name, without recursion (trees may be deep).
    fn walk(&mut self, root: &Node) -> Flow {
        // Each frame: a directory's entries still to visit (reversed), and its depth.
        let mut stack: Vec<(Vec<Node>, usize)> = Vec::new();
        match self.children(root) {
            Ok(children) => stack.push((children, 1)),
            Err(flow) => return flow,
        }
        while let Some((pending, depth)) = stack.last_mut() {
            let depth = *depth;
            let Some(node) = pending.pop() else {
                stack.pop();
                continue;
            };
            if self.out_of_time() {
                return self.truncate();
            }
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return self.truncate();
            }
            if node.is_dir() {
                if !self.globs.enters_dir(&node) {
                    continue;
                }
                if depth >= self.limits.max_depth {
                    // Something is left unsearched: say so, and go on with the rest.
                    self.progress.truncated.store(true, Ordering::Relaxed);
                    continue;
                }
                match self.children(&node) {
                    Ok(children) => stack.push((children, depth + 1)),
                    Err(Flow::Stop) => return Flow::Stop,
                    Err(Flow::Go) => {}
                }
            } else if node.is_file() && self.globs.wants_file(&node) && self.search_file(&node) == Flow::Stop {
                return Flow::Stop;
            }
            // Symlinks are never followed; devices, FIFOs, sockets and whiteouts hold no text.
        }
        Flow::Go
    }

    /// A directory's entries, reversed for popping in name order. An unreadable directory is
    /// skipped (like ripgrep, which reports it and goes on).
    fn children(&mut self, dir: &Node) -> Result<Vec<Node>, Flow> {
        let budget = self.limits.max_entries.saturating_sub(self.entries).saturating_add(1);
        match self.fs.list_bounded(dir, budget) {
            Ok((mut nodes, complete)) => {
                if !complete {
                    self.progress.truncated.store(true, Ordering::Relaxed);
                }
                nodes.reverse();
                Ok(nodes)
            }
            Err(e) => {
                tracing::debug!(dir = %dir.image_path(), error = ?e, "grep skips an unreadable directory");
                Err(Flow::Go)
            }
        }
    }

    /// Searches one regular file; its rows are kept only if it turns out not to be binary.
    fn search_file(&mut self, node: &Node) -> Flow {
        if node.meta.len() == 0 {
            return Flow::Go;
        }
        let file = match self.fs.open_file(node) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(path = %node.image_path(), error = %e, "grep skips an unreadable file");
                return Flow::Go;
            }
        };
        // The walk saw a regular file; make sure that is what was opened.
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Flow::Go;
        }
        let path = node.image_path();
        let mut reader = LineReader::new(file);
        let mut line = Vec::new();
        let mut rows: Vec<GrepMatch> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut before: VecDeque<GrepMatch> = VecDeque::with_capacity(self.req.before + 1);
        let mut after_left = 0usize;
        let mut matches = 0u64;
        let mut line_number = 0u64;
        // Set once no more matches are wanted from this file; trailing context may follow.
        let mut done: Option<Flow> = None;
        let flow = loop {
            let step = reader.next_line(&mut line, self.limits.line_scan, &mut self.bytes_left, || {
                Instant::now() >= self.deadline || self.progress.cancel.load(Ordering::Relaxed)
            });
            let (offset, real_len) = match step {
                Ok(Step::Line { offset, len }) => (offset, len),
                Ok(Step::Eof) => break done.unwrap_or(Flow::Go),
                // Binary: nothing of this file is reported, whatever matched before the NUL.
                Ok(Step::Binary) => return done.unwrap_or(Flow::Go),
                Ok(Step::Stop) => break self.truncate(),
                Err(e) => {
                    tracing::debug!(path = %path, error = %e, "grep stops reading a file");
                    break done.unwrap_or(Flow::Go);
                }
            };
            line_number += 1;
            let row = |kind, submatches| GrepMatch {
                path: path.clone(),
                line_number,
                absolute_offset: offset,
                line_text: capped_text(&line, LINE_TEXT_CAP),
                line_bytes: real_len,
                submatches,
                match_type: kind,
            };
            if done.is_some() {
                if after_left == 0 {
                    break done.unwrap_or(Flow::Go);
                }
                after_left -= 1;
                let r = row(GrepMatchType::Context, Vec::new());
                pending_bytes += row_bytes(&r);
                rows.push(r);
                continue;
            }
            // The line without its terminator (a cut line has none in what was kept).
            let hay = if line.len() as u64 == real_len && line.last() == Some(&b'\n') {
                &line[..line.len() - 1]
            } else {
                &line[..]
            };
            let submatches: Vec<GrepSubmatch> = self
                .regex
                .find_iter(hay)
                .take(MAX_SUBMATCHES)
                .map(|m| GrepSubmatch {
                    text: capped_text(m.as_bytes(), LINE_TEXT_CAP),
                    start: m.start() as u64,
                    end: m.end() as u64,
                })
                .collect();
            if !submatches.is_empty() {
                for r in before.drain(..) {
                    pending_bytes += row_bytes(&r);
                    rows.push(r);
                }
                let r = row(GrepMatchType::Match, submatches);
                pending_bytes += row_bytes(&r);
                rows.push(r);
                matches += 1;
                after_left = self.req.after;
                if self.total + matches >= self.req.max_total {
                    done = Some(self.truncate());
                } else if self.req.max_count.is_some_and(|m| matches >= m) {
                    done = Some(Flow::Go);
                }
            } else if after_left > 0 {
                after_left -= 1;
                let r = row(GrepMatchType::Context, Vec::new());
                pending_bytes += row_bytes(&r);
                rows.push(r);
            } else if self.req.before > 0 {
                before.push_back(row(GrepMatchType::Context, Vec::new()));
                if before.len() > self.req.before {
                    before.pop_front();
                }
            }
            if self.response_bytes + pending_bytes > self.limits.max_response_bytes {
                break self.truncate();
            }
            if done.is_some() && after_left == 0 {
                break done.unwrap_or(Flow::Go);
            }
        };
        self.total += matches;
        self.response_bytes += pending_bytes;
        if !rows.is_empty() {
            self.progress.rows.lock().unwrap_or_else(|p| p.into_inner()).extend(rows);
        }
        flow
    }
}

/// What an answer row costs against [`Limits::max_response_bytes`] (its text plus a bit for
/// the JSON around it).
fn row_bytes(r: &GrepMatch) -> usize {
    64 + r.path.len() + r.line_text.len() + r.submatches.iter().map(|s| 32 + s.text.len()).sum::<usize>()
}

/// The first `cap` bytes of `bytes` as text, cut before a character that would not fit;
/// invalid UTF-8 becomes U+FFFD.
pub(crate) fn capped_text(bytes: &[u8], cap: usize) -> String {
    let mut end = bytes.len().min(cap);
    if end < bytes.len() {
        // Back off over continuation bytes so a multi-byte character is not split.
        let floor = end.saturating_sub(3);
        while end > floor && (bytes[end] & 0xC0) == 0x80 {
            end -= 1;
        }
    }
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The outcome of reading one line.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// A line: where it starts in the file and its real length (terminator included).
    Line {
        offset: u64,
        len: u64,
    },
    Eof,
    /// A NUL byte was read: the file is binary.
    Binary,
    /// The byte budget or the deadline ran out.
    Stop,
}

/// Reads lines of bounded size from a file, chunk by chunk, checking every chunk for NUL.
struct LineReader<R> {
    src: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    offset: u64,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    fn new(src: R) -> Self {
        LineReader { src, buf: vec![0u8; CHUNK].into_boxed_slice(), pos: 0, end: 0, offset: 0, eof: false }
    }

    /// Reads the next line into `line`, keeping at most `scan` bytes of it (the rest is read
    /// and counted, not kept). Every refill spends `bytes_left` and asks `stop` first.
    fn next_line(
        &mut self,
        line: &mut Vec<u8>,
        scan: usize,
        bytes_left: &mut u64,
        stop: impl Fn() -> bool,
    ) -> io::Result<Step> {
        line.clear();
        let mut len = 0u64;
        loop {
            if self.pos == self.end {
                if self.eof {
                    break;
                }
                if stop() || *bytes_left == 0 {
                    return Ok(Step::Stop);
                }
                let want = (*bytes_left).min(self.buf.len() as u64) as usize;
                let n = loop {
                    match self.src.read(&mut self.buf[..want]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                };
                *bytes_left -= n as u64;
                if n == 0 {
                    self.eof = true;
                    break;
                }
                if memchr::memchr(0, &self.buf[..n]).is_some() {
                    return Ok(Step::Binary);
                }
                self.pos = 0;
                self.end = n;
            }
            let avail = &self.buf[self.pos..self.end];
            let (take, complete) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            let keep = take.min(scan.saturating_sub(line.len()));
            line.extend_from_slice(&avail[..keep]);
            self.pos += take;
            len += take as u64;
            if complete {
                break;
            }
        }
        if len == 0 {
            return Ok(Step::Eof);
        }
        let offset = self.offset;
        self.offset += len;
        Ok(Step::Line { offset, len })
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::super::rootfs::Layer;
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse_for_tests(s)
    }

    fn req(s: &str) -> GrepRequest {
        GrepRequest::from_query(&q(s)).unwrap()
    }

    fn write(p: &Path, content: impl AsRef<[u8]>) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn whiteout(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path; a 0:0 char device is overlayfs' whiteout.
        let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) };
        assert_eq!(r, 0, "mknod needs root: {}", io::Error::last_os_error());
    }

    /// Runs a search of `query` over `fs` and returns (rows, truncated).
    fn grep_with(fs: &RootFs, query: &str, limits: &Limits) -> (Vec<GrepMatch>, bool) {
        let r = req(query);
        let roots: Vec<Node> = r.paths.iter().map(|p| fs.resolve(p, true).unwrap()).collect();
        let progress = Progress::default();
        Search::new(fs, &r, limits, &progress).unwrap().run(&roots);
        (progress.rows.into_inner().unwrap(), progress.truncated.load(Ordering::Relaxed))
    }

    fn grep(fs: &RootFs, query: &str) -> (Vec<GrepMatch>, bool) {
        grep_with(fs, query, &Limits::default())
    }

    fn found(rows: &[GrepMatch]) -> Vec<(String, u64, GrepMatchType)> {
        rows.iter().map(|r| (r.path.clone(), r.line_number, r.match_type.clone())).collect()
    }

    fn paths(rows: &[GrepMatch]) -> Vec<String> {
        let mut p: Vec<String> = rows.iter().map(|r| r.path.clone()).collect();
        p.dedup();
        p
    }

    /// A base layer and an upper layer that deletes, replaces and adds files.
    fn layered() -> (tempfile::TempDir, RootFs) {
        let t = tempfile::tempdir().unwrap();
        let (top, base) = (t.path().join("top"), t.path().join("base"));
        write(&base.join("etc/app.conf"), "name = app\nneedle = 1\n");
        write(&base.join("etc/deleted.conf"), "needle in a deleted file\n");
        write(&base.join("etc/replaced.conf"), "needle before\n");
        write(&base.join("srv/.hidden"), "needle hidden\n");
        write(&base.join("srv/notes.md"), "needle in markdown\n");
        write(&top.join("etc/replaced.conf"), "nothing here\n");
        whiteout(&top.join("etc/deleted.conf"));
        write(&top.join("srv/new.txt"), "a needle\nNEEDLE upper\n");
        let fs = RootFs::new(vec![Layer::at_root(top), Layer::at_root(base)]);
        (t, fs)
    }

    #[test]
    fn whiteouts_and_replaced_files_hide_lower_content() {
        let (_t, fs) = layered();
        let (rows, truncated) = grep(&fs, "pattern=needle");
        assert!(!truncated);
        assert_eq!(paths(&rows), ["/etc/app.conf", "/srv/.hidden", "/srv/new.txt", "/srv/notes.md"]);
        let app = &rows[0];
        assert_eq!((app.line_number, app.absolute_offset, app.line_bytes), (2, 11, 11));
        assert_eq!(app.line_text, "needle = 1\n");
        assert_eq!(app.submatches, [GrepSubmatch { text: "needle".into(), start: 0, end: 6 }]);
        // Naming the deleted file is a 404 at resolution, like every inspect route.
        assert!(fs.resolve("/etc/deleted.conf", true).is_err());
    }

    #[test]
    fn case_modes() {
        let (_t, fs) = layered();
        let lines = |query: &str| -> Vec<String> {
            grep(&fs, &format!("{query}&path=/srv/new.txt")).0.iter().map(|r| r.line_text.clone()).collect()
        };
        assert_eq!(lines("pattern=needle"), ["a needle\n"]);
        assert_eq!(lines("pattern=needle&case=insensitive"), ["a needle\n", "NEEDLE upper\n"]);
        assert_eq!(lines("pattern=needle&case=smart"), ["a needle\n", "NEEDLE upper\n"]);
        assert_eq!(lines("pattern=NEEDLE&case=smart"), ["NEEDLE upper\n"]);
        // Escapes are not literals: `\W` keeps smart case insensitive.
        assert_eq!(lines("pattern=needle%5CW&case=smart"), ["NEEDLE upper\n"]);
        assert_eq!(literal_case(r"\Wab"), (true, false));
        assert_eq!(literal_case(r"[A-Z]"), (true, true));
        assert_eq!(literal_case(r"\p{Lu}"), (false, false));
    }

    #[test]
    fn patterns_are_ored_and_paths_concatenate_in_order() {
        let (_t, fs) = layered();
        let (rows, _) = grep(&fs, "pattern=%5Ename&pattern=upper&path=/srv&path=/etc&case=sensitive");
        assert_eq!(
            found(&rows),
            [
                (String::from("/srv/new.txt"), 2, GrepMatchType::Match),
                (String::from("/etc/app.conf"), 1, GrepMatchType::Match)
            ]
        );
    }

    #[test]
    fn globs_follow_ripgrep_rules() {
        let (_t, fs) = layered();
        let p = |query: &str| paths(&grep(&fs, &format!("pattern=needle&{query}")).0);
        assert_eq!(p("glob=*.md"), ["/srv/notes.md"]);
        assert_eq!(p("glob=!*.md&glob=!*.conf"), ["/srv/.hidden", "/srv/new.txt"]);
        // The last matching glob wins.
        assert_eq!(p("glob=*.md&glob=!notes.*"), Vec::<String>::new());
        assert_eq!(p("glob=!notes.*&glob=*.md"), ["/srv/notes.md"]);
        // With a slash: the path from the image root.
        assert_eq!(p("glob=/srv/*.txt"), ["/srv/new.txt"]);
        assert_eq!(p("glob=srv/**"), ["/srv/.hidden", "/srv/new.txt", "/srv/notes.md"]);
        // A negated directory glob prunes the directory.
        assert_eq!(p("glob=!srv/"), ["/etc/app.conf"]);
        // A file named explicitly is searched whatever the globs say.
        assert_eq!(p("glob=*.md&path=/etc/app.conf"), ["/etc/app.conf"]);
        assert!(Globs::parse(&["!".into()]).is_err());
        assert!(Globs::parse(&["a[".into()]).is_err());
    }

    #[test]
    fn context_lines_surround_matches_without_repeats() {
        let t = tempfile::tempdir().unwrap();
        let text: String =
            (1..=12).map(|i| if i == 5 || i == 7 { format!("hit {i}\n") } else { format!("l{i}\n") }).collect();
        write(&t.path().join("f"), &text);
        let fs = RootFs::new(vec![Layer::at_root(t.path().to_path_buf())]);
        let (rows, _) = grep(&fs, "pattern=hit&before=2&after=2");
        let got: Vec<(u64, GrepMatchType, usize)> =
            rows.iter().map(|r| (r.line_number, r.match_type.clone(), r.submatches.len())).collect();
        use GrepMatchType::{Context as C, Match as M};
        assert_eq!(got, [(3, C, 0), (4, C, 0), (5, M, 1), (6, C, 0), (7, M, 1), (8, C, 0), (9, C, 0)]);
        assert_eq!(rows[0].line_text, "l3\n");
        assert_eq!(rows[0].absolute_offset, 6);
        // max_count stops matching; trailing context still comes.
        let (rows, truncated) = grep(&fs, "pattern=hit&max_count=1&after=1");
        assert_eq!(rows.iter().map(|r| r.line_number).collect::<Vec<_>>(), [5, 6]);
        assert!(!truncated, "max_count is per file, not a truncation");
        // max_total stops the search and says so.
        let (rows, truncated) = grep(&fs, "pattern=hit&max_total=1");
        assert_eq!(rows.len(), 1);
        assert!(truncated);
    }

    #[test]
    fn binary_files_are_skipped_even_after_a_match() {
        let t = tempfile::tempdir().unwrap();
        let mut late_nul = b"needle first\n".to_vec();
        late_nul.extend(std::iter::repeat_n(b'x', 200_000));
        late_nul.push(0);
        write(&t.path().join("a-late-nul"), &late_nul);
        write(&t.path().join("b-elf"), b"\x7fELF\0\0needle\n");
        write(&t.path().join("c-text"), b"needle\n");
        let fs = RootFs::new(vec![Layer::at_root(t.path().to_path_buf())]);
        let (rows, truncated) = grep(&fs, "pattern=needle");
        assert_eq!(paths(&rows), ["/c-text"]);
        assert!(!truncated);
    }

    #[test]
    fn long_lines_are_capped_but_counted() {
        let t = tempfile::tempdir().unwrap();
        let mut long = "é".repeat(5000).into_bytes(); // 10,000 bytes, 2 per char
        long.extend_from_slice(b" needle\nnext needle\n");
        let mut too_long = vec![b'a'; 3 << 20];
        too_long.extend_from_slice(b"needle\nneedle after\n");
        write(&t.path().join("a"), &long);
        write(&t.path().join("b"), &too_long);
        let fs = RootFs::new(vec![Layer::at_root(t.path().to_path_buf())]);
        let (rows, _) = grep(&fs, "pattern=needle");
        let first = &rows[0];
        assert_eq!(first.line_bytes, 10_008);
        assert_eq!(first.line_text.len(), LINE_TEXT_CAP, "cut at a character boundary");
        assert!(first.line_text.chars().all(|c| c == 'é'));
        assert_eq!(first.submatches[0].start, 10_001);
        assert_eq!((rows[1].line_number, rows[1].absolute_offset), (2, 10_008));
        // Past the scan cap a line is not searched, but offsets and lengths stay right.
        let b: Vec<&GrepMatch> = rows.iter().filter(|r| r.path == "/b").collect();
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].line_number, b[0].absolute_offset), (2, (3 << 20) + 7));
    }

    #[test]
    fn symlinks_are_not_followed_and_loops_are_harmless() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("layer");
        write(&root.join("real/file"), "needle\n");
        std::os::unix::fs::symlink("/", root.join("rootlink")).unwrap();
        std::os::unix::fs::symlink("loop2", root.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", root.join("loop2")).unwrap();
        std::os::unix::fs::symlink("real/file", root.join("filelink")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("host")).unwrap();
        // A FIFO would block a reader forever.
        let fifo = CString::new(root.join("real/fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let fs = RootFs::new(vec![Layer::at_root(root)]);
        let (rows, truncated) = grep(&fs, "pattern=needle|root");
        assert_eq!(paths(&rows), ["/real/file"]);
        assert!(!truncated);
        // A root given as a symlink is resolved inside the image.
        let (rows, _) = grep(&fs, "pattern=needle&path=/rootlink/real");
        assert_eq!(paths(&rows), ["/real/file"]);
    }

    #[test]
    fn deep_trees_wide_dirs_and_big_files_hit_caps_not_the_server() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("layer");
        let mut deep = root.join("deep");
        for _ in 0..40 {
            deep.push("d");
        }
        write(&deep.join("bottom"), "needle\n");
        write(&root.join("shallow"), "needle\n");
        let fs = RootFs::new(vec![Layer::at_root(root.clone())]);
        let limits = Limits { max_depth: 10, ..Limits::default() };
        let (rows, truncated) = grep_with(&fs, "pattern=needle", &limits);
        assert_eq!(paths(&rows), ["/shallow"]);
        assert!(truncated, "the part below the depth cap was not searched");
        let (rows, truncated) = grep(&fs, "pattern=needle");
        assert_eq!(rows.len(), 2);
        assert!(!truncated);

        let wide = t.path().join("wide");
        for i in 0..50 {
            write(&wide.join(format!("f{i:02}")), "needle\n");
        }
        let fs = RootFs::new(vec![Layer::at_root(wide)]);
        let (rows, truncated) = grep_with(&fs, "pattern=needle", &Limits { max_entries: 10, ..Limits::default() });
        assert!(rows.len() <= 10 && truncated, "{}", rows.len());

        // A big file: the byte budget stops the read.
        let big = t.path().join("big");
        write(&big.join("f"), "x\n".repeat(1 << 20));
        let fs = RootFs::new(vec![Layer::at_root(big)]);
        let (rows, truncated) = grep_with(&fs, "pattern=needle", &Limits { max_bytes: 100_000, ..Limits::default() });
        assert!(rows.is_empty() && truncated);
        // The deadline too.
        let (_, truncated) =
            grep_with(&fs, "pattern=needle", &Limits { deadline: Duration::ZERO, ..Limits::default() });
        assert!(truncated);
        // And the answer's size.
        let (rows, truncated) =
            grep_with(&fs, "pattern=x&max_total=10000", &Limits { max_response_bytes: 10_000, ..Limits::default() });
        assert!(truncated);
        assert!(rows.len() < 200, "{}", rows.len());
    }

    #[test]
    fn bad_requests_name_the_parameter() {
        let cases = [
            ("", "pattern"),
            ("pattern=", "pattern"),
            ("pattern=a&max_total=0", "max_total"),
            ("pattern=a&max_total=10001", "max_total"),
            ("pattern=a&max_count=x", "max_count"),
            ("pattern=a&before=51", "before"),
            ("pattern=a&after=-1", "after"),
            ("pattern=a&case=upper", "case"),
            ("pattern=a&path=", "path"),
        ];
        for (query, name) in cases {
            let e = GrepRequest::from_query(&q(query)).unwrap_err();
            assert_eq!(e.status(), 400, "{query}");
            assert!(e.message().contains(&format!("`{name}`")), "{query}: {}", e.message());
        }
        let many: String = (0..17).map(|i| format!("pattern=a{i}&")).collect();
        assert!(GrepRequest::from_query(&q(&many)).is_err());
        let long = format!("pattern={}", "a".repeat(1025));
        assert!(GrepRequest::from_query(&q(&long)).is_err());
        let e = build_matcher(&["a(".into()], Case::Sensitive).unwrap_err();
        assert!(e.message().contains("`pattern` `a(`"), "{}", e.message());
        // A pattern that compiles to a huge program is refused, not built.
        let e = build_matcher(&[r"\w{1000}\w{1000}\w{1000}".into()], Case::Sensitive).unwrap_err();
        assert_eq!(e.status(), 400);
        let r = req("pattern=a");
        assert_eq!((r.paths.clone(), r.max_total, r.case), (vec!["/".to_owned()], 1000, Case::Sensitive));
    }

    #[test]
    fn text_is_cut_at_character_boundaries() {
        assert_eq!(capped_text("aé".as_bytes(), 2), "a");
        assert_eq!(capped_text("aé".as_bytes(), 3), "aé");
        assert_eq!(capped_text(b"ab\xffcd", 10), "ab\u{fffd}cd");
    }
}
