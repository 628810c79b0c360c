//! MQTT topics and filters as NATS subjects: the mapping is documented, reversible, and keeps
//! MQTT's matching rules, so a NATS subscription made from a filter receives exactly the topics
//! the filter matches.
//!
//! - A topic's levels become the subject's tokens, under `{prefix}.t` for topics that do not
//!   start with `$` and under `{prefix}.s` for those that do: MQTT wildcards at the first level
//!   never match `$` topics [MQTT-4.7.2-1], and NATS wildcards would, so the two live apart.
//! - In a level, the bytes NATS gives a meaning to or refuses in subjects (`.`, space, tab,
//!   CR, LF, the other control characters, `*`, `>`) and `%` itself are written `%XX` (two
//!   upper-case hex digits). So no token is ever a NATS wildcard by accident, and decoding is
//!   exact. Other bytes (UTF-8 included) are kept as they are.
//! - An empty level (MQTT allows `a//b` and `/a`) becomes the token `%`, which no escaped level
//!   can produce.
//! - Filters: `+` becomes `*`; `#` becomes `>` plus, unless it is the whole filter, the parent
//!   level itself (`a/#` matches `a` [MQTT-4.7.1-2]), so a filter maps to one or two subjects.

use std::fmt::Write as _;

/// The namespace of topics that do not start with `$`.
const PLAIN: &str = "t";
/// The namespace of `$` topics.
const DOLLAR: &str = "s";
/// The token of an empty level.
const EMPTY: &str = "%";

/// The subject of a topic name (no wildcards), under `prefix`.
pub fn topic_subject(prefix: &str, topic: &str) -> String {
    let mut subject = String::with_capacity(prefix.len() + topic.len() + 8);
    subject.push_str(prefix);
    subject.push('.');
    subject.push_str(namespace(topic));
    for level in topic.split('/') {
        subject.push('.');
        push_level(&mut subject, level);
    }
    subject
}

/// The subjects whose subscriptions receive exactly the topics `filter` matches (one, or two
/// for a filter ending in `/#`). `filter` is a valid, non-shared MQTT topic filter.
pub fn filter_subjects(prefix: &str, filter: &str) -> Vec<String> {
    let mut subject = String::with_capacity(prefix.len() + filter.len() + 8);
    subject.push_str(prefix);
    subject.push('.');
    subject.push_str(namespace(filter));
    let mut subjects = Vec::with_capacity(2);
    for level in filter.split('/') {
        match level {
            "#" => {
                // The parent level itself, unless `#` is the whole filter.
                if subject.len() > prefix.len() + 1 + PLAIN.len() {
                    subjects.push(subject.clone());
                }
                subject.push_str(".>");
            }
            "+" => subject.push_str(".*"),
            _ => {
                subject.push('.');
                push_level(&mut subject, level);
            }
        }
    }
    subjects.push(subject);
    subjects
}

/// The topic of a subject made by [`topic_subject`] under `prefix`, or None for a subject
/// that is not one.
pub fn subject_topic(prefix: &str, subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (space, levels) = rest.split_once('.')?;
    let mut topic = String::with_capacity(levels.len());
    for (index, token) in levels.split('.').enumerate() {
        if index > 0 {
            topic.push('/');
        }
        if token != EMPTY {
            decode_level(token, &mut topic)?;
        }
    }
    let dollar = topic.starts_with('$');
    match space {
        PLAIN if !dollar => Some(topic),
        DOLLAR if dollar => Some(topic),
        _ => None,
    }
}

/// `t` or `s`: where a topic, or a filter's topics, live.
fn namespace(topic_or_filter: &str) -> &'static str {
    if topic_or_filter.starts_with('$') {
        DOLLAR
    } else {
        PLAIN
    }
}

fn push_level(subject: &mut String, level: &str) {
    if level.is_empty() {
        subject.push_str(EMPTY);
        return;
    }
    for c in level.chars() {
        if escaped(c) {
            write!(subject, "%{:02X}", c as u32).expect("writing to a String");
        } else {
            subject.push(c);
        }
    }
}

fn escaped(c: char) -> bool {
    matches!(c, '%' | '.' | '*' | '>' | ' ') || c.is_ascii_control()
}

fn decode_level(token: &str, topic: &mut String) -> Option<()> {
    let mut rest = token;
    while let Some(at) = rest.find('%') {
        topic.push_str(&rest[..at]);
        let hex = rest.get(at + 1..at + 3)?;
        let byte = u8::from_str_radix(hex, 16).ok()?;
        let c = char::from(byte);
        // Only what push_level escapes, so that every subject has one topic.
        if !byte.is_ascii() || !escaped(c) || hex.chars().any(|h| h.is_ascii_lowercase()) {
            return None;
        }
        topic.push(c);
        rest = &rest[at + 3..];
    }
    topic.push_str(rest);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_become_subjects_and_back() {
        let cases = [
            ("sensors/kitchen/temp", "mqtt.t.sensors.kitchen.temp"),
            ("a", "mqtt.t.a"),
            ("a//b", "mqtt.t.a.%.b"),
            ("/leading", "mqtt.t.%.leading"),
            ("trailing/", "mqtt.t.trailing.%"),
            ("/", "mqtt.t.%.%"),
            ("v1.2/x y/100%", "mqtt.t.v1%2E2.x%20y.100%25"),
            ("a*/>/b>c", "mqtt.t.a%2A.%3E.b%3Ec"),
            ("tab\there/cr\r", "mqtt.t.tab%09here.cr%0D"),
            ("température/ü", "mqtt.t.température.ü"),
            ("$SYS/broker/uptime", "mqtt.s.$SYS.broker.uptime"),
            ("$x", "mqtt.s.$x"),
            ("a/$b", "mqtt.t.a.$b"),
        ];
        for (topic, subject) in cases {
            assert_eq!(topic_subject("mqtt", topic), subject, "{topic:?}");
            assert_eq!(
                subject_topic("mqtt", subject).as_deref(),
                Some(topic),
                "{subject:?}"
            );
        }
    }

    #[test]
    fn subjects_that_no_topic_maps_to_are_refused() {
        for subject in [
            "other.t.a",
            "mqtt",
            "mqtt.t",
            "mqtt.x.a",
            "mqtt.t.$a",
            "mqtt.s.a",
            "mqtt.t.a%2",
            "mqtt.t.a%zz",
            "mqtt.t.a%41",
            "mqtt.t.a%2e",
            "mqtt.t.%C3",
        ] {
            assert_eq!(subject_topic("mqtt", subject), None, "{subject:?}");
        }
    }

    #[test]
    fn filters_become_subjects_with_the_same_matches() {
        let cases: [(&str, &[&str]); 8] = [
            ("#", &["mqtt.t.>"]),
            ("+", &["mqtt.t.*"]),
            ("a/#", &["mqtt.t.a", "mqtt.t.a.>"]),
            ("a/+/c", &["mqtt.t.a.*.c"]),
            ("+/+/#", &["mqtt.t.*.*", "mqtt.t.*.*.>"]),
            ("a//#", &["mqtt.t.a.%", "mqtt.t.a.%.>"]),
            ("$SYS/#", &["mqtt.s.$SYS", "mqtt.s.$SYS.>"]),
            ("x.y/*", &["mqtt.t.x%2Ey.%2A"]),
        ];
        for (filter, subjects) in cases {
            assert_eq!(filter_subjects("mqtt", filter), subjects, "{filter:?}");
        }
    }

    /// NATS's own matching of a subject against a subscription subject.
    fn nats_matches(pattern: &str, subject: &str) -> bool {
        let pattern: Vec<&str> = pattern.split('.').collect();
        let subject: Vec<&str> = subject.split('.').collect();
        for (index, token) in pattern.iter().enumerate() {
            match *token {
                ">" => return subject.len() > index,
                "*" if index < subject.len() => {}
                literal if index < subject.len() && subject[index] == literal => {}
                _ => return false,
            }
        }
        pattern.len() == subject.len()
    }

    /// MQTT's matching of a topic against a filter [MQTT-4.7].
    fn mqtt_matches(filter: &str, topic: &str) -> bool {
        if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
            return false;
        }
        let filter: Vec<&str> = filter.split('/').collect();
        let topic: Vec<&str> = topic.split('/').collect();
        for (index, level) in filter.iter().enumerate() {
            match *level {
                "#" => return true,
                "+" if index < topic.len() => {}
                literal if index < topic.len() && topic[index] == literal => {}
                _ => return false,
            }
        }
        filter.len() == topic.len()
    }

    #[test]
    fn a_filters_subjects_receive_exactly_the_topics_it_matches() {
        let topics = [
            "a", "a/b", "a/b/c", "a//c", "/a", "a/", "b", "$SYS/x", "$SYS", "a.b", "a/*", "a/>",
            "x y", "%", "a/%",
        ];
        let filters = [
            "#", "+", "a/#", "a/+", "+/b", "a/+/c", "+/+", "a//c", "/+", "$SYS/#", "$SYS", "+/#",
            "a.b", "a/*", "a/>", "%", "a/%",
        ];
        for filter in filters {
            let subjects = filter_subjects("mqtt", filter);
            for topic in topics {
                let subject = topic_subject("mqtt", topic);
                let nats = subjects
                    .iter()
                    .any(|pattern| nats_matches(pattern, &subject));
                assert_eq!(
                    nats,
                    mqtt_matches(filter, topic),
                    "filter {filter:?}, topic {topic:?}"
                );
            }
        }
    }
}
