//! Credentials kept out of what vakt shows: a chat or phone gateway webhook URL is itself
//! the credential (its path or query carries the token), so answers, attempt details and
//! logs show only where it points.

/// `scheme://host[:port]/…` for a URL with a path, query or user info, so the receiver can
/// be told apart but its token cannot be read; text that is not a URL becomes `(a URL)`.
pub fn url(text: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(text) else {
        return "(a URL)".to_owned();
    };
    let host = parsed.host_str().unwrap_or("");
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    let hidden = parsed.path().len() > 1
        || parsed.query().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some();
    format!(
        "{}://{host}{port}{}",
        parsed.scheme(),
        if hidden { "/…" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_paths_queries_and_user_info_are_hidden() {
        assert_eq!(
            url("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            url("https://sms.example.com/send?key=SECRET"),
            "https://sms.example.com/…"
        );
        assert_eq!(url("https://user:pw@example.com"), "https://example.com/…");
        assert_eq!(url("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(url("not a url"), "(a URL)");
    }
}
