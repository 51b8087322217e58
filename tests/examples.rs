//! The examples as a user runs them from anywhere: an error is one `error:` line with the
//! library's message and exit status 1, never a Rust debug dump.

use std::path::PathBuf;
use std::process::Command;

/// target/<profile>/examples/<name>: `cargo test` builds the examples beside the tests.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(path.exists(), "{} is not built (cargo test builds the examples)", path.display());
    path
}

#[test]
fn vit_digits_outside_the_repository_prints_the_error_message() {
    let out = Command::new(example("vit_digits"))
        .current_dir(std::env::temp_dir())
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("Io {") && !err.contains("Error:"), "a debug dump: {err}");
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("error: ") && last.contains("assets/vit-digits/config.json"), "{err}");
}
