//! The operations area: list operations (filters, pagination), get one, cancel one.

use contree_core::models::{
    OperationKind, OperationListResponse, OperationResponse, OperationStatus, OperationSummary,
};
use contree_core::{Error, IntoUuid, Result, TimeFilter};
use reqwest::Method;

use super::client::Client;
use super::paging::Paging;

crate::flavor::declare! {
    /// The operations area of the API (runs and imports on the server). Get it with the
    /// client's `operations()`.
    #[doc = crate::doc_examples::example!(operations)]
    #[derive(Debug, Clone)]
    pub struct Operations {
        client: Client,
    }
}

impl Operations {
    pub(crate) fn new(client: Client) -> Self {
        Operations { client }
    }

    /// Lists operations, newest first. Set filters on the returned builder, then `send()` for
    /// a `Vec`, or iterate lazily page by page (a `Stream` in async, an `Iterator` in
    /// blocking).
    #[doc = crate::doc_examples::example!(operations)]
    pub fn list(&self) -> ListOperations {
        ListOperations {
            client: self.client.clone(),
            error: None,
            status: None,
            kind: None,
            since: None,
            until: None,
            limit: None,
            page_size: 100,
        }
    }

    /// One operation's full record (`GET /operations/{id}`).
    #[doc = crate::doc_examples::example!(operations_get)]
    #[crate::maybe]
    pub async fn get(&self, id: impl IntoUuid) -> Result<OperationResponse> {
        let id = id.into_uuid("id")?.to_string();
        let (op, _) = super::operation::get(&self.client, &id, false).await?;
        Ok(op)
    }

    /// Cancels an operation (`DELETE /operations/{id}`). Cancelling one that already finished
    /// is not an error.
    #[doc = crate::doc_examples::example!(operations)]
    #[crate::maybe]
    pub async fn cancel(&self, id: impl IntoUuid) -> Result<()> {
        let id = id.into_uuid("id")?.to_string();
        super::operation::cancel(&self.client, &id).await
    }
}

crate::flavor::declare! {
    /// Builder for an operation listing. Ends in `send()`, or iterate it lazily.
    #[doc = crate::doc_examples::example!(operations)]
    #[derive(Debug, Clone)]
    pub struct ListOperations {
        pub(crate) client: Client,
        error: Option<(&'static str, String)>,
        status: Option<OperationStatus>,
        kind: Option<OperationKind>,
        since: Option<TimeFilter>,
        until: Option<TimeFilter>,
        pub(crate) limit: Option<usize>,
        page_size: u32,
    }
}

impl ListOperations {
    /// Only operations in this state.
    pub fn status(mut self, status: OperationStatus) -> Self {
        if status == OperationStatus::Unknown {
            self.error.get_or_insert(("status", "UNKNOWN is not a status a server can filter by".into()));
        }
        self.status = Some(status);
        self
    }

    /// Only runs (`OperationKind::Instance`) or only imports (`OperationKind::ImageImport`).
    pub fn kind(mut self, kind: OperationKind) -> Self {
        if let OperationKind::Other(other) = &kind {
            self.error.get_or_insert(("kind", format!("`{other}` is not instance or image_import")));
        }
        self.kind = Some(kind);
        self
    }

    /// Only operations created after this (an age, a `SystemTime`, or `TimeFilter::parse`).
    pub fn since(mut self, since: impl Into<TimeFilter>) -> Self {
        self.since = Some(since.into());
        self
    }

    /// Only operations created before this.
    pub fn until(mut self, until: impl Into<TimeFilter>) -> Self {
        self.until = Some(until.into());
        self
    }

    /// At most `n` operations in total ("first N").
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// How many operations one request asks for (1..=1000).
    pub fn page_size(mut self, n: u32) -> Self {
        if !(1..=1000).contains(&n) {
            self.error.get_or_insert(("page_size", format!("{n} is outside 1..=1000")));
        }
        self.page_size = n;
        self
    }

    /// Fetches every matching operation (or the first `limit`) into a `Vec`.
    #[crate::maybe]
    pub async fn send(self) -> Result<Vec<OperationSummary>> {
        let mut pager = self.pager()?;
        let mut out = Vec::new();
        while let Some(page) = pager.next_page().await? {
            out.extend(page);
        }
        Ok(out)
    }

    /// A page-by-page reader; the flavor crates wrap it in a `Stream` or an `Iterator`.
    pub(crate) fn pager(self) -> Result<OperationPager> {
        if let Some((arg, reason)) = &self.error {
            return Err(Error::invalid_argument(arg, reason));
        }
        let mut query: Vec<(&'static str, String)> = Vec::new();
        if let Some(s) = self.status {
            query.push(("status", s.as_str().into()));
        }
        if let Some(k) = &self.kind {
            query.push(("kind", k.as_str().into()));
        }
        if let Some(s) = &self.since {
            query.push(("since", s.to_query()?));
        }
        if let Some(u) = &self.until {
            query.push(("until", u.to_query()?));
        }
        let paging = Paging::new(query, self.limit, self.page_size as usize);
        Ok(OperationPager { client: self.client, paging })
    }
}

/// Reads an operation listing one page at a time.
pub(crate) struct OperationPager {
    client: Client,
    paging: Paging,
}

impl OperationPager {
    #[crate::maybe]
    pub(crate) async fn next_page(&mut self) -> Result<Option<Vec<OperationSummary>>> {
        let Some((query, want)) = self.paging.next_request() else { return Ok(None) };
        let http = self.client.http();
        let page: OperationListResponse = http.json(&http.call_with_query(Method::GET, &["operations"], query)).await?;
        let page: Vec<OperationSummary> = page.into();
        self.paging.advance(page.len(), want);
        let page: Vec<OperationSummary> = page.into_iter().take(want).collect();
        if page.is_empty() { Ok(None) } else { Ok(Some(page)) }
    }
}
