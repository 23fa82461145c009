//! HTTPS: a rustls client (reqwest) against the server over TLS — HTTP/2 and HTTP/1.1 by ALPN, a
//! subscription over HTTP/2, a client that does not trust the certificate, plain HTTP to the TLS
//! port, a client certificate required (mTLS), the certificate reloaded, bad files refused.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use strata_server::ServeOptions;
use strata_server::testing::TestAuthority as Authority;
use strata_server::tls::{Tls, TlsFiles};

fn root(authority: &Authority) -> reqwest::Certificate {
    reqwest::Certificate::from_pem(authority.pem().as_bytes()).unwrap()
}

fn server_files(dir: &Path, authority: &Authority, client_ca: Option<&Authority>) -> TlsFiles {
    let files = authority.server_files(dir);
    let client_ca = client_ca.map(|ca| {
        std::fs::write(dir.join("client-ca.pem"), ca.pem()).unwrap();
        dir.join("client-ca.pem")
    });
    TlsFiles { client_ca, ..files }
}

struct Running {
    url: String,
    address: std::net::SocketAddr,
    tls: Arc<Tls>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn serve(tls: Arc<Tls>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = strata_storage::Store::open(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions { tls: Some(tls.clone()), ..ServeOptions::default() };
    let task = tokio::spawn(strata_server::serve(store, listener, options, async move {
        let _ = stopped.await;
    }));
    Running { url: format!("https://{address}"), address, tls, stop, task, _dir: dir }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

fn client(roots: &[&Authority]) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder().use_rustls_tls().timeout(Duration::from_secs(10));
    roots.iter().fold(builder, |builder, authority| builder.add_root_certificate(root(authority)))
}

#[tokio::test]
async fn https_over_http2_and_http1_with_a_subscription_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("Strata test CA");
    let tls = Arc::new(Tls::load(server_files(dir.path(), &ca, None)).unwrap());
    let server = serve(tls).await;

    // HTTP/2 by ALPN (reqwest offers it first), and HTTP/1.1 when the client only speaks that.
    let http2 = client(&[&ca]).build().unwrap();
    let response = http2.get(format!("{}/v1/health", server.url)).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, reqwest::Version::HTTP_2));
    let http1 = client(&[&ca]).http1_only().build().unwrap();
    let response = http1.get(format!("{}/v1/info", server.url)).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, reqwest::Version::HTTP_11));
    // By a name of the certificate too.
    let by_name = format!("https://localhost:{}/v1/health", server.address.port());
    assert_eq!(http2.get(by_name).send().await.unwrap().status(), 200);

    // An append, then a subscription over HTTP/2 that delivers it.
    let body = serde_json::json!({ "events": [{ "type": "Opened", "data": { "n": 1 } }] });
    let response = http2.post(format!("{}/v1/streams/tls-1", server.url)).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut subscription =
        http2.get(format!("{}/v1/subscribe?stream=tls-1&from=start", server.url)).send().await.unwrap();
    assert_eq!(subscription.version(), reqwest::Version::HTTP_2);
    let mut received = String::new();
    while !received.contains("\"Opened\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), subscription.chunk()).await.unwrap().unwrap();
        received.push_str(&String::from_utf8_lossy(&chunk.expect("the subscription goes on")));
    }
    drop(subscription);

    // A client that does not trust the certificate's CA gets no answer.
    let error = client(&[&Authority::new("Another CA")]).build().unwrap().get(&server.url).send().await.unwrap_err();
    assert!(format!("{error:?}").contains("UnknownIssuer"), "{error:?}");
    // Plain HTTP to the TLS port is told what to do.
    let plain = reqwest::get(format!("http://{}/v1/health", server.address)).await.unwrap();
    assert_eq!(plain.status(), 400);
    assert!(plain.text().await.unwrap().contains("use an https:// URL"));
    // Garbage instead of a handshake is dropped; the server goes on.
    let mut raw = tokio::net::TcpStream::connect(server.address).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut raw, &[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5]).await.unwrap();
    let mut rest = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut rest));
    assert!(closed.await.is_ok(), "the server closes a connection whose handshake is garbage");
    assert_eq!(http2.get(format!("{}/v1/health", server.url)).send().await.unwrap().status(), 200);

    // Shutdown ends an HTTP/2 subscription that is still open, and returns.
    let mut open = http2.get(format!("{}/v1/subscribe?from=start", server.url)).send().await.unwrap();
    assert_eq!(open.version(), reqwest::Version::HTTP_2);
    let _ = tokio::time::timeout(Duration::from_secs(10), open.chunk()).await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(20), server.stop())
        .await
        .expect("shutdown with an open HTTP/2 subscription");
    let ended = tokio::time::timeout(Duration::from_secs(10), async { while let Ok(Some(_)) = open.chunk().await {} });
    assert!(ended.await.is_ok(), "the subscription ended with the server");
}

#[tokio::test]
async fn a_client_certificate_is_required_when_a_client_ca_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, clients) = (Authority::new("Strata test CA"), Authority::new("Strata clients CA"));
    let tls = Arc::new(Tls::load(server_files(dir.path(), &ca, Some(&clients))).unwrap());
    let server = serve(tls).await;
    let url = format!("{}/v1/health", server.url);

    let without = client(&[&ca]).build().unwrap().get(&url).send().await;
    assert!(without.is_err(), "a client without a certificate is refused: {without:?}");
    let identity = |authority: &Authority| {
        let (cert, key) = authority.issue(&["reporting-service"], true);
        reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap()
    };
    let stranger = client(&[&ca]).identity(identity(&Authority::new("Elsewhere"))).build().unwrap();
    assert!(stranger.get(&url).send().await.is_err(), "a certificate of another CA is refused");
    let member = client(&[&ca]).identity(identity(&clients)).build().unwrap();
    assert_eq!(member.get(&url).send().await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_and_a_failed_one_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (Authority::new("First CA"), Authority::new("Second CA"));
    let files = server_files(dir.path(), &first, None);
    let server = serve(Arc::new(Tls::load(files.clone()).unwrap())).await;
    let url = format!("{}/v1/health", server.url);
    // New connections each time: an open one keeps the configuration it began with.
    let trusting = |authority: &Authority| client(&[authority]).pool_max_idle_per_host(0).build().unwrap();
    assert_eq!(trusting(&first).get(&url).send().await.unwrap().status(), 200);

    server_files(dir.path(), &second, None);
    assert!(trusting(&second).get(&url).send().await.is_err(), "the files changed, the configuration not yet");
    server.tls.reload().unwrap();
    assert_eq!(trusting(&second).get(&url).send().await.unwrap().status(), 200);
    assert!(trusting(&first).get(&url).send().await.is_err(), "the old certificate is gone");

    // A key that is not a key: the reload is refused and the certificate in force stays.
    std::fs::write(&files.key, "not a key").unwrap();
    let refused = server.tls.reload().unwrap_err();
    assert!(refused.contains("--tls-key") && refused.contains("server.key"), "{refused}");
    assert_eq!(trusting(&second).get(&url).send().await.unwrap().status(), 200);
    server.stop().await;
}

#[test]
fn bad_files_are_refused_naming_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("Strata test CA");
    let files = server_files(dir.path(), &ca, None);
    let refused = |files: TlsFiles| Tls::load(files).unwrap_err();

    let missing = TlsFiles { cert: dir.path().join("nowhere.pem"), ..files.clone() };
    assert!(refused(missing).contains("read --tls-cert"), "a missing certificate file");
    std::fs::write(dir.path().join("empty.pem"), "no PEM here\n").unwrap();
    let empty = TlsFiles { cert: dir.path().join("empty.pem"), ..files.clone() };
    assert!(refused(empty).contains("holds no PEM certificate"));
    // The key of another certificate.
    let (_, other_key) = ca.issue(&["other"], false);
    std::fs::write(dir.path().join("other.key"), other_key).unwrap();
    let mismatched = TlsFiles { key: dir.path().join("other.key"), ..files.clone() };
    assert!(refused(mismatched).contains("does not go with the certificate"));
    let no_ca = TlsFiles { client_ca: Some(dir.path().join("empty.pem")), ..files };
    assert!(refused(no_ca).contains("--tls-client-ca"));
}
