//! The configured bounds on what one packet may carry beyond what the codec checks: topic
//! length and levels, User Properties. Pure checks over [`BrokerConfig`]; the modules that
//! handle each packet decide how the refusal is answered (see [`BrokerConfig`]'s fields).

use crate::config::BrokerConfig;
use mqtt_codec::{Properties, topic};

/// Why a topic name or filter is beyond the configured bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicLimit {
    /// Longer than `max_topic_length` bytes.
    Length {
        /// Its length in bytes.
        length: usize,
        /// The bound.
        maximum: usize,
    },
    /// More than `max_topic_levels` levels.
    Levels {
        /// Its levels.
        levels: usize,
        /// The bound.
        maximum: usize,
    },
}

impl std::fmt::Display for TopicLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicLimit::Length { length, maximum } => {
                write!(f, "{length} bytes, above the maximum of {maximum}")
            }
            TopicLimit::Levels { levels, maximum } => {
                write!(f, "{levels} levels, above the maximum of {maximum}")
            }
        }
    }
}

/// Checks a topic name, or a filter (`filter`: a shared one's levels are those of the filter
/// after `$share/{group}/`, which is what the subscription tree holds).
pub(super) fn check_topic(
    config: &BrokerConfig,
    topic: &str,
    filter: bool,
) -> Result<(), TopicLimit> {
    if topic.len() > config.max_topic_length {
        return Err(TopicLimit::Length {
            length: topic.len(),
            maximum: config.max_topic_length,
        });
    }
    let inner = match topic::parse_shared(topic) {
        Ok(Some(shared)) if filter => shared.filter,
        _ => topic,
    };
    let levels = inner.bytes().filter(|&b| b == b'/').count() + 1;
    if levels > config.max_topic_levels {
        return Err(TopicLimit::Levels {
            levels,
            maximum: config.max_topic_levels,
        });
    }
    Ok(())
}

/// Whether User Properties (of one packet: pass every property block it has) stay within
/// `max_user_properties` and `max_user_properties_bytes` (names and values, UTF-8 bytes).
pub(super) fn user_properties_within<'a>(
    config: &BrokerConfig,
    blocks: impl IntoIterator<Item = &'a Properties>,
) -> bool {
    let mut count = 0;
    let mut bytes = 0;
    for properties in blocks {
        count += properties.user_properties.len();
        bytes += properties
            .user_properties
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum::<usize>();
    }
    count <= config.max_user_properties && bytes <= config.max_user_properties_bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_codec::ByteStr;

    fn config() -> BrokerConfig {
        BrokerConfig {
            max_topic_length: 10,
            max_topic_levels: 3,
            max_user_properties: 2,
            max_user_properties_bytes: 8,
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn topics_at_the_bounds_pass_and_one_beyond_fails() {
        let config = config();
        let cases: &[(&str, Option<TopicLimit>)] = &[
            ("0123456789", None),
            (
                "0123456789a",
                Some(TopicLimit::Length {
                    length: 11,
                    maximum: 10,
                }),
            ),
            ("a/b/c", None),
            (
                "a/b/c/d",
                Some(TopicLimit::Levels {
                    levels: 4,
                    maximum: 3,
                }),
            ),
            ("//", None),
            (
                "///",
                Some(TopicLimit::Levels {
                    levels: 4,
                    maximum: 3,
                }),
            ),
        ];
        for (topic, expected) in cases {
            assert_eq!(
                check_topic(&config, topic, true).err(),
                *expected,
                "{topic:?}"
            );
        }
        // The group's levels are not the tree's, but a topic name has no group.
        let longer = BrokerConfig {
            max_topic_length: 20,
            ..config
        };
        assert_eq!(check_topic(&longer, "$share/g/a/b", true), Ok(()));
        assert!(check_topic(&longer, "$share/g/a/b", false).is_err());
    }

    #[test]
    fn user_properties_count_across_blocks_by_number_and_bytes() {
        let config = config();
        let block = |pairs: &[(&str, &str)]| Properties {
            user_properties: pairs
                .iter()
                .map(|(n, v)| (ByteStr::from(*n), ByteStr::from(*v)))
                .collect(),
            ..Properties::default()
        };
        let two = block(&[("a", "b"), ("c", "d")]);
        let one = block(&[("e", "f")]);
        assert!(user_properties_within(&config, [&two]));
        assert!(!user_properties_within(&config, [&two, &one]));
        assert!(user_properties_within(
            &config,
            [&block(&[("name", "valu")])]
        ));
        assert!(!user_properties_within(
            &config,
            [&block(&[("name", "value")])]
        ));
    }
}
