//! Delivery over the wire: HTTP calls (webhooks and chat services) and email over SMTP.

use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{EmailChannel, SmtpTls};

/// Bytes of a response body kept with the attempt.
const RESPONSE_KEPT: usize = 4096;

/// How an attempt went, for retry decisions.
#[derive(Debug)]
pub enum Delivery {
    Delivered {
        detail: String,
        output: Value,
    },
    /// Worth trying again: a timeout, a refused connection, 408, 429, 5xx.
    Transient {
        detail: String,
        output: Value,
    },
    /// Trying again would not help: a 4xx other than 408/429, a bad address.
    Permanent {
        detail: String,
        output: Value,
    },
}

/// One HTTP call.
pub struct HttpCall<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub body: String,
    pub timeout: Duration,
    pub idempotency_key: &'a str,
    pub hmac_secret: Option<&'a str>,
}

pub async fn http(client: &reqwest::Client, call: HttpCall<'_>) -> Delivery {
    let method = match reqwest::Method::from_bytes(call.method.as_bytes()) {
        Ok(method) => method,
        Err(_) => {
            return Delivery::Permanent {
                detail: format!("invalid HTTP method {:?}", call.method),
                output: Value::Null,
            };
        }
    };
    let mut request = client
        .request(method, call.url)
        .timeout(call.timeout)
        .header("content-type", "application/json")
        .header("user-agent", concat!("vakt/", env!("CARGO_PKG_VERSION")))
        .header("idempotency-key", call.idempotency_key);
    for (name, value) in call.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if let Some(secret) = call.hmac_secret {
        request = request.header("x-vakt-signature", signature(secret, call.body.as_bytes()));
    }
    let started = std::time::Instant::now();
    match request.body(call.body).send().await {
        Err(error) => {
            // reqwest's message names the URL: the credential, for a chat webhook.
            let error = error.without_url();
            Delivery::Transient {
                detail: format!("{} {}: {error}", call.method, crate::redact::url(call.url)),
                output: json!({"error": error.to_string()}),
            }
        }
        Ok(mut response) => {
            let status = response.status();
            // Keep the start of the body; never read more than that from the receiver.
            let mut body = Vec::new();
            while body.len() < RESPONSE_KEPT {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) | Err(_) => break,
                }
            }
            body.truncate(RESPONSE_KEPT);
            let kept = String::from_utf8_lossy(&body).into_owned();
            let output = json!({
                "status": status.as_u16(),
                "body": kept,
                "elapsed_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
            let detail = format!(
                "{} {} answered {status}",
                call.method,
                crate::redact::url(call.url)
            );
            if status.is_success() {
                Delivery::Delivered { detail, output }
            } else if status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
            {
                Delivery::Transient { detail, output }
            } else {
                Delivery::Permanent { detail, output }
            }
        }
    }
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`, as GitHub signs its webhooks.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length; this branch cannot be reached.
        return String::new();
    };
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", hex::encode(bytes))
}

/// One email.
pub struct Mail<'a> {
    pub to: &'a [String],
    pub subject: String,
    pub body: String,
    pub idempotency_key: &'a str,
    /// The local parts of this mail's Message-ID and of the mail it follows up (threading
    /// mails about one alert); the domain is the sender's.
    pub thread: Option<(String, Option<String>)>,
}

pub async fn email(channel: &EmailChannel, mail: Mail<'_>) -> Delivery {
    let message = match build_message(channel, &mail) {
        Ok(message) => message,
        Err(detail) => {
            return Delivery::Permanent {
                detail,
                output: Value::Null,
            };
        }
    };
    let transport = match transport(channel) {
        Ok(transport) => transport,
        Err(detail) => {
            return Delivery::Permanent {
                detail,
                output: Value::Null,
            };
        }
    };
    let server = format!("{}:{}", channel.host, channel.port);
    match transport.send(message).await {
        Ok(response) => Delivery::Delivered {
            detail: format!(
                "mail to {} accepted by {server}: {} {}",
                mail.to.join(", "),
                response.code(),
                response.message().collect::<Vec<_>>().join(" ")
            ),
            output: json!({"server": server, "code": response.code().to_string(), "to": mail.to}),
        },
        Err(error) if error.is_permanent() => Delivery::Permanent {
            detail: format!(
                "mail to {} refused by {server}: {error}",
                mail.to.join(", ")
            ),
            output: json!({"server": server, "error": error.to_string()}),
        },
        Err(error) => Delivery::Transient {
            detail: format!(
                "mail to {} via {server} failed: {error}",
                mail.to.join(", ")
            ),
            output: json!({"server": server, "error": error.to_string()}),
        },
    }
}

fn build_message(channel: &EmailChannel, mail: &Mail<'_>) -> Result<Message, String> {
    let from = channel
        .from
        .parse()
        .map_err(|e| format!("from address {:?}: {e}", channel.from))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(mail.subject.replace(['\r', '\n'], " "))
        .header(ContentType::TEXT_PLAIN);
    if mail.to.is_empty() {
        return Err("no recipients: set `to` on the action or the channel".into());
    }
    for to in mail.to {
        builder = builder.to(to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?);
    }
    let domain = channel
        .from
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>').trim())
        .filter(|d| {
            !d.is_empty()
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
        })
        .unwrap_or("vakt.invalid");
    let id = |local: &str| format!("<{local}@{domain}>");
    match &mail.thread {
        Some((own, follows)) => {
            builder = builder.message_id(Some(id(own)));
            if let Some(first) = follows {
                builder = builder.in_reply_to(id(first)).references(id(first));
            }
        }
        None => builder = builder.message_id(Some(id(&format!("vakt.{}", mail.idempotency_key)))),
    }
    let mut message = builder
        .body(mail.body.clone())
        .map_err(|e| format!("building the message: {e}"))?;
    message.headers_mut().insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Vakt-Action-Id"),
        mail.idempotency_key.to_owned(),
    ));
    Ok(message)
}

fn transport(channel: &EmailChannel) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let host = channel.host.as_str();
    let mut builder = match channel.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpTls::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).tls(Tls::Required(
                TlsParameters::new(host.to_owned()).map_err(|e| format!("TLS for {host}: {e}"))?,
            ))
        }
        SmtpTls::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).tls(Tls::Wrapper(
                TlsParameters::new(host.to_owned()).map_err(|e| format!("TLS for {host}: {e}"))?,
            ))
        }
    }
    .port(channel.port)
    .timeout(Some(Duration::from_secs(channel.timeout_secs)));
    if let (Some(user), Some(password)) = (&channel.username, &channel.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
