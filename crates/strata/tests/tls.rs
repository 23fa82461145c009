//! `strata serve --tls-cert --tls-key` as a process: the CLI over https with `--tls-ca`, the
//! certificate replaced and reloaded on SIGHUP, bad TLS files refused at start.

mod common;

use common::{path, start_server_with, strata, strata_ok};
use std::path::Path;
use strata_server::testing::TestAuthority;

/// A new CA, and a server certificate for 127.0.0.1 it signed: writes `ca.pem`, `server.pem`,
/// `server.key` into `dir`.
fn issue(dir: &Path) {
    let ca = TestAuthority::new("Strata test CA");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    ca.server_files(dir);
}

#[test]
fn the_cli_over_https_and_a_certificate_reloaded_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    issue(&first);
    issue(&second);
    // The server reads its files from where the operator keeps them: `live/`.
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    for name in ["server.pem", "server.key"] {
        std::fs::copy(first.join(name), live.join(name)).unwrap();
    }
    let (cert, key) = (live.join("server.pem"), live.join("server.key"));
    let (mut server, url) =
        start_server_with(&dir.path().join("data"), &["--tls-cert", path(&cert), "--tls-key", path(&key)]);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let first_ca = first.join("ca.pem");
    strata_ok(&["--url", &url, "--tls-ca", path(&first_ca), "append", "order-1", "--type", "Placed", r#"{"n":1}"#]);
    let read = strata_ok(&["--url", &url, "--tls-ca", path(&first_ca), "--json", "read", "order-1"]);
    assert!(String::from_utf8_lossy(&read).contains(r#""n":1"#));
    // Without the CA the certificate is not trusted, and the CLI says so.
    let untrusted = strata(&["--url", &url, "read", "order-1"]);
    assert_eq!(untrusted.status.code(), Some(1));

    // The certificate is replaced, then SIGHUP: new connections get the new one.
    for name in ["server.pem", "server.key"] {
        std::fs::copy(second.join(name), live.join(name)).unwrap();
    }
    // SAFETY: kill(2) on the PID of the child this test started.
    assert_eq!(unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGHUP) }, 0);
    let second_ca = second.join("ca.pem");
    let started = std::time::Instant::now();
    loop {
        let output = strata(&["--url", &url, "--tls-ca", path(&second_ca), "--json", "read", "order-1"]);
        if output.status.success() {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the reload did not take effect");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!strata(&["--url", &url, "--tls-ca", path(&first_ca), "read", "order-1"]).status.success());
    assert!(server.try_wait().unwrap().is_none(), "SIGHUP reloads, it does not stop the server");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn bad_tls_files_stop_serve_before_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    issue(dir.path());
    std::fs::write(dir.path().join("broken.key"), "not a key\n").unwrap();
    let data = dir.path().join("data");
    let output = strata(&[
        "serve",
        "--data",
        path(&data),
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        path(&dir.path().join("server.pem")),
        "--tls-key",
        path(&dir.path().join("broken.key")),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("set up TLS") && message.contains("--tls-key") && message.contains("broken.key"),
        "{message}"
    );
    let output = strata(&["serve", "--data", path(&data), "--tls-cert", path(&dir.path().join("server.pem"))]);
    assert_eq!(output.status.code(), Some(2), "--tls-cert needs --tls-key");
    let output =
        strata(&["--url", "https://127.0.0.1:1", "--tls-ca", path(&dir.path().join("broken.key")), "read", "x"]);
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("--tls-ca") && message.contains("no PEM certificate"), "{message}");
}

#[test]
fn plain_http_off_loopback_needs_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = strata(&["serve", "--data", path(&data), "--listen", "0.0.0.0:0"]);
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("not a loopback address") && message.contains("--tls-cert") && message.contains("--insecure"),
        "{message}"
    );
    assert!(!data.exists(), "refused before the data directory is touched");
    // With --insecure it serves (on every address: the test only reads the log line, then stops it).
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--data", path(&data), "--listen", "0.0.0.0:0", "--insecure"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("serving on http://0.0.0.0:") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0, "serve --insecure exited");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let output = strata(&["serve", "--data", path(&data), "--insecure", "--tls-cert", "x.pem", "--tls-key", "x.key"]);
    assert_eq!(output.status.code(), Some(2), "--insecure and --tls-cert contradict each other");
}
