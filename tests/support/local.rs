//! The embedded contree-local server shared by the end-to-end suites.

use std::sync::OnceLock;

/// One embedded contree-local server per test binary, started on first use outside any
/// runtime (its own threads serve it).
pub fn local_server() -> &'static contree_local::LocalServer {
    static SERVER: OnceLock<contree_local::LocalServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        std::thread::spawn(|| {
            contree_local::LocalServer::start_blocking(contree_local::LocalConfig::default())
                .expect("start the embedded contree-local server")
        })
        .join()
        .expect("server thread")
    })
}
