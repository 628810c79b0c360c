//! The subscription tree: topic filters stored level by level so that matching a topic name
//! visits only the branches that can match, without allocating.
//!
//! Invariants: filters are valid (checked by the codec); each (filter, key) pair holds at most
//! one value; empty branches are pruned on removal so the tree's size follows the live filters.

use crate::HashMap;

/// Values of type `V` stored under topic filters, identified within a filter by a key `K`
/// (a session or a shared-subscription group).
#[derive(Debug)]
pub struct SubscriptionTree<K, V> {
    root: Node<K, V>,
    len: usize,
}

#[derive(Debug)]
struct Node<K, V> {
    /// Children by literal level.
    children: HashMap<Box<str>, Node<K, V>>,
    /// The `+` child.
    single_level: Option<Box<Node<K, V>>>,
    /// Entries whose filter ends at this node.
    exact: Vec<(K, V)>,
    /// Entries whose filter is this node's path followed by `/#` (or `#` at the root).
    multi_level: Vec<(K, V)>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node {
            children: HashMap::default(),
            single_level: None,
            exact: Vec::new(),
            multi_level: Vec::new(),
        }
    }
}

impl<K, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.single_level.is_none()
            && self.exact.is_empty()
            && self.multi_level.is_empty()
    }
}

impl<K: PartialEq, V> Default for SubscriptionTree<K, V> {
    fn default() -> Self {
        SubscriptionTree {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<K: PartialEq, V> SubscriptionTree<K, V> {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (filter, key) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` under `filter` for `key`, returning the value it replaces.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        let mut list = None;
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                list = Some(&mut node.multi_level);
                break;
            }
            node = if level == "+" {
                node.single_level.get_or_insert_with(Default::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
        }
        let list = list.unwrap_or(&mut node.exact);
        if let Some(entry) = list.iter_mut().find(|(existing, _)| *existing == key) {
            return Some(std::mem::replace(&mut entry.1, value));
        }
        list.push((key, value));
        self.len += 1;
        None
    }

    /// Removes the entry of `key` under `filter`, returning its value.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = Self::remove_in(&mut self.root, &levels, key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    fn remove_in(node: &mut Node<K, V>, levels: &[&str], key: &K) -> Option<V> {
        let (level, rest) = match levels.split_first() {
            None => return take_entry(&mut node.exact, key),
            Some(split) => split,
        };
        if *level == "#" && rest.is_empty() {
            return take_entry(&mut node.multi_level, key);
        }
        if *level == "+" {
            let child = node.single_level.as_deref_mut()?;
            let removed = Self::remove_in(child, rest, key);
            if child.is_empty() {
                node.single_level = None;
            }
            removed
        } else {
            let child = node.children.get_mut(*level)?;
            let removed = Self::remove_in(child, rest, key);
            if child.is_empty() {
                node.children.remove(*level);
            }
            removed
        }
    }

    /// The value of `key` under `filter`, if any.
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        let mut node = &self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return find_entry(&node.multi_level, key);
            }
            node = if level == "+" {
                node.single_level.as_deref()?
            } else {
                node.children.get(level)?
            };
        }
        find_entry(&node.exact, key)
    }

    /// Calls `visit` for every entry whose filter matches the topic `name`. Wildcards at the
    /// first level do not match names starting with `$` [MQTT-4.7.2-1].
    pub fn for_each_match<'a>(&'a self, name: &str, mut visit: impl FnMut(&'a K, &'a V)) {
        let hide_from_wildcards = name.starts_with('$');
        Self::walk(&self.root, Some(name), hide_from_wildcards, &mut visit);
    }

    fn walk<'a>(
        node: &'a Node<K, V>,
        remaining: Option<&str>,
        hide_from_wildcards: bool,
        visit: &mut impl FnMut(&'a K, &'a V),
    ) {
        if !hide_from_wildcards {
            // `a/#` also matches `a` itself: the parent level is included (spec 4.7.1.2).
            node.multi_level.iter().for_each(|(k, v)| visit(k, v));
        }
        let Some(rest) = remaining else {
            node.exact.iter().for_each(|(k, v)| visit(k, v));
            return;
        };
        let (level, next) = match rest.split_once('/') {
            Some((level, next)) => (level, Some(next)),
            None => (rest, None),
        };
        if let Some(child) = node.children.get(level) {
            Self::walk(child, next, false, visit);
        }
        if !hide_from_wildcards && let Some(child) = node.single_level.as_deref() {
            Self::walk(child, next, false, visit);
        }
    }
}

fn take_entry<K: PartialEq, V>(list: &mut Vec<(K, V)>, key: &K) -> Option<V> {
    let index = list.iter().position(|(existing, _)| existing == key)?;
    Some(list.swap_remove(index).1)
}

fn find_entry<'a, K: PartialEq, V>(list: &'a [(K, V)], key: &K) -> Option<&'a V> {
    list.iter()
        .find(|(existing, _)| existing == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_codec::topic;
    use proptest::prelude::*;

    fn matched(tree: &SubscriptionTree<u32, ()>, name: &str) -> Vec<u32> {
        let mut keys = Vec::new();
        tree.for_each_match(name, |k, _| keys.push(*k));
        keys.sort_unstable();
        keys
    }

    #[test]
    fn matches_like_the_specification_examples() {
        let filters = [
            "sport/tennis/player1/#",
            "sport/#",
            "sport/tennis/+",
            "+/+",
            "/+",
            "+",
            "#",
            "$SYS/#",
            "+/monitor/Clients",
            "a/b",
        ];
        let mut tree = SubscriptionTree::new();
        for (key, filter) in filters.iter().enumerate() {
            tree.insert(filter, key as u32, ());
        }
        for name in [
            "sport",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "/finance",
            "finance",
            "$SYS/monitor/Clients",
            "a/b",
            "a/b/c",
            "/",
        ] {
            let expected: Vec<u32> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| topic::matches(f, name))
                .map(|(k, _)| k as u32)
                .collect();
            assert_eq!(matched(&tree, name), expected, "topic {name:?}");
        }
    }

    #[test]
    fn insert_replaces_and_remove_prunes() {
        let mut tree = SubscriptionTree::new();
        assert_eq!(tree.insert("a/+/c", 1, "x"), None);
        assert_eq!(tree.insert("a/+/c", 1, "y"), Some("x"));
        assert_eq!(tree.insert("a/#", 2, "z"), None);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.get("a/+/c", &1), Some(&"y"));
        assert_eq!(tree.remove("a/+/c", &1), Some("y"));
        assert_eq!(tree.remove("a/+/c", &1), None);
        assert_eq!(tree.remove("a/#", &2), Some("z"));
        assert!(tree.is_empty());
        assert!(tree.root.is_empty(), "empty branches are pruned");
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just(String::new())
        ]
    }

    fn filter_level() -> impl Strategy<Value = String> {
        prop_oneof![level(), Just("+".to_string())]
    }

    proptest! {
        #[test]
        fn tree_agrees_with_the_reference_matcher(
            filters in prop::collection::vec(
                (prop::collection::vec(filter_level(), 1..4), any::<bool>()), 1..12),
            names in prop::collection::vec(prop::collection::vec(level(), 1..5), 1..8),
        ) {
            let filters: Vec<String> = filters
                .into_iter()
                .map(|(levels, multi)| {
                    let mut f = levels.join("/");
                    if multi { f.push_str("/#"); }
                    f
                })
                .collect();
            let mut tree = SubscriptionTree::new();
            for (key, filter) in filters.iter().enumerate() {
                tree.insert(filter, key as u32, ());
            }
            for name in names {
                let name = name.join("/");
                let expected: Vec<u32> = filters
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| topic::matches(f, &name))
                    .map(|(k, _)| k as u32)
                    .collect();
                prop_assert_eq!(matched(&tree, &name), expected);
            }
        }
    }
}
