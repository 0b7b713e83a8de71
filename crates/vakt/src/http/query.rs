//! Query-string parameters checked by name: unknown ones are an error, each value parsed with a precise message.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use vakt_store::{PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX};

use axum::response::IntoResponse as _;

use super::error::ApiError;

pub struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// Parses `raw`, refusing parameters not in `allowed` and repeated ones.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|error| ApiError::bad_request(format!("invalid query string: {error}")))?;
        let mut values = BTreeMap::new();
        for (name, value) in pairs {
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::field(
                    &name,
                    format!(
                        "unknown query parameter; expected one of {}",
                        allowed.join(", ")
                    ),
                ));
            }
            if values.insert(name.clone(), value).is_some() {
                return Err(ApiError::field(
                    &name,
                    "given more than once; use a comma-separated list where several values are allowed",
                ));
            }
        }
        Ok(Params { values })
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).filter(|v| !v.is_empty()).cloned()
    }

    /// `cursor`: a `next_cursor` this API gave out (an id: 26 characters of Crockford's
    /// base32), or none; anything else is a 400, not an arbitrary page.
    pub fn cursor(&self) -> Result<Option<String>, ApiError> {
        let Some(cursor) = self.string("cursor") else {
            return Ok(None);
        };
        let valid = cursor.len() == 26
            && cursor
                .bytes()
                .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)));
        if valid {
            Ok(Some(cursor))
        } else {
            Err(ApiError::field(
                "cursor",
                "not a cursor this API gave out: pass the next_cursor of the previous page",
            ))
        }
    }

    pub fn parsed<T, E: std::fmt::Display>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ApiError> {
        match self.values.get(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(value) => parse(value)
                .map(Some)
                .map_err(|message| ApiError::field(name, message.to_string())),
        }
    }

    /// A comma-separated list, each item parsed.
    pub fn list<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ApiError> {
        let Some(value) = self.values.get(name) else {
            return Ok(Vec::new());
        };
        value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| parse(v).map_err(|message| ApiError::field(name, message)))
            .collect()
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.parsed(name, |v| match v {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(format!("expected true or false, got {other:?}")),
        })
    }

    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.parsed(name, |v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("expected an RFC 3339 time like 2026-11-24T01:00:00Z ({e})"))
        })
    }

    pub fn limit(&self) -> Result<u32, ApiError> {
        Ok(self
            .parsed("limit", |v| match v.parse::<u32>() {
                Ok(n) if (1..=PAGE_LIMIT_MAX).contains(&n) => Ok(n),
                _ => Err(format!(
                    "expected a number from 1 to {PAGE_LIMIT_MAX}, got {v:?}"
                )),
            })?
            .unwrap_or(PAGE_LIMIT_DEFAULT))
    }
}

/// Rows read from storage at a time for a list: a page of large items is built in pieces,
/// never held in memory whole.
const LIST_CHUNK: u32 = 100;

/// A list answer built piece by piece: up to `limit` items read `LIST_CHUNK` at a time from
/// `cursor` on, cut once its JSON passes `max_bytes` (one item at least), so a request's
/// memory stays bounded whatever its items weigh. `next_cursor` continues after the last
/// item sent, as the store's own pages do.
pub async fn capped_page<T, F>(
    limit: u32,
    cursor: Option<String>,
    max_bytes: usize,
    mut fetch: impl FnMut(Option<String>, u32) -> F,
    id: impl Fn(&T) -> &str,
) -> Result<axum::response::Response, ApiError>
where
    T: serde::Serialize,
    F: std::future::Future<Output = Result<vakt_store::Page<T>, vakt_store::StoreError>>,
{
    let mut body = Vec::with_capacity(4096);
    body.extend_from_slice(b"{\"items\":[");
    let mut sent: u32 = 0;
    let mut cursor = cursor;
    let next = loop {
        let want = (limit - sent).min(LIST_CHUNK);
        let page = fetch(cursor.clone(), want).await?;
        let more = page.next_cursor.is_some();
        let mut last = None;
        let mut full = false;
        for item in &page.items {
            if sent > 0 && body.len() >= max_bytes {
                full = true;
                break;
            }
            if sent > 0 {
                body.push(b',');
            }
            serde_json::to_writer(&mut body, item)
                .map_err(|error| ApiError::internal("cannot write the list", error))?;
            sent += 1;
            last = Some(id(item).to_owned());
        }
        if full {
            break last.or(cursor);
        }
        if !more {
            break None;
        }
        if sent >= limit {
            break last;
        }
        cursor = last.or(page.next_cursor);
    };
    body.extend_from_slice(b"],\"next_cursor\":");
    serde_json::to_writer(&mut body, &next)
        .map_err(|error| ApiError::internal("cannot write the list", error))?;
    body.push(b'}');
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// **Boundary:** any query string is taken or refused with a 400 that names what is
        /// wrong; nothing panics.
        #[test]
        fn any_query_string_is_taken_or_refused_by_name(raw in ".{0,120}") {
            match Params::parse(Some(&raw), &["limit", "since", "cursor", "status"]) {
                Ok(params) => {
                    if let Err(error) = params.limit() {
                        proptest::prop_assert_eq!(error.status.as_u16(), 400);
                    }
                    if let Err(error) = params.time("since") {
                        proptest::prop_assert_eq!(error.status.as_u16(), 400);
                    }
                }
                Err(error) => {
                    proptest::prop_assert_eq!(error.status.as_u16(), 400);
                    proptest::prop_assert!(!error.error.is_empty());
                }
            }
        }
    }
}
