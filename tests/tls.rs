//! TLS as a user meets it: wss:// with certificates the test makes, clear
//! start errors for bad files, a reload that keeps open connections, plain
//! ws:// to a TLS port refused and counted, and a cluster whose channel
//! link is TLS.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{ARRIVES, Process, eventually, http_get, metric};
use futures_util::{SinkExt, StreamExt};
use groupcast::{Config, Node, Server};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// A folder of its own for each test's files.
fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "groupcast-tls-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A test CA that signs server certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Its certificate, PEM, written to `path`.
    path: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("groupcast test CA {name}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, issuer.pem()).unwrap();
        Ca { issuer, path }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for `names` (DNS names or IP addresses), and
    /// its key, written to `<dir>/<file>.crt` and `.key`; returns both
    /// paths and the certificate.
    fn issue(&self, dir: &Path, file: &str, names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, file.to_owned());
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let issued = Issued {
            cert: dir.join(format!("{file}.crt")),
            key: dir.join(format!("{file}.key")),
            der: cert.der().clone(),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }
}

struct Issued {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

fn tls_config(issued: &Issued) -> Config {
    Config {
        tls_cert: Some(issued.cert.clone()),
        tls_key: Some(issued.key.clone()),
        demo_page: true,
        ..Config::local("127.0.0.1:0")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS connection to `addr` trusting `roots`, checked against `name`.
async fn tls_connect(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
}

/// A wss:// client, and the certificate the server presented.
struct WssClient {
    ws: WebSocketStream<TlsStream<TcpStream>>,
    server_cert: CertificateDer<'static>,
}

impl WssClient {
    async fn connect(addr: SocketAddr, roots: &[CertificateDer<'static>]) -> WssClient {
        let tls = tls_connect(addr, roots, "localhost")
            .await
            .expect("TLS handshake");
        let (_, session) = tls.get_ref();
        let server_cert = session.peer_certificates().unwrap()[0].clone();
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        let url = format!("wss://localhost:{}/", addr.port());
        let (ws, _) = tokio_tungstenite::client_async(url, tls)
            .await
            .expect("websocket handshake over TLS");
        WssClient { ws, server_cert }
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn join(&mut self, group: &str) {
        self.send(&format!(r#"{{"cmd":"add_group","group_id":"{group}"}}"#))
            .await;
    }

    async fn send_to_group(&mut self, group: &str, message: &str) {
        let command =
            serde_json::json!({"cmd": "send_to_group", "group_id": group, "message": message});
        self.send(&command.to_string()).await;
    }

    async fn recv_text(&mut self) -> String {
        loop {
            let message = tokio::time::timeout(ARRIVES, self.ws.next())
                .await
                .expect("a message in time")
                .expect("the stream is open")
                .expect("no error");
            match message {
                Message::Text(text) => return text.as_str().to_owned(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected text, got {other:?}"),
            }
        }
    }

    /// Joins a private group and round-trips a message through it: every
    /// command sent before has been handled.
    async fn sync(&mut self) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let group = format!("sync-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.join(&group).await;
        self.send_to_group(&group, "synced").await;
        assert_eq!(self.recv_text().await, "synced");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_exchange_group_messages_over_wss() {
    let dir = scratch("wss");
    let ca = Ca::new(&dir, "main");
    // A chain: the server's certificate is signed by an intermediate CA,
    // and the file holds both; the client trusts only the root.
    let intermediate = {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "groupcast test intermediate");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        CertifiedIssuer::signed_by(params, key, &ca.issuer).unwrap()
    };
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &intermediate)
        .unwrap();
    let issued = Issued {
        cert: dir.join("chain.crt"),
        key: dir.join("chain.key"),
        der: leaf.der().clone(),
    };
    std::fs::write(&issued.cert, leaf.pem() + &intermediate.pem()).unwrap();
    std::fs::write(&issued.key, leaf_key.serialize_pem()).unwrap();

    let node = Node::start(tls_config(&issued)).await.expect("node starts");
    let addr = node.addresses().websocket;
    let mut alice = WssClient::connect(addr, &[ca.der()]).await;
    let mut bob = WssClient::connect(addr, &[ca.der()]).await;
    assert_eq!(alice.server_cert, issued.der);
    alice.join("123").await;
    bob.join("123").await;
    alice.sync().await;
    bob.sync().await;
    alice.send_to_group("123", "C'est le message").await;
    assert_eq!(bob.recv_text().await, "C'est le message");
    assert_eq!(alice.recv_text().await, "C'est le message");
    // Large enough that TLS splits it over several records.
    let big = "x".repeat(100_000);
    alice.send_to_group("123", &big).await;
    assert_eq!(bob.recv_text().await, big);

    // The demo page over https.
    let mut tls = tls_connect(addr, &[ca.der()], "localhost").await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    let _ = tls.read_to_string(&mut page).await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page:.200}");
    assert!(page.contains("<html"), "{page:.400}");
    assert_eq!(node.handle().stats().tls_handshake_failures, 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_pkcs1_and_ec_sec1_keys_serve_too() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    for (cert, key) in [("rsa.crt", "rsa-pkcs1.key"), ("ec.crt", "ec-sec1.key")] {
        let cert = fixtures.join(cert);
        let config = Config {
            tls_cert: Some(cert.clone()),
            tls_key: Some(fixtures.join(key)),
            ..Config::local("127.0.0.1:0")
        };
        let node = Node::start(config).await.expect("node starts");
        // The self-signed certificate is its own root.
        let root = CertificateDer::from_pem_file(&cert).unwrap();
        let mut client = WssClient::connect(node.addresses().websocket, &[root]).await;
        client.sync().await;
        node.stop().await;
    }
}

#[tokio::test]
async fn bad_certificate_files_are_clear_start_errors() {
    let dir = scratch("errors");
    let ca = Ca::new(&dir, "errors");
    let one = ca.issue(&dir, "one", &["localhost"]);
    let other = ca.issue(&dir, "other", &["localhost"]);
    let start_error = |cert: &Path, key: &Path| {
        let config = Config {
            tls_cert: Some(cert.to_owned()),
            tls_key: Some(key.to_owned()),
            ..Config::local("127.0.0.1:0")
        };
        async move {
            match Node::start(config).await {
                Ok(_) => panic!("started with a bad pair"),
                Err(error) => error.to_string(),
            }
        }
    };
    let mismatched = start_error(&one.cert, &other.key).await;
    assert!(
        mismatched.contains(&format!("tls_key {}", other.key.display()))
            && mismatched.contains("does not match the certificate"),
        "{mismatched}"
    );
    let missing = start_error(&dir.join("nope.crt"), &one.key).await;
    assert!(
        missing.contains("nope.crt") && missing.contains("cannot read it"),
        "{missing}"
    );
    // Certificate and key swapped: no certificate where one is expected.
    let swapped = start_error(&one.key, &one.cert).await;
    assert!(swapped.contains("no certificate in it"), "{swapped}");
    let no_key = start_error(&one.cert, &one.cert).await;
    assert!(no_key.contains("no private key in it"), "{no_key}");
    let half = Config {
        tls_cert: Some(one.cert.clone()),
        ..Config::local("127.0.0.1:0")
    };
    let why = half.validate().unwrap_err().to_string();
    assert!(why.contains("tls_cert and tls_key go together"), "{why}");

    // The binary says it on standard error and exits 1.
    let output = Command::new(env!("CARGO_BIN_EXE_groupcast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-channel"])
        .arg("--tls-cert")
        .arg(&one.cert)
        .arg("--tls-key")
        .arg(&other.key)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not match the certificate"),
        "{stderr}"
    );
    // A CA without saying the link is TLS, or TLS without a CA: refused
    // by the command line, naming what is missing.
    for (args, missing) in [
        (&["--channel-ca", "ca.pem"][..], "--channel-tls"),
        (&["--channel-tls"][..], "--channel-ca"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_groupcast"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--channel",
                "127.0.0.1:1",
            ])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(missing), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_open_connections_stay() {
    let dir = scratch("sighup");
    let ca = Ca::new(&dir, "sighup");
    let first = ca.issue(&dir, "served", &["localhost"]);
    let server = Process::start_logged(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-channel",
            "--tls-cert",
            first.cert.to_str().unwrap(),
            "--tls-key",
            first.key.to_str().unwrap(),
        ],
        &[("GROUPCAST_LOG", "info")],
    );
    let addr = server.addr("websocket");
    let mut old = WssClient::connect(addr, &[ca.der()]).await;
    assert_eq!(old.server_cert, first.der);
    old.join("g").await;
    old.sync().await;

    // New files in place (the same names, as certbot renews them).
    let renewed_dir = scratch("renewed");
    let renewed = ca.issue(&renewed_dir, "served", &["localhost"]);
    std::fs::copy(&renewed.cert, &first.cert).unwrap();
    std::fs::copy(&renewed.key, &first.key).unwrap();
    server.signal(libc::SIGHUP);
    let mut new = None;
    for _ in 0..100 {
        let client = WssClient::connect(addr, &[ca.der()]).await;
        if client.server_cert == renewed.der {
            new = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut new = new.expect("a new connection sees the new certificate");
    new.join("g").await;
    new.sync().await;
    // The connection made before the reload is still served, both ways.
    old.send_to_group("g", "from before").await;
    assert_eq!(new.recv_text().await, "from before");
    assert_eq!(old.recv_text().await, "from before");
    new.send_to_group("g", "from after").await;
    assert_eq!(old.recv_text().await, "from after");

    // A bad reload keeps the certificate in use and says why.
    std::fs::write(&first.key, "not a key").unwrap();
    server.signal(libc::SIGHUP);
    eventually("the failed reload is logged", || {
        server.stderr().contains("TLS not reloaded")
    })
    .await;
    assert!(server.stderr().contains("no private key in it"));
    let after = WssClient::connect(addr, &[ca.der()]).await;
    assert_eq!(after.server_cert, renewed.der);
    old.send_to_group("g", "still here").await;
    assert_eq!(old.recv_text().await, "still here");
    server.signal(libc::SIGTERM);
    assert_eq!(
        tokio::task::spawn_blocking(move || server.wait())
            .await
            .unwrap(),
        Some(0)
    );
}

#[test]
fn reload_tls_from_rust_swaps_the_certificate_or_says_why_not() {
    let dir = scratch("reload");
    let ca = Ca::new(&dir, "reload");
    let first = ca.issue(&dir, "served", &["localhost"]);
    let server = Server::start(tls_config(&first)).unwrap();
    let addr = server.addresses().websocket;
    let cert_seen = || {
        server
            .block_on(async { WssClient::connect(addr, &[ca.der()]).await.server_cert })
            .unwrap()
    };
    assert_eq!(cert_seen(), first.der);
    let second = ca.issue(&scratch("reload2"), "served", &["localhost"]);
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    server.reload_tls().unwrap();
    assert_eq!(cert_seen(), second.der);

    // A key from another pair: refused, the one in use stays.
    let stranger = ca.issue(&scratch("reload3"), "stranger", &["localhost"]);
    std::fs::copy(&stranger.key, &first.key).unwrap();
    let why = server.reload_tls().unwrap_err().to_string();
    assert!(why.contains("does not match the certificate"), "{why}");
    assert_eq!(cert_seen(), second.der);
    server.stop();
    assert!(matches!(
        server.reload_tls(),
        Err(groupcast::Error::Stopped)
    ));

    let plain = Server::start(Config::local("127.0.0.1:0")).unwrap();
    let why = plain.reload_tls().unwrap_err().to_string();
    assert!(why.contains("serves no TLS"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_ws_to_a_tls_port_fails_cleanly_and_is_counted() {
    let dir = scratch("plain");
    let ca = Ca::new(&dir, "plain");
    let issued = ca.issue(&dir, "served", &["localhost"]);
    let config = Config {
        metrics_listen: Some("127.0.0.1:0".into()),
        ..tls_config(&issued)
    };
    let node = Node::start(config).await.expect("node starts");
    let addr = node.addresses().websocket;
    let refused = tokio::time::timeout(
        ARRIVES,
        tokio_tungstenite::connect_async(format!("ws://{addr}/")),
    )
    .await
    .expect("answered at once");
    let error = refused
        .expect_err("a plain websocket is refused")
        .to_string();
    assert!(error.contains("400"), "{error}");
    // A browser or curl asking http:// is told what to use instead.
    let (status, body) = http_get(addr, "/").await;
    assert_eq!(status, 400);
    assert!(body.contains("wss://"), "{body}");
    // A client that does not trust the certificate fails its handshake.
    let stranger = Ca::new(&dir, "stranger");
    assert!(
        tls_connect(addr, &[stranger.der()], "localhost")
            .await
            .is_err()
    );
    eventually("three failures counted", || {
        node.handle().stats().tls_handshake_failures == 3
    })
    .await;
    let (_, metrics) = http_get(node.addresses().metrics.unwrap(), "/metrics").await;
    assert_eq!(metric(&metrics, "tls_handshake_failures_total"), 3);
    // And the node serves wss:// as before.
    let mut client = WssClient::connect(addr, &[ca.der()]).await;
    client.sync().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_a_tls_channel_link_delivers_across_nodes() {
    let dir = scratch("cluster");
    let ca = Ca::new(&dir, "cluster");
    // The certificate names a host; nodes reach it by IP and give the name.
    let hub_cert = ca.issue(&dir, "hub", &["channel.test"]);
    let channel = Process::start(&[
        "channel",
        "--listen",
        "127.0.0.1:0",
        "--secret",
        "s3cret",
        "--tls-cert",
        hub_cert.cert.to_str().unwrap(),
        "--tls-key",
        hub_cert.key.to_str().unwrap(),
    ]);
    let hub = channel.addr("channel").to_string();
    let node = |extra: &[&str]| {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--channel",
            &hub,
            "--channel-secret",
            "s3cret",
            "--channel-tls",
            "--channel-ca",
            ca.path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Process::start(&args)
    };
    let node_a = node(&["--channel-server-name", "channel.test"]);
    let node_b = node(&["--channel-server-name", "channel.test"]);
    let mut sender = common::Client::connect(node_a.addr("websocket")).await;
    let mut member_b = common::Client::connect(node_b.addr("websocket")).await;
    member_b.join("g").await;
    member_b.sync().await;
    // Node b subscribes asynchronously: probe until a message crosses.
    let mut crossed = false;
    for probe in 0..50 {
        sender.send_to_group("g", &format!("probe {probe}")).await;
        let got = tokio::time::timeout(Duration::from_millis(100), member_b.recv_text()).await;
        if got.is_ok() {
            crossed = true;
            break;
        }
    }
    assert!(crossed, "a message crossed the TLS channel link");
    sender.send_to_group("g", "across").await;
    loop {
        let text = member_b.recv_text().await;
        if text == "across" {
            break;
        }
        assert!(text.starts_with("probe"), "{text}");
    }

    // Without the right name the certificate is refused: no link.
    let wrong_name = Config {
        listen: "127.0.0.1:0".into(),
        channel: Some(hub.clone()),
        channel_listen: None,
        channel_secret: Some("s3cret".into()),
        channel_ca: Some(ca.path.clone()),
        ..Config::default()
    };
    let lost = Node::start(wrong_name).await.expect("node starts");
    eventually("the link's TLS error is known", || {
        let reason = lost.handle().health().reason;
        reason.is_some_and(|r| r.contains("TLS"))
    })
    .await;
    let reason = lost.handle().health().reason.unwrap();
    assert!(reason.contains("TLS handshake failed"), "{reason}");
    assert!(!lost.handle().bus_connected());
    lost.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_channel_tls_the_secret_never_crosses_in_clear() {
    let dir = scratch("clear");
    let ca = Ca::new(&dir, "clear");
    // A listener that records what a node sends first.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".into(),
        channel: Some(addr.to_string()),
        channel_listen: None,
        channel_secret: Some("do-not-leak".into()),
        channel_ca: Some(ca.path.clone()),
        ..Config::default()
    };
    let node = Node::start(config).await.expect("node starts");
    let (mut stream, _) = tokio::time::timeout(ARRIVES, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(ARRIVES, stream.read(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0);
    assert_eq!(first[0], 0x16, "a TLS handshake record comes first");
    let seen = String::from_utf8_lossy(&first[..n]);
    assert!(!seen.contains("do-not-leak"), "the secret went in clear");
    drop(stream);
    node.stop().await;

    // A CA file that cannot be read stops the start, naming it.
    let config = Config {
        listen: "127.0.0.1:0".into(),
        channel: Some(addr.to_string()),
        channel_listen: None,
        channel_ca: Some(dir.join("missing-ca.pem")),
        ..Config::default()
    };
    let why = Node::start(config).await.err().unwrap().to_string();
    assert!(
        why.contains("channel_ca") && why.contains("missing-ca.pem"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_channel_server_speaks_tls_to_its_own_node_and_others() {
    let dir = scratch("embedded");
    let ca = Ca::new(&dir, "embedded");
    let hub_cert = ca.issue(&dir, "hub", &["127.0.0.1"]);
    let config = Config {
        listen: "127.0.0.1:0".into(),
        channel_listen: Some("127.0.0.1:0".into()),
        channel_tls_cert: Some(hub_cert.cert.clone()),
        channel_tls_key: Some(hub_cert.key.clone()),
        channel_ca: Some(ca.path.clone()),
        ..Config::default()
    };
    let first = Node::start(config).await.expect("node starts");
    assert!(first.handle().bus_connected(), "its own link is up");
    let hub = first.addresses().channel.unwrap();
    let second = Node::start(Config {
        listen: "127.0.0.1:0".into(),
        channel: Some(hub.to_string()),
        channel_listen: None,
        channel_ca: Some(ca.path.clone()),
        ..Config::default()
    })
    .await
    .unwrap();
    tokio::time::timeout(ARRIVES, second.handle().wait_bus_connected())
        .await
        .expect("the second node's TLS link comes up");
    // A plain client is not served by the TLS channel server.
    let mut plain = TcpStream::connect(hub).await.unwrap();
    plain.write_all(&[0, 0, 0, 4]).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(ARRIVES, plain.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(&[0, 0]), "no channel frame in clear");
    // A node that forgot --channel-tls is told why, in its health.
    let plain_node = Node::start(Config {
        listen: "127.0.0.1:0".into(),
        channel: Some(hub.to_string()),
        channel_listen: None,
        ..Config::default()
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + ARRIVES;
    loop {
        let reason = plain_node.handle().health().reason.unwrap_or_default();
        if reason.contains("answered in plain HTTP") && reason.contains("--channel-tls") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "health says: {reason:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    plain_node.stop().await;
    first.handle().reload_tls().unwrap();
    second.stop().await;
    first.stop().await;
}
