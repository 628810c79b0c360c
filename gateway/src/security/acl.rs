//! Access rules, in the syntax of Mosquitto's `acl_file`.
//!
//! ```text
//! # Before any `user` line: rules for clients without a user name.
//! topic read public/#
//!
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret
//!
//! # Patterns apply to every client, wherever they stand; %u is the user name, %c the
//! # client identifier.
//! pattern write devices/%c/telemetry
//! ```
//!
//! `topic` and `pattern` take `read`, `write`, `readwrite` (the default when omitted) or
//! `deny`, then a topic filter. For each topic, a matching `deny` wins over any grant; without a
//! matching grant, access is refused. A pattern naming `%u` does not apply to a client without
//! a user name, nor one naming `%c` to a client that sent an empty client id, and no pattern
//! applies where the substituted value contains `/`, `+` or `#` (it would change the filter's
//! shape). Wildcards at the first level never match `$` topics, so
//! `$SYS/#` is readable only where a rule names it.
//!
//! [`Acl::rules_for`] resolves the rules of one client once, at CONNECT; the checks then take
//! no allocation.

use mqtt_codec::topic;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Why an ACL file could not be read or parsed.
#[derive(Debug, Error)]
pub enum AclError {
    /// The file could not be read.
    #[error("cannot read ACL file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line that is not a rule.
    #[error("ACL file {path}, line {line}: {problem}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Its line number, from 1.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

/// What a rule allows or denies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Permission {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Permission {
    fn grants(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Permission::ReadWrite, _)
                | (Permission::Read, Access::Read)
                | (Permission::Write, Access::Write)
        )
    }
}

/// One rule: a permission on a filter.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    permission: Permission,
    filter: String,
}

/// A kind of access to a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Receiving messages: subscribing, and each delivery.
    Read,
    /// Publishing (a will too).
    Write,
}

/// Who asks: what the rules are chosen and substituted by.
#[derive(Clone, Copy, Debug)]
pub struct Identity<'a> {
    /// The authenticated user name, if any.
    pub username: Option<&'a str>,
    /// The client identifier.
    pub client_id: &'a str,
}

/// A parsed ACL file.
#[derive(Clone, Debug, Default)]
pub struct Acl {
    anonymous: Arc<[Rule]>,
    users: HashMap<String, Arc<[Rule]>>,
    patterns: Vec<Rule>,
    rules: usize,
}

impl Acl {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Acl, AclError> {
        let text = std::fs::read_to_string(path).map_err(|source| AclError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Acl::parse(&text, path)
    }

    /// Parses an ACL file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Acl, AclError> {
        let mut anonymous = Vec::new();
        let mut users: HashMap<String, Vec<Rule>> = HashMap::new();
        let mut patterns = Vec::new();
        let mut current_user: Option<String> = None;
        let mut rules = 0;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let problem = |problem: String| AclError::Parse {
                path: path.to_path_buf(),
                line: index + 1,
                problem,
            };
            let (keyword, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(problem("`user` needs a user name".into()));
                    }
                    users.entry(rest.to_string()).or_default();
                    current_user = Some(rest.to_string());
                }
                "topic" | "pattern" => {
                    let rule = parse_rule(rest).map_err(problem)?;
                    rules += 1;
                    if keyword == "pattern" {
                        patterns.push(rule);
                    } else if let Some(user) = &current_user {
                        users.entry(user.clone()).or_default().push(rule);
                    } else {
                        anonymous.push(rule);
                    }
                }
                other => {
                    return Err(problem(format!(
                        "unknown keyword {other:?} (expected user, topic or pattern)"
                    )));
                }
            }
        }
        Ok(Acl {
            anonymous: anonymous.into(),
            users: users
                .into_iter()
                .map(|(user, rules)| (user, rules.into()))
                .collect(),
            patterns,
            rules,
        })
    }

    /// The number of `topic` and `pattern` rules.
    pub fn len(&self) -> usize {
        self.rules
    }

    /// Whether the file has no rules (then it refuses everything).
    pub fn is_empty(&self) -> bool {
        self.rules == 0
    }

    /// The rules that apply to one client, its patterns substituted.
    pub fn rules_for(&self, identity: Identity<'_>) -> ClientRules {
        let own = match identity.username {
            None => self.anonymous.clone(),
            Some(user) => self
                .users
                .get(user)
                .cloned()
                .unwrap_or_else(|| Arc::new([])),
        };
        let patterns = self
            .patterns
            .iter()
            .filter_map(|rule| substitute(rule, identity))
            .collect();
        ClientRules { own, patterns }
    }
}

/// `[read|write|readwrite|deny] FILTER`.
fn parse_rule(text: &str) -> Result<Rule, String> {
    let (first, rest) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    let (permission, filter) = match first {
        "read" => (Permission::Read, rest.trim()),
        "write" => (Permission::Write, rest.trim()),
        "readwrite" => (Permission::ReadWrite, rest.trim()),
        "deny" => (Permission::Deny, rest.trim()),
        _ => (Permission::ReadWrite, text),
    };
    if filter.is_empty() {
        return Err("a rule needs a topic filter".into());
    }
    Ok(Rule {
        permission,
        filter: checked_filter(filter)?,
    })
}

/// A rule's filter: a valid topic filter, not a shared subscription.
fn checked_filter(filter: &str) -> Result<String, String> {
    topic::validate_topic_filter(filter)
        .map_err(|error| format!("invalid topic filter {filter:?}: {error}"))?;
    if topic::parse_shared(filter).ok().flatten().is_some() {
        return Err(format!(
            "{filter:?}: rules name topics, not shared subscriptions (a rule on the inner filter covers them)"
        ));
    }
    Ok(filter.to_string())
}

/// A pattern with `%u` and `%c` replaced for one client, or `None` where it does not apply.
fn substitute(rule: &Rule, identity: Identity<'_>) -> Option<Rule> {
    // An empty value (a client id the broker is yet to assign) would leave an empty level.
    let safe = |value: &str| !value.is_empty() && !value.contains(['/', '+', '#']);
    let mut filter = rule.filter.clone();
    if filter.contains("%u") {
        let user = identity.username.filter(|user| safe(user))?;
        filter = filter.replace("%u", user);
    }
    if filter.contains("%c") {
        if !safe(identity.client_id) {
            return None;
        }
        filter = filter.replace("%c", identity.client_id);
    }
    Some(Rule {
        permission: rule.permission,
        filter,
    })
}

/// The rules of one client: those of its user (or of anonymous clients) and its patterns.
#[derive(Clone, Debug, Default)]
pub struct ClientRules {
    own: Arc<[Rule]>,
    patterns: Vec<Rule>,
}

impl ClientRules {
    /// Rules that grant reading `read` and writing `write` (filters), and nothing else: a
    /// token's topic claim.
    pub fn from_grants(read: &[String], write: &[String]) -> Result<ClientRules, String> {
        let grants = read
            .iter()
            .map(|filter| (Permission::Read, filter))
            .chain(write.iter().map(|filter| (Permission::Write, filter)));
        let mut own = Vec::new();
        for (permission, filter) in grants {
            let filter = checked_filter(filter)?;
            own.push(Rule { permission, filter });
        }
        Ok(ClientRules {
            own: own.into(),
            patterns: Vec::new(),
        })
    }

    fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.own.iter().chain(&self.patterns)
    }

    /// Whether the client may publish to, or receive from, `topic` (a topic name): no `deny`
    /// matches it and a grant of `access` does.
    pub fn permits(&self, access: Access, topic: &str) -> bool {
        let mut granted = false;
        for rule in self.rules() {
            if topic::matches(&rule.filter, topic) {
                if rule.permission == Permission::Deny {
                    return false;
                }
                granted |= rule.permission.grants(access);
            }
        }
        granted
    }

    /// Whether a subscription to `filter` can receive anything: some read grant overlaps it
    /// and no `deny` covers all of it. A granted wildcard is still checked per topic on
    /// delivery, with [`ClientRules::permits`]. A shared subscription is judged by its inner
    /// filter.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        let filter = match topic::parse_shared(filter) {
            Ok(Some(shared)) => shared.filter,
            _ => filter,
        };
        let mut readable = false;
        for rule in self.rules() {
            if rule.permission == Permission::Deny {
                if topic::filter_covers(&rule.filter, filter) {
                    return false;
                }
            } else if rule.permission.grants(Access::Read)
                && topic::filters_overlap(&rule.filter, filter)
            {
                readable = true;
            }
        }
        readable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# anonymous clients
topic read public/#
topic deny public/private

user alice
topic readwrite alice/#
topic deny alice/secret
topic write shared/inbox
topic read $SYS/broker/uptime

user bob
topic sensors/+/temp

pattern write devices/%c/telemetry
pattern read users/%u/#
";

    fn acl() -> Acl {
        Acl::parse(FILE, Path::new("acl")).unwrap()
    }

    fn rules(username: Option<&str>, client_id: &str) -> ClientRules {
        acl().rules_for(Identity {
            username,
            client_id,
        })
    }

    #[test]
    fn rules_before_any_user_line_are_for_anonymous_clients() {
        let anonymous = rules(None, "anon");
        assert!(anonymous.permits(Access::Read, "public/news"));
        assert!(!anonymous.permits(Access::Write, "public/news"));
        assert!(!anonymous.permits(Access::Read, "alice/x"));
        // A named user does not get the anonymous rules.
        assert!(!rules(Some("alice"), "a").permits(Access::Read, "public/news"));
    }

    #[test]
    fn deny_wins_over_any_grant() {
        let alice = rules(Some("alice"), "a");
        assert!(alice.permits(Access::Read, "alice/notes"));
        assert!(alice.permits(Access::Write, "alice/notes"));
        assert!(!alice.permits(Access::Read, "alice/secret"));
        assert!(!alice.permits(Access::Write, "alice/secret"));
        assert!(!rules(None, "x").permits(Access::Read, "public/private"));
    }

    #[test]
    fn read_and_write_are_separate_and_readwrite_is_the_default() {
        let alice = rules(Some("alice"), "a");
        assert!(alice.permits(Access::Write, "shared/inbox"));
        assert!(!alice.permits(Access::Read, "shared/inbox"));
        let bob = rules(Some("bob"), "b");
        assert!(bob.permits(Access::Read, "sensors/lab/temp"));
        assert!(bob.permits(Access::Write, "sensors/lab/temp"));
        assert!(!bob.permits(Access::Read, "sensors/lab/hum"));
    }

    #[test]
    fn patterns_substitute_the_client_id_and_user_name_for_everyone() {
        let bob = rules(Some("bob"), "dev-7");
        assert!(bob.permits(Access::Write, "devices/dev-7/telemetry"));
        assert!(!bob.permits(Access::Write, "devices/dev-8/telemetry"));
        assert!(bob.permits(Access::Read, "users/bob/inbox"));
        assert!(!bob.permits(Access::Read, "users/alice/inbox"));
        // A user not in the file still gets the patterns.
        let carol = rules(Some("carol"), "c1");
        assert!(carol.permits(Access::Read, "users/carol/x"));
        assert!(carol.permits(Access::Write, "devices/c1/telemetry"));
        assert!(!carol.permits(Access::Read, "sensors/lab/temp"));
    }

    #[test]
    fn patterns_do_not_apply_where_the_substitution_would_widen_them() {
        // No user name: %u patterns do not apply.
        let anonymous = rules(None, "c1");
        assert!(!anonymous.permits(Access::Read, "users//x"));
        assert!(anonymous.permits(Access::Write, "devices/c1/telemetry"));
        // Wildcards or separators in the substituted value.
        for client_id in ["+", "#", "a/b"] {
            let sneaky = rules(Some("bob"), client_id);
            assert!(!sneaky.permits(Access::Write, "devices/x/telemetry"));
            assert!(!sneaky.permits(Access::Write, "devices/a/b/telemetry"));
        }
        let sneaky = rules(Some("+"), "c");
        assert!(!sneaky.permits(Access::Read, "users/anyone/x"));
        let unnamed = rules(Some("bob"), "");
        assert!(!unnamed.permits(Access::Write, "devices//telemetry"));
    }

    #[test]
    fn sys_topics_need_a_rule_that_names_them() {
        let acl = Acl::parse("user root\ntopic #\n", Path::new("acl")).unwrap();
        let root = acl.rules_for(Identity {
            username: Some("root"),
            client_id: "r",
        });
        assert!(root.permits(Access::Read, "any/topic"));
        assert!(!root.permits(Access::Read, "$SYS/broker/uptime"));
        assert!(!root.may_subscribe("$SYS/#"));
        let alice = rules(Some("alice"), "a");
        assert!(alice.permits(Access::Read, "$SYS/broker/uptime"));
        assert!(!alice.permits(Access::Read, "$SYS/broker/version"));
    }

    #[test]
    fn a_subscription_is_refused_only_when_it_can_receive_nothing() {
        let alice = rules(Some("alice"), "a");
        assert!(alice.may_subscribe("alice/#"));
        assert!(
            alice.may_subscribe("#"),
            "overlaps alice/#; deliveries are checked per topic"
        );
        assert!(alice.may_subscribe("+/notes"));
        assert!(!alice.may_subscribe("bob/#"));
        assert!(!alice.may_subscribe("alice/secret"), "covered by a deny");
        assert!(!alice.may_subscribe("shared/inbox"), "write only");
        assert!(alice.may_subscribe("$share/group/alice/+"));
        assert!(!alice.may_subscribe("$share/group/bob/+"));
    }

    #[test]
    fn an_empty_acl_refuses_everything() {
        let acl = Acl::parse("# nothing yet\n", Path::new("acl")).unwrap();
        assert!(acl.is_empty());
        let anyone = acl.rules_for(Identity {
            username: Some("x"),
            client_id: "y",
        });
        assert!(!anyone.permits(Access::Read, "a"));
        assert!(!anyone.may_subscribe("#"));
    }

    #[test]
    fn malformed_lines_are_named() {
        let cases = [
            ("user\n", 1, "user name"),
            ("topic read\n", 1, "topic filter"),
            ("\ntopic read a/#/b\n", 2, "invalid topic filter"),
            ("allow a\n", 1, "unknown keyword"),
            ("topic $share/g/a\n", 1, "shared"),
        ];
        for (text, line, problem) in cases {
            let error = Acl::parse(text, Path::new("acl")).unwrap_err().to_string();
            assert!(error.contains(&format!("line {line}")), "{error}");
            assert!(error.contains(problem), "{error}");
        }
        assert_eq!(acl().len(), 9);
    }
}
