//! An incremental Server-Sent Events parser for `GET /operations/{id}/events`.
//!
//! The clients feed it bytes as they arrive ([`SseParser::push`]) and take frames out
//! ([`SseParser::next_frame`]); it does no I/O. It follows the WHATWG event-stream rules with
//! the server's conventions:
//! - lines end with `\n`, `\r\n` or `\r`, even when a chunk boundary splits `\r\n`;
//! - `:` lines are comments (the server's `: keepalive`) and are skipped;
//! - `data:` lines of one frame are joined with `\n`; one space after the colon is dropped;
//! - a frame without any `data` line is dropped (nothing to dispatch);
//! - an `id` that is not an unsigned integer gives a frame whose `id` is `None` rather than an
//!   error, so one odd frame does not break a stream;
//! - a frame larger than the cap (4 MiB by default, like the official parser) yields one
//!   [`ErrorKind::Decode`](crate::ErrorKind::Decode) error; the parser then skips to the next
//!   blank line and carries on. Memory use stays bounded by the cap.
//!
//! Bytes are split into lines before decoding, and line terminators never occur inside a
//! multi-byte UTF-8 sequence, so a character split across chunks is decoded whole. Invalid
//! UTF-8 is replaced with U+FFFD, as the SSE standard requires.
//!
//! ```
//! use contree_core::sse::SseParser;
//! let mut parser = SseParser::new();
//! parser.push(b": keepalive\n\nid: 2\nevent: exit\nda");
//! assert!(parser.next_frame().is_none()); // the frame is not complete yet
//! parser.push(b"ta: {\"id\":2}\n\n");
//! let frame = parser.next_frame().unwrap().unwrap();
//! assert_eq!(frame.id, Some(2));
//! assert_eq!(frame.event.as_deref(), Some("exit"));
//! assert_eq!(frame.data, "{\"id\":2}");
//! ```

use std::collections::VecDeque;

use crate::{Error, Result};

/// The default cap on one frame's size, matching the official parser.
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseFrame {
    /// The frame's `id` field when it is an unsigned integer (the server's event id, used as
    /// `Last-Event-Id` on reconnect).
    pub id: Option<u64>,
    /// The `event` field (`exit`, `stdout`, …, or `sse_error`), if present and non-empty.
    pub event: Option<String>,
    /// The `data` lines joined with `\n`.
    pub data: String,
}

/// Incremental SSE parser. See the [module docs](self).
#[derive(Debug)]
pub struct SseParser {
    max_frame: usize,
    /// Bytes of the line being read (no terminator yet).
    line: Vec<u8>,
    /// Bytes of the current frame's completed lines, for the size cap.
    frame_bytes: usize,
    /// The last byte was `\r`: a `\n` right after it belongs to the same terminator.
    after_cr: bool,
    /// A leading byte-order mark may still have to be dropped.
    at_start: bool,
    /// After an oversized frame: drop everything up to the next blank line.
    skipping: bool,
    /// In skip mode: whether the current line has any byte (an empty line ends the skip).
    skip_line_nonempty: bool,
    id: Option<u64>,
    event: Option<String>,
    data: String,
    has_data: bool,
    ready: VecDeque<Result<SseFrame>>,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser with the default 4 MiB frame cap.
    pub fn new() -> Self {
        SseParser::with_max_frame(DEFAULT_MAX_FRAME)
    }

    /// A parser that rejects frames larger than `max_frame` bytes (field names, values and
    /// line terminators counted).
    pub fn with_max_frame(max_frame: usize) -> Self {
        SseParser {
            max_frame: max_frame.max(1),
            line: Vec::new(),
            frame_bytes: 0,
            after_cr: false,
            at_start: true,
            skipping: false,
            skip_line_nonempty: false,
            id: None,
            event: None,
            data: String::new(),
            has_data: false,
            ready: VecDeque::new(),
        }
    }

    /// Feeds the next bytes of the stream. Complete frames become available from
    /// [`SseParser::next_frame`].
    pub fn push(&mut self, mut chunk: &[u8]) {
        if self.at_start && !chunk.is_empty() {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            // The BOM may itself be split across chunks: keep bytes until it is decided.
            let seen = self.line.len();
            let take = chunk.len().min(BOM.len() - seen);
            if BOM[seen..seen + take] == chunk[..take] {
                self.line.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if self.line.len() < BOM.len() {
                    return;
                }
                self.line.clear();
            } else {
                // Not a BOM: the held bytes are ordinary content.
                let held = std::mem::take(&mut self.line);
                self.at_start = false;
                self.push(&held);
            }
            self.at_start = false;
        }
        while !chunk.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if chunk[0] == b'\n' {
                    chunk = &chunk[1..];
                    continue;
                }
            }
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    self.extend_line(&chunk[..end]);
                    self.after_cr = chunk[end] == b'\r';
                    self.end_line();
                    chunk = &chunk[end + 1..];
                }
                None => {
                    self.extend_line(chunk);
                    chunk = &[];
                }
            }
        }
    }

    /// The next complete frame, an error for an oversized frame, or `None` when more bytes
    /// are needed.
    pub fn next_frame(&mut self) -> Option<Result<SseFrame>> {
        self.ready.pop_front()
    }

    fn extend_line(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.skipping {
            self.skip_line_nonempty = true;
            return;
        }
        if self.frame_bytes + self.line.len() + bytes.len() > self.max_frame {
            self.ready.push_back(Err(Error::decode(
                "server-sent event frame too large",
                format!("an SSE frame exceeds {} bytes", self.max_frame),
            )));
            self.reset_frame();
            self.line = Vec::new();
            self.skipping = true;
            self.skip_line_nonempty = true;
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn end_line(&mut self) {
        if self.skipping {
            if !self.skip_line_nonempty {
                self.skipping = false;
            }
            self.skip_line_nonempty = false;
            return;
        }
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch();
            return;
        }
        // Comments are not stored, so only fields count towards the cap (with their
        // terminator); a long run of keepalives cannot trip it.
        if line[0] != b':' {
            self.frame_bytes += line.len() + 1;
        }
        self.process_line(&line);
        // Keep the allocation for the next line, as long as it is not a huge one.
        if line.capacity() <= 64 * 1024 {
            self.line = line;
            self.line.clear();
        }
    }

    fn process_line(&mut self, line: &[u8]) {
        if line[0] == b':' {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => {
                self.event = (!value.is_empty()).then(|| String::from_utf8_lossy(value).into_owned());
            }
            b"id" => {
                self.id = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse().ok());
            }
            // `retry` and unknown fields are ignored: reconnect timing is the client's policy.
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        if self.has_data {
            let frame = SseFrame { id: self.id.take(), event: self.event.take(), data: std::mem::take(&mut self.data) };
            self.ready.push_back(Ok(frame));
        }
        self.reset_frame();
    }

    fn reset_frame(&mut self) {
        self.id = None;
        self.event = None;
        self.data.clear();
        self.has_data = false;
        self.frame_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn frames(parser: &mut SseParser) -> Vec<Result<SseFrame>> {
        std::iter::from_fn(|| parser.next_frame()).collect()
    }

    fn ok_frames(input: &[u8]) -> Vec<SseFrame> {
        let mut p = SseParser::new();
        p.push(input);
        frames(&mut p).into_iter().map(|r| r.unwrap()).collect()
    }

    fn frame(id: Option<u64>, event: Option<&str>, data: &str) -> SseFrame {
        SseFrame { id, event: event.map(str::to_string), data: data.to_string() }
    }

    #[test]
    fn server_frames() {
        let stream = b": keepalive\n\nid: 2\nevent: exit\ndata: {\"id\":2}\n\n: stream ended with error\n\nevent: sse_error\ndata: upstream closed\n\n";
        assert_eq!(
            ok_frames(stream),
            vec![frame(Some(2), Some("exit"), "{\"id\":2}"), frame(None, Some("sse_error"), "upstream closed"),]
        );
    }

    #[test]
    fn every_line_ending() {
        let expected = vec![frame(Some(1), Some("e"), "a\nb"), frame(None, None, "c")];
        for nl in ["\n", "\r\n", "\r"] {
            let s = format!("id: 1{nl}event: e{nl}data: a{nl}data: b{nl}{nl}data: c{nl}{nl}");
            assert_eq!(ok_frames(s.as_bytes()), expected, "{nl:?}");
        }
        // Mixed endings in one stream.
        assert_eq!(
            ok_frames(b"data: x\r\ndata: y\r\rdata: z\n\r\n"),
            vec![frame(None, None, "x\ny"), frame(None, None, "z")]
        );
    }

    #[test]
    fn crlf_split_across_chunks_is_one_terminator() {
        let mut p = SseParser::new();
        p.push(b"data: a\r");
        p.push(b"\ndata: b\r");
        p.push(b"\n\r");
        p.push(b"\n");
        let got: Vec<_> = frames(&mut p).into_iter().map(Result::unwrap).collect();
        assert_eq!(got, vec![frame(None, None, "a\nb")]);
    }

    #[test]
    fn lone_cr_ends_a_line_without_waiting() {
        let mut p = SseParser::new();
        p.push(b"data: a\r\r");
        assert_eq!(p.next_frame().unwrap().unwrap(), frame(None, None, "a"));
    }

    #[test]
    fn space_after_colon_is_optional_and_only_one_is_dropped() {
        assert_eq!(ok_frames(b"data:x\n\n"), vec![frame(None, None, "x")]);
        assert_eq!(ok_frames(b"data:  x \n\n"), vec![frame(None, None, " x ")]);
        assert_eq!(ok_frames(b"data\n\n"), vec![frame(None, None, "")]);
        assert_eq!(ok_frames(b"data:\ndata:\n\n"), vec![frame(None, None, "\n")]);
        assert_eq!(ok_frames(b"data: a:b: c\n\n"), vec![frame(None, None, "a:b: c")]);
    }

    #[test]
    fn frames_without_data_are_not_dispatched() {
        assert_eq!(ok_frames(b"id: 5\nevent: x\n\n: comment\n\n\n\nretry: 10\n\n"), vec![]);
        // Fields of a data-less frame do not leak into the next frame.
        assert_eq!(ok_frames(b"id: 5\nevent: x\n\ndata: y\n\n"), vec![frame(None, None, "y")]);
    }

    #[test]
    fn bad_ids_give_none() {
        for id in ["abc", "-1", "1.5", "", " 1", "+1", "99999999999999999999999"] {
            let s = format!("id: {id}\ndata: d\n\n");
            assert_eq!(ok_frames(s.as_bytes()), vec![frame(None, None, "d")], "{id:?}");
        }
        assert_eq!(ok_frames(b"id:7\ndata: d\n\n"), vec![frame(Some(7), None, "d")]);
        // The last id line wins, even a bad one.
        assert_eq!(ok_frames(b"id: 7\nid: x\ndata: d\n\n"), vec![frame(None, None, "d")]);
    }

    #[test]
    fn unknown_fields_and_incomplete_frames_are_ignored() {
        let mut p = SseParser::new();
        p.push(b"foo: bar\ndata: a\n\ndata: pending");
        assert_eq!(p.next_frame().unwrap().unwrap(), frame(None, None, "a"));
        assert!(p.next_frame().is_none());
    }

    #[test]
    fn utf8_split_across_chunks() {
        let text = "data: héllo → ✓ 😀\n\n".as_bytes();
        for split in 0..text.len() {
            let mut p = SseParser::new();
            p.push(&text[..split]);
            p.push(&text[split..]);
            assert_eq!(p.next_frame().unwrap().unwrap().data, "héllo → ✓ 😀", "split at {split}");
        }
        // Every byte on its own.
        let mut p = SseParser::new();
        for b in text {
            p.push(std::slice::from_ref(b));
        }
        assert_eq!(p.next_frame().unwrap().unwrap().data, "héllo → ✓ 😀");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(ok_frames(b"data: a\xFFb\n\n"), vec![frame(None, None, "a\u{FFFD}b")]);
    }

    #[test]
    fn leading_bom_is_dropped_even_when_split() {
        assert_eq!(ok_frames(b"\xEF\xBB\xBFdata: x\n\n"), vec![frame(None, None, "x")]);
        let mut p = SseParser::new();
        p.push(b"\xEF");
        p.push(b"\xBB");
        p.push(b"\xBFdata: x\n\n");
        assert_eq!(p.next_frame().unwrap().unwrap(), frame(None, None, "x"));
        // A partial BOM followed by something else is kept as content (here: a field name).
        let mut p = SseParser::new();
        p.push(b"\xEF");
        p.push(b"data: x\n\n");
        assert!(p.next_frame().is_none(), "`\\u{{FFFD}}data` is an unknown field");
        p.push(b"data: y\n\n");
        assert_eq!(p.next_frame().unwrap().unwrap(), frame(None, None, "y"));
    }

    #[test]
    fn oversized_frame_errors_then_resyncs() {
        let mut p = SseParser::with_max_frame(32);
        p.push(b"data: ok\n\n");
        p.push(b"id: 1\ndata: ");
        p.push(&[b'x'; 100]);
        p.push(b"\ndata: more of the big frame\n\ndata: after\n\n");
        let got = frames(&mut p);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap(), &frame(None, None, "ok"));
        let err = got[1].as_ref().unwrap_err();
        assert!(err.is_decode(), "{err:?}");
        assert!(err.to_string().contains("32"), "{err}");
        assert_eq!(got[2].as_ref().unwrap(), &frame(None, None, "after"));
    }

    #[test]
    fn oversized_frame_made_of_many_lines() {
        let mut p = SseParser::with_max_frame(20);
        p.push(b"data: 12345\ndata: 12345\ndata: 12345\ndata: 12345\n\ndata: z\n\n");
        let got = frames(&mut p);
        assert!(got[0].as_ref().unwrap_err().is_decode());
        assert_eq!(got[1].as_ref().unwrap(), &frame(None, None, "z"));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn skipping_an_endless_line_keeps_memory_bounded() {
        let mut p = SseParser::with_max_frame(1024);
        let junk = vec![b'a'; 64 * 1024];
        for _ in 0..64 {
            p.push(&junk);
        }
        assert!(p.line.capacity() <= 1024, "buffered {}", p.line.capacity());
        assert_eq!(frames(&mut p).len(), 1, "one error per oversized frame");
        p.push(b"\n\ndata: back\n\n");
        assert_eq!(p.next_frame().unwrap().unwrap(), frame(None, None, "back"));
    }

    #[test]
    fn keepalives_do_not_count_towards_the_cap() {
        let mut p = SseParser::with_max_frame(20);
        for _ in 0..100 {
            p.push(b": keepalive\n");
        }
        p.push(b"data: x\n\n");
        assert_eq!(p.next_frame().unwrap().unwrap(), frame(None, None, "x"));
        assert!(p.next_frame().is_none());
    }

    #[test]
    fn frame_exactly_at_the_cap_is_accepted() {
        let input = b"data: 0123456789\n";
        let mut p = SseParser::with_max_frame(input.len());
        p.push(input);
        p.push(b"\n");
        assert_eq!(p.next_frame().unwrap().unwrap(), frame(None, None, "0123456789"));
    }

    /// A generated frame: id, event, data lines, and whether a keepalive precedes it.
    type GenFrame = (Option<u64>, Option<String>, Vec<String>, bool);

    /// Serializes generated frames with the given line ending.
    fn encode(frames: &[GenFrame], nl: &str) -> String {
        let mut s = String::new();
        for (id, event, data, comment) in frames {
            if *comment {
                s.push_str(&format!(": keepalive{nl}{nl}"));
            }
            if let Some(id) = id {
                s.push_str(&format!("id: {id}{nl}"));
            }
            if let Some(event) = event {
                s.push_str(&format!("event: {event}{nl}"));
            }
            for line in data {
                s.push_str(&format!("data: {line}{nl}"));
            }
            s.push_str(nl);
        }
        s
    }

    fn arb_frames() -> impl Strategy<Value = Vec<GenFrame>> {
        prop::collection::vec(
            (
                prop::option::of(any::<u64>()),
                prop::option::of("[a-z_]{1,10}"),
                prop::collection::vec("[^\r\n]{0,20}", 1..4),
                any::<bool>(),
            ),
            0..8,
        )
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_frames(
            input in arb_frames(),
            nl in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let bytes = encode(&input, nl).into_bytes();
            let whole: Vec<SseFrame> = {
                let mut p = SseParser::new();
                p.push(&bytes);
                frames(&mut p).into_iter().map(Result::unwrap).collect()
            };
            let expected: Vec<SseFrame> = input
                .iter()
                .map(|(id, event, data, _)| SseFrame { id: *id, event: event.clone(), data: data.join("\n") })
                .collect();
            prop_assert_eq!(&whole, &expected);

            let mut positions: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            positions.sort_unstable();
            let mut p = SseParser::new();
            let mut got = Vec::new();
            let mut start = 0;
            for pos in positions.into_iter().chain([bytes.len()]) {
                p.push(&bytes[start..pos]);
                start = pos;
                got.extend(frames(&mut p).into_iter().map(Result::unwrap));
            }
            prop_assert_eq!(got, whole);
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut p = SseParser::with_max_frame(50);
            for c in &chunks {
                p.push(c);
                while p.next_frame().is_some() {}
            }
        }
    }
}
