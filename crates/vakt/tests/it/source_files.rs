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

/// Issue 14: dependencies run one way (cli -> commands -> server -> components -> ingest ->
/// store -> core). Only the assembler (`server.rs`) and the command that starts it import
/// `server`; no component imports `server`, the top-level `config` or the core API's
/// `AppState`: each gets its own `Deps`.
#[test]
fn components_import_neither_the_assembler_nor_the_configuration() {
    let src = repo_root().join("crates/vakt/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let components = [
        "actions/",
        "auth.rs",
        "escalation.rs",
        "expiry.rs",
        "heartbeat.rs",
        "itsm.rs",
        "oncall.rs",
        "probes.rs",
        "retention.rs",
        "silences.rs",
        "sources/",
        "ingest.rs",
        "live.rs",
        "metrics.rs",
    ];
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file
            .strip_prefix(&src)
            .unwrap_or(file)
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let assembler = ["server.rs", "commands/serve.rs", "lib.rs", "main.rs"];
        if code.contains("crate::server") && !assembler.contains(&relative.as_str()) {
            wrong.push(format!("{relative} imports the assembler (crate::server)"));
        }
        if components.iter().any(|c| relative.starts_with(c)) {
            for forbidden in ["crate::config", "AppState", "crate::http::state"] {
                if code.contains(forbidden) {
                    wrong.push(format!("{relative} (a component) uses {forbidden}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
