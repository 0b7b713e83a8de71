//! Syslog: RFC 5424 and RFC 3164 over UDP, TCP and TLS, parsed by `syslog_loose`, framed by `framing`.
//!
//! Mapping: hostname -> `resource` (the sender's address when absent), app-name -> `check`
//! (the msgid when there is no app-name, `syslog` when neither), severity 0-2 -> critical,
//! 3 -> major, 4 -> warning, 5-7 -> info; facility, syslog severity, procid, msgid and
//! structured data (`SD-ID.PARAM`) -> labels. A frame that is not syslog becomes an event of
//! check `syslog_parse_error` with the raw text, never a silent drop.
//!
//! **Boundary:** datagrams and streams from the network.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;
use serde_json::json;
use syslog_loose::{IncompleteDate, Message, SyslogSeverity, Variant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use vakt_core::event::{
    LABEL_KEY_LEN_MAX, LABEL_VALUE_LEN_MAX, LABELS_MAX, NAME_LEN_MAX, SUMMARY_LEN_MAX,
};
use vakt_core::{EventInput, Severity};

use super::Deps;
use super::framing::{Frame, Framer};
use super::tls::{TlsListenerConfig, acceptor};
use super::{Running, clean, cut, one_line};
use crate::ingest::deliver;
use crate::ingest::{Channel, SubmitError, WhenFull};
use crate::metrics::ChannelLabels;

/// The check of events made from frames that are not syslog.
pub const PARSE_ERROR_CHECK: &str = "syslog_parse_error";
/// Frames one read may turn into one queued batch, at most.
const BATCH_FRAMES_MAX: usize = 1000;

/// `[sources.syslog]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Channel name: the default `source` of its events and the `channel` label of metrics.
    #[serde(default = "default_name")]
    pub name: String,
    /// UDP addresses to listen on.
    #[serde(default)]
    pub udp: Vec<String>,
    /// TCP addresses to listen on (octet counting and newline framing, detected per frame).
    #[serde(default)]
    pub tcp: Vec<String>,
    /// An optional TLS listener (RFC 5425), framed like TCP.
    #[serde(default)]
    pub tls: Option<TlsListenerConfig>,
    /// Longest message kept, in bytes; longer ones are cut and counted.
    #[serde(default = "default_frame_bytes_max")]
    pub frame_bytes_max: usize,
    /// Events of this channel queued at most; UDP drops (and counts) beyond it, TCP stops
    /// reading until there is room.
    #[serde(default = "default_queue_events_max")]
    pub queue_events_max: usize,
    /// Open TCP and TLS connections at most; more wait to be accepted.
    #[serde(default = "default_connections_max")]
    pub connections_max: usize,
}

fn default_name() -> String {
    "syslog".to_owned()
}
fn default_frame_bytes_max() -> usize {
    8192
}
fn default_queue_events_max() -> usize {
    20_000
}
fn default_connections_max() -> usize {
    512
}

/// What one listener needs.
struct Listener {
    state: Arc<Deps>,
    channel: Channel,
    frame_bytes_max: usize,
}

pub async fn start(
    config: &SyslogConfig,
    state: &Arc<Deps>,
    running: &mut Running,
) -> anyhow::Result<()> {
    let channel = state.ingest.channel(&config.name, config.queue_events_max);
    let listener = Arc::new(Listener {
        state: Arc::clone(state),
        channel,
        frame_bytes_max: config.frame_bytes_max.clamp(64, 1024 * 1024),
    });
    let connections = Arc::new(Semaphore::new(config.connections_max.max(1)));
    for address in &config.udp {
        let socket = super::bind_udp(state, &config.name, address)
            .await
            .with_context(|| format!("sources.syslog: cannot listen on UDP {address}"))?;
        let local = socket.local_addr()?;
        running.bound.syslog_udp.push(local);
        tracing::info!(address = %local, "syslog listening on UDP");
        running
            .tasks
            .push(tokio::spawn(udp_loop(socket, Arc::clone(&listener))));
    }
    for address in &config.tcp {
        let socket = crate::listen::tcp(address.as_str())
            .await
            .with_context(|| format!("sources.syslog: cannot listen on TCP {address}"))?;
        let local = socket.local_addr()?;
        running.bound.syslog_tcp.push(local);
        tracing::info!(address = %local, "syslog listening on TCP");
        running.tasks.push(tokio::spawn(accept_loop(
            socket,
            None,
            Arc::clone(&listener),
            Arc::clone(&connections),
        )));
    }
    if let Some(tls) = &config.tls {
        let tls_acceptor = acceptor(tls).context("sources.syslog.tls")?;
        let socket = crate::listen::tcp(tls.listen.as_str())
            .await
            .with_context(|| format!("sources.syslog.tls: cannot listen on {}", tls.listen))?;
        let local = socket.local_addr()?;
        running.bound.syslog_tls.push(local);
        tracing::info!(address = %local, "syslog listening on TLS");
        running.tasks.push(tokio::spawn(accept_loop(
            socket,
            Some(tls_acceptor),
            Arc::clone(&listener),
            connections,
        )));
    }
    Ok(())
}

async fn udp_loop(socket: UdpSocket, listener: Arc<Listener>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let mut frames = Vec::new();
        let mut bytes = 0;
        // Wait for one datagram, then take whatever else is already there.
        match socket.recv_from(&mut buf).await {
            Ok((n, peer)) => {
                bytes += n;
                frames.push((listener.cut(&buf[..n]), peer.ip()));
            }
            Err(error) => {
                tracing::warn!(%error, "syslog UDP receive failed");
                continue;
            }
        }
        while frames.len() < BATCH_FRAMES_MAX {
            match socket.try_recv_from(&mut buf) {
                Ok((n, peer)) => {
                    bytes += n;
                    frames.push((listener.cut(&buf[..n]), peer.ip()));
                }
                Err(_) => break,
            }
        }
        let inputs = listener.events(frames);
        listener.channel.count_received(inputs.len(), bytes);
        let count = inputs.len();
        match deliver(
            &listener.channel,
            listener.state.pipeline(),
            inputs,
            WhenFull::Refuse,
            crate::ingest::Answer::Stored,
        )
        .await
        {
            Ok(receipt) => listener.channel.count_failures(count, receipt),
            Err(SubmitError::QueueFull { .. }) => {
                listener.channel.count_rejected(count, "queue_full");
            }
            Err(error) => {
                tracing::warn!(%error, count, "syslog UDP events not queued");
                listener.channel.count_rejected(count, "store_error");
            }
        }
    }
}

async fn accept_loop(
    socket: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    listener: Arc<Listener>,
    connections: Arc<Semaphore>,
) {
    loop {
        let Ok(permit) = Arc::clone(&connections).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "syslog accept failed");
                continue;
            }
        };
        let listener = Arc::clone(&listener);
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => read_stream(stream, peer, None, &listener).await,
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => {
                        // A verified client certificate names the sender.
                        let sender = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|certs| certs.first())
                            .and_then(crate::http::tls::client_name);
                        read_stream(stream, peer, sender, &listener).await;
                    }
                    Err(error) => tracing::debug!(%peer, %error, "syslog TLS handshake failed"),
                },
            }
        });
    }
}

/// Reads frames from one connection until it closes. Waiting for queue room stops the reads,
/// so a sender faster than storage is slowed by TCP itself.
async fn read_stream(
    mut stream: impl AsyncRead + Unpin,
    peer: SocketAddr,
    sender: Option<String>,
    listener: &Listener,
) {
    let mut framer = Framer::new(listener.frame_bytes_max);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut frames = Vec::new();
        let n = match stream.read(&mut buf).await {
            Ok(0) => {
                framer.finish_stream(&mut frames);
                0
            }
            Ok(n) => {
                framer.push(&buf[..n], &mut frames);
                n
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "syslog connection failed");
                framer.finish_stream(&mut frames);
                0
            }
        };
        if !frames.is_empty() {
            let frames = frames
                .into_iter()
                .map(|f| (listener.counted(f), peer.ip()))
                .collect();
            let mut inputs = listener.events(frames);
            if let Some(sender) = &sender {
                for input in &mut inputs {
                    input.sender = Some(sender.clone());
                }
            }
            listener.channel.count_received(inputs.len(), n);
            let count = inputs.len();
            match deliver(
                &listener.channel,
                listener.state.pipeline(),
                inputs,
                WhenFull::Wait,
                crate::ingest::Answer::Stored,
            )
            .await
            {
                Ok(receipt) => listener.channel.count_failures(count, receipt),
                Err(error) => {
                    tracing::warn!(%peer, %error, "syslog stream closed: events cannot be queued");
                    return;
                }
            }
        } else if n > 0 {
            listener.channel.count_received(0, n);
        }
        if n == 0 {
            return;
        }
    }
}

impl Listener {
    /// A datagram as a frame, cut to the limit.
    fn cut(&self, datagram: &[u8]) -> Frame {
        let truncated = datagram.len() > self.frame_bytes_max;
        let frame = Frame {
            bytes: datagram[..datagram.len().min(self.frame_bytes_max)].to_vec(),
            truncated,
        };
        self.counted(frame)
    }

    fn counted(&self, frame: Frame) -> Frame {
        if frame.truncated {
            self.channel
                .metrics()
                .frames_truncated
                .get_or_create(&ChannelLabels {
                    channel: self.channel.name().to_owned(),
                })
                .inc();
        }
        frame
    }

    fn events(&self, frames: Vec<(Frame, IpAddr)>) -> Vec<EventInput> {
        let now = Utc::now();
        frames
            .into_iter()
            .map(|(frame, peer)| {
                let (input, malformed) = to_event(&frame, peer, now);
                if malformed {
                    self.channel
                        .metrics()
                        .parse_errors
                        .get_or_create(&ChannelLabels {
                            channel: self.channel.name().to_owned(),
                        })
                        .inc();
                }
                input
            })
            .collect()
    }
}

/// Turns one frame into an event; `true` when it was not syslog (a parse-error event).
pub fn to_event(frame: &Frame, peer: IpAddr, now: DateTime<Utc>) -> (EventInput, bool) {
    let text = String::from_utf8_lossy(&frame.bytes);
    let parsed = syslog_loose::parse_message_with_year_exact_tz(
        &text,
        |date| year_for(date, now),
        Some(Utc),
        Variant::Either,
    );
    match parsed {
        Ok(message) if message.facility.is_some() => (from_message(&message, frame, peer), false),
        _ => (parse_error(&text, frame, peer), true),
    }
}

/// RFC 3164 timestamps have no year: the one that puts the date closest before now.
fn year_for(date: IncompleteDate, now: DateTime<Utc>) -> i32 {
    let (month, ..) = date;
    if month > now.month() {
        now.year() - 1
    } else {
        now.year()
    }
}

fn from_message(message: &Message<&str>, frame: &Frame, peer: IpAddr) -> EventInput {
    let mut labels = std::collections::BTreeMap::new();
    let mut label = |key: String, value: &str| {
        if labels.len() < LABELS_MAX
            && !key.is_empty()
            && key.len() <= LABEL_KEY_LEN_MAX
            && !key.chars().any(char::is_control)
        {
            labels.insert(key, super::printable(value, LABEL_VALUE_LEN_MAX));
        }
    };
    if let Some(facility) = message.facility {
        label("facility".into(), facility.as_str());
    }
    if let Some(severity) = message.severity {
        label("syslog_severity".into(), severity.as_str());
    }
    if let Some(procid) = &message.procid {
        let procid = match procid {
            syslog_loose::ProcId::PID(pid) => pid.to_string(),
            syslog_loose::ProcId::Name(name) => (*name).to_owned(),
        };
        label("procid".into(), &procid);
    }
    if let Some(msgid) = message.msgid.filter(|m| *m != "-") {
        label("msgid".into(), msgid);
    }
    for element in &message.structured_data {
        for (name, value) in &element.params {
            label(format!("{}.{}", element.id, name), value);
        }
    }
    if frame.truncated {
        label("truncated".into(), "true");
    }
    let resource = name(message.hostname.filter(|h| *h != "-")).unwrap_or_else(|| peer.to_string());
    let check = name(message.appname.filter(|a| *a != "-"))
        .or_else(|| name(message.msgid.filter(|m| *m != "-")))
        .unwrap_or_else(|| "syslog".to_owned());
    let summary = message.msg.trim();
    EventInput {
        resource,
        check,
        severity: Some(message.severity.map_or(Severity::Info, severity)),
        summary: if summary.is_empty() {
            "(empty syslog message)".to_owned()
        } else {
            one_line(summary, SUMMARY_LEN_MAX)
        },
        labels,
        occurred_at: message.timestamp.map(|t| t.with_timezone(&Utc)),
        details: json!({"protocol": format!("{:?}", message.protocol).to_lowercase()})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        ..EventInput::default()
    }
}

fn parse_error(text: &str, frame: &Frame, peer: IpAddr) -> EventInput {
    let mut details = serde_json::Map::new();
    details.insert("raw".into(), json!(cut(text, 4096)));
    details.insert("truncated".into(), json!(frame.truncated));
    EventInput {
        resource: peer.to_string(),
        check: PARSE_ERROR_CHECK.to_owned(),
        severity: Some(Severity::Warning),
        summary: one_line(
            &format!("not a syslog message: {}", text.trim()),
            SUMMARY_LEN_MAX,
        ),
        details,
        ..EventInput::default()
    }
}

/// A name field made fit for the event model; `None` when nothing is left.
fn name(text: Option<&str>) -> Option<String> {
    Some(clean(text?, NAME_LEN_MAX)).filter(|n| !n.is_empty())
}

fn severity(severity: SyslogSeverity) -> Severity {
    match severity {
        SyslogSeverity::SEV_EMERG | SyslogSeverity::SEV_ALERT | SyslogSeverity::SEV_CRIT => {
            Severity::Critical
        }
        SyslogSeverity::SEV_ERR => Severity::Major,
        SyslogSeverity::SEV_WARNING => Severity::Warning,
        SyslogSeverity::SEV_NOTICE | SyslogSeverity::SEV_INFO | SyslogSeverity::SEV_DEBUG => {
            Severity::Info
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(text: &str) -> (EventInput, bool) {
        let frame = Frame {
            bytes: text.as_bytes().to_vec(),
            truncated: false,
        };
        to_event(&frame, "10.0.0.9".parse().expect("ip"), Utc::now())
    }

    #[test]
    fn rfc5424_with_structured_data() {
        let (e, malformed) = event(
            r#"<165>1 2026-11-24T08:00:00.003Z db01 postgres 4242 ID47 [exampleSDID@32473 iut="3" eventSource="Application"] disk nearly full"#,
        );
        assert!(!malformed);
        assert_eq!(
            (e.resource.as_str(), e.check.as_str()),
            ("db01", "postgres")
        );
        assert_eq!(e.severity, Some(Severity::Info), "notice");
        assert_eq!(e.summary, "disk nearly full");
        assert_eq!(e.labels["facility"], "local4");
        assert_eq!(e.labels["msgid"], "ID47");
        assert_eq!(e.labels["procid"], "4242");
        assert_eq!(e.labels["exampleSDID@32473.iut"], "3");
        assert_eq!(
            e.occurred_at.map(|t| t.to_rfc3339()),
            Some("2026-11-24T08:00:00.003+00:00".into())
        );
    }

    #[test]
    fn rfc3164_and_severities() {
        let (e, malformed) = event("<11>Nov 24 07:59:58 web1 nginx[77]: upstream timed out");
        assert!(!malformed);
        assert_eq!((e.resource.as_str(), e.check.as_str()), ("web1", "nginx"));
        assert_eq!(e.severity, Some(Severity::Major), "user.err");
        assert_eq!(e.summary, "upstream timed out");
        for (pri, expected) in [
            (8, Severity::Critical),
            (10, Severity::Critical),
            (12, Severity::Warning),
            (15, Severity::Info),
        ] {
            let (e, _) = event(&format!("<{pri}>Nov 24 07:59:58 h app: m"));
            assert_eq!(e.severity, Some(expected), "pri {pri}");
        }
    }

    #[test]
    fn garbage_becomes_a_parse_error_event_that_validates() {
        let (e, malformed) = event("hello \u{1} world");
        assert!(malformed);
        assert_eq!(e.check, PARSE_ERROR_CHECK);
        assert_eq!(e.resource, "10.0.0.9");
        assert!(e.summary.contains("hello"));
        let value = serde_json::to_value(&e).expect("serialises");
        assert!(EventInput::from_json(0, value).is_ok());
    }

    proptest! {
        #[test]
        fn every_frame_becomes_a_valid_event(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let frame = Frame { bytes, truncated: false };
            let (input, _) = to_event(&frame, "192.0.2.1".parse().expect("ip"), Utc::now());
            let value = serde_json::to_value(&input).expect("serialises");
            prop_assert!(EventInput::from_json(0, value).is_ok(), "{:?}", input);
        }

        #[test]
        fn syslog_shaped_lines_parse_without_panic(
            pri in 0u8..200, host in "[a-z0-9.-]{0,20}", app in "[a-zA-Z0-9_/-]{0,20}", msg in ".{0,200}"
        ) {
            let line = format!("<{pri}>1 2026-11-24T08:00:00Z {host} {app} - - - {msg}");
            let frame = Frame { bytes: line.into_bytes(), truncated: false };
            let (input, _) = to_event(&frame, "192.0.2.1".parse().expect("ip"), Utc::now());
            let value = serde_json::to_value(&input).expect("serialises");
            prop_assert!(EventInput::from_json(0, value).is_ok(), "{:?}", input);
        }
    }
}
