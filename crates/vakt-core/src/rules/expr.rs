//! Our small interface over CEL: compile a condition once, check its references, evaluate it on an event.
//!
//! The rest of vakt sees only `Conditions` and `Condition`; the `cel` crate stays behind this
//! file so that a change of its API (it broke three times between 0.12 and 0.15) touches one
//! place. One `cel::Env` (the standard library) is built per rule set and shared by every
//! evaluation; each evaluation only adds a resolver that reads the event's fields in place.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{Expr, IdedExpr, LiteralValue};
use cel::common::types::{CelDouble, CelMap, CelMapKey, CelString};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, Value};

use crate::event::Event;

/// The variables a condition may use, one per event field.
pub const VARIABLES: [&str; 10] = [
    "source",
    "resource",
    "check",
    "severity",
    "summary",
    "service",
    "environment",
    "labels",
    "metrics",
    "details",
];

/// Fields whose equality with a string literal can index a rule (see `IndexKey`).
/// Declared from most to least selective in practice; the index prefers the first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexedField {
    Check,
    Resource,
    Source,
    Label(String),
    Severity,
    Service,
    Environment,
}

impl IndexedField {
    fn from_variable(name: &str) -> Option<IndexedField> {
        Some(match name {
            "check" => IndexedField::Check,
            "resource" => IndexedField::Resource,
            "source" => IndexedField::Source,
            "severity" => IndexedField::Severity,
            "service" => IndexedField::Service,
            "environment" => IndexedField::Environment,
            _ => return None,
        })
    }

    /// The event's value of this field, as a condition sees it; `None` for a missing label,
    /// which no equality can match.
    pub fn value<'e>(&self, event: &'e Event) -> Option<&'e str> {
        Some(match self {
            IndexedField::Check => &event.check,
            IndexedField::Resource => &event.resource,
            IndexedField::Source => &event.source,
            IndexedField::Label(name) => return event.labels.get(name).map(String::as_str),
            IndexedField::Severity => event.severity.as_str(),
            IndexedField::Service => event.service.as_deref().unwrap_or(""),
            IndexedField::Environment => event.environment.as_deref().unwrap_or(""),
        })
    }
}

/// A conjunct `field == "literal"` of a condition: the condition is false for every event
/// whose field differs, so the rule need not be evaluated for those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexKey {
    pub field: IndexedField,
    pub value: String,
}

/// A problem compiling a condition. `position` is (line, column) inside the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub position: Option<(usize, usize)>,
    pub message: String,
}

/// The shared CEL environment conditions are compiled and evaluated in.
pub struct Conditions {
    env: Arc<Env>,
}

impl Default for Conditions {
    fn default() -> Self {
        Conditions {
            env: Arc::new(regex_cache::env()),
        }
    }
}

impl Conditions {
    /// Compiles `source` and checks that it names only event fields.
    pub fn compile(&self, source: &str) -> Result<Condition, CompileError> {
        let program = self.env.compile(source).map_err(|errors| {
            let first = errors.errors.first();
            CompileError {
                position: first.and_then(|e| {
                    let (line, column) = e.pos;
                    Some((usize::try_from(line).ok()?, usize::try_from(column).ok()?))
                }),
                message: first.map_or_else(|| errors.to_string(), |e| e.msg.clone()),
            }
        })?;
        let mut unknown = BTreeSet::new();
        free_variables(program.expression(), &mut Vec::new(), &mut unknown);
        if !unknown.is_empty() {
            let names: Vec<&str> = unknown.iter().map(String::as_str).collect();
            return Err(CompileError {
                position: None,
                message: format!(
                    "unknown event attribute{} {}; a condition can use {}",
                    if names.len() == 1 { "" } else { "s" },
                    names.join(", "),
                    VARIABLES.join(", ")
                ),
            });
        }
        let index_key = index_key(program.expression());
        let mut expression = program.expression().clone();
        regex_cache::rewrite(&mut expression);
        Ok(Condition {
            expression,
            index_key,
        })
    }

    /// Evaluates `condition` against the event behind `vars`: `Ok(true)` when it holds.
    pub fn eval(&self, condition: &Condition, vars: &EventVars<'_>) -> Result<bool, String> {
        let mut context = Context::with_env(Arc::clone(&self.env));
        context.set_variable_resolver(vars);
        match context.resolve(&condition.expression) {
            Ok(Value::Bool(result)) => Ok(result),
            Ok(other) => Err(format!(
                "the condition gave {:?}, not a boolean",
                other.type_of()
            )),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// A compiled condition: the program's expression with `matches` calls turned into the
/// cached-regex `vakt_matches`.
pub struct Condition {
    expression: IdedExpr,
    index_key: Option<IndexKey>,
}

impl Condition {
    /// The equality this condition requires, if it has one that can index it.
    pub fn index_key(&self) -> Option<&IndexKey> {
        self.index_key.as_ref()
    }
}

/// Collects identifiers that are neither event fields nor comprehension variables in scope.
fn free_variables(expr: &IdedExpr, scope: &mut Vec<String>, unknown: &mut BTreeSet<String>) {
    match &expr.expr {
        Expr::Ident(name) => {
            if !name.starts_with('@')
                && !VARIABLES.contains(&name.as_str())
                && !scope.iter().any(|s| s == name)
            {
                unknown.insert(name.clone());
            }
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                free_variables(target, scope, unknown);
            }
            for arg in &call.args {
                free_variables(arg, scope, unknown);
            }
        }
        Expr::Comprehension(comp) => {
            free_variables(&comp.iter_range, scope, unknown);
            free_variables(&comp.accu_init, scope, unknown);
            let depth = scope.len();
            scope.push(comp.iter_var.clone());
            scope.extend(comp.iter_var2.clone());
            scope.push(comp.accu_var.clone());
            free_variables(&comp.loop_cond, scope, unknown);
            free_variables(&comp.loop_step, scope, unknown);
            free_variables(&comp.result, scope, unknown);
            scope.truncate(depth);
        }
        Expr::List(list) => {
            for element in &list.elements {
                free_variables(element, scope, unknown);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                match &entry.expr {
                    cel::common::ast::EntryExpr::StructField(field) => {
                        free_variables(&field.value, scope, unknown)
                    }
                    cel::common::ast::EntryExpr::MapEntry(entry) => {
                        free_variables(&entry.key, scope, unknown);
                        free_variables(&entry.value, scope, unknown);
                    }
                }
            }
        }
        Expr::Select(select) => free_variables(&select.operand, scope, unknown),
        Expr::Struct(structure) => {
            for entry in &structure.entries {
                if let cel::common::ast::EntryExpr::StructField(field) = &entry.expr {
                    free_variables(&field.value, scope, unknown);
                }
            }
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// Finds a conjunct `field == "literal"` (or `"literal" == field`) on the top-level `&&` chain,
/// preferring `check`, the most selective field in practice.
fn index_key(expr: &IdedExpr) -> Option<IndexKey> {
    let mut conjuncts = Vec::new();
    collect_conjuncts(expr, &mut conjuncts);
    conjuncts
        .into_iter()
        .filter_map(equality_with_literal)
        .min_by(|a, b| a.field.cmp(&b.field))
}

fn collect_conjuncts<'e>(expr: &'e IdedExpr, out: &mut Vec<&'e IdedExpr>) {
    if let Expr::Call(call) = &expr.expr
        && call.func_name == "_&&_"
        && call.target.is_none()
    {
        for arg in &call.args {
            collect_conjuncts(arg, out);
        }
        return;
    }
    out.push(expr);
}

fn equality_with_literal(expr: &IdedExpr) -> Option<IndexKey> {
    let Expr::Call(call) = &expr.expr else {
        return None;
    };
    if call.func_name != "_==_" || call.target.is_some() || call.args.len() != 2 {
        return None;
    }
    let (field, text) = match (&call.args[0].expr, &call.args[1].expr) {
        (field, Expr::Literal(LiteralValue::String(text)))
        | (Expr::Literal(LiteralValue::String(text)), field) => (field, text),
        _ => return None,
    };
    Some(IndexKey {
        field: indexed_field(field)?,
        value: text.inner().to_owned(),
    })
}

/// `check`, `labels.team` or `labels["team"]` as an indexable field.
fn indexed_field(expr: &Expr) -> Option<IndexedField> {
    match expr {
        Expr::Ident(name) => IndexedField::from_variable(name),
        Expr::Select(select) if !select.test => match &select.operand.expr {
            Expr::Ident(map) if map == "labels" => Some(IndexedField::Label(select.field.clone())),
            _ => None,
        },
        Expr::Call(call) if call.func_name == "_[_]" && call.args.len() == 2 => {
            match (&call.args[0].expr, &call.args[1].expr) {
                (Expr::Ident(map), Expr::Literal(LiteralValue::String(key))) if map == "labels" => {
                    Some(IndexedField::Label(key.inner().to_owned()))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The event as conditions see it: strings borrowed in place; the maps (labels, metrics,
/// details) converted once per event, on first use, and shared by every rule evaluated.
pub struct EventVars<'e> {
    event: &'e Event,
    labels: OnceLock<CelMap<'e>>,
    metrics: OnceLock<CelMap<'e>>,
    details: OnceLock<Option<Box<dyn Val>>>,
}

impl<'e> EventVars<'e> {
    pub fn new(event: &'e Event) -> EventVars<'e> {
        EventVars {
            event,
            labels: OnceLock::new(),
            metrics: OnceLock::new(),
            details: OnceLock::new(),
        }
    }
}

impl VariableResolver for EventVars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let event = self.event;
        let text = |s: &'b str| Some(CowVal::owned(CelString::from(s)));
        match variable {
            "source" => text(&event.source),
            "resource" => text(&event.resource),
            "check" => text(&event.check),
            "severity" => text(event.severity.as_str()),
            "summary" => text(&event.summary),
            "service" => text(event.service.as_deref().unwrap_or("")),
            "environment" => text(event.environment.as_deref().unwrap_or("")),
            "labels" => {
                let map = self.labels.get_or_init(|| {
                    let map: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = event
                        .labels
                        .iter()
                        .map(|(k, v)| {
                            let value: Box<dyn Val + '_> = Box::new(CelString::from(v.as_str()));
                            (CelMapKey::from(k.as_str()), value)
                        })
                        .collect();
                    CelMap::from(map)
                });
                Some(CowVal::Borrowed(map))
            }
            "metrics" => {
                let map = self.metrics.get_or_init(|| {
                    let map: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = event
                        .metrics
                        .iter()
                        .map(|(k, v)| {
                            let value: Box<dyn Val + '_> = Box::new(CelDouble::from(*v));
                            (CelMapKey::from(k.as_str()), value)
                        })
                        .collect();
                    CelMap::from(map)
                });
                Some(CowVal::Borrowed(map))
            }
            "details" => {
                let details = self.details.get_or_init(|| {
                    let value = cel::to_value(&event.details).ok()?;
                    value.try_into().ok()
                });
                details.as_deref().map(CowVal::Borrowed)
            }
            _ => None,
        }
    }
}

/// `matches` with compiled expressions kept: the standard one compiles its regex on every
/// call (~100,000 calls/s); this one compiles each pattern once.
mod regex_cache {
    use std::collections::HashMap;
    use std::sync::{Arc, LazyLock, RwLock};

    use cel::common::ast::{Expr, IdedExpr};
    use cel::common::types::{CelBool, CelString as String};
    use cel::{Env, ExecutionError};
    use regex::Regex;

    /// Distinct patterns kept; patterns beyond it are compiled per call (they can only come
    /// from event data, never from the configuration's literal patterns).
    const PATTERNS_MAX: usize = 4096;

    static CACHE: LazyLock<RwLock<HashMap<std::string::String, Arc<Regex>>>> =
        LazyLock::new(|| RwLock::new(HashMap::new()));

    fn compiled(pattern: &str) -> Result<Arc<Regex>, regex::Error> {
        if let Some(regex) = CACHE
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(pattern)
        {
            return Ok(Arc::clone(regex));
        }
        let regex = Arc::new(Regex::new(pattern)?);
        let mut cache = CACHE
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() < PATTERNS_MAX {
            cache.insert(pattern.to_owned(), Arc::clone(&regex));
        }
        Ok(regex)
    }

    fn vakt_matches(this: &String<'_>, re: &String<'_>) -> Result<CelBool, ExecutionError> {
        match compiled(re.inner()) {
            Ok(regex) => Ok(CelBool::from(regex.is_match(this.inner()))),
            Err(error) => Err(ExecutionError::FunctionError {
                function: "matches".to_owned(),
                message: format!("'{}' not a valid regex: {error}", re.inner()),
            }),
        }
    }

    /// The standard environment plus `vakt_matches` in both call forms.
    pub fn env() -> Env {
        let mut env = Env::stdlib();
        // Registering a new name on a fresh environment cannot conflict. The macros would
        // camel-case the Rust name: give the CEL name explicitly.
        let member = cel::add_member_overload!(env, fn vakt_matches: (String, String) -> Result<CelBool>, name = "vakt_matches");
        let global = cel::add_overload!(env, fn vakt_matches: (String, String) -> Result<CelBool>, name = "vakt_matches", id = "vakt_matches_global");
        debug_assert!(member.is_ok() && global.is_ok(), "{member:?} {global:?}");
        env
    }

    /// Points every `matches` call at `vakt_matches`.
    pub fn rewrite(expr: &mut IdedExpr) {
        match &mut expr.expr {
            Expr::Call(call) => {
                if call.func_name == "matches" {
                    call.func_name = "vakt_matches".to_owned();
                }
                if let Some(target) = &mut call.target {
                    rewrite(target);
                }
                call.args.iter_mut().for_each(rewrite);
            }
            Expr::Comprehension(comp) => {
                for part in [
                    &mut comp.iter_range,
                    &mut comp.accu_init,
                    &mut comp.loop_cond,
                    &mut comp.loop_step,
                    &mut comp.result,
                ] {
                    rewrite(part);
                }
            }
            Expr::List(list) => list.elements.iter_mut().for_each(rewrite),
            Expr::Map(map) => {
                for entry in &mut map.entries {
                    match &mut entry.expr {
                        cel::common::ast::EntryExpr::StructField(field) => {
                            rewrite(&mut field.value)
                        }
                        cel::common::ast::EntryExpr::MapEntry(entry) => {
                            rewrite(&mut entry.key);
                            rewrite(&mut entry.value);
                        }
                    }
                }
            }
            Expr::Select(select) => rewrite(&mut select.operand),
            Expr::Struct(structure) => {
                for entry in &mut structure.entries {
                    if let cel::common::ast::EntryExpr::StructField(field) = &mut entry.expr {
                        rewrite(&mut field.value);
                    }
                }
            }
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Severity;
    use chrono::Utc;

    fn event() -> Event {
        Event {
            source: "nagios".into(),
            resource: "db01".into(),
            check: "disk_usage".into(),
            severity: Severity::Warning,
            summary: "/var is 91% full".into(),
            service: None,
            environment: Some("production".into()),
            labels: [("mount".to_owned(), "/var".to_owned())].into(),
            metrics: [("used_pct".to_owned(), 91.2)].into(),
            occurred_at: Utc::now(),
            received_at: Utc::now(),
            sent_fingerprint: None,
            details: serde_json::json!({"disk": {"model": "X1"}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            expires_at: None,
            expiry: false,
            idempotency_key: None,
            identity_labels: Vec::new(),
        }
    }

    fn check(source: &str, expected: Result<bool, &str>) {
        let conditions = Conditions::default();
        let condition = conditions
            .compile(source)
            .unwrap_or_else(|e| panic!("{source}: {e:?}"));
        let event = event();
        let got = conditions.eval(&condition, &EventVars::new(&event));
        match expected {
            Ok(value) => assert_eq!(got, Ok(value), "{source}"),
            Err(fragment) => {
                let message = got.expect_err(source);
                assert!(message.contains(fragment), "{source}: {message}");
            }
        }
    }

    #[test]
    fn evaluates_every_field() {
        check(
            r#"check == "disk_usage" && metrics.used_pct > 90.0"#,
            Ok(true),
        );
        check(r#"labels.mount == "/var""#, Ok(true));
        check(r#""mount" in labels && !("x" in labels)"#, Ok(true));
        check(r#"severity == "warning" && source == "nagios""#, Ok(true));
        check(r#"service == "" && environment == "production""#, Ok(true));
        check(
            r#"summary.contains("91%") && resource.startsWith("db")"#,
            Ok(true),
        );
        check(r#"summary.matches("^/var is [0-9]+% full$")"#, Ok(true));
        check(
            r#"matches(summary, "91%") && !resource.matches("^web")"#,
            Ok(true),
        );
        check(r#"summary.matches("(")"#, Err("not a valid regex"));
        check(r#"details.disk.model == "X1""#, Ok(true));
        check(r#"labels.exists(k, k == "mount")"#, Ok(true));
        check(r#"metrics.used_pct < 50.0"#, Ok(false));
        check(r#"labels.missing == "x""#, Err("missing"));
        check(r#"check"#, Err("not a boolean"));
    }

    #[test]
    fn rejects_unknown_attributes_at_compile_time() {
        let conditions = Conditions::default();
        let error = conditions
            .compile(r#"chek == "x" || labels.exists(k, k == host)"#)
            .err()
            .expect("unknown names");
        assert!(error.message.contains("chek, host"), "{}", error.message);
        let error = conditions.compile("check == ").err().expect("syntax");
        assert!(error.position.is_some(), "{error:?}");
    }

    #[test]
    fn finds_an_index_key_on_the_conjunction() {
        let conditions = Conditions::default();
        let key = |source: &str| {
            conditions
                .compile(source)
                .ok()
                .and_then(|c| c.index_key().cloned())
        };
        assert_eq!(
            key(r#"resource == "a" && ("disk" == check && severity != "ok")"#),
            Some(IndexKey {
                field: IndexedField::Check,
                value: "disk".into()
            })
        );
        assert_eq!(key(r#"check == "a" || check == "b""#), None);
        assert_eq!(
            key(r#"labels.team == "db" && metrics.load > 1.0"#),
            Some(IndexKey {
                field: IndexedField::Label("team".into()),
                value: "db".into()
            })
        );
        assert_eq!(
            key(r#"labels["dc"] == "sto1""#).map(|k| k.field),
            Some(IndexedField::Label("dc".into()))
        );
        assert_eq!(key(r#"has(labels.x) && metrics.x == "a""#), None);
    }
}
