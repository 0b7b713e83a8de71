//! Probes' pure parts: grading a measured value against thresholds with hysteresis, and
//! reading a Nagios-compatible plugin's result (exit code, summary line, perfdata).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::event::Severity;

/// Thresholds on one measured value. `warning`/`critical` are reached at or beyond the value
/// (above it, or below it with `below = true`); a level is left only once the value is
/// `hysteresis` back on the good side of its threshold, so a value hovering at a threshold
/// does not flap.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    #[serde(default)]
    pub warning: Option<f64>,
    #[serde(default)]
    pub critical: Option<f64>,
    /// In the value's unit (percentage points for a disk).
    #[serde(default)]
    pub hysteresis: f64,
    /// Low values are bad (free memory, days until a certificate expires).
    #[serde(default)]
    pub below: bool,
}

impl Thresholds {
    /// The severity of `value`, given the severity the probe had before.
    pub fn grade(&self, value: f64, previous: Severity) -> Severity {
        let beyond = |threshold: f64, margin: f64| {
            if self.below {
                value <= threshold + margin
            } else {
                value >= threshold - margin
            }
        };
        // Holding a level needs only to stay within the hysteresis of its threshold.
        let holds = |level: Severity, threshold: Option<f64>| {
            threshold.is_some_and(|t| {
                beyond(
                    t,
                    if previous >= level {
                        self.hysteresis
                    } else {
                        0.0
                    },
                )
            })
        };
        if holds(Severity::Critical, self.critical) {
            Severity::Critical
        } else if holds(Severity::Warning, self.warning) {
            Severity::Warning
        } else {
            Severity::Ok
        }
    }

    pub fn check(&self) -> Result<(), String> {
        if self.hysteresis < 0.0 || !self.hysteresis.is_finite() {
            return Err("hysteresis must be zero or more".into());
        }
        if let (Some(w), Some(c)) = (self.warning, self.critical) {
            let ordered = if self.below { c <= w } else { w <= c };
            if !ordered {
                return Err(format!(
                    "critical ({c}) must be {} warning ({w})",
                    if self.below {
                        "at or below"
                    } else {
                        "at or above"
                    }
                ));
            }
        }
        Ok(())
    }
}

/// What a Nagios-compatible plugin said.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginResult {
    pub severity: Severity,
    /// The first line's text before `|`.
    pub summary: String,
    /// Perfdata values by label.
    pub metrics: BTreeMap<String, f64>,
}

/// Reads a plugin's exit code and output: 0 ok, 1 warning, 2 critical, 3 (or anything else)
/// unknown, which vakt records as a major problem with the probe itself.
pub fn plugin_result(exit_code: Option<i32>, output: &str) -> PluginResult {
    let severity = match exit_code {
        Some(0) => Severity::Ok,
        Some(1) => Severity::Warning,
        Some(2) => Severity::Critical,
        _ => Severity::Major,
    };
    let mut lines = output.lines();
    let first = lines.next().unwrap_or_default();
    let (summary, perf) = match first.split_once('|') {
        Some((summary, perf)) => (summary.trim(), perf.to_owned()),
        None => (first.trim(), String::new()),
    };
    // Long output may carry more perfdata after a `|` on a later line.
    let mut perfdata = perf;
    for line in lines {
        if let Some((_, more)) = line.split_once('|') {
            perfdata.push(' ');
            perfdata.push_str(more);
        }
    }
    PluginResult {
        severity,
        summary: if summary.is_empty() {
            format!(
                "plugin exited {}",
                exit_code.map_or("by a signal".to_owned(), |c| c.to_string())
            )
        } else {
            summary.to_owned()
        },
        metrics: perfdata_metrics(&perfdata),
    }
}

/// `'label'=value[UOM];[warn];[crit];[min];[max]`, space separated; labels may be quoted
/// and contain spaces. Values that are not numbers (`U`) are left out.
pub fn perfdata_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut metrics = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (label, after) = if let Some(quoted) = rest.strip_prefix('\'') {
            match quoted.split_once("'=") {
                Some((label, after)) => (label.replace("''", "'"), after),
                None => break,
            }
        } else {
            match rest.split_once('=') {
                Some((label, after)) => (label.trim().to_owned(), after),
                None => break,
            }
        };
        let end = after.find(' ').unwrap_or(after.len());
        let (item, next) = after.split_at(end);
        rest = next.trim_start();
        let value = item.split(';').next().unwrap_or_default();
        let number: String = value
            .chars()
            .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
            .collect();
        if let Ok(v) = number.parse::<f64>()
            && v.is_finite()
            && !label.is_empty()
        {
            metrics.insert(label, v);
        }
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_with_hysteresis() {
        let disk = Thresholds {
            warning: Some(85.0),
            critical: Some(95.0),
            hysteresis: 2.0,
            below: false,
        };
        use Severity::*;
        // (value, previous, expected)
        let table = [
            (50.0, Ok, Ok),
            (84.9, Ok, Ok),
            (85.0, Ok, Warning),
            (84.0, Warning, Warning),
            (82.9, Warning, Ok),
            (95.0, Warning, Critical),
            (93.5, Critical, Critical),
            (92.5, Critical, Warning),
            (84.0, Critical, Warning),
            (50.0, Critical, Ok),
        ];
        for (value, previous, expected) in table {
            assert_eq!(
                disk.grade(value, previous),
                expected,
                "{value} after {previous:?}"
            );
        }
        let days = Thresholds {
            warning: Some(30.0),
            critical: Some(7.0),
            hysteresis: 1.0,
            below: true,
        };
        assert_eq!(days.grade(5.0, Ok), Critical);
        assert_eq!(days.grade(7.5, Critical), Critical);
        assert_eq!(days.grade(8.5, Critical), Warning);
        assert_eq!(days.grade(90.0, Warning), Ok);
        assert!(days.check().is_ok());
        assert!(
            Thresholds {
                warning: Some(9.0),
                critical: Some(5.0),
                ..Thresholds::default()
            }
            .check()
            .is_err()
        );
    }

    #[test]
    fn nagios_plugin_output() {
        let r = plugin_result(
            Some(1),
            "DISK WARNING - free space: / 3326 MB (56% inode=99%);| /=2643MB;5948;5958;0;5968\n/ 15272 MB (77% inode=100%);\n/var 1234 | /var=100MB;;;0;200 'inode use'=12%;80;90",
        );
        assert_eq!(r.severity, Severity::Warning);
        assert_eq!(
            r.summary,
            "DISK WARNING - free space: / 3326 MB (56% inode=99%);"
        );
        assert_eq!(r.metrics.get("/"), Some(&2643.0));
        assert_eq!(r.metrics.get("/var"), Some(&100.0));
        assert_eq!(r.metrics.get("inode use"), Some(&12.0));
        let tcp = plugin_result(
            Some(0),
            "TCP OK - 0.000 second response time on 127.0.0.1 port 22|time=0.000123s;;;0.000000;10.000000",
        );
        assert_eq!(
            (tcp.severity, tcp.metrics.get("time")),
            (Severity::Ok, Some(&0.000123))
        );
        let unknown = plugin_result(Some(3), "");
        assert_eq!(
            (unknown.severity, unknown.summary.as_str()),
            (Severity::Major, "plugin exited 3")
        );
        assert!(!perfdata_metrics("a=U;1;2 b=2").contains_key("a"));
        assert_eq!(perfdata_metrics("a=U;1;2 b=2").get("b"), Some(&2.0));
    }
}
