//! Running the `strata` binary: a server on a free port, and commands.
#![allow(dead_code)] // Each test file uses part of this.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// Starts `strata serve` on a free port and returns it with its base URL. (If it exits before it
/// listens, the assertion fails the test and the exited child needs no wait.)
pub fn start_server(data: &std::path::Path) -> (Child, String) {
    start_server_with(data, &[])
}

/// [`start_server`] with more arguments of `serve` (the URL is `https://…` with `--tls-cert`).
#[allow(clippy::zombie_processes)]
pub fn start_server_with(data: &std::path::Path, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start strata serve");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "strata serve exited before listening");
        if let Some(rest) = line.split("serving on ").nth(1) {
            let url = rest.split_whitespace().next().unwrap().to_owned();
            // Keep draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in stderr.lines() {});
            return (child, url);
        }
    }
}

/// Runs `strata <args>` to completion.
pub fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata")).args(args).output().expect("run strata")
}

/// Runs `strata <args>`, which must succeed; returns its standard output.
pub fn strata_ok(args: &[&str]) -> Vec<u8> {
    let output = strata(args);
    assert!(output.status.success(), "strata {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

pub fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}
