//! Ingest channels beyond `/api/v1/events`: their configuration and their start.
//!
//! Every channel turns what it receives into `EventInput`s and calls `ingest::deliver`,
//! which runs the stateless stages with the channel's name as the default `source` and
//! queues the batch in the channel's bounded queue. No channel writes to storage or skips a
//! stage.

pub mod alertmanager;
pub mod framing;
pub mod pagerduty;
pub mod snmp;
pub mod syslog;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::ingest::Ingest;
use crate::live::Live;

/// What the listening sources need from the rest of vakt.
pub struct Deps {
    /// Each source makes its own channel in it.
    pub ingest: Ingest,
    pub pipeline: Live<vakt_core::Pipeline>,
    /// UDP listeners by channel, for the kernel drop counter of `/metrics`.
    pub udp: UdpListeners,
}

impl Deps {
    fn pipeline(&self) -> Arc<vakt_core::Pipeline> {
        self.pipeline.get()
    }
}

/// UDP listeners by channel (`syslog`, `snmp`) and the address each is bound to.
pub type UdpListeners = Arc<std::sync::Mutex<Vec<(String, SocketAddr)>>>;

/// `[sources]`: the listening channels. HTTP-based ones (`/api/v1/events`, the Alertmanager
/// and PagerDuty APIs) are always served by the HTTP listener.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    #[serde(default)]
    pub syslog: Option<syslog::SyslogConfig>,
    #[serde(default)]
    pub snmp: Option<snmp::SnmpConfig>,
    #[serde(default)]
    pub pagerduty: pagerduty::PagerDutyConfig,
    #[serde(default)]
    pub alertmanager: alertmanager::AlertmanagerConfig,
}

/// What the started sources listen on, for logs and tests.
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub syslog_udp: Vec<SocketAddr>,
    pub syslog_tcp: Vec<SocketAddr>,
    pub syslog_tls: Vec<SocketAddr>,
    pub snmp: Vec<SocketAddr>,
}

/// The running sources: their tasks (aborted at shutdown) and addresses.
pub struct Running {
    pub bound: Bound,
    pub tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds every configured listener (an address in use is an error here, before serving).
pub async fn start(config: &SourcesConfig, state: &Arc<Deps>) -> anyhow::Result<Running> {
    let mut running = Running {
        bound: Bound::default(),
        tasks: Vec::new(),
    };
    let started = async {
        if let Some(syslog) = &config.syslog {
            syslog::start(syslog, state, &mut running).await?;
        }
        if let Some(snmp) = &config.snmp {
            snmp::start(snmp, state, &mut running).await?;
        }
        anyhow::Ok(())
    }
    .await;
    match started {
        Ok(()) => Ok(running),
        Err(error) => {
            // Listeners already started must not outlive a failed start.
            running.stop();
            Err(error)
        }
    }
}

/// Receive buffer asked for on UDP listeners: bursts wait in the kernel instead of being
/// dropped there (Linux caps it at `net.core.rmem_max`).
pub const UDP_RECV_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Binds a UDP socket with a large receive buffer, and records it for the drop counter.
pub async fn bind_udp(
    state: &Deps,
    channel: &str,
    address: &str,
) -> std::io::Result<tokio::net::UdpSocket> {
    let addr = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the address resolves to nothing",
            )
        })?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Err(error) = socket.set_recv_buffer_size(UDP_RECV_BUFFER_BYTES) {
        tracing::debug!(%error, "cannot enlarge the UDP receive buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let socket = tokio::net::UdpSocket::from_std(socket.into())?;
    let local = socket.local_addr()?;
    state
        .udp
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((channel.to_owned(), local));
    Ok(socket)
}

/// Datagrams the kernel dropped on a local UDP port because the receive buffer was full
/// (Linux `/proc/net/udp` and `udp6`), or `None` where that is not readable.
pub fn udp_kernel_drops(port: u16) -> Option<u64> {
    let mut found = None;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                let drops = fields
                    .last()
                    .and_then(|d| d.parse::<u64>().ok())
                    .unwrap_or(0);
                found = Some(found.unwrap_or(0) + drops);
            }
        }
    }
    found
}

/// `text` made one line for a summary, at most `max` bytes: line breaks and other white
/// space controls become spaces, other control characters (NUL, ESC, ...) are written out
/// as `\xNN` escapes, so nothing a peer sends reaches a terminal, a mail header or a chat
/// message as a control character.
pub fn one_line(text: &str, max: usize) -> String {
    // Most summaries have no control character other than a tab: one copy, not a char at
    // a time.
    if !has_control(text, ButTab::Kept) {
        return cut(text.trim(), max);
    }
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.trim().chars() {
        match c {
            '\t' => out.push('\t'),
            '\n' | '\r' | '\u{0b}' | '\u{0c}' => out.push(' '),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
        if out.len() > max {
            break;
        }
    }
    cut_owned(out, max)
}

/// A label value from a peer, at most `max` bytes, with every control character but tab
/// written out as a `\xNN` escape (label values are refused with control characters on the
/// events API; peers cannot be refused, so theirs are made printable). Spaces are kept.
pub fn printable(text: &str, max: usize) -> String {
    if !has_control(text, ButTab::Kept) {
        return cut(text, max);
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            c if escaped(c) => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c => out.push(c),
        }
        if out.len() > max {
            break;
        }
    }
    cut_owned(out, max)
}

/// The characters [`printable`] writes out as escapes: controls but tab.
fn escaped(c: char) -> bool {
    c.is_control() && c != '\t'
}

/// Whether a tab counts for [`has_control`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum ButTab {
    /// A tab is a control character ([`clean`] removes it).
    Counted,
    /// A tab is kept ([`printable`] and [`one_line`]).
    Kept,
}

/// Whether `text` has a control character (`char::is_control`: U+0000-U+001F and
/// U+007F-U+009F). Read as bytes: in UTF-8 a C0 control or DEL is a byte of its own and a
/// C1 control is 0xC2 followed by 0x80-0x9F, and no other character's bytes look like
/// either. A peer's every alert has its labels and summary looked at this way; decoding
/// them a char at a time cost several times as much.
fn has_control(text: &str, tab: ButTab) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(at, &byte)| match byte {
        b'\t' => tab == ButTab::Counted,
        0..=0x1f | 0x7f => true,
        0xc2 => bytes
            .get(at + 1)
            .is_some_and(|next| (0x80..=0x9f).contains(next)),
        _ => false,
    })
}

/// [`printable`] for every value of a peer's label set.
pub fn printable_labels(
    mut labels: std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    // In place: labels are mostly printable and short, and then nothing is copied.
    let max = vakt_core::event::LABEL_VALUE_LEN_MAX;
    for value in labels.values_mut() {
        if value.len() > max || has_control(value, ButTab::Kept) {
            *value = printable(value, max);
        }
    }
    labels
}

/// Whether `details` serialise to at most `DETAILS_BYTES_MAX` bytes of JSON. JSON writes a
/// byte as six at most (`\u00XX`), so details whose strings are short enough are known to
/// fit without serialising them (which a peer's every alert paid before); the rest are
/// serialised and measured.
pub fn details_fit(details: &serde_json::Map<String, serde_json::Value>) -> bool {
    use serde_json::Value;
    fn bound(value: &Value) -> usize {
        match value {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 40,
            Value::String(text) => 6 * text.len() + 2,
            Value::Array(items) => items.iter().map(|v| bound(v) + 1).sum::<usize>() + 2,
            Value::Object(map) => map_bound(map),
        }
    }
    fn map_bound(map: &serde_json::Map<String, Value>) -> usize {
        map.iter()
            .map(|(k, v)| 6 * k.len() + 4 + bound(v))
            .sum::<usize>()
            + 2
    }
    let max = vakt_core::event::DETAILS_BYTES_MAX;
    map_bound(details) <= max || serde_json::to_vec(details).is_ok_and(|b| b.len() <= max)
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    text[..text.floor_char_boundary(max)].to_owned()
}

/// `cut` for a string of its own: shortened in place, not copied.
fn cut_owned(mut text: String, max: usize) -> String {
    text.truncate(text.floor_char_boundary(max));
    text
}

/// Text made fit for a name or label value: control characters removed, trimmed, bounded.
pub fn clean(text: &str, max: usize) -> String {
    // Most text has no control character: one copy instead of two (a peer's every alert
    // cleans five labels).
    if !has_control(text, ButTab::Counted) {
        return cut(text.trim(), max);
    }
    let cleaned: String = text.chars().filter(|c| !c.is_control()).collect();
    cut(cleaned.trim(), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_found_as_bytes_as_chars_find_them() {
        // Every character below U+3000 (all the one- and two-byte ones) and a spread of the
        // rest, alone and between others (U+00A0 is 0xC2 0xA0: the lead byte of the C1
        // controls before a byte that makes no control).
        let chars = (0..0x3000_u32).chain((0x3000..=0x10_ffff).step_by(97));
        for c in chars.filter_map(char::from_u32) {
            for text in [
                c.to_string(),
                format!("ab{c}\u{e9}"),
                format!("\u{a0}{c}\u{a0}"),
            ] {
                let counted = text.chars().any(char::is_control);
                let kept = text.chars().any(escaped);
                assert_eq!(has_control(&text, ButTab::Counted), counted, "{text:?}");
                assert_eq!(has_control(&text, ButTab::Kept), kept, "{text:?}");
            }
        }
        assert!(!has_control("", ButTab::Counted));
        assert!(has_control("a\tb", ButTab::Counted));
        assert!(!has_control("a\tb", ButTab::Kept));
    }

    #[test]
    fn details_fit_agrees_with_the_serialised_size() {
        let max = vakt_core::event::DETAILS_BYTES_MAX;
        let details = |text: String| {
            serde_json::Map::from_iter([(
                "annotations".to_owned(),
                serde_json::json!({ "description": text, "runbook": [1, true, null] }),
            )])
        };
        let exact = |d: &serde_json::Map<String, serde_json::Value>| {
            serde_json::to_vec(d).map(|b| b.len()).unwrap_or(usize::MAX) <= max
        };
        for text in [
            "disk full".to_owned(),
            // Within the limit serialised, beyond the six-bytes-a-byte bound: measured.
            "a".repeat(max / 2),
            "a".repeat(max + 1),
            // Each control character serialises to six bytes: past the limit.
            "\u{1}".repeat(max / 5),
            "\u{1}".repeat(max / 7),
        ] {
            let d = details(text);
            let size = serde_json::to_vec(&d).map_or(0, |b| b.len());
            assert_eq!(details_fit(&d), exact(&d), "{size} bytes serialised");
        }
        assert!(details_fit(&details("a".repeat(max / 2))));
        assert!(!details_fit(&details("\u{1}".repeat(max / 5))));
    }

    #[test]
    fn one_line_turns_breaks_into_spaces_and_escapes_the_rest() {
        assert_eq!(one_line("disk\nfull\r\n", 100), "disk full");
        assert_eq!(one_line("a\u{1b}[31mred\u{0}", 100), "a\\x1b[31mred\\x00");
        assert_eq!(one_line("tab\tkept", 100), "tab\tkept");
        // Without a control character it is only trimmed (and cut), as with one.
        assert_eq!(one_line(" \tdisk  full \t", 100), "disk  full");
        assert_eq!(one_line(" disk full ", 6), "disk f");
        assert_eq!(printable(" a\nb\u{0}\tc ", 100), " a\\x0ab\\x00\tc ");
        assert_eq!(printable("plain", 3), "pla");
        let labels = [("a", "x\u{1}y"), ("b", "plain\tkept"), ("c", "")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let expected: std::collections::BTreeMap<String, String> =
            [("a", "x\\x01y"), ("b", "plain\tkept"), ("c", "")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into();
        assert_eq!(printable_labels(labels), expected);
        assert_eq!(one_line(&"x".repeat(50), 10).len(), 10);
        // Cut on a character boundary: 'é' is two bytes.
        assert_eq!(one_line("hé llo", 2), "h");
        assert_eq!(printable("aé\u{1}", 2), "a");
        // A label value keeps its spaces, printable or not.
        assert_eq!(printable(" plain ", 100), " plain ");
    }

    #[test]
    fn clean_drops_control_characters_then_trims_and_cuts() {
        assert_eq!(clean("  db01  ", 100), "db01");
        assert_eq!(clean("\u{0} db\u{7}01\t", 100), "db01");
        assert_eq!(clean("\u{0}\u{1b}", 100), "");
        assert_eq!(clean(" héllo", 2), "h");
        assert_eq!(clean("h\u{0}éllo", 3), "hé");
    }
}
