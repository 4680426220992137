//! Offset/limit paging, shared by every listing (images, operations).
//!
//! The server pages with `limit` and `offset`; a page shorter than asked for is the last.
//! A caller's overall `limit` caps the total, and no page is requested past it.

/// Where a listing stands: what to ask for next, and when to stop.
pub(crate) struct Paging {
    query: Vec<(&'static str, String)>,
    /// Items still wanted (`None`: all of them).
    remaining: Option<usize>,
    page_size: usize,
    offset: usize,
    done: bool,
}

impl Paging {
    /// A listing with the filters in `query`, at most `limit` items, `page_size` per request.
    pub(crate) fn new(query: Vec<(&'static str, String)>, limit: Option<usize>, page_size: usize) -> Self {
        Paging { query, remaining: limit, page_size, offset: 0, done: limit == Some(0) }
    }

    /// The query of the next request and how many items of its page to keep, or `None` once
    /// the listing is complete.
    pub(crate) fn next_request(&self) -> Option<(Vec<(&'static str, String)>, usize)> {
        if self.done {
            return None;
        }
        let want = self.remaining.map_or(self.page_size, |r| r.min(self.page_size));
        let mut query = self.query.clone();
        query.push(("limit", want.to_string()));
        query.push(("offset", self.offset.to_string()));
        Some((query, want))
    }

    /// Records that the request for `want` items returned `got`.
    pub(crate) fn advance(&mut self, got: usize, want: usize) {
        self.offset += got;
        if let Some(r) = &mut self.remaining {
            *r = r.saturating_sub(got.min(want));
        }
        if got < want || self.remaining == Some(0) || got == 0 {
            self.done = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_until_a_short_page_or_the_limit() {
        let mut p = Paging::new(vec![("kind", "x".into())], Some(5), 2);
        let (q, want) = p.next_request().unwrap();
        assert_eq!(want, 2);
        assert!(q.contains(&("offset", "0".into())) && q.contains(&("kind", "x".into())));
        p.advance(2, want);
        let (q, want) = p.next_request().unwrap();
        assert!(q.contains(&("offset", "2".into())));
        p.advance(2, want);
        // One item left of the limit: ask for one only.
        let (q, want) = p.next_request().unwrap();
        assert_eq!((want, q.contains(&("limit", "1".into()))), (1, true));
        p.advance(1, want);
        assert!(p.next_request().is_none());

        let mut p = Paging::new(Vec::new(), None, 10);
        let (_, want) = p.next_request().unwrap();
        p.advance(3, want);
        assert!(p.next_request().is_none(), "a short page is the last");
        assert!(Paging::new(Vec::new(), Some(0), 10).next_request().is_none());
    }
}
