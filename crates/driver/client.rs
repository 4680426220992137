//! The client: configuration, the pooled HTTP client, and the entry points to every area.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use contree_core::models::WhoAmIResponse;
use contree_core::{ContreeConfig, HttpVersion, Result, RetryPolicy, Secret};
use reqwest::Method;

use super::files::Files;
use super::http::Http;
use super::images::Images;

crate::flavor::declare! {
    /// A Contree client. Cheap to clone: clones share one connection pool.
    #[doc = crate::doc_examples::example!(client)]
    #[derive(Clone)]
    pub struct Client {
        pub(crate) inner: Arc<ClientInner>,
    }
}

pub(crate) struct ClientInner {
    pub(crate) http: Http,
    pub(crate) config: ContreeConfig,
    whoami: Mutex<Option<WhoAmIResponse>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(super::short_type_name::<Self>())
            .field("base_url", &self.inner.http.api().base())
            .field("project", &self.inner.config.project)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `config`. Fails with a Config error when no token is set, or an
    /// InvalidArgument error for a bad base URL.
    pub fn new(config: ContreeConfig) -> Result<Self> {
        let http = Http::new(&config)?;
        Ok(Client { inner: Arc::new(ClientInner { http, config, whoami: Mutex::new(None) }) })
    }

    /// A client configured the way the official tools are: environment variables
    /// (`CONTREE_TOKEN`, `CONTREE_URL`, `CONTREE_PROJECT`, `NEBIUS_API_KEY`, …) over the active
    /// profile of `$CONTREE_HOME/auth.ini` (written by `contree auth`).
    #[doc = crate::doc_examples::example!(client)]
    pub fn from_env() -> Result<Self> {
        Client::new(ContreeConfig::from_env()?)
    }

    /// A builder starting from the default configuration (no environment lookup).
    #[doc = crate::doc_examples::example!(builder)]
    pub fn builder() -> ClientBuilder {
        ClientBuilder { config: ContreeConfig::default() }
    }

    /// The configuration in use (the token is redacted in its `Debug`).
    pub fn config(&self) -> &ContreeConfig {
        &self.inner.config
    }

    /// The base URL, without the `/v1` suffix.
    pub fn base_url(&self) -> &str {
        self.inner.http.api().base()
    }

    /// Who the token belongs to, its permissions and limits (`GET /v1/whoami`). The answer is
    /// cached; see [`cached_whoami`](Self::cached_whoami).
    #[doc = crate::doc_examples::example!(client)]
    #[crate::maybe]
    pub async fn whoami(&self) -> Result<WhoAmIResponse> {
        let http = &self.inner.http;
        let me: WhoAmIResponse = http.json(&http.call(Method::GET, &["whoami"])).await?;
        if let Some(exp) = me.token_expiration {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let left = Duration::from_secs((exp.max(0) as u64).saturating_sub(now.as_secs()));
            if left < self.inner.config.token_expiration_warning_threshold {
                tracing::warn!(seconds_left = left.as_secs(), "the Contree token expires soon");
            }
        }
        *self.inner.whoami.lock().unwrap_or_else(|p| p.into_inner()) = Some(me.clone());
        Ok(me)
    }

    /// The last [`whoami`](Self::whoami) answer, without a request.
    pub fn cached_whoami(&self) -> Option<WhoAmIResponse> {
        self.inner.whoami.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Images: list, look up, import, tag.
    #[doc = crate::doc_examples::example!(images)]
    pub fn images(&self) -> Images {
        Images::new(self.clone())
    }

    /// Content-addressed file uploads.
    #[doc = crate::doc_examples::example!(files)]
    pub fn files(&self) -> Files {
        Files::new(self.clone())
    }

    /// Operations (runs and imports on the server): list, get, cancel.
    #[doc = crate::doc_examples::example!(operations)]
    pub fn operations(&self) -> super::operations::Operations {
        super::operations::Operations::new(self.clone())
    }

    pub(crate) fn http(&self) -> &Http {
        &self.inner.http
    }
}

crate::flavor::declare! {
    /// Builds a client from explicit settings. Finish with [`build`](Self::build).
    #[doc = crate::doc_examples::example!(builder)]
    #[derive(Debug, Clone)]
    pub struct ClientBuilder {
        config: ContreeConfig,
    }
}

impl ClientBuilder {
    /// Starts from a whole configuration (e.g. `ContreeConfig::from_env()?`).
    pub fn config(mut self, config: ContreeConfig) -> Self {
        self.config = config;
        self
    }

    /// The API base URL, with any path prefix (`https://host/sandboxes`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.config.base_url = url.into();
        self
    }

    /// The bearer token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = Some(Secret::from(token.into()));
        self
    }

    /// The Nebius project id, sent as the `Project` header.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.config.project = Some(project.into());
        self
    }

    /// The limit for one small request/response (streams are limited per read instead).
    pub fn transport_timeout(mut self, timeout: Duration) -> Self {
        self.config.transport_timeout = timeout;
        self
    }

    /// The limit for establishing a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long a streamed body (download, archive, file read) may stay silent between two
    /// chunks before the read fails with a Timeout error. Default: 90 s.
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.body_idle_timeout = timeout;
        self
    }

    /// How long an operation's event stream may stay silent, keep-alives included, before the
    /// client drops it, checks the operation's status and resumes with `Last-Event-Id`. Keep it
    /// above the server's keep-alive period (15 s). Default: 90 s.
    pub fn sse_keepalive_timeout(mut self, timeout: Duration) -> Self {
        self.config.sse_keepalive_timeout = timeout;
        self
    }

    /// Which HTTP versions to speak (default [`HttpVersion::Auto`]: HTTP/2 where TLS
    /// negotiates it, else HTTP/1.1).
    ///
    /// [`HttpVersion::Http2PriorKnowledge`] is for servers known to speak HTTP/2 over plain
    /// TCP, such as contree-local: every request and event stream then shares one connection.
    #[doc = crate::doc_examples::example!(builder_http2)]
    pub fn http_version(mut self, version: HttpVersion) -> Self {
        self.config.http_version = version;
        self
    }

    /// The most connections to an HTTP/1.1 server at once (default 64; see
    /// [`ContreeConfig::max_connections`]). Checked by [`build`](Self::build).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = max;
        self
    }

    /// How failed requests are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// The default client-side deadline of runs and imports.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.config.operation_timeout = timeout;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client> {
        Client::new(self.config)
    }
}
