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
}
