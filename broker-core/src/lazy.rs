//! Collections that cost one pointer until their first element.
//!
//! Every client has a session, and most clients never subscribe, never receive QoS 1 or 2 and
//! leave no will, so what only some need is out of line: [`LazyMap`], [`LazySet`] and
//! [`LazyDeque`] allocate at their first element. Once allocated they stay, as the std
//! collections keep their capacity.

use crate::HashMap;
use std::borrow::Borrow;
use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::ops::{Index, IndexMut};

/// A `HashMap` that takes one pointer, and allocates nothing, until its first entry (an empty
/// `HashMap` takes 48 bytes). Once allocated it stays, as a `HashMap` keeps its capacity.
// The box is the point: it is what makes the empty map one pointer.
#[allow(clippy::box_collection)]
#[derive(Debug)]
pub(crate) struct LazyMap<K, V>(Option<Box<HashMap<K, V>>>);

impl<K: Eq + Hash, V> LazyMap<K, V> {
    pub fn new() -> Self {
        LazyMap(None)
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |map| map.len())
    }

    pub fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.0.as_ref()?.get(key)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.0.get_or_insert_default().insert(key, value)
    }

    pub fn remove<Q: Eq + Hash + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.0.as_mut()?.remove(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().flat_map(|map| map.iter())
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().flat_map(|map| map.keys())
    }
}

/// A `HashSet` that takes one pointer, and allocates nothing, until its first element.
#[allow(clippy::box_collection)]
#[derive(Debug)]
pub(crate) struct LazySet<T>(Option<Box<HashSet<T>>>);

impl<T> Default for LazySet<T> {
    fn default() -> Self {
        LazySet(None)
    }
}

impl<T: Eq + Hash> LazySet<T> {
    pub fn new() -> Self {
        LazySet(None)
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |set| set.len())
    }

    pub fn contains(&self, value: &T) -> bool {
        self.0.as_ref().is_some_and(|set| set.contains(value))
    }

    pub fn insert(&mut self, value: T) -> bool {
        self.0.get_or_insert_default().insert(value)
    }

    pub fn remove(&mut self, value: &T) -> bool {
        self.0.as_mut().is_some_and(|set| set.remove(value))
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flat_map(|set| set.iter())
    }
}

impl<T: Eq + Hash> FromIterator<T> for LazySet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(values: I) -> Self {
        let set: HashSet<T> = values.into_iter().collect();
        LazySet((!set.is_empty()).then(|| Box::new(set)))
    }
}

/// A `VecDeque` that takes one pointer, and allocates nothing, until its first element (an
/// empty `VecDeque` takes 32 bytes).
#[allow(clippy::box_collection)]
#[derive(Debug)]
pub(crate) struct LazyDeque<T>(Option<Box<VecDeque<T>>>);

impl<T> LazyDeque<T> {
    pub fn new() -> Self {
        LazyDeque(None)
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |deque| deque.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push_back(&mut self, value: T) {
        self.0.get_or_insert_default().push_back(value);
    }

    pub fn pop_front(&mut self) -> Option<T> {
        self.0.as_mut()?.pop_front()
    }

    pub fn back(&self) -> Option<&T> {
        self.0.as_ref()?.back()
    }

    pub fn remove(&mut self, index: usize) -> Option<T> {
        self.0.as_mut()?.remove(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flat_map(|deque| deque.iter())
    }
}

impl<T> Index<usize> for LazyDeque<T> {
    type Output = T;

    fn index(&self, index: usize) -> &T {
        match &self.0 {
            Some(deque) => &deque[index],
            None => panic!("index {index} out of an empty deque"),
        }
    }
}

impl<T> IndexMut<usize> for LazyDeque<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        match &mut self.0 {
            Some(deque) => &mut deque[index],
            None => panic!("index {index} out of an empty deque"),
        }
    }
}

impl<T> FromIterator<T> for LazyDeque<T> {
    fn from_iter<I: IntoIterator<Item = T>>(values: I) -> Self {
        let deque: VecDeque<T> = values.into_iter().collect();
        LazyDeque((!deque.is_empty()).then(|| Box::new(deque)))
    }
}
