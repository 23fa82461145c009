//! `strata bench` through the binary: it runs the `strata-bench` beside it with the same arguments
//! and exits with its code, and without one it fails saying how to build it. A copy of `strata` in a
//! directory of the test's own stands beside a stand-in `strata-bench` (a shell script), so the test
//! needs no benchmark build.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn run(strata: &Path, args: &[&str]) -> Output {
    Command::new(strata).args(args).output().expect("run the copy of strata")
}

// One test, so that no other thread of this process forks while the stand-in script is open for
// writing (which would make its exec fail with "text file busy").
#[test]
fn bench_runs_the_strata_bench_beside_it_or_says_how_to_build_it() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let strata = dir.path().join("strata");
    // `strata` finds its directory through /proc/self/exe, which resolves symbolic links: a hard
    // link (same file system as target/) or a copy.
    if std::fs::hard_link(env!("CARGO_BIN_EXE_strata"), &strata).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_strata"), &strata).unwrap();
    }

    let missing = run(&strata, &["bench", "engine", "--rounds", "1"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("strata-bench") && stderr.contains("cargo build"), "{stderr}");
    assert!(stderr.contains(&dir.path().display().to_string()), "names where it looked: {stderr}");

    let bench = dir.path().join("strata-bench");
    std::fs::write(&bench, "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\nexit 7\n").unwrap();
    std::fs::set_permissions(&bench, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Every argument passes through as it is, flags that `strata` itself knows (`--json`, `--data`,
    // `--help`) included.
    for args in [
        &["engine", "--json", "--rounds", "1", "--scenario", "open_1m", "--dir", "/nowhere"][..],
        &["server", "--data", "x", "--", "--help"],
        &["--help"],
        &[],
    ] {
        let output = run(&strata, &[&["bench"], args].concat());
        assert_eq!(output.status.code(), Some(7), "strata bench {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        let passed: Vec<&str> = std::str::from_utf8(&output.stdout).unwrap().lines().collect();
        assert_eq!(passed, args, "strata bench {args:?}");
    }
}
