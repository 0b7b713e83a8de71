//! Schedule computations, table-driven: rotations, daylight saving in Europe/Stockholm,
//! restrictions, layers and overrides.

use super::*;

const USERS: &[&str] = &["alice", "bob", "carol", "dave"];

fn schedule(toml_text: &str) -> Schedule {
    let config: ScheduleConfig = toml::from_str(toml_text).unwrap_or_else(|e| panic!("toml: {e}"));
    Schedule::build(&config, USERS).unwrap_or_else(|e| panic!("schedule: {e:?}"))
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("bad time {text}: {e}"))
}

fn who(s: &Schedule, at: &str) -> Option<String> {
    s.on_call(utc(at)).map(|o| o.user)
}

#[test]
fn weekly_rotation_hands_off_at_nine_local_across_daylight_saving() {
    // Handoffs on Mondays 09:00 in Stockholm. 2026-10-25 is the end of summer time.
    let s = schedule(
        r#"
name = "ops"
timezone = "Europe/Stockholm"
[[layers]]
users = ["alice", "bob", "carol"]
rotation = "weekly"
handoff = "2026-10-19T09:00"
"#,
    );
    let cases = [
        // (instant, expected) around handoffs; summer is UTC+2, winter UTC+1.
        ("2026-10-19T06:59:59Z", Some("carol")), // before the first handoff: the previous slot
        ("2026-10-19T07:00:00Z", Some("alice")), // 09:00 CEST
        ("2026-10-26T07:59:59Z", Some("alice")), // 08:59:59 CET, after the clocks went back
        ("2026-10-26T08:00:00Z", Some("bob")),   // 09:00 CET
        ("2026-11-02T08:00:00Z", Some("carol")),
        ("2026-11-09T08:00:00Z", Some("alice")),
        // Spring: 2027-03-28 the clocks go forward; the Monday after, 09:00 is 07:00 UTC.
        // 2027-03-29 is 23 weeks after the first handoff: slot 22 (bob) until then, slot 23
        // (carol) after.
        ("2027-03-29T06:59:59Z", Some("bob")),
        ("2027-03-29T07:00:00Z", Some("carol")),
    ];
    for (at, expected) in cases {
        assert_eq!(who(&s, at).as_deref(), expected, "at {at}");
    }
}

#[test]
fn daily_and_custom_rotations() {
    let daily = schedule(
        r#"
name = "d"
[[layers]]
users = ["alice", "bob"]
rotation = "daily"
handoff = "2026-11-24T08:00"
"#,
    );
    for (at, expected) in [
        ("2026-11-24T08:00:00Z", "alice"),
        ("2026-11-25T07:59:59Z", "alice"),
        ("2026-11-25T08:00:00Z", "bob"),
        ("2026-11-26T08:00:00Z", "alice"),
        ("2026-11-23T08:00:00Z", "bob"),
    ] {
        assert_eq!(who(&daily, at).as_deref(), Some(expected), "daily at {at}");
    }
    // Minutes as seconds for tests: 10-second shifts.
    let custom = schedule(
        r#"
name = "c"
[[layers]]
users = ["alice", "bob", "carol"]
rotation = "custom"
length_secs = 10
handoff = "2026-11-24T12:00:00"
"#,
    );
    for (at, expected) in [
        ("2026-11-24T12:00:00Z", "alice"),
        ("2026-11-24T12:00:09Z", "alice"),
        ("2026-11-24T12:00:10Z", "bob"),
        ("2026-11-24T12:00:25Z", "carol"),
        ("2026-11-24T12:00:30Z", "alice"),
        ("2026-11-24T11:59:59Z", "carol"),
    ] {
        assert_eq!(
            who(&custom, at).as_deref(),
            Some(expected),
            "custom at {at}"
        );
    }
}

#[test]
fn business_hours_layer_over_an_always_layer_and_overrides_over_both() {
    let s = schedule(
        r#"
name = "support"
timezone = "Europe/Stockholm"
[[layers]]
name = "night"
users = ["dave"]
rotation = "weekly"
handoff = "2026-11-23T00:00"
[[layers]]
name = "office"
users = ["alice", "bob"]
rotation = "daily"
handoff = "2026-11-23T09:00"
restrictions = [{ days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "17:00" }]
[[overrides]]
user = "carol"
start = "2026-11-25T10:00:00Z"
end = "2026-11-25T12:00:00Z"
"#,
    );
    for (at, expected, source) in [
        ("2026-11-24T07:59:59Z", "dave", "night"), // Tue 08:59 local
        ("2026-11-24T08:00:00Z", "bob", "office"), // Tue 09:00 local, second day of rotation
        ("2026-11-24T15:59:59Z", "bob", "office"),
        ("2026-11-24T16:00:00Z", "dave", "night"), // 17:00 local
        ("2026-11-25T09:00:00Z", "alice", "office"), // Wed 10:00 local
        ("2026-11-25T10:00:00Z", "carol", "override"),
        ("2026-11-25T11:59:59Z", "carol", "override"),
        ("2026-11-25T12:00:00Z", "alice", "office"),
        ("2026-11-28T10:00:00Z", "dave", "night"), // Saturday: no office hours
    ] {
        let on_call = s
            .on_call(utc(at))
            .unwrap_or_else(|| panic!("someone at {at}"));
        assert_eq!(
            (on_call.user.as_str(), on_call.source.as_str()),
            (expected, source),
            "at {at}"
        );
    }
}

#[test]
fn overnight_restrictions_run_into_the_next_day() {
    let s = schedule(
        r#"
name = "nights"
[[layers]]
users = ["alice"]
rotation = "weekly"
handoff = "2026-11-23T00:00"
restrictions = [{ days = ["fri"], start = "22:00", end = "06:00" }]
"#,
    );
    assert_eq!(who(&s, "2026-11-27T21:59:59Z"), None);
    assert_eq!(who(&s, "2026-11-27T22:00:00Z").as_deref(), Some("alice"));
    assert_eq!(who(&s, "2026-11-28T05:59:59Z").as_deref(), Some("alice"));
    assert_eq!(who(&s, "2026-11-28T06:00:00Z"), None);
    assert_eq!(
        who(&s, "2026-11-28T22:30:00Z"),
        None,
        "Saturday night is not listed"
    );
}

#[test]
fn shifts_merge_and_export_as_icalendar() {
    let s = schedule(
        r#"
name = "ops, primary"
timezone = "Europe/Stockholm"
[[layers]]
users = ["alice", "bob"]
rotation = "daily"
handoff = "2026-11-23T09:00"
[[overrides]]
user = "alice"
start = "2026-11-24T08:00:00Z"
end = "2026-11-24T10:00:00Z"
"#,
    );
    let shifts = s
        .shifts(utc("2026-11-23T08:00:00Z"), utc("2026-11-25T08:00:00Z"))
        .unwrap_or_else(|e| panic!("{e}"));
    let summary: Vec<(String, String, String)> = shifts
        .iter()
        .map(|s| {
            (
                s.start.to_rfc3339(),
                s.end.to_rfc3339(),
                s.user.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "2026-11-23T08:00:00+00:00".into(),
                "2026-11-24T08:00:00+00:00".into(),
                "alice".into()
            ),
            (
                "2026-11-24T08:00:00+00:00".into(),
                "2026-11-24T10:00:00+00:00".into(),
                "alice".into()
            ),
            (
                "2026-11-24T10:00:00+00:00".into(),
                "2026-11-25T08:00:00+00:00".into(),
                "bob".into()
            ),
        ]
    );
    let ics = s.icalendar(&shifts, utc("2026-11-23T00:00:00Z"));
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"));
    assert!(ics.ends_with("END:VCALENDAR\r\n"));
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 3);
    assert!(ics.contains("DTSTART:20261124T100000Z\r\n"));
    assert!(ics.contains("SUMMARY:bob on call (ops\\, primary)"));
    assert!(ics.split("\r\n").all(|l| l.len() <= 75), "lines are folded");
    assert!(
        s.shifts(utc("2026-11-23T00:00:00Z"), utc("2028-01-01T00:00:00Z"))
            .is_err()
    );
}

#[test]
fn bad_schedules_are_refused_with_their_reasons() {
    let config: ScheduleConfig = toml::from_str(
        r#"
name = "broken"
timezone = "Mars/Base"
[[layers]]
users = ["zed"]
rotation = "hourly"
handoff = "tomorrow"
restrictions = [{ days = ["someday"], start = "9", end = "17:00" }]
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let errors = Schedule::build(&config, USERS).err().unwrap_or_default();
    let text: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    for fragment in [
        "unknown time zone",
        "unknown user \"zed\"",
        "unknown rotation",
        "handoff",
        "not a weekday",
        "start is not HH:MM",
    ] {
        assert!(
            text.iter().any(|m| m.contains(fragment)),
            "{fragment} missing in {text:?}"
        );
    }
}
