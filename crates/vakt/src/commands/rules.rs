//! `vakt rules check` and `vakt rules test`: the configuration checked, an event traced, and
//! suites of rule tests run, without a server.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use vakt_core::EventInput;

use crate::cli::{ConfigArg, Failure};
use crate::config::{Config, Overrides};

pub fn check(args: ConfigArg) -> Result<(), Failure> {
    let config =
        Config::load(args.config.as_deref(), &Overrides::default()).map_err(Failure::user)?;
    let rules = config.pipeline.rules().rules();
    let disabled = rules.iter().filter(|r| !r.enabled).count();
    println!(
        "ok: {}: {} rules ({} disabled), {} actions",
        config.name(),
        rules.len(),
        disabled,
        config.file.actions.len()
    );
    Ok(())
}

pub fn test(args: ConfigArg, event: &Path, as_json: bool) -> Result<(), Failure> {
    let config =
        Config::load(args.config.as_deref(), &Overrides::default()).map_err(Failure::user)?;
    let text = read(event).map_err(Failure::user)?;
    let inputs = events(&text).map_err(|problems| {
        Failure::user(anyhow!(
            "{}: invalid event:\n  {}",
            event.display(),
            problems.join("\n  ")
        ))
    })?;
    let pipeline = &config.pipeline;
    let now = chrono::Utc::now();
    let mut reports = Vec::new();
    for (index, input) in inputs.into_iter().enumerate() {
        let prepared = pipeline.prepare(input, "test", now);
        let mut ids = 0;
        let mut new_id = || {
            ids += 1;
            format!("test-{index}-{ids}")
        };
        let outcome = pipeline.correlate(
            prepared,
            format!("test-{index}"),
            None,
            &vakt_core::silence::ActiveSilences::default(),
            &mut new_id,
        );
        if as_json {
            reports.push(json!({
                "event": outcome.record,
                "transition": outcome.transition.as_str(),
                "alert": outcome.alert,
                "actions": outcome.actions,
            }));
            continue;
        }
        let record = &outcome.record;
        let e = &record.event;
        println!(
            "event {index}: {} {} {} {:?}",
            e.resource, e.check, e.severity, e.summary
        );
        for entry in &record.trace {
            println!("  {entry}");
        }
        let actions: Vec<&str> = outcome.actions.iter().map(|a| &*a.action).collect();
        println!(
            "  => {}: category {}, severity {}, fingerprint {}, actions: {}",
            if record.dropped { "dropped" } else { "kept" },
            record.category,
            e.severity,
            record.fingerprint,
            if actions.is_empty() {
                "none".to_owned()
            } else {
                actions.join(", ")
            }
        );
        println!("  (assumes no alert is open for this fingerprint yet)");
    }
    if as_json {
        let text = serde_json::to_string_pretty(&reports).map_err(Failure::internal)?;
        println!("{text}");
    }
    Ok(())
}

/// `vakt rules test --suite DIR`: every test of every `*.toml` file in `DIR` (or the one
/// file), each failure with its step, expectation, outcome and trace.
pub fn suite(args: ConfigArg, path: &Path, as_json: bool) -> Result<(), Failure> {
    use vakt_core::suite;
    let config =
        Config::load(args.config.as_deref(), &Overrides::default()).map_err(Failure::user)?;
    let files = suite_files(path).map_err(Failure::user)?;
    let mut suites = Vec::new();
    let mut invalid = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))
            .map_err(Failure::user)?;
        match suite::parse(&source) {
            Ok(parsed) => suites.push((file, parsed)),
            Err(errors) => invalid.extend(
                errors
                    .iter()
                    .map(|e| e.render(&file.display().to_string(), &source)),
            ),
        }
    }
    if !invalid.is_empty() {
        return Err(Failure::user(anyhow!(
            "invalid rule tests:\n  {}",
            invalid.join("\n  ")
        )));
    }
    let pipeline = &config.pipeline;
    let (mut total, mut failed) = (0usize, 0usize);
    let mut report = Vec::new();
    for (file, parsed) in &suites {
        if !as_json {
            println!("{}", file.display());
        }
        for test in &parsed.tests {
            let outcome = suite::run(pipeline, test);
            total += 1;
            if !outcome.passed() {
                failed += 1;
            }
            if as_json {
                report.push(json!({
                    "file": file.display().to_string(),
                    "test": outcome.name,
                    "line": outcome.line,
                    "passed": outcome.passed(),
                    "mismatches": outcome.mismatches.iter().map(|m| json!({
                        "step": m.step,
                        "line": m.line,
                        "field": m.field,
                        "expected": m.expected,
                        "got": m.got,
                        "trace": m.trace,
                    })).collect::<Vec<_>>(),
                }));
                continue;
            }
            if outcome.passed() {
                println!("  ok    {} ({} steps)", outcome.name, outcome.steps);
                continue;
            }
            println!("  FAIL  {} (line {})", outcome.name, outcome.line);
            let mut traced = None;
            for m in &outcome.mismatches {
                println!(
                    "        step {} (line {}): {}: expected {}, got {}",
                    m.step, m.line, m.field, m.expected, m.got
                );
                // The trace once per failing step, after its mismatches.
                if traced != Some(m.step) {
                    traced = Some(m.step);
                    for entry in &m.trace {
                        println!("          {entry}");
                    }
                }
            }
        }
    }
    if as_json {
        let text = serde_json::to_string_pretty(&report).map_err(Failure::internal)?;
        println!("{text}");
    } else {
        println!(
            "{total} tests, {} passed, {failed} failed ({} against {})",
            total - failed,
            path.display(),
            config.name()
        );
    }
    if failed > 0 {
        return Err(Failure::user(anyhow!(
            "{failed} of {total} rule tests failed"
        )));
    }
    Ok(())
}

/// The suite's files: `path` itself, or the `*.toml` files directly in it, sorted.
fn suite_files(path: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?
    {
        let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
        let file = entry.path();
        if file.extension().is_some_and(|e| e == "toml") && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(anyhow!(
            "{}: no rule test files (*.toml) in it",
            path.display()
        ));
    }
    Ok(files)
}

fn read(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// **Boundary:** an event file: one event object or an array of them. Every problem is
/// listed (`index`, field, message), or the JSON error with its line and column.
fn events(text: &str) -> Result<Vec<EventInput>, Vec<String>> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| vec![format!("invalid JSON: {e}")])?;
    let values = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut inputs = Vec::new();
    let mut problems = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        match EventInput::from_json(index, value) {
            Ok(input) => inputs.push(input),
            Err(errors) => problems.extend(errors.iter().map(ToString::to_string)),
        }
    }
    if problems.is_empty() {
        Ok(inputs)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Whatever the file holds, the answer is events or a list of problems, never a
        /// panic, and an invalid file always says what is wrong.
        #[test]
        fn any_event_file_is_read_or_refused_with_reasons(text in ".{0,300}") {
            if let Err(problems) = events(&text) {
                proptest::prop_assert!(!problems.is_empty());
                proptest::prop_assert!(problems.iter().all(|p| !p.is_empty()));
            }
        }

        #[test]
        fn json_shaped_files_name_the_index_of_each_bad_event(
            resource in "[a-z]{0,5}", severity in "(critical|nope|)",
        ) {
            let text = format!("[{{\"resource\": \"{resource}\", \"check\": \"c\", \"summary\": \"s\", \"severity\": \"{severity}\"}}]");
            match events(&text) {
                Ok(found) => proptest::prop_assert_eq!(found.len(), 1),
                Err(problems) => proptest::prop_assert!(problems[0].contains('0'), "{:?}", problems),
            }
        }
    }
}
