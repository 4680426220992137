//! Shared by every example: connect to the configured Contree, or, when no credentials are
//! configured, to an embedded contree-local server (sandboxed runs on this machine, offline).
#![allow(dead_code)]

/// The image examples start from on a real Contree (override with CONTREE_EXAMPLE_IMAGE).
const REMOTE_IMAGE: &str = "busybox:latest";

/// The embedded server could not start (typically: not root). One line with both ways out.
fn cannot_start(e: impl std::fmt::Display) -> contree::Error {
    contree::Error::config(format!(
        "no Contree credentials are configured, and the embedded contree-local server cannot start ({e}); \
         two ways out: run as root, or configure credentials (set CONTREE_TOKEN, or run `contree auth`)"
    ))
}

fn no_credentials_line(url: &str) {
    println!(
        "No Contree credentials configured (set CONTREE_TOKEN or run `contree auth`): using an embedded contree-local server at {url}"
    );
}

/// An async connection: the client, the image to start from, and the embedded server (if any),
/// which lives as long as this value.
#[cfg(feature = "async")]
pub struct Connection {
    pub client: contree::Contree,
    pub base: contree::ContreeImage,
    _server: Option<contree_local::LocalServer>,
}

#[cfg(feature = "async")]
pub async fn connect() -> Result<Connection, Box<dyn std::error::Error>> {
    if contree::core::config::credentials_configured() {
        let client = contree::Contree::from_env()?;
        let image = std::env::var("CONTREE_EXAMPLE_IMAGE").unwrap_or_else(|_| REMOTE_IMAGE.to_string());
        println!("Using Contree at {} with image {image}", client.base_url());
        let base = client.images().oci(&image).send().await?;
        return Ok(Connection { client, base, _server: None });
    }
    let server =
        contree_local::LocalServer::start(contree_local::LocalConfig::default()).await.map_err(cannot_start)?;
    no_credentials_line(server.base_url());
    // The embedded server speaks HTTP/2 over plain TCP: one connection carries every run.
    let client = contree::Contree::builder().config(server.client_config()).build()?;
    let base = client.images().use_image(contree_local::BASE_IMAGE_TAG)?;
    Ok(Connection { client, base, _server: Some(server) })
}

/// A blocking connection (call it outside any async runtime).
#[cfg(feature = "blocking")]
pub struct ConnectionSync {
    pub client: contree::blocking::ContreeSync,
    pub base: contree::blocking::ContreeImageSync,
    _server: Option<contree_local::LocalServer>,
}

#[cfg(feature = "blocking")]
pub fn connect_sync() -> Result<ConnectionSync, Box<dyn std::error::Error>> {
    use contree::blocking::ContreeSync;
    if contree::core::config::credentials_configured() {
        let client = ContreeSync::from_env()?;
        let image = std::env::var("CONTREE_EXAMPLE_IMAGE").unwrap_or_else(|_| REMOTE_IMAGE.to_string());
        println!("Using Contree at {} with image {image}", client.base_url());
        let base = client.images().oci(&image).send()?;
        return Ok(ConnectionSync { client, base, _server: None });
    }
    let server =
        contree_local::LocalServer::start_blocking(contree_local::LocalConfig::default()).map_err(cannot_start)?;
    no_credentials_line(server.base_url());
    let client = ContreeSync::builder().config(server.client_config()).build()?;
    let base = client.images().use_image(contree_local::BASE_IMAGE_TAG)?;
    Ok(ConnectionSync { client, base, _server: Some(server) })
}
