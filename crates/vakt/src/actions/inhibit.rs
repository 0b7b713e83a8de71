//! Inhibition: while an alert matching an inhibit rule's source matchers is active, the
//! notifications of alerts its target matchers match (agreeing on `equal`) do not go out.

use super::*;

pub(super) struct InhibitRule {
    pub(super) name: String,
    pub(super) source: Vec<Matcher>,
    pub(super) target: Vec<Matcher>,
    /// (target label, source label).
    pub(super) equal: Vec<(String, String)>,
}

impl HandlingConfig {
    /// Whether any inhibit rule's target matchers match `target` (else nothing can
    /// inhibit it, and no other alert need be read).
    pub(super) fn may_be_inhibited(&self, target: &Alert) -> bool {
        if self.inhibit.is_empty() || !target.status.is_active() {
            return false;
        }
        let labels = target.match_labels();
        self.inhibit
            .iter()
            .any(|rule| rule.target.iter().all(|m| m.matches(&labels)))
    }

    /// The inhibit rule and the active source alert that mute `target`, if any.
    pub fn inhibitor<'a>(&self, target: &Alert, active: &'a [Alert]) -> Option<(&str, &'a Alert)> {
        if self.inhibit.is_empty() {
            return None;
        }
        let target_labels = target.match_labels();
        for rule in &self.inhibit {
            if !rule.target.iter().all(|m| m.matches(&target_labels)) {
                continue;
            }
            for source in active
                .iter()
                .filter(|a| a.id != target.id && a.status.is_active())
            {
                let source_labels = source.match_labels();
                if rule.source.iter().all(|m| m.matches(&source_labels))
                    && rule
                        .equal
                        .iter()
                        .all(|(t, s)| target_labels.get(t) == source_labels.get(s))
                {
                    return Some((rule.name.as_str(), source));
                }
            }
        }
        None
    }

    /// Why `target` is inhibited, if it is.
    pub(super) fn inhibited_by(&self, target: &Alert, active: &[Alert]) -> Option<String> {
        self.inhibitor(target, active).map(|(rule, source)| {
            format!(
                "inhibited by rule {rule} while alert {} ({} on {}) is active",
                source.id, source.check, source.resource
            )
        })
    }
}

/// Which of `targets` an active alert inhibits, and why (by target id). Every active alert
/// is read, a page at a time, so the answer is exact however many alerts are open (issue
/// 13: it read only the first 1,000); nothing is read when no inhibit rule targets any of
/// them, and reading stops once every target is inhibited.
pub(super) async fn inhibitions(
    store: &dyn Store,
    handling: &HandlingConfig,
    targets: &[&Alert],
) -> Result<HashMap<String, String>, StoreError> {
    let candidates: Vec<&Alert> = targets
        .iter()
        .copied()
        .filter(|t| handling.may_be_inhibited(t))
        .collect();
    let mut found = HashMap::new();
    if candidates.is_empty() {
        return Ok(found);
    }
    let mut query = vakt_store::AlertQuery {
        status: vec![AlertStatus::Open, AlertStatus::Acknowledged],
        limit: vakt_store::PAGE_LIMIT_MAX,
        ..Default::default()
    };
    loop {
        let page = store.alerts(&query).await?;
        for target in &candidates {
            if !found.contains_key(&target.id)
                && let Some(why) = handling.inhibited_by(target, &page.items)
            {
                found.insert(target.id.clone(), why);
            }
        }
        match page.next_cursor {
            Some(cursor) if found.len() < candidates.len() => query.cursor = Some(cursor),
            _ => break,
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{alert, handling};
    use vakt_core::AlertStatus;

    const RULES: &str = r#"
[[inhibit_rules]]
name = "router-down"
source_matchers = ['check="ping"']
target_matchers = ['check!="ping"']
equal = ["upstream=resource"]
"#;

    #[test]
    fn an_active_upstream_mutes_what_depends_on_it_and_nothing_else() {
        let h = handling(RULES);
        let router = alert("r1", "ping", "router1", &[]);
        let web = alert("w1", "http", "web1", &[("upstream", "router1")]);
        let elsewhere = alert("w2", "http", "web2", &[("upstream", "router2")]);
        let active = [router.clone(), web.clone(), elsewhere.clone()];
        let why = h.inhibited_by(&web, &active).expect("inhibited");
        assert!(
            why.contains("rule router-down") && why.contains("r1"),
            "{why}"
        );
        assert_eq!(h.inhibited_by(&elsewhere, &active), None, "another router");
        assert_eq!(h.inhibited_by(&router, &active), None, "not its own target");
        assert!(!h.may_be_inhibited(&router), "no rule targets a ping");
        assert!(h.may_be_inhibited(&web));
        // A resolved upstream mutes nothing.
        let mut resolved = router;
        resolved.status = AlertStatus::Resolved;
        assert_eq!(h.inhibited_by(&web, &[resolved]), None);
    }

    #[test]
    fn without_rules_nothing_is_inhibited_and_nothing_read() {
        let h = handling("");
        let web = alert("w1", "http", "web1", &[("upstream", "router1")]);
        assert!(!h.may_be_inhibited(&web));
        assert_eq!(
            h.inhibited_by(&web, &[alert("r1", "ping", "router1", &[])]),
            None
        );
    }
}
