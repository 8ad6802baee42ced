//! Capability slots and the derivation tree.
//!
//! Every slot is linked into one list in derivation pre-order, each with its depth, so
//! the descendants of a slot are exactly the run after it with greater depth (seL4's
//! mapping database, flattened). Revoking is deleting that run; a capability is the last
//! one to its object when neither list neighbour names the same object.

use crate::cap::Cap;
use crate::store::Store;

/// log2 of a slot's size in memory.
pub const SLOT_BITS: u8 = 7;

/// One slot: a capability and its place in the derivation tree (0 = no neighbour).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Slot {
    /// The capability (Null when empty).
    pub cap: Cap,
    /// Previous slot in derivation order.
    pub prev: u64,
    /// Next slot in derivation order.
    pub next: u64,
    /// Distance from the root of its derivation tree.
    pub depth: u32,
}

const _: () = assert!(core::mem::size_of::<Slot>() <= 1 << SLOT_BITS);

/// Why a slot operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotError {
    /// The destination slot is not empty.
    Occupied,
    /// The source slot is empty.
    Empty,
}

/// Put `cap` into the empty slot `dst` as a root of a new derivation tree (boot-time
/// capabilities).
pub fn insert_root(store: &mut impl Store, dst: u64, cap: Cap) -> Result<(), SlotError> {
    let slot = store.slot(dst);
    if slot.cap != Cap::Null {
        return Err(SlotError::Occupied);
    }
    *slot = Slot { cap, prev: 0, next: 0, depth: 0 };
    Ok(())
}

/// Put `cap` into the empty slot `dst` as a child of `parent`.
pub fn insert_child(
    store: &mut impl Store,
    parent: u64,
    dst: u64,
    cap: Cap,
) -> Result<(), SlotError> {
    if store.slot(dst).cap != Cap::Null {
        return Err(SlotError::Occupied);
    }
    let p = *store.slot(parent);
    if p.cap == Cap::Null {
        return Err(SlotError::Empty);
    }
    *store.slot(dst) = Slot { cap, prev: parent, next: p.next, depth: p.depth + 1 };
    if p.next != 0 {
        store.slot(p.next).prev = dst;
    }
    store.slot(parent).next = dst;
    Ok(())
}

/// Whether the capability in `at` is the only one to its object.
pub fn is_final(store: &mut impl Store, at: u64) -> bool {
    let s = *store.slot(at);
    let shares = |store: &mut _, n: u64| n != 0 && slot_cap(store, n).same_object(&s.cap);
    !(shares(store, s.prev) || shares(store, s.next))
}

fn slot_cap(store: &mut impl Store, at: u64) -> Cap {
    store.slot(at).cap
}

/// Empty slot `at`, re-parenting its children to its parent; returns the capability and
/// whether it was the last one to its object (so the caller finalises the object).
pub fn remove(store: &mut impl Store, at: u64) -> Result<(Cap, bool), SlotError> {
    let s = *store.slot(at);
    if s.cap == Cap::Null {
        return Err(SlotError::Empty);
    }
    let last = is_final(store, at);
    let mut n = s.next;
    while n != 0 && store.slot(n).depth > s.depth {
        let child = store.slot(n);
        child.depth -= 1;
        n = child.next;
    }
    if s.prev != 0 {
        store.slot(s.prev).next = s.next;
    }
    if s.next != 0 {
        store.slot(s.next).prev = s.prev;
    }
    *store.slot(at) = Slot::default();
    Ok((s.cap, last))
}

/// The first descendant of `at`, if any (revocation deletes these one by one).
pub fn first_descendant(store: &mut impl Store, at: u64) -> Option<u64> {
    let s = *store.slot(at);
    (s.next != 0 && store.slot(s.next).depth > s.depth).then_some(s.next)
}

/// Move the capability from `src` to the empty `dst`, keeping its place in the tree.
pub fn move_slot(store: &mut impl Store, src: u64, dst: u64) -> Result<(), SlotError> {
    if src == dst {
        return Ok(());
    }
    let s = *store.slot(src);
    if s.cap == Cap::Null {
        return Err(SlotError::Empty);
    }
    if store.slot(dst).cap != Cap::Null {
        return Err(SlotError::Occupied);
    }
    *store.slot(dst) = s;
    if s.prev != 0 {
        store.slot(s.prev).next = dst;
    }
    if s.next != 0 {
        store.slot(s.next).prev = dst;
    }
    *store.slot(src) = Slot::default();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{
        first_descendant, insert_child, insert_root, is_final, move_slot, remove, SlotError,
    };
    use crate::cap::Cap;
    use crate::store::fake::FakeStore;
    use crate::store::Store;
    use protocols::rights::Rights;

    fn ep(badge: u64, rights: Rights) -> Cap {
        Cap::Endpoint { addr: 0x9000, badge, rights }
    }

    #[test]
    fn revoke_removes_every_descendant_and_only_those() {
        let mut s = FakeStore::default();
        insert_root(&mut s, 0x100, ep(0, Rights::ALL)).unwrap();
        insert_child(&mut s, 0x100, 0x200, ep(1, Rights::READ)).unwrap();
        insert_child(&mut s, 0x200, 0x300, ep(1, Rights::READ)).unwrap();
        insert_child(&mut s, 0x100, 0x400, ep(2, Rights::WRITE)).unwrap();
        insert_root(&mut s, 0x500, Cap::Tcb { addr: 0x7000 }).unwrap();
        // Revoke 0x200: only 0x300 goes.
        while let Some(d) = first_descendant(&mut s, 0x200) {
            remove(&mut s, d).unwrap();
        }
        assert_eq!(s.slot(0x300).cap, Cap::Null);
        assert_ne!(s.slot(0x400).cap, Cap::Null);
        // Revoke the root: everything derived goes, the unrelated root stays.
        while let Some(d) = first_descendant(&mut s, 0x100) {
            remove(&mut s, d).unwrap();
        }
        for a in [0x200, 0x300, 0x400] {
            assert_eq!(s.slot(a).cap, Cap::Null, "{a:#x} survived revocation");
        }
        assert_ne!(s.slot(0x100).cap, Cap::Null);
        assert_eq!(s.slot(0x500).cap, Cap::Tcb { addr: 0x7000 });
        assert!(is_final(&mut s, 0x100));
    }

    #[test]
    fn deleting_a_middle_node_keeps_its_children_revocable_from_above() {
        let mut s = FakeStore::default();
        insert_root(&mut s, 0x100, ep(0, Rights::ALL)).unwrap();
        insert_child(&mut s, 0x100, 0x200, ep(0, Rights::ALL)).unwrap();
        insert_child(&mut s, 0x200, 0x300, ep(0, Rights::ALL)).unwrap();
        assert!(!is_final(&mut s, 0x200));
        let (_, last) = remove(&mut s, 0x200).unwrap();
        assert!(!last);
        assert_eq!(s.slot(0x300).depth, 1);
        assert_eq!(first_descendant(&mut s, 0x100), Some(0x300));
        let (_, last) = remove(&mut s, 0x300).unwrap();
        assert!(!last);
        let (_, last) = remove(&mut s, 0x100).unwrap();
        assert!(last, "the last capability to the endpoint");
    }

    #[test]
    fn move_keeps_the_tree_and_refuses_occupied_slots() {
        let mut s = FakeStore::default();
        insert_root(&mut s, 0x100, ep(0, Rights::ALL)).unwrap();
        insert_child(&mut s, 0x100, 0x200, ep(0, Rights::ALL)).unwrap();
        assert_eq!(move_slot(&mut s, 0x200, 0x100), Err(SlotError::Occupied));
        move_slot(&mut s, 0x200, 0x600).unwrap();
        assert_eq!(first_descendant(&mut s, 0x100), Some(0x600));
        assert_eq!(move_slot(&mut s, 0x200, 0x700), Err(SlotError::Empty));
        assert_eq!(insert_child(&mut s, 0x100, 0x600, Cap::Null), Err(SlotError::Occupied));
    }
}
