//! Client configuration: endpoint, credentials, timeouts and polling, resolved from the
//! environment and the profile files shared with the official `contree` CLI.
//!
//! Most programs call [`ContreeConfig::from_env`]. The resolution order is:
//!
//! 1. Environment variables: the token from `CONTREE_TOKEN` (else `NEBIUS_API_KEY`), the URL
//!    from `CONTREE_URL` (else `CONTREE_BASE_URL`), the project from `CONTREE_PROJECT` (else
//!    `NEBIUS_PROJECT_ID`, else `NEBIUS_AI_PROJECT`).
//! 2. The active profile `[profile:<name>]` of `$CONTREE_HOME/auth.ini` laid over
//!    `$CONTREE_HOME/cli.ini` (keys `token`, `url`, `type`, `project`), as written by
//!    `contree auth`. `CONTREE_HOME` defaults to `$XDG_CONFIG_HOME/contree`, then
//!    `~/.config/contree`. The profile is the one named explicitly, else `CONTREE_PROFILE`,
//!    else `[DEFAULT] profile`, else `default`.
//! 3. Defaults: IAM auth against `https://api.tokenfactory.nebius.com/sandboxes`.
//!
//! Two auth kinds exist ([`AuthKind`]): `iam` sends `Authorization: Bearer` plus a
//! `Project` header; `jwt` (self-hosted and legacy deployments) sends only the bearer token
//! and needs an explicit URL.
//!
//! The token is a [`Secret`]: it never shows in `Debug`, `Display` or errors.
//!
//! ```no_run
//! use contree_core::ContreeConfig;
//! let config = ContreeConfig::from_env()?;
//! println!("using {} as {:?}", config.base_url, config.profile);
//! # Ok::<(), contree_core::Error>(())
//! ```

mod ini;
mod resolve;

use std::fmt;
use std::time::Duration;

pub use resolve::credentials_configured;

use crate::retry::RetryPolicy;
use crate::url::ApiUrl;
use crate::{Error, Result};

/// The public, IAM-fronted Contree endpoint.
pub const DEFAULT_IAM_URL: &str = "https://api.tokenfactory.nebius.com/sandboxes";

/// A credential that never prints itself.
///
/// ```
/// use contree_core::Secret;
/// let token = Secret::from("eyJhbGciOi");
/// assert_eq!(format!("{token:?}"), "Secret(***)");
/// assert_eq!(token.to_string(), "***");
/// assert_eq!(token.expose(), "eyJhbGciOi");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for building the `Authorization` header. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

/// How the client authenticates. Both send `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthKind {
    /// Nebius IAM: bearer token plus a `Project` header. The default URL is known.
    #[default]
    Iam,
    /// Legacy and self-hosted deployments: bearer token only; the URL must be given.
    Jwt,
}

impl AuthKind {
    /// The name used in profile files: `iam` or `jwt`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Iam => "iam",
            AuthKind::Jwt => "jwt",
        }
    }
}

impl fmt::Display for AuthKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a client needs to know, with the Python SDK's defaults.
///
/// Fields are public: start from [`ContreeConfig::from_env`] or [`Default`] and adjust.
///
/// ```
/// use std::time::Duration;
/// use contree_core::ContreeConfig;
/// let mut config = ContreeConfig::default()
///     .with_base_url("http://127.0.0.1:8080/")
///     .with_token("local-token");
/// config.operation_timeout = Duration::from_secs(60);
/// assert_eq!(config.base_url, "http://127.0.0.1:8080");
/// assert_eq!(config.run_timeout(), Duration::from_secs(60));
/// assert!(!format!("{config:?}").contains("local-token"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ContreeConfig {
    /// The API base URL without `/v1` and without a trailing slash.
    pub base_url: String,
    /// The bearer token. Required for any request.
    pub token: Option<Secret>,
    /// The Nebius project id, sent as the `Project` header with [`AuthKind::Iam`].
    pub project: Option<String>,
    /// How to authenticate.
    pub auth_kind: AuthKind,
    /// Per-request HTTP timeout (reads and writes). Streams of events are exempt.
    pub transport_timeout: Duration,
    /// Timeout for establishing a connection.
    pub connect_timeout: Duration,
    /// How long a streamed body (a download, an archive, a file read, an upload's answer) may
    /// stay silent between two chunks before the read fails with a Timeout error. File bodies
    /// have no keep-alives, so this bounds a stalled transfer, not a slow one.
    pub body_idle_timeout: Duration,
    /// How long an operation's event stream may stay silent (not even a keep-alive comment)
    /// before the client drops it and resumes with `Last-Event-Id`. Keep it above the
    /// server's keep-alive period (15 s for Contree).
    pub sse_keepalive_timeout: Duration,
    /// Read buffer size when hashing and uploading files.
    pub file_upload_chunk_size: usize,
    /// How long an import may take (sent to the server and waited for). Falls back to
    /// [`ContreeConfig::operation_timeout`].
    pub operation_import_timeout: Option<Duration>,
    /// How long a run may take. Falls back to [`ContreeConfig::operation_timeout`].
    pub operation_run_timeout: Option<Duration>,
    /// The default for both operation timeouts.
    pub operation_timeout: Duration,
    /// Shortest pause between two polls of an operation.
    pub operation_poll_min: Duration,
    /// Longest pause between two polls of an operation.
    pub operation_poll_max: Duration,
    /// Steepness of the poll interval curve (1–2 recommended).
    pub operation_poll_backoff_grow: f64,
    /// How many 404s to tolerate while polling a just-created operation.
    pub operation_poll_not_found_limit: u32,
    /// Bytes kept per output stream when a run does not say otherwise.
    pub default_truncate_output_at: u64,
    /// Warn when the token expires within this long.
    pub token_expiration_warning_threshold: Duration,
    /// Page size when listing images.
    pub images_list_batch_size: u32,
    /// Retries of failed requests.
    pub retry: RetryPolicy,
    /// The profile the settings came from, for diagnostics (`None` when none was used).
    pub profile: Option<String>,
    /// Which HTTP versions to speak. Default [`HttpVersion::Auto`].
    pub http_version: HttpVersion,
    /// The most connections one client opens to the server at once, when the server speaks
    /// HTTP/1.1 (over HTTP/2 every request shares one connection). Requests beyond it wait
    /// for a free connection. Event streams hold their connection for a run's whole life, so
    /// they may take all but [`RESERVED_FOR_REQUESTS`] of them; a run followed beyond that
    /// polls its status instead of streaming its events, and short requests (spawns, stdin,
    /// status reads) never wait behind streams. Default 64; at least
    /// `RESERVED_FOR_REQUESTS + 1`.
    ///
    /// Sockets stay near this number and never exceed twice it: the pool keeps at most this
    /// many idle, and may open one for a request while another is on its way back to it.
    pub max_connections: usize,
}

/// Connections of [`ContreeConfig::max_connections`] that event streams never take, so that
/// spawns, stdin writes and status reads always find one.
pub const RESERVED_FOR_REQUESTS: usize = 8;

/// Which HTTP versions a client speaks.
///
/// The default suits both Contree and contree-local: HTTP/2 where TLS negotiates it (ALPN),
/// else HTTP/1.1. contree-local also speaks HTTP/2 over plain TCP (h2c), which a client only
/// uses when told: [`HttpVersion::Http2PriorKnowledge`] multiplexes every request and event
/// stream on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HttpVersion {
    /// HTTP/2 when the TLS handshake agrees on it, else HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1Only,
    /// HTTP/2 from the first byte, also over plain `http://` (h2c). Only for servers known to
    /// speak it, such as contree-local: others reject the connection.
    Http2PriorKnowledge,
}

impl Default for ContreeConfig {
    fn default() -> Self {
        ContreeConfig {
            base_url: DEFAULT_IAM_URL.to_string(),
            token: None,
            project: None,
            auth_kind: AuthKind::Iam,
            transport_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(90),
            sse_keepalive_timeout: Duration::from_secs(90),
            file_upload_chunk_size: 1024 * 1024,
            operation_import_timeout: None,
            operation_run_timeout: None,
            operation_timeout: Duration::from_secs(1000),
            operation_poll_min: Duration::from_millis(100),
            operation_poll_max: Duration::from_secs(10),
            operation_poll_backoff_grow: 1.75,
            operation_poll_not_found_limit: 10,
            default_truncate_output_at: 65535,
            token_expiration_warning_threshold: Duration::from_secs(24 * 60 * 60),
            images_list_batch_size: 100,
            retry: RetryPolicy::default(),
            profile: None,
            http_version: HttpVersion::Auto,
            max_connections: 64,
        }
    }
}

impl ContreeConfig {
    /// Resolves the configuration from the process environment and the profile files.
    ///
    /// Fails with [`ErrorKind::Config`](crate::ErrorKind::Config) when no token is found
    /// (the message says how to configure one), when a profile file cannot be parsed, when
    /// a `jwt` profile has no URL, or when the URL is invalid.
    pub fn from_env() -> Result<Self> {
        resolve::resolve(&process_env, None)
    }

    /// Like [`ContreeConfig::from_env`], with the profile named explicitly (it must exist).
    pub fn from_profile(profile: &str) -> Result<Self> {
        resolve::resolve(&process_env, Some(profile))
    }

    /// The resolution behind [`ContreeConfig::from_env`], reading variables through `env`
    /// instead of the process environment. `CONTREE_HOME`, `XDG_CONFIG_HOME` and `HOME` are
    /// read through `env` too, so tests can point it at a temporary directory. `profile`
    /// names the profile explicitly; it must then exist.
    ///
    /// ```
    /// use contree_core::{AuthKind, ContreeConfig};
    /// let env = |name: &str| match name {
    ///     "NEBIUS_API_KEY" => Some("v1.key".to_string()),
    ///     "NEBIUS_PROJECT_ID" => Some("project-e0".to_string()),
    ///     _ => None,
    /// };
    /// let config = ContreeConfig::resolve(&env, None).unwrap();
    /// assert_eq!(config.auth_kind, AuthKind::Iam);
    /// assert_eq!(config.base_url, "https://api.tokenfactory.nebius.com/sandboxes");
    /// assert_eq!(config.project.as_deref(), Some("project-e0"));
    /// ```
    pub fn resolve(env: &dyn Fn(&str) -> Option<String>, profile: Option<&str>) -> Result<Self> {
        resolve::resolve(env, profile)
    }

    /// Whether [`ContreeConfig::resolve`] would find a token (or a profile file that must be
    /// reported as broken). Lets a program choose another backend without building errors.
    pub fn has_credentials(env: &dyn Fn(&str) -> Option<String>) -> bool {
        resolve::has_credentials(env)
    }

    /// Sets the token.
    pub fn with_token(mut self, token: impl Into<Secret>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the base URL (a trailing `/` is dropped).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into().trim_end_matches('/').to_string();
        self
    }

    /// Sets the project sent with IAM auth.
    pub fn with_project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// The timeout of runs: `operation_run_timeout`, else `operation_timeout`.
    pub fn run_timeout(&self) -> Duration {
        self.operation_run_timeout.unwrap_or(self.operation_timeout)
    }

    /// The timeout of imports: `operation_import_timeout`, else `operation_timeout`.
    pub fn import_timeout(&self) -> Duration {
        self.operation_import_timeout.unwrap_or(self.operation_timeout)
    }

    /// The parsed base URL.
    pub fn api_url(&self) -> Result<ApiUrl> {
        ApiUrl::parse(&self.base_url)
    }

    /// The authentication headers, names lower-cased: `authorization` always, `project`
    /// with IAM auth when a project is set.
    ///
    /// ```
    /// use contree_core::ContreeConfig;
    /// let config = ContreeConfig::default().with_token("t").with_project("p");
    /// let headers = config.auth_headers().unwrap();
    /// assert_eq!(headers, vec![("authorization", "Bearer t".to_string()), ("project", "p".to_string())]);
    /// assert!(ContreeConfig::default().auth_headers().unwrap_err().is_config());
    /// ```
    pub fn auth_headers(&self) -> Result<Vec<(&'static str, String)>> {
        let token = self
            .token
            .as_ref()
            .filter(|t| !t.expose().is_empty())
            .ok_or_else(|| Error::config(format!("no token configured; {}", resolve::HOW_TO_CONFIGURE)))?;
        if !is_header_safe(token.expose()) {
            return Err(Error::config("the token contains characters not allowed in an HTTP header"));
        }
        let mut headers = vec![("authorization", format!("Bearer {}", token.expose()))];
        if self.auth_kind == AuthKind::Iam
            && let Some(project) = self.project.as_deref().filter(|p| !p.is_empty())
        {
            if !is_header_safe(project) {
                return Err(Error::config(format!(
                    "the project `{}` contains characters not allowed in an HTTP header",
                    project.escape_debug()
                )));
            }
            headers.push(("project", project.to_string()));
        }
        Ok(headers)
    }

    /// The `User-Agent` this SDK sends: `contree-rs/<version> (rust)`.
    pub fn user_agent(&self) -> String {
        format!("contree-rs/{} (rust)", env!("CARGO_PKG_VERSION"))
    }
}

/// A one-line summary for diagnostics, e.g.
/// `https://host/sandboxes (iam, project p-1, profile default, token set)`. The token
/// itself is never shown.
impl fmt::Display for ContreeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.base_url, self.auth_kind)?;
        if let Some(project) = &self.project {
            write!(f, ", project {project}")?;
        }
        if let Some(profile) = &self.profile {
            write!(f, ", profile {profile}")?;
        }
        let token = if self.token.as_ref().is_some_and(|t| !t.expose().is_empty()) { "set" } else { "missing" };
        write!(f, ", token {token})")
    }
}

/// Visible ASCII and spaces/tabs inside: what an HTTP header value may carry.
fn is_header_safe(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_python_sdk() {
        let c = ContreeConfig::default();
        assert_eq!(c.base_url, DEFAULT_IAM_URL);
        assert_eq!(c.auth_kind, AuthKind::Iam);
        assert_eq!(c.transport_timeout, Duration::from_secs(10));
        assert_eq!(c.file_upload_chunk_size, 1 << 20);
        assert_eq!(c.body_idle_timeout, Duration::from_secs(90));
        assert_eq!(c.sse_keepalive_timeout, Duration::from_secs(90));
        assert_eq!(c.operation_timeout, Duration::from_secs(1000));
        assert_eq!(c.operation_poll_min, Duration::from_millis(100));
        assert_eq!(c.operation_poll_max, Duration::from_secs(10));
        assert_eq!(c.operation_poll_backoff_grow, 1.75);
        assert_eq!(c.operation_poll_not_found_limit, 10);
        assert_eq!(c.default_truncate_output_at, 65535);
        assert_eq!(c.token_expiration_warning_threshold, Duration::from_secs(86_400));
        assert_eq!(c.images_list_batch_size, 100);
        assert_eq!(c.run_timeout(), Duration::from_secs(1000));
        assert_eq!(c.import_timeout(), Duration::from_secs(1000));
    }

    #[test]
    fn specific_timeouts_win() {
        let c = ContreeConfig {
            operation_run_timeout: Some(Duration::from_secs(5)),
            operation_import_timeout: Some(Duration::from_secs(7)),
            ..ContreeConfig::default()
        };
        assert_eq!(c.run_timeout(), Duration::from_secs(5));
        assert_eq!(c.import_timeout(), Duration::from_secs(7));
    }

    #[test]
    fn debug_and_display_never_show_the_token() {
        let token = "tok-SUPER-secret-123";
        let c = ContreeConfig::default().with_token(token).with_project("p");
        let debug = format!("{c:?}");
        let pretty = format!("{c:#?}");
        assert!(!debug.contains(token) && !pretty.contains(token), "{pretty}");
        assert!(debug.contains("Secret(***)"), "{debug}");
        let secret = Secret::from(token.to_string());
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(Secret(***))");
        let shown = c.to_string();
        assert!(!shown.contains(token), "{shown}");
        assert_eq!(shown, format!("{DEFAULT_IAM_URL} (iam, project p, token set)"));
        assert!(ContreeConfig::default().to_string().ends_with("token missing)"));
    }

    #[test]
    fn auth_headers_per_kind() {
        let iam = ContreeConfig::default().with_token("t").with_project("proj");
        assert_eq!(
            iam.auth_headers().unwrap(),
            vec![("authorization", "Bearer t".to_string()), ("project", "proj".to_string())]
        );
        let iam_without_project = ContreeConfig::default().with_token("t");
        assert_eq!(iam_without_project.auth_headers().unwrap(), vec![("authorization", "Bearer t".to_string())]);
        let jwt =
            ContreeConfig { auth_kind: AuthKind::Jwt, ..ContreeConfig::default().with_token("t").with_project("proj") };
        assert_eq!(jwt.auth_headers().unwrap(), vec![("authorization", "Bearer t".to_string())]);
    }

    #[test]
    fn auth_headers_errors_are_config_errors_without_secrets() {
        let none = ContreeConfig::default().auth_headers().unwrap_err();
        assert!(none.is_config());
        assert!(none.to_string().contains("CONTREE_TOKEN"), "{none}");
        assert!(ContreeConfig::default().with_token("").auth_headers().unwrap_err().is_config());
        let bad = ContreeConfig::default().with_token("abc\ndef").auth_headers().unwrap_err();
        assert!(bad.is_config());
        assert!(!bad.to_string().contains("abc"), "{bad}");
    }

    #[test]
    fn api_url_and_user_agent() {
        let c = ContreeConfig::default();
        assert_eq!(c.api_url().unwrap().base(), DEFAULT_IAM_URL);
        let ua = c.user_agent();
        assert!(ua.starts_with("contree-rs/"), "{ua}");
        assert!(ua.contains(env!("CARGO_PKG_VERSION")), "{ua}");
        assert!(ContreeConfig::default().with_base_url("ftp://x").api_url().is_err());
    }

    #[test]
    fn auth_kind_names() {
        assert_eq!(AuthKind::Iam.to_string(), "iam");
        assert_eq!(AuthKind::Jwt.as_str(), "jwt");
        assert_eq!(AuthKind::default(), AuthKind::Iam);
    }
}
