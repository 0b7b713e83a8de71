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
