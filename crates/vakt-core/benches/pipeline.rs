//! Pipeline benchmark: events through all six stages with 50 rules, no I/O (`cargo bench -p vakt-core`).

use std::collections::HashMap;

use chrono::Utc;
use divan::counter::ItemsCount;
use serde_json::json;
use vakt_core::{Alert, EventInput, Fingerprint, Pipeline, PipelineConfig};

// The server binary uses mimalloc too; measure what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

/// 50 rules: 40 keyed on a check name (the usual shape), 10 that every event must evaluate.
fn config(rules: usize) -> String {
    let mut text = String::from("[actions.page]\ntype = \"notify\"\nchannel = \"email\"\n");
    for i in 0..rules {
        let rule = if i % 5 == 4 {
            format!(
                "[[rules]]\nname = \"label-{i}\"\nwhen = '\"team\" in labels && labels.team == \"t{i}\"'\nlabels = {{ routed = \"{i}\" }}\ncontinue = true\n"
            )
        } else {
            format!(
                "[[rules]]\nname = \"check-{i}\"\nwhen = 'check == \"check_{i}\" && \"value\" in metrics && metrics.value > 50.0'\ncategory = \"exception\"\nseverity = \"critical\"\nactions = [\"page\"]\n"
            )
        };
        text.push_str(&rule);
    }
    text
}

fn pipeline(rules: usize) -> Pipeline {
    let config = PipelineConfig::from_toml(&config(rules)).expect("bench config parses");
    Pipeline::build(&config).expect("bench config compiles")
}

/// 1,000 events over 200 fingerprints, a fifth of them above the rule threshold.
fn events() -> Vec<EventInput> {
    (0..1000)
        .map(|i| {
            EventInput::from_json(
                0,
                json!({
                    "resource": format!("host{}", i % 200),
                    "check": format!("check_{}", i % 60),
                    "severity": if i % 10 == 0 { "ok" } else { "warning" },
                    "summary": "value out of range",
                    "labels": {"team": format!("t{}", i % 50), "dc": "sto1"},
                    "metrics": {"value": (i % 100) as f64},
                }),
            )
            .expect("valid bench event")
        })
        .collect()
}

const BATCH: usize = 1000;

#[divan::bench(args = [10, 50, 100, 200, 1000])]
fn all_stages(bencher: divan::Bencher, rules: usize) {
    let pipeline = pipeline(rules);
    let inputs = events();
    bencher
        .counter(ItemsCount::new(BATCH))
        .with_inputs(|| inputs.clone())
        .bench_local_values(|inputs| {
            let now = Utc::now();
            let mut alerts: HashMap<Fingerprint, Alert> = HashMap::new();
            let silences = vakt_core::silence::ActiveSilences::default();
            let mut n = 0u64;
            let mut new_id = || {
                n += 1;
                n.to_string()
            };
            for (i, input) in inputs.into_iter().enumerate() {
                let prepared = pipeline.prepare(input, "bench", now);
                let current = alerts.get(&prepared.fingerprint);
                let outcome =
                    pipeline.correlate(prepared, i.to_string(), current, &silences, &mut new_id);
                if let Some(alert) = outcome.alert {
                    alerts.insert(
                        alert.fingerprint.clone(),
                        std::sync::Arc::unwrap_or_clone(alert),
                    );
                }
            }
            alerts.len()
        });
}

/// Ten rules matching the summary with `matches` (cached regexes), none indexable.
#[divan::bench]
fn regex_rules(bencher: divan::Bencher) {
    let mut text = String::new();
    for i in 0..10 {
        text.push_str(&format!(
            "[[rules]]\nname = \"re-{i}\"\nwhen = 'summary.matches(\"^value (out|in) of range {i}$\")'\ncategory = \"warning\"\n"
        ));
    }
    let config = PipelineConfig::from_toml(&text).expect("parses");
    let pipeline = Pipeline::build(&config).expect("compiles");
    let inputs = events();
    bencher
        .counter(ItemsCount::new(BATCH))
        .with_inputs(|| inputs.clone())
        .bench_local_values(|inputs| {
            let now = Utc::now();
            inputs
                .into_iter()
                .map(|input| pipeline.prepare(input, "bench", now))
                .collect::<Vec<_>>()
        });
}

#[divan::bench(args = [50])]
fn stateless_stages(bencher: divan::Bencher, rules: usize) {
    let pipeline = pipeline(rules);
    let inputs = events();
    bencher
        .counter(ItemsCount::new(BATCH))
        .with_inputs(|| inputs.clone())
        .bench_local_values(|inputs| {
            let now = Utc::now();
            inputs
                .into_iter()
                .map(|input| pipeline.prepare(input, "bench", now))
                .collect::<Vec<_>>()
        });
}
