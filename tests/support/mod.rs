//! Test support shared by every suite: a wiremock server on a runtime of its own, and the
//! flavor aliases that let one scenario source run as async and as blocking tests.
//!
//! Why a runtime of its own: `reqwest::blocking` panics inside a tokio runtime, so blocking
//! tests must call the client from a plain thread while the mock server keeps serving. Async
//! tests use the same arrangement so both flavors see the exact same server.
#![allow(dead_code)]

use std::sync::OnceLock;

use wiremock::MockServer;

/// A wiremock server running on a dedicated multi-thread runtime.
pub struct Mock {
    pub server: MockServer,
}

fn mock_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("wiremock")
            .build()
            .expect("test runtime")
    })
}

impl Mock {
    /// Starts a fresh server (callable from any thread, inside or outside a runtime).
    pub fn start() -> Mock {
        let server = std::thread::spawn(|| mock_runtime().block_on(MockServer::start())).join().expect("mock server");
        Mock { server }
    }

    /// The server's base URL (no `/v1`).
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Registers a mock (from any thread).
    pub fn mount(&self, mock: wiremock::Mock) {
        let server = &self.server;
        std::thread::scope(|s| s.spawn(|| mock_runtime().block_on(mock.mount(server))).join().expect("mount"));
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<wiremock::Request> {
        let server = &self.server;
        std::thread::scope(|s| {
            s.spawn(|| mock_runtime().block_on(server.received_requests()).unwrap_or_default())
                .join()
                .expect("requests")
        })
    }

    /// Requests with this method and path.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<wiremock::Request> {
        self.requests().into_iter().filter(|r| r.method.as_str() == method && r.url.path() == path).collect()
    }
}

/// The token every wire test uses (tests assert it never leaks into errors or Debug).
pub const TOKEN: &str = "test-token-s3cr3t-0123456789";
