//! Conventions every source file keeps: a `//!` line saying its role.

use std::path::Path;

use crate::harness::repo_root;

fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, found);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_role_line() {
    let mut files = Vec::new();
    rust_files(repo_root(), &mut files);
    assert!(files.len() > 20, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|path| {
            std::fs::read_to_string(path)
                .map(|text| !text.starts_with("//! "))
                .unwrap_or(true)
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//! ` line:\n{}",
        missing.join("\n")
    );
}

/// Issue 13: the README's test command is the one command CI runs, so a fresh machine
/// needs nothing else.
#[test]
fn ci_runs_exactly_the_readmes_test_command() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README starts with a sh block");
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands.len(), 2, "start and test: {commands:?}");
    let test = commands[1];
    let ci = std::fs::read_to_string(repo_root().join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == test),
        ".ci/run must run {test:?} as a command of its own:\n{ci}"
    );
    let script = repo_root().join(test.trim_start_matches("./"));
    let text = std::fs::read_to_string(&script).expect("the test command is a script here");
    for needed in [
        "apt-get install",
        "pip install",
        "pg_ctlcluster",
        "cargo test --workspace --all-targets",
    ] {
        assert!(text.contains(needed), "{test} does not {needed:?}");
    }
}
