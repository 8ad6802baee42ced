//! Fuzzes `kernel::elf_loader::plan`, which decides what a boot module may map into a
//! user address space.
//!
//! Input: the image bytes, copied to an 8-byte-aligned buffer as the kernel's modules are.
//! Invariants on every accepted plan: 1..=MAX_SEGMENTS segments; each inside the user half
//! (at or above `USER_MIN`, ending at or below `USER_MAP_END`, no wrap-around); file bytes
//! inside the input and no more than the memory size; page ranges pairwise disjoint; no
//! segment writable and executable; the entry inside an executable segment; and every
//! per-page copy range the loader would use (`file_bytes_for_page`) inside the input and
//! inside its page. Planning is also deterministic across buffers.
#![no_main]

use fuzz::Aligned;
use kernel::elf_loader::{plan, Plan, MAX_SEGMENTS};
use libfuzzer_sys::fuzz_target;
use protocols::layout::{PAGE_SIZE, USER_MAP_END, USER_MIN};

fn check_plan(p: &Plan, input_len: usize) {
    let n = p.segments.len();
    assert!((1..=MAX_SEGMENTS).contains(&n), "{n} segments");
    let len = input_len as u64;
    for (i, s) in p.segments.iter().enumerate() {
        let end = s.vaddr.checked_add(s.mem_size).expect("segment end wraps");
        assert!(s.vaddr >= USER_MIN, "segment {i} at {:#x} below USER_MIN", s.vaddr);
        assert!(end <= USER_MAP_END, "segment {i} ends at {end:#x}, past the user half");
        assert!(s.mem_size > 0, "empty segment {i} planned");
        assert!(s.page_start() <= s.vaddr && s.page_end() >= end && s.page_end() <= USER_MAP_END);
        assert_eq!(s.page_start() % PAGE_SIZE, 0);
        assert_eq!(s.page_end() % PAGE_SIZE, 0);
        let file_end = s.file_offset.checked_add(s.file_size).expect("file range wraps");
        assert!(file_end <= len, "segment {i}'s file bytes end at {file_end}, input is {len}");
        assert!(s.file_size <= s.mem_size, "segment {i} has more file than memory bytes");
        assert!(!(s.writable && s.executable), "segment {i} is writable and executable");
        for (j, o) in p.segments.iter().enumerate().skip(i + 1) {
            let disjoint = s.page_end() <= o.page_start() || o.page_end() <= s.page_start();
            assert!(disjoint, "segments {i} and {j} share a page");
        }
        check_copies(s, i, input_len);
    }
    let entry_ok = p
        .segments
        .iter()
        .any(|s| s.executable && p.entry >= s.vaddr && p.entry - s.vaddr < s.mem_size);
    assert!(entry_ok, "entry {:#x} not in an executable segment", p.entry);
}

/// Walk the pages the loader copies file bytes into, as `load` does: every range must lie
/// inside the input and inside the page, and the ranges must add up to `file_size`.
/// Only pages holding file bytes are walked, so the loop is bounded by the input size.
fn check_copies(s: &kernel::elf_loader::Segment, i: usize, input_len: usize) {
    let file_end = s.vaddr + s.file_size;
    let mut page = s.page_start();
    let mut copied = 0u64;
    while page < s.page_end() && page < file_end {
        if let Some((at, range)) = s.file_bytes_for_page(page) {
            assert!(range.start <= range.end && range.end <= input_len, "segment {i}: {range:?}");
            assert!(at + range.len() <= PAGE_SIZE as usize, "segment {i}: copy leaves the page");
            copied += range.len() as u64;
        }
        page += PAGE_SIZE;
    }
    assert_eq!(copied, s.file_size, "segment {i}: per-page copies miss file bytes");
    // The first page past the file bytes (if still in the segment) copies nothing.
    if page < s.page_end() {
        assert_eq!(s.file_bytes_for_page(page), None, "segment {i}: copy past the file bytes");
    }
}

fuzz_target!(|data: &[u8]| {
    let image = Aligned::new(data);
    let bytes = image.bytes();
    assert_eq!(bytes.as_ptr() as usize % 8, 0, "the harness failed to align the image");
    let result = plan(bytes);
    if let Ok(p) = &result {
        check_plan(p, bytes.len());
    }
    // Same bytes at another (aligned) address: same answer.
    let again = Aligned::new(data);
    assert_eq!(plan(again.bytes()), result, "planning depends on where the image lies");
});
