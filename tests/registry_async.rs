//! Registry imports against a real registry, async flavor (scenarios in `registry/mod.rs`).
#![cfg(feature = "async")]

pub(crate) use maybe_async::must_be_async as maybe;

#[path = "support/local.rs"]
mod support_local;

mod support {
    #[path = "../support/registry.rs"]
    pub mod registry;
}

mod flavor {
    pub use contree::{Contree as Client, ContreeImage as Image};

    /// Names the scenarios' repositories apart from the blocking suite's.
    pub const NAME: &str = "async";

    /// A client for the shared embedded server, and its built-in base image.
    pub fn backend() -> (Client, Image) {
        let server = crate::support_local::local_server();
        let client = Client::builder().base_url(server.base_url()).token(server.token()).build().expect("client");
        let base = client.images().use_image(contree_local::BASE_IMAGE_TAG).expect("base image");
        (client, base)
    }
}

#[path = "registry/mod.rs"]
mod scenarios;

macro_rules! async_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                scenarios::$name().await
            }
        )*
    };
}

registry_scenarios!(async_tests);

/// Server-side behaviour seen over plain HTTP: progress events, the masked password, the
/// import timeout and the size bound. Async only: they don't depend on the SDK's flavor.
mod server_side {
    use std::time::{Duration, Instant};

    use contree::models::{EventPayload, OperationEvent};
    use serde_json::{Value, json};

    use crate::support::registry::{self as reg, Entry, busybox_layer, config, gzip_layer, host_arch, tar};

    /// `POST /v1/images/import`, then the operation once it ended (polled, bounded).
    async fn import(base: &str, token: &str, body: Value) -> Value {
        let http = reqwest::Client::new();
        let created: Value = http
            .post(format!("{base}/v1/images/import"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["uuid"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let op: Value = http
                .get(format!("{base}/v1/operations/{id}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if matches!(op["status"].as_str(), Some("SUCCESS" | "FAILED" | "CANCELLED")) {
                return op;
            }
            assert!(Instant::now() < deadline, "the import did not end: {op}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `stdout` lines of an operation's event log.
    async fn progress(base: &str, token: &str, id: &str) -> String {
        let body = reqwest::Client::new()
            .get(format!("{base}/v1/operations/{id}/events"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut out = String::new();
        for line in body.lines() {
            let Some(data) = line.strip_prefix("data:") else { continue };
            let ev: OperationEvent = serde_json::from_str(data.trim()).unwrap();
            if let EventPayload::Stdout(s) = ev.payload() {
                out.push_str(&String::from_utf8(s.to_bytes().unwrap()).unwrap());
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn progress_is_logged_and_the_password_is_masked() {
        let server = crate::support_local::local_server();
        let (base, token) = (server.base_url(), server.token());
        let r = reg::auth_registry();
        // A layer of its own, so that it is downloaded here (layers are stored once per digest).
        let own = gzip_layer(&tar(&[Entry::File("progress", b"own layer", 0o644)]));
        reg::push_image(r, "test/progress", "1", &[busybox_layer(), own], &config(host_arch(), &[], None));
        let op = import(
            base,
            token,
            json!({
                "registry": {"url": format!("docker://{}/test/progress:1", r.addr),
                             "credentials": {"username": reg::USER, "password": reg::PASSWORD}},
                "tag": "progress:1",
            }),
        )
        .await;
        assert_eq!(op["status"], "SUCCESS", "{op}");
        assert!(!op.to_string().contains(reg::PASSWORD), "{op}");
        assert_eq!(op["metadata"]["registry"]["credentials"]["password"], "<MASKED>");
        let id = op["uuid"].as_str().unwrap();
        let log = progress(base, token, id).await;
        assert!(log.contains("resolving docker://"), "{log}");
        assert!(log.contains("layer 1/2 sha256:") && log.contains("layer 2/2 sha256:"), "{log}");
        assert!(log.contains("downloaded"), "{log}");
        assert!(log.contains("unpacked"), "{log}");
        assert!(log.contains(&format!("image {}", op["result"]["image"].as_str().unwrap())), "{log}");
        assert!(!log.contains(reg::PASSWORD));

        // Importing it again: nothing downloaded, the same image.
        let again = import(
            base,
            token,
            json!({"registry": {"url": format!("docker://{}/test/progress:1", r.addr),
                                "credentials": {"username": reg::USER, "password": reg::PASSWORD}}}),
        )
        .await;
        assert_eq!(again["result"]["image"], op["result"]["image"]);
        let log = progress(base, token, again["uuid"].as_str().unwrap()).await;
        assert!(log.contains("unchanged") && !log.contains("downloaded"), "{log}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_registry_that_never_answers_times_out() {
        // Accepts connections and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().take(16) {
                held.push(s);
            }
        });
        let server = crate::support_local::local_server();
        let started = Instant::now();
        let op = import(
            server.base_url(),
            server.token(),
            json!({"registry": {"url": format!("docker://{addr}/test/stalled:1")}, "timeout": 2}),
        )
        .await;
        assert_eq!(op["status"], "FAILED", "{op}");
        assert!(op["error"].as_str().unwrap().contains("timed out after 2 s"), "{op}");
        assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    }

    /// Docker Hub's and GHCR's flow, served by a stand-in registry: `/v2/` answers 401 with a
    /// `Bearer` challenge, the token endpoint wants the request's credentials (basic auth),
    /// and the manifest and blobs want the token it gave.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bearer_token_flow_gets_a_token_with_the_request_credentials() {
        use wiremock::matchers::{header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        let mock = MockServer::start().await;
        let busybox = busybox_layer();
        let layer = gzip_layer(&tar(&[Entry::File("bearer", b"through a token\n", 0o644)]));
        let cfg = serde_json::to_vec(&config(host_arch(), &["VIA=bearer"], None)).unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": reg::digest(&cfg), "size": cfg.len()},
            "layers": [
                {"mediaType": reg::GZIP, "digest": reg::digest(&busybox.blob), "size": busybox.blob.len()},
                {"mediaType": reg::GZIP, "digest": reg::digest(&layer.blob), "size": layer.blob.len()},
            ],
        }))
        .unwrap();
        let challenge = format!("Bearer realm=\"{}/token\",service=\"stand-in\"", mock.uri());
        Mock::given(method("GET"))
            .and(path("/v2/"))
            .respond_with(ResponseTemplate::new(401).insert_header("www-authenticate", challenge.as_str()))
            .mount(&mock)
            .await;
        // base64("tok-user:tok-pass")
        Mock::given(method("GET"))
            .and(path("/token"))
            .and(header("authorization", "Basic dG9rLXVzZXI6dG9rLXBhc3M="))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token": "tok-123"})))
            .mount(&mock)
            .await;
        Mock::given(method("GET"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(401).set_body_string("bad credentials"))
            .mount(&mock)
            .await;
        let bearer = || header("authorization", "Bearer tok-123");
        Mock::given(method("GET"))
            .and(path("/v2/team/app/manifests/1"))
            .and(bearer())
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "application/vnd.oci.image.manifest.v1+json")
                    .set_body_bytes(manifest),
            )
            .mount(&mock)
            .await;
        for blob in [cfg.clone(), busybox.blob.clone(), layer.blob.clone()] {
            Mock::given(method("GET"))
                .and(path(format!("/v2/team/app/blobs/{}", reg::digest(&blob))))
                .and(bearer())
                .respond_with(ResponseTemplate::new(200).set_body_bytes(blob))
                .mount(&mock)
                .await;
        }
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(401).insert_header("www-authenticate", challenge.as_str()))
            .mount(&mock)
            .await;

        let server = crate::support_local::local_server();
        let (base, token) = (server.base_url(), server.token());
        let host = mock.uri().trim_start_matches("http://").to_owned();
        let url = format!("docker://{host}/team/app:1");
        let op = import(
            base,
            token,
            json!({"registry": {"url": url, "credentials": {"username": "tok-user", "password": "tok-pass"}}}),
        )
        .await;
        assert_eq!(op["status"], "SUCCESS", "{op}");
        let image = op["result"]["image"].as_str().unwrap();
        let run: Value = reqwest::Client::new()
            .post(format!("{base}/v1/instances"))
            .bearer_auth(token)
            .json(&json!({"command": "cat /bearer; echo $VIA", "shell": true, "image": image}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = run["uuid"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let done = loop {
            let op: Value = reqwest::Client::new()
                .get(format!("{base}/v1/operations/{id}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if op["status"] == "SUCCESS" || op["status"] == "FAILED" {
                break op;
            }
            assert!(Instant::now() < deadline, "{op}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(done["metadata"]["result"]["stdout"]["value"], "through a token\nbearer\n", "{done}");

        // Wrong credentials: the token endpoint refuses, and the import says so.
        let op = import(
            base,
            token,
            json!({"registry": {"url": format!("docker://{host}/team/app:1"), "credentials": {"username": "tok-user", "password": "nope"}}}),
        )
        .await;
        assert_eq!(op["status"], "FAILED", "{op}");
        let err = op["error"].as_str().unwrap();
        assert!(err.contains("authentication") || err.contains("401"), "{err}");
        assert!(!op.to_string().contains("\"nope\""), "{op}");
    }

    /// This machine's address on its default route (not loopback).
    fn outward_ip() -> std::net::IpAddr {
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        // connect() on UDP only picks a route and a source address: nothing is sent.
        probe.connect("192.0.2.1:9").expect("this test needs a non-loopback route (a default route)");
        let ip = probe.local_addr().unwrap().ip();
        assert!(!ip.is_loopback() && !ip.is_unspecified(), "no non-loopback address: {ip}");
        ip
    }

    /// Listens on `ip`, and reports the first bytes of the first connection: a TLS
    /// ClientHello starts with 0x16 0x03, plain HTTP with `GET `.
    fn first_bytes(ip: std::net::IpAddr) -> (String, std::sync::mpsc::Receiver<Vec<u8>>) {
        use std::io::Read;
        let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Some(Ok(mut s)) = listener.incoming().next() {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = [0u8; 4];
                let n = s.read(&mut buf).unwrap_or(0);
                let _ = tx.send(buf[..n].to_vec());
            }
        });
        (addr, rx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_http_only_for_loopback_or_insecure_registries() {
        let ip = outward_ip();
        // The shared server: a registry that is not on loopback gets TLS.
        let (addr, seen) = first_bytes(ip);
        let server = crate::support_local::local_server();
        let body = json!({"registry": {"url": format!("docker://{addr}/test/tls:1")}, "timeout": 20});
        let op = import(server.base_url(), server.token(), body).await;
        assert_eq!(op["status"], "FAILED", "{op}");
        let first = seen.recv_timeout(Duration::from_secs(5)).expect("the import connected");
        assert_eq!(first.get(..2), Some(&[0x16, 0x03][..]), "a TLS ClientHello: {first:?}");

        // A server told the registry is insecure speaks plain HTTP to it.
        let (addr, seen) = first_bytes(ip);
        let insecure = addr.clone();
        let server = std::thread::spawn(move || {
            contree_local::LocalServer::start_blocking(
                contree_local::LocalConfig::default().with_insecure_registry(insecure),
            )
            .expect("start")
        })
        .join()
        .unwrap();
        let body = json!({"registry": {"url": format!("docker://{addr}/test/plain:1")}, "timeout": 3});
        let op = import(server.base_url(), server.token(), body).await;
        assert_eq!(op["status"], "FAILED", "{op}");
        assert_eq!(seen.recv_timeout(Duration::from_secs(5)).expect("the import connected"), b"GET ");
        std::thread::spawn(move || drop(server)).join().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_import_ends_cancelled() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().take(16) {
                held.push(s);
            }
        });
        let server = crate::support_local::local_server();
        let (base, token) = (server.base_url(), server.token());
        let http = reqwest::Client::new();
        let created: Value = http
            .post(format!("{base}/v1/images/import"))
            .bearer_auth(token)
            .json(&json!({"registry": {"url": format!("docker://{addr}/test/stalled:1")}, "timeout": 600}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["uuid"].as_str().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = http.delete(format!("{base}/v1/operations/{id}")).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 202);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let op: Value = http
                .get(format!("{base}/v1/operations/{id}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if op["status"] == "CANCELLED" {
                break;
            }
            assert!(Instant::now() < deadline, "not cancelled: {op}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_imports_of_one_image_agree() {
        let server = crate::support_local::local_server();
        let (base, token) = (server.base_url(), server.token());
        let r = reg::open_registry();
        reg::push_image(r, "test/concurrent", "1", &[busybox_layer()], &config(host_arch(), &["N=1"], None));
        let body =
            json!({"registry": {"url": format!("docker://{}/test/concurrent:1", r.addr)}, "tag": "concurrent:1"});
        let (a, b, c) = tokio::join!(
            import(base, token, body.clone()),
            import(base, token, body.clone()),
            import(base, token, body)
        );
        for op in [&a, &b, &c] {
            assert_eq!(op["status"], "SUCCESS", "{op}");
            assert_eq!(op["result"]["image"], a["result"]["image"]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_image_larger_than_the_import_limit_fails() {
        // A server of its own, with a 1 MiB cap on what an import unpacks.
        let server = std::thread::spawn(|| {
            contree_local::LocalServer::start_blocking(
                contree_local::LocalConfig::default().with_max_import_bytes(1 << 20),
            )
            .expect("start")
        })
        .join()
        .unwrap();
        let r = reg::open_registry();
        // 8 MiB of zeros: a few KiB compressed.
        let zeros = vec![0u8; 8 << 20];
        let bomb = gzip_layer(&tar(&[Entry::File("zeros", &zeros, 0o644)]));
        assert!(bomb.blob.len() < 1 << 20);
        reg::push_image(r, "test/bomb", "1", &[bomb], &config(host_arch(), &[], None));
        let op = import(
            server.base_url(),
            server.token(),
            json!({"registry": {"url": format!("docker://{}/test/bomb:1", r.addr)}}),
        )
        .await;
        assert_eq!(op["status"], "FAILED", "{op}");
        assert!(op["error"].as_str().unwrap().contains("more than 1048576 bytes"), "{op}");
        std::thread::spawn(move || drop(server)).join().unwrap();
    }
}
