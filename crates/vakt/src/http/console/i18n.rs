//! The console's languages: English and Swedish message catalogues (`console/i18n/*.toml`,
//! compiled in), and which one a request gets (the `vakt_lang` cookie, else
//! `Accept-Language`, else English).

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};

/// The languages, the first is the default.
pub const LANGUAGES: &[&str] = &["en", "sv"];

/// The cookie that remembers a choice made with the switch.
pub const LANG_COOKIE: &str = "vakt_lang";

const SOURCES: &[(&str, &str)] = &[
    ("en", include_str!("../../../console/i18n/en.toml")),
    ("sv", include_str!("../../../console/i18n/sv.toml")),
];

/// Every language's texts by key.
pub struct Catalogues(BTreeMap<&'static str, BTreeMap<String, String>>);

impl Catalogues {
    /// Reads the compiled-in catalogues; an error names the file and what is wrong (a test
    /// reads them, so a broken file never ships).
    pub fn load() -> Result<Catalogues, String> {
        let mut all = BTreeMap::new();
        for (lang, text) in SOURCES {
            let texts: BTreeMap<String, String> =
                toml::from_str(text).map_err(|e| format!("console/i18n/{lang}.toml: {e}"))?;
            all.insert(*lang, texts);
        }
        Ok(Catalogues(all))
    }

    /// The text for `key` in `lang`.
    pub fn text(&self, lang: &str, key: &str) -> Option<&str> {
        self.0
            .get(lang)
            .and_then(|texts| texts.get(key))
            .map(String::as_str)
    }

    /// Keys one language has and another lacks: `(lang, key)`.
    pub fn missing(&self) -> Vec<(&'static str, String)> {
        let mut missing = Vec::new();
        for (lang, texts) in &self.0 {
            for (other, other_texts) in &self.0 {
                if lang == other {
                    continue;
                }
                for key in other_texts.keys() {
                    if !texts.contains_key(key) {
                        missing.push((*lang, key.clone()));
                    }
                }
            }
        }
        missing.sort();
        missing.dedup();
        missing
    }

    pub fn keys(&self, lang: &str) -> Vec<&str> {
        self.0
            .get(lang)
            .map(|texts| texts.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

/// The language for a request: a valid `vakt_lang` cookie, else the first of
/// `Accept-Language` (by quality) vakt has, else English.
pub fn negotiate(headers: &HeaderMap) -> &'static str {
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == LANG_COOKIE)
        .map(|(_, value)| value.trim());
    if let Some(lang) = cookie.and_then(known) {
        return lang;
    }
    let Some(accept) = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
    else {
        return LANGUAGES[0];
    };
    let mut wanted: Vec<(f32, &str)> = accept
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next()?.trim();
            let quality = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((quality, tag))
        })
        .collect();
    wanted.sort_by(|a, b| b.0.total_cmp(&a.0));
    wanted
        .iter()
        .filter(|(q, _)| *q > 0.0)
        .find_map(|(_, tag)| known(tag.split('-').next().unwrap_or_default()))
        .unwrap_or(LANGUAGES[0])
}

/// The language vakt has under this name (`sv`, `SV`), if any.
pub fn known(tag: &str) -> Option<&'static str> {
    LANGUAGES
        .iter()
        .find(|lang| lang.eq_ignore_ascii_case(tag))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn every_text_is_in_every_language() {
        let catalogues = Catalogues::load().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(catalogues.missing(), Vec::<(&str, String)>::new());
        assert!(catalogues.keys("sv").len() > 100);
        // A Swedish text that is the English one word for word is likely untranslated;
        // the few that are the same in both are listed.
        let same: Vec<&str> = catalogues
            .keys("sv")
            .into_iter()
            .filter(|k| catalogues.text("sv", k) == catalogues.text("en", k))
            .collect();
        assert_eq!(
            same,
            [
                "field.incident",
                "filter.label",
                "severity.info",
                "severity.ok",
                "time.utc"
            ]
        );
    }

    #[test]
    fn the_cookie_wins_then_accept_language_by_quality() {
        let mut headers = HeaderMap::new();
        assert_eq!(negotiate(&headers), "en");
        headers.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("de;q=1, sv-SE;q=0.8, en;q=0.5"),
        );
        assert_eq!(negotiate(&headers), "sv");
        headers.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("sv;q=0.2, en-GB"),
        );
        assert_eq!(negotiate(&headers), "en");
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("vakt_session=x; vakt_lang=sv"),
        );
        assert_eq!(negotiate(&headers), "sv");
        headers.insert(header::COOKIE, HeaderValue::from_static("vakt_lang=xx"));
        assert_eq!(
            negotiate(&headers),
            "en",
            "an unknown cookie value is ignored"
        );
    }
}
