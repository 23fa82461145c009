//! Running the `strata` binary: a server on a free port, and commands.
#![allow(dead_code)] // Each test file uses part of this.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// Starts `strata serve` on a free port and returns it with its base URL. (If it exits before it
/// listens, the assertion fails the test and the exited child needs no wait.)
#[allow(clippy::zombie_processes)]
pub fn start_server(data: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start strata serve");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "strata serve exited before listening");
        if let Some(rest) = line.split("on http://").nth(1) {
            let address = rest.split_whitespace().next().unwrap();
            // Keep draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in stderr.lines() {});
            return (child, format!("http://{address}"));
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
