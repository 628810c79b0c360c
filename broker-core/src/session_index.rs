//! Sessions by client identifier.
//!
//! A map from `ByteStr` to session key would store a 32-byte copy of every identifier next to
//! the session that already holds it, in a table kept at least an eighth empty and grown by
//! doubling: about 80 bytes per client. This index stores only the keys and reads identifiers
//! from the sessions when it compares or rehashes.
//!
//! Invariant: every key in the table refers to a live session, found under its client id.

use crate::session::{Session, SessionKey};
use core::hash::BuildHasher;
use hashbrown::HashTable;

/// The broker's session slots, which the index reads identifiers from.
pub(crate) type Sessions = [Option<Box<Session>>];

fn client_id(sessions: &Sessions, key: u32) -> &str {
    sessions[key as usize]
        .as_ref()
        .map_or("", |session| session.client_id.as_str())
}

#[derive(Default)]
pub(crate) struct SessionIndex {
    table: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl SessionIndex {
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn get(&self, sessions: &Sessions, id: &str) -> Option<SessionKey> {
        let hash = self.hasher.hash_one(id);
        self.table
            .find(hash, |&key| client_id(sessions, key) == id)
            .map(|&key| key as SessionKey)
    }

    pub(crate) fn contains(&self, sessions: &Sessions, id: &str) -> bool {
        self.get(sessions, id).is_some()
    }

    /// Adds the session at `key`, which must already hold its client id and be the only
    /// session with it.
    pub(crate) fn insert(&mut self, sessions: &Sessions, key: SessionKey) {
        let key = u32::try_from(key).expect("fewer than 2^32 sessions");
        let hasher = &self.hasher;
        let hash = hasher.hash_one(client_id(sessions, key));
        self.table.insert_unique(hash, key, |&other| {
            hasher.hash_one(client_id(sessions, other))
        });
    }

    /// Removes the session at `key`, known under `id`; its slot may already be empty.
    pub(crate) fn remove(&mut self, id: &str, key: SessionKey) {
        let hash = self.hasher.hash_one(id);
        if let Ok(entry) = self
            .table
            .find_entry(hash, |&other| other as SessionKey == key)
        {
            entry.remove();
        }
    }
}
