//! Topic names, topic filters and shared subscriptions (spec 4.7 and 4.8.2).
//!
//! Names and filters are validated once when they enter the system; matching then assumes valid
//! input and never allocates.

use thiserror::Error;

/// Why a topic name or filter was refused. Each message cites the rule it breaks.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum TopicError {
    /// Empty topic names and filters are not allowed.
    #[error("topic names and filters must be at least one character long [MQTT-4.7.3-1]")]
    Empty,
    /// Topic names cannot contain `+` or `#`.
    #[error("a topic name must not contain wildcard characters [MQTT-3.3.2-2]")]
    WildcardInName,
    /// U+0000 cannot appear in a topic.
    #[error("a topic must not contain the null character U+0000 [MQTT-4.7.3-2]")]
    NullCharacter,
    /// `#` must be alone in the last level.
    #[error("'#' must be the last character of a filter and occupy a whole level [MQTT-4.7.1-2]")]
    MultiLevelWildcardMisplaced,
    /// `+` must occupy a whole level.
    #[error("'+' must occupy an entire level of a filter [MQTT-4.7.1-3]")]
    SingleLevelWildcardMisplaced,
    /// The UTF-8 encoding is longer than 65,535 bytes.
    #[error("a topic must not be longer than 65535 bytes [MQTT-4.7.3-3]")]
    TooLong,
    /// `$share/` with an empty, `+`, `#` or `/`-containing share name, or no filter after it.
    #[error(
        "a shared subscription is $share/{{ShareName}}/{{filter}} with a non-empty share name \
         without '/', '+' or '#' and a non-empty filter [MQTT-4.8.2-1] [MQTT-4.8.2-2]"
    )]
    InvalidSharedSubscription,
}

/// The prefix of shared subscriptions.
pub const SHARED_PREFIX: &str = "$share/";

fn check_common(text: &str) -> Result<(), TopicError> {
    if text.is_empty() {
        return Err(TopicError::Empty);
    }
    if text.len() > u16::MAX as usize {
        return Err(TopicError::TooLong);
    }
    if has_byte(text.as_bytes(), |byte| byte == 0) {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// Whether any byte passes `test`. The checks here look at bytes rather than through `str`
/// patterns: wildcards, `/` and U+0000 are ASCII, which never occurs inside a multi-byte UTF-8
/// sequence, and a plain loop is a fraction of the pattern searchers' code in the wasm client.
fn has_byte(bytes: &[u8], test: impl Fn(u8) -> bool) -> bool {
    bytes.iter().any(|&byte| test(byte))
}

fn is_wildcard(byte: u8) -> bool {
    byte == b'+' || byte == b'#'
}

/// Checks a topic name of a PUBLISH (or will): non-empty, no wildcards, no U+0000.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    // One pass over the bytes for the common case (every PUBLISH comes through here); the
    // checks in their documented order only when something is wrong.
    let suspicious = has_byte(name.as_bytes(), |byte| byte == 0 || is_wildcard(byte));
    if !suspicious && !name.is_empty() && name.len() <= usize::from(u16::MAX) {
        return Ok(());
    }
    check_common(name)?;
    if has_byte(name.as_bytes(), is_wildcard) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter, including the `$share/group/filter` form.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let plain = match parse_shared(filter)? {
        Some(shared) => shared.filter,
        None => filter,
    };
    let mut levels = plain.as_bytes().split(|&byte| byte == b'/').peekable();
    while let Some(level) = levels.next() {
        if has_byte(level, |byte| byte == b'#') && (level != b"#" || levels.peek().is_some()) {
            return Err(TopicError::MultiLevelWildcardMisplaced);
        }
        if has_byte(level, |byte| byte == b'+') && level != b"+" {
            return Err(TopicError::SingleLevelWildcardMisplaced);
        }
    }
    Ok(())
}

/// A shared subscription filter split into its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    /// The share name (the group).
    pub group: &'a str,
    /// The topic filter that the group subscribes to.
    pub filter: &'a str,
}

/// Splits `$share/group/filter`; `Ok(None)` for a filter that is not shared.
pub fn parse_shared(filter: &str) -> Result<Option<SharedFilter<'_>>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARED_PREFIX) else {
        return Ok(None);
    };
    // `get` rather than indexing: `slash` is an ASCII byte's index, so both halves exist, and
    // a non-panicking form keeps `str` slicing's panic code out of the wasm client.
    let halves = rest
        .bytes()
        .position(|byte| byte == b'/')
        .and_then(|slash| Some((rest.get(..slash)?, rest.get(slash + 1..)?)));
    let Some((group, inner)) = halves else {
        return Err(TopicError::InvalidSharedSubscription);
    };
    if group.is_empty() || has_byte(group.as_bytes(), is_wildcard) || inner.is_empty() {
        return Err(TopicError::InvalidSharedSubscription);
    }
    Ok(Some(SharedFilter {
        group,
        filter: inner,
    }))
}

/// Whether the (valid, non-shared) `filter` matches the (valid) topic `name`.
///
/// Wildcards at the first level never match a name starting with `$` [MQTT-4.7.2-1], so `#`
/// does not see `$SYS/...`. `sport/#` matches `sport` itself, as the specification's examples say.
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut name_levels = name.split('/');
    loop {
        match (filter_levels.next(), name_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(expected), Some(level)) if expected == level => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some topic name matches both (valid, non-shared) filters: for an access rule, whether
/// a subscription to `a` can receive anything the rule `b` is about.
pub fn filters_overlap(a: &str, b: &str) -> bool {
    if dollar_excluded(a, b) || dollar_excluded(b, a) {
        return false;
    }
    let mut a_levels = a.split('/');
    let mut b_levels = b.split('/');
    loop {
        match (a_levels.next(), b_levels.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(a_level), Some(b_level)) if a_level == b_level => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic name that `narrower` matches is matched by `wider` (both valid and
/// non-shared): for an access rule, whether it applies to all a subscription can receive.
pub fn filter_covers(wider: &str, narrower: &str) -> bool {
    if dollar_excluded(wider, narrower) {
        return false;
    }
    let mut wider_levels = wider.split('/');
    let mut narrower_levels = narrower.split('/');
    let mut first = true;
    loop {
        let pair = (wider_levels.next(), narrower_levels.next());
        // '#' matches its parent level too, except at the start: a topic has at least one
        // level, so a leading `#` is matched exactly by `+/#`.
        if first && pair == (Some("+"), Some("#")) {
            return wider_levels.next() == Some("#") && wider_levels.next().is_none();
        }
        first = false;
        match pair {
            (Some("#"), _) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(wide), Some(narrow)) if wide == narrow && narrow != "+" && narrow != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether `wildcard_side` starts with a wildcard and `other` names a `$` topic at its first
/// level: such a wildcard never matches it [MQTT-4.7.2-1].
fn dollar_excluded(wildcard_side: &str, other: &str) -> bool {
    wildcard_side.starts_with(['+', '#']) && other.starts_with('$')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name_validation_table() {
        let cases: &[(&str, Result<(), TopicError>)] = &[
            ("a", Ok(())),
            ("/", Ok(())),
            ("a/b/c", Ok(())),
            ("$SYS/broker", Ok(())),
            ("sensors/温度", Ok(())),
            ("", Err(TopicError::Empty)),
            ("a/+", Err(TopicError::WildcardInName)),
            ("#", Err(TopicError::WildcardInName)),
            ("a\0b", Err(TopicError::NullCharacter)),
        ];
        for (name, expected) in cases {
            assert_eq!(validate_topic_name(name), *expected, "name {name:?}");
        }
        assert_eq!(
            validate_topic_name(&"a".repeat(65_536)),
            Err(TopicError::TooLong)
        );
    }

    #[test]
    fn topic_filter_validation_table() {
        let cases: &[(&str, Result<(), TopicError>)] = &[
            ("#", Ok(())),
            ("+", Ok(())),
            ("+/+", Ok(())),
            ("/+", Ok(())),
            ("sport/#", Ok(())),
            ("sport/+/player1", Ok(())),
            ("$share/group/a/#", Ok(())),
            ("", Err(TopicError::Empty)),
            (
                "sport/tennis#",
                Err(TopicError::MultiLevelWildcardMisplaced),
            ),
            (
                "sport/tennis/#/ranking",
                Err(TopicError::MultiLevelWildcardMisplaced),
            ),
            ("sport+", Err(TopicError::SingleLevelWildcardMisplaced)),
            ("a/b+/c", Err(TopicError::SingleLevelWildcardMisplaced)),
            ("$share/", Err(TopicError::InvalidSharedSubscription)),
            ("$share/group", Err(TopicError::InvalidSharedSubscription)),
            ("$share//a", Err(TopicError::InvalidSharedSubscription)),
            ("$share/g+/a", Err(TopicError::InvalidSharedSubscription)),
            ("$share/group/", Err(TopicError::InvalidSharedSubscription)),
            (
                "$share/group/a#",
                Err(TopicError::MultiLevelWildcardMisplaced),
            ),
            ("a\0", Err(TopicError::NullCharacter)),
        ];
        for (filter, expected) in cases {
            assert_eq!(
                validate_topic_filter(filter),
                *expected,
                "filter {filter:?}"
            );
        }
    }

    #[test]
    fn matching_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            ("#", "sport/tennis", true),
            ("#", "/", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
            ("#", "$SYS/broker/uptime", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("a/+/#", "a/b", true),
            ("a/+/#", "a", false),
        ];
        for (filter, name, expected) in cases {
            assert_eq!(matches(filter, name), *expected, "{filter:?} vs {name:?}");
        }
    }

    #[test]
    fn shared_subscription_parsing() {
        assert_eq!(
            parse_shared("$share/g1/sensors/+/temp"),
            Ok(Some(SharedFilter {
                group: "g1",
                filter: "sensors/+/temp"
            }))
        );
        assert_eq!(parse_shared("sensors/#"), Ok(None));
        assert_eq!(parse_shared("$share"), Ok(None));
        assert_eq!(
            parse_shared("$share/g#/x"),
            Err(TopicError::InvalidSharedSubscription)
        );
    }

    #[test]
    fn overlap_and_cover_tables() {
        let cases: &[(&str, &str, bool, bool)] = &[
            // (a, b, a and b overlap, a covers b)
            ("#", "a/b", true, true),
            ("a/#", "a", true, true),
            ("a", "a/#", true, false),
            ("a/+", "a/b", true, true),
            ("a/b", "a/+", true, false),
            ("a/+/c", "a/b/+", true, false),
            ("a/+", "a/+", true, true),
            ("a/+", "a/#", true, false),
            ("a/b", "a/c", false, false),
            ("a/b", "a/b/c", false, false),
            ("+", "a/b", false, false),
            ("+/#", "a", true, true),
            ("+/#", "#", true, true),
            ("+/+/#", "#", true, false),
            ("#", "$SYS/broker", false, false),
            ("+/broker", "$SYS/broker", false, false),
            ("$SYS/#", "$SYS/broker/uptime", true, true),
            ("$SYS/#", "#", false, false),
            ("#", "#", true, true),
            ("sensors/+/temp", "sensors/room1/#", true, false),
        ];
        for (a, b, overlap, covers) in cases {
            assert_eq!(filters_overlap(a, b), *overlap, "overlap {a:?} {b:?}");
            assert_eq!(filters_overlap(b, a), *overlap, "overlap {b:?} {a:?}");
            assert_eq!(filter_covers(a, b), *covers, "{a:?} covers {b:?}");
        }
    }

    /// Both relations agree with `matches` on every small filter and topic: two filters overlap
    /// exactly when some topic matches both, and one covers another exactly when it matches
    /// every topic the other does.
    #[test]
    fn overlap_and_cover_agree_with_matching() {
        fn build(alphabet: &[&str], depth: usize) -> Vec<String> {
            let mut all: Vec<Vec<&str>> = vec![vec![]];
            let mut result = Vec::new();
            for _ in 0..depth {
                let mut next = Vec::new();
                for prefix in &all {
                    // Nothing follows '#'.
                    if prefix.last() == Some(&"#") {
                        continue;
                    }
                    for level in alphabet {
                        let mut levels = prefix.clone();
                        levels.push(level);
                        result.push(levels.join("/"));
                        next.push(levels);
                    }
                }
                all = next;
            }
            result
        }
        let filters = build(&["a", "$s", "+", "#"], 3);
        let topics = build(&["a", "c", "$s", ""], 4);
        let topics: Vec<&String> = topics
            .iter()
            .filter(|t| validate_topic_name(t).is_ok())
            .collect();
        for a in &filters {
            let matched_a: Vec<bool> = topics.iter().map(|t| matches(a, t)).collect();
            for b in &filters {
                let both = topics
                    .iter()
                    .zip(&matched_a)
                    .any(|(t, &in_a)| in_a && matches(b, t));
                assert_eq!(filters_overlap(a, b), both, "overlap {a:?} {b:?}");
                let covered = topics
                    .iter()
                    .zip(&matched_a)
                    .all(|(t, &in_a)| in_a || !matches(b, t));
                assert_eq!(filter_covers(a, b), covered, "{a:?} covers {b:?}");
            }
        }
    }
}
