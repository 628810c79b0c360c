//! The session table: every session by key, and the index that finds one by client identifier.
//!
//! Sessions live in slots of a vector, boxed so that the vector, which grows by doubling, holds
//! pointers rather than sessions; a removed session's slot is reused. The index is a hash table
//! of keys only: a map from `ByteStr` to key would store a 32-byte copy of every identifier
//! beside the session that already holds it, in a table kept at least an eighth empty, about 80
//! bytes per client. This one reads the identifiers from the sessions when it compares or
//! rehashes.
//!
//! Invariants: every key in the index refers to a live session, found under its client id, and
//! every live session is in the index; no two live sessions share a client id.

use crate::session::{Session, SessionKey};
use core::hash::BuildHasher;
use hashbrown::HashTable;
use mqtt_codec::{ByteStr, ProtocolVersion};

#[derive(Default)]
pub(crate) struct Sessions {
    slots: Vec<Option<Box<Session>>>,
    free: Vec<SessionKey>,
    index: HashTable<SessionKey>,
    hasher: foldhash::fast::RandomState,
    next_generation: u64,
    next_store_id: u64,
}

/// The client id of the session in `slots[key]`, for hashing and comparing in the index.
fn client_id_at(slots: &[Option<Box<Session>>], key: SessionKey) -> &str {
    slots[key.index()]
        .as_ref()
        .map_or("", |session| session.client_id.as_str())
}

impl Sessions {
    /// The number of live sessions.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// The session at `key`, which must be live: keys come from the table, and whoever removes a
    /// session removes every reference to its key.
    pub fn get(&self, key: SessionKey) -> &Session {
        self.try_get(key)
            .expect("session key refers to a live session")
    }

    /// See [`Sessions::get`].
    pub fn get_mut(&mut self, key: SessionKey) -> &mut Session {
        self.try_get_mut(key)
            .expect("session key refers to a live session")
    }

    /// The session at `key`, if it is still live: for timers, which may outlive a session.
    pub fn try_get(&self, key: SessionKey) -> Option<&Session> {
        self.slots.get(key.index()).and_then(Option::as_deref)
    }

    /// See [`Sessions::try_get`].
    pub fn try_get_mut(&mut self, key: SessionKey) -> Option<&mut Session> {
        self.slots
            .get_mut(key.index())
            .and_then(Option::as_deref_mut)
    }

    /// Whether the session at `key` is live and has a connection.
    pub fn is_online(&self, key: SessionKey) -> bool {
        self.try_get(key).is_some_and(|s| s.connection.is_some())
    }

    /// The session known as `client_id`.
    pub fn find(&self, client_id: &str) -> Option<SessionKey> {
        let hash = self.hasher.hash_one(client_id);
        self.index
            .find(hash, |&key| client_id_at(&self.slots, key) == client_id)
            .copied()
    }

    /// Whether a session is known as `client_id`.
    pub fn contains(&self, client_id: &str) -> bool {
        self.find(client_id).is_some()
    }

    /// A new, empty session for `client_id`, which no live session may have.
    pub fn create(&mut self, client_id: ByteStr, protocol: ProtocolVersion) -> SessionKey {
        self.next_store_id += 1;
        let session = Some(Box::new(Session::new(
            client_id,
            protocol,
            self.next_store_id,
        )));
        let key = match self.free.pop() {
            Some(key) => {
                self.slots[key.index()] = session;
                key
            }
            None => {
                self.slots.push(session);
                SessionKey::new(self.slots.len() - 1)
            }
        };
        let slots = &self.slots;
        let hasher = &self.hasher;
        let hash = hasher.hash_one(client_id_at(slots, key));
        self.index.insert_unique(hash, key, |&other| {
            hasher.hash_one(client_id_at(slots, other))
        });
        key
    }

    /// Makes sure sessions created from now on get store identifiers above `id` (one restored
    /// from the store).
    pub fn reserve_store_id(&mut self, id: u64) {
        self.next_store_id = self.next_store_id.max(id);
    }

    /// Takes the session at `key` out of the table; the caller removes what refers to it
    /// elsewhere (its subscriptions).
    pub fn remove(&mut self, key: SessionKey) -> Option<Box<Session>> {
        let session = self.slots.get_mut(key.index())?.take()?;
        let hash = self.hasher.hash_one(session.client_id.as_str());
        if let Ok(entry) = self.index.find_entry(hash, |&other| other == key) {
            entry.remove();
        }
        self.free.push(key);
        Some(session)
    }

    /// Gives the session at `key` a new generation, invalidating the timers set for the old
    /// one, and returns it.
    pub fn next_generation(&mut self, key: SessionKey) -> u64 {
        self.next_generation += 1;
        let generation = self.next_generation;
        self.get_mut(key).generation = generation;
        generation
    }

    /// Every live session, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.slots.iter().flatten().map(|session| &**session)
    }
}
