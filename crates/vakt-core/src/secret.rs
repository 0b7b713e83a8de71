//! `Secret`: a credential from the configuration (a chat webhook URL, a password, a token).
//!
//! It never leaves the process by accident: `Debug` shows `(secret)`, `Serialize` only where
//! a URL points (`https://hooks.slack.com/…`), and the value is read only through
//! [`Secret::expose`]. In the file it may be written inline, taken
//! from the environment or from a file, so the configuration itself can be shared:
//!
//! ```toml
//! url = "https://hooks.slack.com/services/T0/B0/XXXX"       # inline
//! url = "https://hooks.slack.com/services/${SLACK_TOKEN}"   # ${NAME}: the variable's value
//! password = { env = "SMTP_PASSWORD" }                      # the whole value from a variable
//! password = { file = "/run/secrets/smtp" }                 # from a file (as Alertmanager's *_file)
//! ```
//!
//! A missing variable or unreadable file is a configuration error at the line that names it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A credential; see the module's documentation.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

/// What an operator sees in place of a secret.
pub const REDACTED: &str = "(secret)";

/// Largest secret file read, in bytes.
const FILE_BYTES_MAX: u64 = 64 * 1024;

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Expands every `${NAME}` in `text` from `lookup`; `$${` is a literal `${`.
    pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at..];
            if let Some(literal) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = literal;
            } else if let Some(body) = after.strip_prefix("${") {
                let Some(end) = body.find('}') else {
                    return Err("`${` without its closing `}`".into());
                };
                let name = &body[..end];
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                if !valid {
                    return Err(format!(
                        "`${{{name}}}` is not an environment variable name (letters, digits, _)"
                    ));
                }
                match lookup(name) {
                    Some(value) => out.push_str(&value),
                    None => return Err(format!("environment variable {name} is not set")),
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn from_file(path: &str) -> Result<Secret, String> {
        use std::io::Read as _;
        let file =
            std::fs::File::open(path).map_err(|error| format!("cannot read {path}: {error}"))?;
        let mut text = String::new();
        file.take(FILE_BYTES_MAX + 1)
            .read_to_string(&mut text)
            .map_err(|error| format!("cannot read {path}: {error}"))?;
        if text.len() as u64 > FILE_BYTES_MAX {
            return Err(format!("{path} is over {FILE_BYTES_MAX} bytes"));
        }
        // A file written by `echo` ends in a newline that is not part of the secret.
        Ok(Secret(text.trim_end_matches(['\r', '\n']).to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Secret {
    /// What an operator may see: for a URL, where it points (`https://hooks.slack.com/…`:
    /// scheme, host and port, never user info, path or query); otherwise `(secret)`.
    pub fn shown(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return REDACTED.to_owned();
        };
        if !matches!(scheme, "http" | "https") {
            return REDACTED.to_owned();
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((_, host)) => (true, host),
            None => (false, authority),
        };
        let hidden = userinfo || tail.len() > 1;
        format!("{scheme}://{host}{}", if hidden { "/…" } else { "" })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.shown())
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Inline(String),
    From(Source),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    file: Option<String>,
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let lookup = |name: &str| std::env::var(name).ok();
        match Written::deserialize(deserializer).map_err(|_| {
            D::Error::custom("expected a string, { env = \"NAME\" } or { file = \"/path\" }")
        })? {
            Written::Inline(text) => Secret::expand(&text, lookup)
                .map(Secret)
                .map_err(D::Error::custom),
            Written::From(Source {
                env: Some(name),
                file: None,
            }) => lookup(&name)
                .map(Secret)
                .ok_or_else(|| D::Error::custom(format!("environment variable {name} is not set"))),
            Written::From(Source {
                env: None,
                file: Some(path),
            }) => Secret::from_file(&path).map_err(D::Error::custom),
            Written::From(_) => Err(D::Error::custom(
                "give either env = \"NAME\" or file = \"/path\"",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cr3t".to_owned())
    }

    #[test]
    fn variables_expand_and_missing_ones_are_errors() {
        assert_eq!(
            Secret::expand("https://h/x/${TOKEN}?a=1", env).as_deref(),
            Ok("https://h/x/s3cr3t?a=1")
        );
        assert_eq!(
            Secret::expand("price $5 $${TOKEN}", env).as_deref(),
            Ok("price $5 ${TOKEN}")
        );
        assert_eq!(
            Secret::expand("${NOPE}", env),
            Err("environment variable NOPE is not set".to_owned())
        );
        assert!(Secret::expand("${TOKEN", env).is_err());
        assert!(Secret::expand("${1X}", env).is_err());
    }

    #[test]
    fn a_url_shows_only_where_it_points() {
        let shown = |s: &str| Secret::new(s).shown();
        assert_eq!(
            shown("https://hooks.slack.com/services/T0/B0/XXXX"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            shown("https://sms.example.com/send?key=K"),
            "https://sms.example.com/…"
        );
        assert_eq!(shown("https://u:p@example.com"), "https://example.com/…");
        assert_eq!(shown("http://127.0.0.1:9000/"), "http://127.0.0.1:9000");
        assert_eq!(shown("hunter2"), REDACTED);
        assert_eq!(shown("ftp://x/y"), REDACTED);
    }

    #[test]
    fn secrets_read_from_files_and_never_show() {
        let dir = std::env::temp_dir().join(format!("vakt-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("password");
        std::fs::write(&path, "hunter2\n").expect("write");
        #[derive(Deserialize)]
        struct T {
            password: Secret,
        }
        let text = format!("password = {{ file = {:?} }}", path.display().to_string());
        let t: T = toml::from_str(&text).expect("parses");
        assert_eq!(t.password.expose(), "hunter2");
        assert_eq!(format!("{:?}", t.password), REDACTED);
        assert_eq!(
            serde_json::to_string(&t.password).expect("json"),
            format!("\"{REDACTED}\"")
        );
        let missing = toml::from_str::<T>("password = { file = \"/nonexistent/x\" }");
        let error = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("cannot read /nonexistent/x"), "{error}");
        let both = toml::from_str::<T>("password = { file = \"/x\", env = \"Y\" }");
        assert!(both.is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
