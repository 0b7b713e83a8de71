//! What an identity may do: scopes (`verb:resource`) and roles, the named sets of scopes
//! users and tokens are given. Pure data; the server checks them per route.

/// Every scope, in the order they are documented.
pub const SCOPES: &[&str] = &[
    "read:events",
    "read:alerts",
    "read:actions",
    "read:silences",
    "read:incidents",
    "read:oncall",
    "read:metrics",
    "ingest:events",
    "write:alerts",
    "write:actions",
    "write:silences",
    "write:incidents",
    "write:schedules",
    "admin:config",
    "admin:tokens",
    "admin:users",
    "read:audit",
];

const VIEWER: &[&str] = &[
    "read:events",
    "read:alerts",
    "read:actions",
    "read:silences",
    "read:incidents",
    "read:oncall",
    "read:metrics",
];
/// What a responder may do beyond a viewer: act on alerts, actions, silences, incidents.
const RESPONDER_ADDS: &[&str] = &[
    "write:alerts",
    "write:actions",
    "write:silences",
    "write:incidents",
];
/// What an engineer may do beyond a responder: on-call overrides, reload.
const ENGINEER_ADDS: &[&str] = &["write:schedules", "admin:config"];
/// What an admin may do beyond an engineer.
const ADMIN_ADDS: &[&str] = &["admin:tokens", "admin:users", "read:audit"];
const INGEST: &[&str] = &["ingest:events"];

/// The roles and their scopes, as the sets they are made of: each of `viewer`,
/// `responder`, `engineer`, `admin` has the scopes of the one before and more (`admin`
/// all of them); `ingest` only sends events.
pub const ROLES: &[(&str, &[&[&str]])] = &[
    ("viewer", &[VIEWER]),
    ("responder", &[VIEWER, RESPONDER_ADDS]),
    ("engineer", &[VIEWER, RESPONDER_ADDS, ENGINEER_ADDS]),
    (
        "admin",
        &[VIEWER, RESPONDER_ADDS, ENGINEER_ADDS, ADMIN_ADDS, INGEST],
    ),
    ("ingest", &[INGEST]),
];

/// The scopes of a role; `None` for an unknown role.
pub fn role_scopes(role: &str) -> Option<Vec<&'static str>> {
    ROLES
        .iter()
        .find(|(name, _)| *name == role)
        .map(|(_, sets)| sets.iter().flat_map(|set| set.iter().copied()).collect())
}

/// Whether `scope` is a known scope.
pub fn is_scope(scope: &str) -> bool {
    SCOPES.contains(&scope)
}

/// Scopes from a role or a list: each item is a role name (its scopes) or a scope. The
/// result is sorted and without repeats; an unknown item is an error that names it.
pub fn expand(items: &[String]) -> Result<Vec<String>, String> {
    let mut scopes = Vec::new();
    for item in items {
        let item = item.trim();
        if let Some(role) = role_scopes(item) {
            scopes.extend(role.iter().map(|s| (*s).to_owned()));
        } else if is_scope(item) {
            scopes.push(item.to_owned());
        } else {
            let roles: Vec<&str> = ROLES.iter().map(|(name, _)| *name).collect();
            return Err(format!(
                "{item:?} is neither a role ({}) nor a scope ({})",
                roles.join(", "),
                SCOPES.join(", ")
            ));
        }
    }
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_holds_the_one_before_it() {
        let chain = ["viewer", "responder", "engineer", "admin"];
        for pair in chain.windows(2) {
            let (lower, higher) = (role_scopes(pair[0]), role_scopes(pair[1]));
            let (Some(lower), Some(higher)) = (lower, higher) else {
                panic!("role missing: {pair:?}");
            };
            assert!(lower.iter().all(|s| higher.contains(s)), "{pair:?}");
            assert!(higher.len() > lower.len(), "{pair:?}");
        }
        for (role, _) in ROLES {
            let scopes = role_scopes(role).unwrap_or_default();
            assert!(scopes.iter().all(|s| is_scope(s)), "{role}");
        }
        assert_eq!(role_scopes("ingest"), Some(vec!["ingest:events"]));
        assert!(!role_scopes("viewer").is_some_and(|s| s.contains(&"ingest:events")));
        let mut admin = role_scopes("admin").unwrap_or_default();
        admin.sort_unstable();
        let mut all = SCOPES.to_vec();
        all.sort_unstable();
        assert_eq!(admin, all, "an admin holds every scope");
    }

    #[test]
    fn lists_expand_roles_and_name_what_is_unknown() {
        let got = expand(&["viewer".into(), "write:silences".into()]).unwrap_or_default();
        assert!(got.contains(&"read:alerts".to_owned()));
        assert!(got.contains(&"write:silences".to_owned()));
        assert!(!got.contains(&"write:alerts".to_owned()));
        let error = expand(&["root".into()]).err().unwrap_or_default();
        assert!(error.contains("\"root\""), "{error}");
    }
}
