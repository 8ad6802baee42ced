//! The capability derivation tree: every capability, its parent, and its children newest
//! first (a copy is made the first child of its source, so revoking deletes in that
//! order, and the order in which deleted objects release waiting threads depends on it).
//! Deleting a capability hands its children to its parent in its place.

use crate::cap::{Cap, Object};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

/// Capabilities by slot, and how they derive from each other.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cdt {
    caps: BTreeMap<u64, Cap>,
    parent: BTreeMap<u64, u64>,
    children: BTreeMap<u64, Vec<u64>>,
}

impl Cdt {
    /// Build from the kernel's flattened form: slots in derivation pre-order, each with
    /// its depth (a list may hold several roots).
    pub fn from_preorder(list: &[(u64, u32, Cap)]) -> Self {
        let mut t = Self::default();
        let mut path: Vec<(u64, u32)> = Vec::new();
        for &(at, depth, cap) in list {
            while path.last().is_some_and(|(_, d)| *d >= depth) {
                path.pop();
            }
            t.caps.insert(at, cap);
            if let Some(&(p, _)) = path.last() {
                t.parent.insert(at, p);
                t.children.entry(p).or_default().push(at);
            }
            path.push((at, depth));
        }
        t
    }

    /// The capability in slot `at`.
    pub fn get(&self, at: u64) -> Option<Cap> {
        self.caps.get(&at).copied()
    }

    /// Every capability, by slot.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Cap)> + '_ {
        self.caps.iter().map(|(a, c)| (*a, *c))
    }

    /// The parent of slot `at`.
    pub fn parent(&self, at: u64) -> Option<u64> {
        self.parent.get(&at).copied()
    }

    /// Change the capability in an occupied slot without moving it in the tree.
    pub fn replace(&mut self, at: u64, cap: Cap) {
        if let Some(c) = self.caps.get_mut(&at) {
            *c = cap;
        }
    }

    /// Put `cap` in the empty slot `at` with no parent.
    pub fn insert_root(&mut self, at: u64, cap: Cap) {
        self.caps.insert(at, cap);
    }

    /// Put `cap` in the empty slot `at` as the newest child of `parent`.
    pub fn insert_child(&mut self, parent: u64, at: u64, cap: Cap) {
        self.caps.insert(at, cap);
        self.parent.insert(at, parent);
        self.children.entry(parent).or_default().insert(0, at);
    }

    /// The newest child of `at`.
    pub fn first_child(&self, at: u64) -> Option<u64> {
        self.children.get(&at).and_then(|c| c.first().copied())
    }

    /// Every slot below `at`.
    pub fn descendants(&self, at: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut todo: Vec<u64> = self.children.get(&at).cloned().unwrap_or_default();
        while let Some(s) = todo.pop() {
            out.push(s);
            todo.extend(self.children.get(&s).cloned().unwrap_or_default());
        }
        out
    }

    /// Whether no slot but `at` (and those in `ignore`) names `at`'s object.
    pub fn is_final(&self, at: u64, ignore: &BTreeSet<u64>) -> bool {
        let Some(cap) = self.get(at) else { return false };
        let o: Object = cap.object();
        !self.caps.iter().any(|(s, c)| *s != at && !ignore.contains(s) && c.object() == o)
    }

    /// Empty slot `at`; its children take its place under its parent.
    pub fn remove(&mut self, at: u64) -> Option<Cap> {
        let cap = self.caps.remove(&at)?;
        let kids = self.children.remove(&at).unwrap_or_default();
        match self.parent.remove(&at) {
            Some(p) => {
                for k in &kids {
                    self.parent.insert(*k, p);
                }
                let siblings = self.children.entry(p).or_default();
                match siblings.iter().position(|s| *s == at) {
                    Some(i) => drop(siblings.splice(i..=i, kids)),
                    None => siblings.extend(kids),
                }
                if siblings.is_empty() {
                    self.children.remove(&p);
                }
            }
            None => {
                for k in &kids {
                    self.parent.remove(k);
                }
            }
        }
        Some(cap)
    }

    /// Move the capability in `src` to the empty slot `dst`, keeping its place.
    pub fn move_slot(&mut self, src: u64, dst: u64) {
        let Some(cap) = self.caps.remove(&src) else { return };
        self.caps.insert(dst, cap);
        if let Some(p) = self.parent.remove(&src) {
            self.parent.insert(dst, p);
            if let Some(s) =
                self.children.get_mut(&p).and_then(|v| v.iter_mut().find(|s| **s == src))
            {
                *s = dst;
            }
        }
        if let Some(kids) = self.children.remove(&src) {
            for k in &kids {
                self.parent.insert(*k, dst);
            }
            self.children.insert(dst, kids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cdt;
    use crate::cap::Cap;
    use alloc::collections::BTreeSet;

    fn ep(badge: u64) -> Cap {
        Cap::Endpoint { addr: 64, badge, rights: protocols::rights::Rights::ALL }
    }

    #[test]
    fn removing_hands_children_to_the_parent_in_place() {
        let mut t = Cdt::default();
        t.insert_root(1, ep(0));
        t.insert_child(1, 2, ep(0));
        t.insert_child(1, 3, ep(0));
        t.insert_child(3, 4, ep(1));
        assert_eq!(t.first_child(1), Some(3));
        t.remove(3);
        assert_eq!(t.first_child(1), Some(4));
        assert_eq!(t.descendants(1).len(), 2);
        let flat = Cdt::from_preorder(&[(1, 0, ep(0)), (4, 1, ep(1)), (2, 1, ep(0))]);
        assert_eq!(flat, t);
        assert!(!t.is_final(1, &BTreeSet::new()));
        t.move_slot(4, 9);
        assert_eq!(t.first_child(1), Some(9));
    }
}
