//! SNMP traps (v1 and v2c) and informs (answered), decoded by `snmp2`, with the standard traps named and a user table of OIDs.
//!
//! Mapping: the sender's address (or `snmpTrapAddress.0` when a proxy forwarded the trap) ->
//! `resource`; the trap's name -> `check`; linkDown and linkUp share the check `link_state`
//! (major / ok, labelled with the interface) so that a linkUp clears its linkDown; varbinds
//! -> labels, named where the built-in or user table knows the OID. A packet with a wrong
//! community is dropped and counted; one that is not SNMP is counted as a parse error.
//!
//! **Boundary:** datagrams from the network.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Map, json};
use snmp2::MessageType;
use snmp2::{Pdu, Value};
use tokio::net::UdpSocket;
use vakt_core::event::{LABEL_KEY_LEN_MAX, LABEL_VALUE_LEN_MAX, LABELS_MAX, NAME_LEN_MAX};
use vakt_core::{EventInput, Severity};

use super::Deps;
use super::{Running, clean};
use crate::ingest::deliver;
use crate::ingest::{Channel, SubmitError, WhenFull};
use crate::metrics::ChannelLabels;

const SNMP_TRAP_OID: &str = "1.3.6.1.6.3.1.1.4.1.0";
const SYS_UPTIME: &str = "1.3.6.1.2.1.1.3.0";
const SNMP_TRAP_ADDRESS: &str = "1.3.6.1.6.3.18.1.3.0";

/// `[sources.snmp]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnmpConfig {
    #[serde(default = "default_name")]
    pub name: String,
    /// UDP addresses to listen on (the standard trap port is 162).
    pub listen: Vec<String>,
    /// Communities accepted; traps with any other are dropped and counted.
    #[serde(default = "default_communities")]
    pub communities: Vec<String>,
    /// Names and severities of traps by OID, beyond the standard ones.
    #[serde(default)]
    pub traps: BTreeMap<String, TrapConfig>,
    /// Names of varbind OIDs (a name for an OID also names its instances: `.1.2` suffixes).
    #[serde(default)]
    pub oids: BTreeMap<String, String>,
    /// Severity of traps no table gives one.
    #[serde(default = "default_severity")]
    pub default_severity: Severity,
    #[serde(default = "default_queue_events_max")]
    pub queue_events_max: usize,
}

/// `[sources.snmp.traps."OID"]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrapConfig {
    pub name: String,
    #[serde(default)]
    pub severity: Option<Severity>,
}

fn default_name() -> String {
    "snmp".to_owned()
}
fn default_communities() -> Vec<String> {
    vec!["public".to_owned()]
}
fn default_severity() -> Severity {
    Severity::Warning
}
fn default_queue_events_max() -> usize {
    20_000
}

/// The standard traps of SNMPv2-MIB: OID, name, check, severity.
const STANDARD_TRAPS: [(&str, &str, &str, Severity); 5] = [
    (
        "1.3.6.1.6.3.1.1.5.1",
        "coldStart",
        "restart",
        Severity::Warning,
    ),
    (
        "1.3.6.1.6.3.1.1.5.2",
        "warmStart",
        "restart",
        Severity::Warning,
    ),
    (
        "1.3.6.1.6.3.1.1.5.3",
        "linkDown",
        "link_state",
        Severity::Major,
    ),
    ("1.3.6.1.6.3.1.1.5.4", "linkUp", "link_state", Severity::Ok),
    (
        "1.3.6.1.6.3.1.1.5.5",
        "authenticationFailure",
        "snmp_authentication_failure",
        Severity::Warning,
    ),
];

/// Varbind OIDs every operator recognises (IF-MIB, SNMPv2-MIB).
const STANDARD_OIDS: [(&str, &str); 9] = [
    ("1.3.6.1.2.1.2.2.1.1", "ifIndex"),
    ("1.3.6.1.2.1.2.2.1.2", "ifDescr"),
    ("1.3.6.1.2.1.2.2.1.3", "ifType"),
    ("1.3.6.1.2.1.2.2.1.7", "ifAdminStatus"),
    ("1.3.6.1.2.1.2.2.1.8", "ifOperStatus"),
    ("1.3.6.1.2.1.31.1.1.1.1", "ifName"),
    ("1.3.6.1.2.1.31.1.1.1.18", "ifAlias"),
    ("1.3.6.1.2.1.1.5.0", "sysName"),
    ("1.3.6.1.6.3.18.1.3.0", "snmpTrapAddress"),
];

/// Everything a decoded trap turns into, before it is an event.
#[derive(Debug, PartialEq)]
pub struct Trap {
    pub oid: String,
    pub varbinds: Vec<(String, String)>,
    pub inform: bool,
}

/// Why a datagram is not a trap we take.
#[derive(Debug, PartialEq)]
pub enum Refused {
    Malformed(String),
    Community,
    NotATrap,
}

/// Decodes a datagram; for an inform also returns the response to send back.
pub fn decode(bytes: &[u8], communities: &[String]) -> Result<(Trap, Option<Vec<u8>>), Refused> {
    let pdu = Pdu::from_bytes(bytes).map_err(|e| Refused::Malformed(format!("{e:?}")))?;
    if !communities.iter().any(|c| c.as_bytes() == pdu.community) {
        return Err(Refused::Community);
    }
    let varbinds: Vec<(String, String)> = pdu
        .varbinds
        .clone()
        .map(|(oid, value)| (oid.to_id_string(), render(&value)))
        .collect();
    match pdu.message_type {
        MessageType::Trap | MessageType::InformRequest => {
            let inform = pdu.message_type == MessageType::InformRequest;
            let oid = varbinds
                .iter()
                .find(|(oid, _)| oid == SNMP_TRAP_OID)
                .map(|(_, value)| value.clone())
                .ok_or_else(|| Refused::Malformed("no snmpTrapOID.0 varbind".into()))?;
            let response =
                if inform {
                    let mut answer = pdu.clone();
                    answer.message_type = MessageType::Response;
                    answer.error_status = 0;
                    answer.error_index = 0;
                    Some(answer.to_bytes().map_err(|e| {
                        Refused::Malformed(format!("cannot answer the inform: {e:?}"))
                    })?)
                } else {
                    None
                };
            let payload = varbinds
                .into_iter()
                .filter(|(oid, _)| oid != SNMP_TRAP_OID && oid != SYS_UPTIME)
                .collect();
            Ok((
                Trap {
                    oid,
                    varbinds: payload,
                    inform,
                },
                response,
            ))
        }
        MessageType::TrapV1 => {
            let info = pdu
                .v1_trap_info
                .as_ref()
                .ok_or_else(|| Refused::Malformed("v1 trap without its header".into()))?;
            // RFC 3584: generic traps 0-5 are the standard ones; 6 is enterprise.0.specific.
            let oid = if (0..6).contains(&info.generic_trap) {
                format!("1.3.6.1.6.3.1.1.5.{}", info.generic_trap + 1)
            } else {
                format!(
                    "{}.0.{}",
                    info.enterprise.to_id_string(),
                    info.specific_trap
                )
            };
            let mut varbinds = varbinds;
            varbinds.push((SNMP_TRAP_ADDRESS.to_owned(), info.agent_addr.to_string()));
            Ok((
                Trap {
                    oid,
                    varbinds,
                    inform: false,
                },
                None,
            ))
        }
        _ => Err(Refused::NotATrap),
    }
}

fn render(value: &Value<'_>) -> String {
    match value {
        Value::Boolean(b) => b.to_string(),
        Value::Null => String::new(),
        Value::Integer(n) => n.to_string(),
        Value::OctetString(bytes) | Value::Opaque(bytes) => match std::str::from_utf8(bytes) {
            Ok(text)
                if !text
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t') =>
            {
                text.to_owned()
            }
            _ => bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        },
        Value::ObjectIdentifier(oid) => oid.to_id_string(),
        Value::IpAddress([a, b, c, d]) => format!("{a}.{b}.{c}.{d}"),
        Value::Counter32(n) | Value::Unsigned32(n) | Value::Timeticks(n) => n.to_string(),
        Value::Counter64(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// Names OIDs from the built-in and the user tables; instance suffixes are kept.
pub struct Names {
    oids: HashMap<String, String>,
    traps: HashMap<String, (String, String, Option<Severity>)>,
    default_severity: Severity,
}

impl Names {
    pub fn new(config: &SnmpConfig) -> Names {
        let mut oids: HashMap<String, String> = STANDARD_OIDS
            .iter()
            .map(|(o, n)| (o.to_string(), n.to_string()))
            .collect();
        oids.extend(
            config
                .oids
                .iter()
                .map(|(o, n)| (o.trim_start_matches('.').to_owned(), n.clone())),
        );
        let mut traps: HashMap<String, (String, String, Option<Severity>)> = STANDARD_TRAPS
            .iter()
            .map(|(o, n, c, s)| (o.to_string(), (n.to_string(), c.to_string(), Some(*s))))
            .collect();
        for (oid, trap) in &config.traps {
            traps.insert(
                oid.trim_start_matches('.').to_owned(),
                (trap.name.clone(), trap.name.clone(), trap.severity),
            );
        }
        Names {
            oids,
            traps,
            default_severity: config.default_severity,
        }
    }

    /// `ifIndex.2` for `1.3.6.1.2.1.2.2.1.1.2`; the OID itself when no prefix is known.
    pub fn varbind(&self, oid: &str) -> String {
        let mut prefix = oid;
        loop {
            if let Some(name) = self.oids.get(prefix) {
                let suffix = &oid[prefix.len()..];
                return format!("{name}{suffix}");
            }
            match prefix.rfind('.') {
                Some(i) => prefix = &prefix[..i],
                None => return oid.to_owned(),
            }
        }
    }

    /// The event a trap becomes.
    pub fn event(&self, trap: &Trap, peer: IpAddr) -> EventInput {
        let (name, check, severity) = match self.traps.get(&trap.oid) {
            Some((name, check, severity)) => (
                name.clone(),
                check.clone(),
                severity.unwrap_or(self.default_severity),
            ),
            // A trap without snmpTrapOID (a v2c trap must carry it) is still kept, under a
            // name that says so: never an event without a check.
            None if trap.oid.is_empty() => (
                "trap without snmpTrapOID".to_owned(),
                "snmp_trap_without_oid".to_owned(),
                self.default_severity,
            ),
            None => (trap.oid.clone(), trap.oid.clone(), self.default_severity),
        };
        let mut labels = BTreeMap::new();
        let mut forwarded_for = None;
        for (oid, value) in &trap.varbinds {
            if oid == SNMP_TRAP_ADDRESS {
                forwarded_for = Some(value.clone());
            }
            let key = super::cut(&self.varbind(oid), LABEL_KEY_LEN_MAX);
            // A varbind with an empty name (a zero-length OID, found by the property test
            // below) has no label name to go under: it is left out, as empty values are.
            if labels.len() < LABELS_MAX && !value.is_empty() && !key.is_empty() {
                labels.insert(key, super::printable(value, LABEL_VALUE_LEN_MAX));
            }
        }
        labels.insert("trap".into(), super::printable(&name, LABEL_VALUE_LEN_MAX));
        labels.insert(
            "trap_oid".into(),
            super::printable(&trap.oid, LABEL_VALUE_LEN_MAX),
        );
        // An interface label, so that one linkDown is one alert per interface.
        let interface = labels
            .iter()
            .find(|(k, _)| k.starts_with("ifName") || k.starts_with("ifDescr"))
            .or_else(|| labels.iter().find(|(k, _)| k.starts_with("ifIndex")))
            .map(|(_, v)| v.clone());
        if let Some(interface) = &interface {
            labels
                .entry("interface".into())
                .or_insert_with(|| interface.clone());
        }
        let resource = clean(
            forwarded_for.as_deref().unwrap_or(&peer.to_string()),
            NAME_LEN_MAX,
        );
        let summary = super::one_line(
            &match &interface {
                Some(interface) => format!("{name} on interface {interface} of {resource}"),
                None => format!("{name} from {resource}"),
            },
            vakt_core::event::SUMMARY_LEN_MAX,
        );
        let mut details = Map::new();
        details.insert("trap_oid".into(), json!(trap.oid));
        details.insert("inform".into(), json!(trap.inform));
        EventInput {
            resource,
            check: clean(&check, NAME_LEN_MAX),
            severity: Some(severity),
            summary,
            labels,
            details,
            // One alert per interface whatever the fingerprint fields: a linkUp on eth7
            // must not clear eth8's linkDown.
            identity_labels: if interface.is_some() {
                vec!["interface".to_owned()]
            } else {
                Vec::new()
            },
            ..EventInput::default()
        }
    }
}

struct Listener {
    state: Arc<Deps>,
    channel: Channel,
    communities: Vec<String>,
    names: Names,
}

pub async fn start(
    config: &SnmpConfig,
    state: &Arc<Deps>,
    running: &mut Running,
) -> anyhow::Result<()> {
    let listener = Arc::new(Listener {
        state: Arc::clone(state),
        channel: state.ingest.channel(&config.name, config.queue_events_max),
        communities: config.communities.clone(),
        names: Names::new(config),
    });
    for address in &config.listen {
        let socket = super::bind_udp(state, &config.name, address)
            .await
            .with_context(|| format!("sources.snmp: cannot listen on UDP {address}"))?;
        let local = socket.local_addr()?;
        running.bound.snmp.push(local);
        tracing::info!(address = %local, "SNMP traps listening on UDP");
        running
            .tasks
            .push(tokio::spawn(receive(socket, Arc::clone(&listener))));
    }
    Ok(())
}

async fn receive(socket: UdpSocket, listener: Arc<Listener>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                tracing::warn!(%error, "SNMP receive failed");
                continue;
            }
        };
        listener.channel.count_received(1, n);
        let (trap, response) = match decode(&buf[..n], &listener.communities) {
            Ok(decoded) => decoded,
            Err(refused) => {
                listener.refuse(refused, peer);
                continue;
            }
        };
        let input = listener.names.event(&trap, peer.ip());
        match deliver(
            &listener.channel,
            listener.state.pipeline(),
            vec![input],
            WhenFull::Refuse,
            crate::ingest::Answer::Stored,
        )
        .await
        {
            Ok(receipt) => {
                // An inform is answered once it is queued: the sender stops resending it.
                if let Some(response) = response
                    && let Err(error) = socket.send_to(&response, peer).await
                {
                    tracing::debug!(%peer, %error, "cannot answer an SNMP inform");
                }
                listener.channel.count_failures(1, receipt);
            }
            Err(SubmitError::QueueFull { .. }) => listener.channel.count_rejected(1, "queue_full"),
            Err(error) => {
                tracing::warn!(%error, "SNMP trap not queued");
                listener.channel.count_rejected(1, "store_error");
            }
        }
    }
}

impl Listener {
    fn refuse(&self, refused: Refused, peer: SocketAddr) {
        let reason = match &refused {
            Refused::Malformed(why) => {
                tracing::debug!(%peer, why, "not an SNMP message");
                self.channel
                    .metrics()
                    .parse_errors
                    .get_or_create(&ChannelLabels {
                        channel: self.channel.name().to_owned(),
                    })
                    .inc();
                "malformed"
            }
            Refused::Community => {
                tracing::debug!(%peer, "SNMP trap with an unknown community");
                "bad_community"
            }
            Refused::NotATrap => "not_a_trap",
        };
        self.channel.count_rejected(1, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_varbinds_with_instances() {
        let names = Names::new(&SnmpConfig {
            name: "snmp".into(),
            listen: vec![],
            communities: default_communities(),
            traps: BTreeMap::new(),
            oids: [("1.3.6.1.4.1.99.1".to_string(), "acmeTemp".to_string())].into(),
            default_severity: Severity::Warning,
            queue_events_max: 10,
        });
        assert_eq!(names.varbind("1.3.6.1.2.1.2.2.1.1.2"), "ifIndex.2");
        assert_eq!(names.varbind("1.3.6.1.4.1.99.1.0"), "acmeTemp.0");
        assert_eq!(names.varbind("1.3.9.9"), "1.3.9.9");
        let trap = Trap {
            oid: "1.3.6.1.6.3.1.1.5.3".into(),
            varbinds: vec![
                ("1.3.6.1.2.1.2.2.1.1.2".into(), "2".into()),
                ("1.3.6.1.2.1.2.2.1.2.2".into(), "eth1".into()),
            ],
            inform: false,
        };
        let event = names.event(&trap, "192.0.2.7".parse().expect("ip"));
        assert_eq!(
            (event.check.as_str(), event.severity),
            ("link_state", Some(Severity::Major))
        );
        assert_eq!(event.labels["interface"], "eth1");
        assert_eq!(event.summary, "linkDown on interface eth1 of 192.0.2.7");
    }

    /// A linkDown trap as `snmptrap -v 2c` sends it (ifIndex.2 = 2, ifDescr.2 = "eth1").
    const LINK_DOWN: &str = "306a02010104067075626c6963a75d02043f2a2fd0020100020100304f300f06082b0601020101030043031977713017060a2b06010603010104010006092b0601060301010503300f060a2b0601020102020101020201023012060a2b060102010202010202040465746831";

    fn bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect()
    }

    #[test]
    fn decodes_a_real_trap_and_checks_the_community() {
        let packet = bytes(LINK_DOWN);
        let (trap, response) = decode(&packet, &default_communities()).expect("decodes");
        assert_eq!(trap.oid, "1.3.6.1.6.3.1.1.5.3");
        assert!(response.is_none());
        assert!(
            trap.varbinds
                .contains(&("1.3.6.1.2.1.2.2.1.2.2".to_owned(), "eth1".to_owned()))
        );
        assert_eq!(
            decode(&packet, &["private".to_owned()]).err(),
            Some(Refused::Community)
        );
    }

    fn check_datagram(bytes: &[u8]) -> Result<(), TestCaseError> {
        let communities = default_communities();
        if let Ok((trap, _)) = decode(bytes, &communities) {
            let names = Names::new(&SnmpConfig {
                name: "snmp".into(),
                listen: vec![],
                communities,
                traps: BTreeMap::new(),
                oids: BTreeMap::new(),
                default_severity: Severity::Warning,
                queue_events_max: 10,
            });
            let event = names.event(&trap, "192.0.2.1".parse().expect("ip"));
            let value = serde_json::to_value(&event).expect("serialises");
            let checked = EventInput::from_json(0, value.clone());
            prop_assert!(checked.is_ok(), "{value} -> {:?}", checked.err());
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_datagram_is_a_trap_or_a_refusal(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            check_datagram(&bytes)?;
        }

        #[test]
        fn mutated_traps_are_traps_or_refusals(flips in proptest::collection::vec((0usize..108, any::<u8>()), 1..6), cut in 0usize..108) {
            let mut packet = bytes(LINK_DOWN);
            for (at, value) in flips {
                packet[at % 108] = value;
            }
            packet.truncate(cut.max(1) + 100 * usize::from(cut % 2 == 0));
            check_datagram(&packet)?;
        }
    }
}
