//! Frames of both sizes through the syscall layer: retyping a large frame from untyped
//! memory, mapping it as one 2 MiB page in a VSpace and a GuestSpace, the mappings it
//! refuses, and unmapping by `FrameUnmap`, deletion and revocation.

use crate::cap::Cap;
use crate::paging::{translate, FrameSize, PhysMemory};
use crate::testbed::{slot, Testbed, ROOT_VSPACE, UNTYPED_BASE};
use crate::vmx::ept::{Ept, EptVpidCaps};
use protocols::error::Error;
use protocols::object::{map, Invocation, ObjectType};
use protocols::rights::Rights;

const BIG: u64 = 2 << 20;
const INVALID: u64 = Error::InvalidArgument as u64;

fn map(t: &mut Testbed, frame: u64, vaddr: u64) -> u64 {
    t.invoke(frame, Invocation::FrameMap, &[slot::VSPACE, vaddr, map::WRITE])
}

#[test]
fn large_frames_are_retyped_aligned_to_2m_and_zeroed() {
    let mut t = Testbed::new();
    assert_eq!(t.retype(ObjectType::Endpoint, 0, 20, 1), 0);
    // Stale bytes where the large frame will go: creating it clears all 2 MiB.
    for page in [UNTYPED_BASE + BIG, UNTYPED_BASE + 2 * BIG - 0x1000] {
        t.k.store.frame(page)[5] = 0xaa;
    }
    assert_eq!(t.retype(ObjectType::LargeFrame, 0, 21, 1), 0);
    let Cap::Frame { addr, size, mapped: None, .. } = t.cap(21) else { panic!() };
    assert_eq!((addr, size), (UNTYPED_BASE + BIG, FrameSize::Large), "aligned past the endpoint");
    assert_eq!(t.regs(t.k.current)[3], addr, "the result word is the first object's address");
    assert_eq!(t.k.store.frame(addr)[5], 0);
    assert_eq!(t.k.store.frame(addr + BIG - 0x1000)[5], 0);
    let Cap::Untyped { free, .. } = t.cap(slot::UNTYPED) else { panic!() };
    assert_eq!(free, 2 * BIG, "the watermark moved past it");
    assert_eq!(t.retype(ObjectType::LargeFrame, 0, 22, 1), Error::OutOfMemory as u64);
    assert_eq!(t.invoke(21, Invocation::FrameAddress, &[]), 0);
    assert_eq!(t.regs(t.k.current)[3], addr);
    // A region smaller than 2 MiB can never hold one.
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeRevoke, &[slot::UNTYPED]), 0);
    assert_eq!(t.cap(21), Cap::Null);
    assert_eq!(t.retype(ObjectType::Untyped, 20, 23, 1), 0);
    let words = [ObjectType::LargeFrame as u64, 0, 24, 1];
    assert_eq!(t.invoke(23, Invocation::UntypedRetype, &words), Error::OutOfMemory as u64);
    assert_eq!(t.retype(ObjectType::LargeFrame, 0, 24, 2), Error::OutOfMemory as u64);
    assert_eq!(t.retype(ObjectType::LargeFrame, 0, 24, 1), 0);
    let Cap::Frame { addr, .. } = t.cap(24) else { panic!() };
    assert_eq!(addr, UNTYPED_BASE + BIG, "after the 1 MiB untyped, aligned up");
}

#[test]
fn a_large_frame_maps_as_one_2m_page_and_unmaps() {
    let mut t = Testbed::new();
    assert_eq!(t.retype(ObjectType::LargeFrame, 0, 20, 1), 0);
    assert_eq!(t.retype(ObjectType::Frame, 0, 21, 1), 0);
    let Cap::Frame { addr, .. } = t.cap(20) else { panic!() };
    assert_eq!(map(&mut t, 20, 0x81_0000), INVALID, "vaddr not 2 MiB aligned");
    assert_eq!(map(&mut t, 20, 0x7fff_ffe0_0000), INVALID, "past the end of user space");
    // The boot page at 0x40_0000 has a page table under it: no large page there.
    assert_eq!(map(&mut t, 20, 0x40_0000), INVALID);
    assert_eq!(map(&mut t, 20, 0x80_0000), 0);
    let tr = translate(&mut t.k.store, ROOT_VSPACE, 0x9f_fff8).unwrap();
    assert_eq!((tr.phys, tr.writable, tr.user), (addr + BIG - 8, true, true));
    assert_eq!(map(&mut t, 20, 0xa0_0000), INVALID, "mapped already");
    assert_eq!(map(&mut t, 21, 0x80_1000), INVALID, "a 4 KiB page under a 2 MiB one");
    assert_eq!(
        t.invoke(slot::CNODE, Invocation::CNodeCopy, &[20, 22, Rights::ALL.bits().into()]),
        0
    );
    assert_eq!(map(&mut t, 22, 0x80_0000), INVALID, "a copy over the same range");
    assert_eq!(map(&mut t, 22, 0xa0_0000), 0, "a copy maps elsewhere");

    t.k.tlb_stale = false;
    assert_eq!(t.invoke(20, Invocation::FrameUnmap, &[]), 0);
    assert!(t.k.tlb_stale, "the TLB is flushed");
    assert!(translate(&mut t.k.store, ROOT_VSPACE, 0x80_0000).is_none());
    assert!(matches!(t.cap(20), Cap::Frame { mapped: None, .. }));
    assert_eq!(map(&mut t, 20, 0x80_0000), 0, "remapped");
    // Revoking the original removes the copy's mapping; deleting it removes its own.
    t.k.tlb_stale = false;
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeRevoke, &[20]), 0);
    assert!(t.k.tlb_stale && t.cap(22) == Cap::Null);
    assert!(translate(&mut t.k.store, ROOT_VSPACE, 0xa0_0000).is_none());
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeDelete, &[20]), 0);
    assert!(translate(&mut t.k.store, ROOT_VSPACE, 0x80_0000).is_none());
    assert_eq!(map(&mut t, 21, 0x80_1000), 0, "the range takes 4 KiB pages again");
}

#[test]
fn a_large_frame_maps_as_one_2m_ept_leaf() {
    let mut t = Testbed::with_vmx();
    assert_eq!(t.retype(ObjectType::GuestSpace, 14, 20, 1), 0);
    assert_eq!(t.retype(ObjectType::Frame, 0, 22, 1), 0);
    assert_eq!(t.retype(ObjectType::LargeFrame, 0, 21, 1), 0);
    let (Cap::GuestSpace { addr: root, .. }, Cap::Frame { addr, .. }) = (t.cap(20), t.cap(21))
    else {
        panic!()
    };
    let guest = |t: &mut Testbed, frame, gpa| {
        t.invoke(frame, Invocation::FrameMapGuest, &[20, gpa, map::WRITE | map::EXECUTE])
    };
    let ept = Ept::from_root(root, EptVpidCaps::from_raw(0));
    assert_eq!(guest(&mut t, 21, 0x30_0000), INVALID, "gpa not 2 MiB aligned");
    assert_eq!(guest(&mut t, 22, 0x40_0000), 0);
    assert_eq!(guest(&mut t, 21, 0x40_0000), INVALID, "a table is there");
    assert_eq!(guest(&mut t, 21, 0x20_0000), 0);
    let tr = ept.translate(&mut t.k.store, 0x21_2345).unwrap();
    assert_eq!((tr.host, tr.page_size), (addr + 0x1_2345, BIG));
    assert_eq!(t.invoke(21, Invocation::FrameUnmap, &[]), 0);
    assert_eq!(ept.translate(&mut t.k.store, 0x20_0000), None);
    assert_eq!(guest(&mut t, 21, 0), 0);
    t.k.ept_stale = false;
    assert_eq!(t.invoke(slot::CNODE, Invocation::CNodeDelete, &[21]), 0);
    assert!(t.k.ept_stale, "deleting the mapped frame invalidates EPT translations");
    assert_eq!(ept.translate(&mut t.k.store, 0x1000), None);
    assert!(ept.translate(&mut t.k.store, 0x40_0000).is_some(), "the 4 KiB page stays");

    let mut t = Testbed::with_vmx();
    t.k.vmx.as_mut().unwrap().ept =
        EptVpidCaps::from_raw(crate::vmx::samples::EPT_CAPS & !(1 << 16));
    assert_eq!(t.retype(ObjectType::GuestSpace, 14, 20, 1), 0);
    assert_eq!(t.retype(ObjectType::LargeFrame, 0, 21, 1), 0);
    assert_eq!(guest(&mut t, 21, 0), Error::NotSupported as u64, "no 2 MiB EPT pages");
}

#[test]
fn a_new_vspace_shares_the_kernel_half_and_holds_tables_for_its_size() {
    let mut t = Testbed::new();
    for (j, e) in t.k.kernel_half.iter_mut().enumerate() {
        *e = (0x10_0000 * (j as u64 + 1)) | 1;
    }
    assert_eq!(t.retype(ObjectType::VSpace, 14, 20, 1), 0);
    let Cap::VSpace { addr: root, .. } = t.cap(20) else { panic!() };
    for j in [0, 1, 255] {
        assert_eq!(crate::paging::entry(&mut t.k.store, root, 256 + j), t.k.kernel_half[j]);
    }
    assert_eq!(crate::paging::entry(&mut t.k.store, root, 0), 0, "the user half starts empty");
    // 16 KiB: the PML4 and three tables, enough for one page's PDPT, PD and PT; a page
    // under another 2 MiB needs a fourth.
    assert_eq!(t.retype(ObjectType::Frame, 0, 21, 2), 0);
    let map = |t: &mut Testbed, frame, vaddr| {
        t.invoke(frame, Invocation::FrameMap, &[20, vaddr, map::WRITE])
    };
    assert_eq!(map(&mut t, 21, 0x40_0000), 0);
    assert_eq!(map(&mut t, 22, 0x60_0000), Error::OutOfMemory as u64);
}

#[test]
fn a_guest_space_holds_ept_tables_for_its_size() {
    let mut t = Testbed::with_vmx();
    assert_eq!(t.retype(ObjectType::GuestSpace, 14, 20, 1), 0);
    assert_eq!(t.retype(ObjectType::Frame, 0, 21, 2), 0);
    let guest = |t: &mut Testbed, frame, gpa| {
        t.invoke(frame, Invocation::FrameMapGuest, &[20, gpa, map::WRITE])
    };
    assert_eq!(guest(&mut t, 21, 0x1000), 0);
    assert_eq!(guest(&mut t, 22, 0x20_0000), Error::OutOfMemory as u64);
}

#[test]
fn a_mapping_asks_only_for_write_or_execute() {
    let mut t = Testbed::new();
    assert_eq!(t.retype(ObjectType::Frame, 0, 21, 1), 0);
    let with = |t: &mut Testbed, want| {
        t.invoke(21, Invocation::FrameMap, &[slot::VSPACE, 0x80_0000, want])
    };
    assert_eq!(with(&mut t, 1 << 7), INVALID, "an unknown bit");
    assert_eq!(with(&mut t, map::WRITE | map::EXECUTE), INVALID, "writable and executable");
    assert_eq!(with(&mut t, map::WRITE), 0);
}

#[test]
fn a_mapping_lies_within_the_user_range_and_is_read_only_unless_asked() {
    use protocols::layout::{USER_MAP_END, USER_MIN};
    let mut t = Testbed::new();
    assert_eq!(t.retype(ObjectType::Frame, 0, 21, 4), 0);
    assert_eq!(map(&mut t, 21, USER_MIN - 0x1000), INVALID, "below the user range");
    assert_eq!(t.invoke(21, Invocation::FrameMap, &[slot::VSPACE, USER_MIN, 0]), 0);
    let tr = translate(&mut t.k.store, ROOT_VSPACE, USER_MIN).unwrap();
    assert!(!tr.writable, "asked for neither write nor execute: read-only");
    assert_eq!(map(&mut t, 22, USER_MAP_END), INVALID, "past the last mappable page");
    assert_eq!(map(&mut t, 23, USER_MAP_END - 0x1000), 0, "the last mappable page");
    assert!(translate(&mut t.k.store, ROOT_VSPACE, USER_MAP_END - 0x1000).unwrap().writable);
}

#[test]
fn a_mapping_needs_the_rights_it_asks_for_and_read() {
    let mut t = Testbed::new();
    assert_eq!(t.retype(ObjectType::Frame, 0, 20, 1), 0);
    let copy = |t: &mut Testbed, dst, rights: Rights| {
        t.invoke(slot::CNODE, Invocation::CNodeCopy, &[20, dst, rights.bits().into()])
    };
    let rights = |r: &[Rights]| r.iter().fold(Rights::NONE, |a, b| a.union(*b));
    assert_eq!(copy(&mut t, 21, rights(&[Rights::READ, Rights::WRITE])), 0);
    assert_eq!(copy(&mut t, 22, rights(&[Rights::WRITE, Rights::EXECUTE])), 0);
    assert_eq!(copy(&mut t, 23, rights(&[Rights::READ, Rights::EXECUTE])), 0);
    let map_as = |t: &mut Testbed, frame, vaddr, want| {
        t.invoke(frame, Invocation::FrameMap, &[slot::VSPACE, vaddr, want])
    };
    let denied = Error::InsufficientRights as u64;
    assert_eq!(map_as(&mut t, 21, 0x80_0000, map::EXECUTE), denied, "execute without EXECUTE");
    assert_eq!(map_as(&mut t, 22, 0x80_0000, 0), denied, "no READ");
    assert_eq!(map_as(&mut t, 23, 0x80_0000, map::WRITE), denied, "write without WRITE");
    assert_eq!(map_as(&mut t, 23, 0x80_0000, map::EXECUTE), 0);
    assert_eq!(map_as(&mut t, 21, 0x80_1000, map::WRITE), 0);
}

/// The last-level entry mapping `vaddr` in the VSpace at `root` (4 KiB pages).
fn leaf_entry(t: &mut Testbed, root: u64, vaddr: u64) -> u64 {
    let mut table = root;
    for level in [3u32, 2, 1] {
        let e = crate::paging::entry(
            &mut t.k.store,
            table,
            ((vaddr >> (12 + 9 * level)) & 511) as usize,
        );
        table = e & crate::paging::ADDR_MASK;
    }
    crate::paging::entry(&mut t.k.store, table, ((vaddr >> 12) & 511) as usize)
}

#[test]
fn only_an_executable_mapping_lacks_no_execute() {
    use crate::paging::NO_EXECUTE;
    let mut t = Testbed::new();
    assert_eq!(t.retype(ObjectType::Frame, 0, 21, 2), 0);
    assert_eq!(t.invoke(21, Invocation::FrameMap, &[slot::VSPACE, 0x80_0000, map::WRITE]), 0);
    assert_eq!(t.invoke(22, Invocation::FrameMap, &[slot::VSPACE, 0x80_1000, map::EXECUTE]), 0);
    assert_ne!(leaf_entry(&mut t, ROOT_VSPACE, 0x80_0000) & NO_EXECUTE, 0, "data is not code");
    assert_eq!(leaf_entry(&mut t, ROOT_VSPACE, 0x80_1000) & NO_EXECUTE, 0);
}

#[test]
fn a_guest_mapping_needs_the_rights_it_asks_for_and_grants_exactly_those() {
    use crate::vmx::ept::Access;
    let mut t = Testbed::with_vmx();
    assert_eq!(t.retype(ObjectType::GuestSpace, 14, 19, 1), 0);
    let Cap::GuestSpace { addr: root, .. } = t.cap(19) else { panic!() };
    assert_eq!(t.retype(ObjectType::Frame, 0, 20, 1), 0);
    let copy = |t: &mut Testbed, dst, r: &[Rights]| {
        let rights = r.iter().fold(Rights::NONE, |a, b| a.union(*b));
        t.invoke(slot::CNODE, Invocation::CNodeCopy, &[20, dst, rights.bits().into()])
    };
    assert_eq!(copy(&mut t, 21, &[Rights::READ, Rights::WRITE]), 0);
    assert_eq!(copy(&mut t, 22, &[Rights::WRITE, Rights::EXECUTE]), 0);
    assert_eq!(copy(&mut t, 23, &[Rights::READ, Rights::EXECUTE]), 0);
    let guest = |t: &mut Testbed, frame, gpa, want| {
        t.invoke(frame, Invocation::FrameMapGuest, &[19, gpa, want])
    };
    let denied = Error::InsufficientRights as u64;
    assert_eq!(guest(&mut t, 21, 0x1000, map::EXECUTE), denied, "execute without EXECUTE");
    assert_eq!(guest(&mut t, 22, 0x1000, 0), denied, "no READ");
    assert_eq!(guest(&mut t, 23, 0x1000, map::WRITE), denied, "write without WRITE");
    assert_eq!(guest(&mut t, 23, 0x1000, 1 << 7), INVALID, "an unknown bit");
    assert_eq!(guest(&mut t, 23, 0x1000, map::EXECUTE), 0);
    assert_eq!(guest(&mut t, 21, 0x2000, map::WRITE), 0);
    let ept = Ept::from_root(root, EptVpidCaps::from_raw(0));
    let access = |t: &mut Testbed, gpa| ept.translate(&mut t.k.store, gpa).map(|tr| tr.access);
    assert_eq!(access(&mut t, 0x1000), Some(Access { read: true, write: false, execute: true }));
    assert_eq!(access(&mut t, 0x2000), Some(Access { read: true, write: true, execute: false }));
}
