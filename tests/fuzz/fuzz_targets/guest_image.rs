//! Fuzzes `vmm_server::guest_image`, which reads the guest's boot image (an ELF64 file
//! from outside) and copies its segments into guest RAM.
//!
//! Input: a little-endian `u32` whose low 21 bits are the guest RAM size (up to 2 MiB),
//! then the image bytes. Invariants on every accepted image: at most `MAX_SEGMENTS`
//! segments; each segment's file bytes inside the input and no more than its memory size;
//! each segment inside guest RAM without wrapping. Loading an accepted image never fails,
//! and afterwards RAM is exactly what a plain model of loading gives: each segment in
//! order writes its file bytes and then zeros up to its memory size (a later segment may
//! overwrite an earlier one), and RAM outside every segment is untouched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_server::guest_image::{load, parse, Segment, MAX_SEGMENTS};

/// What loading `segments` must leave in RAM of `len` bytes that held `UNTOUCHED`: each
/// segment in order writes its file bytes, then zeros up to its memory size.
fn model(segments: &[Segment], image: &[u8], len: usize) -> Vec<u8> {
    let mut ram = vec![UNTOUCHED; len];
    for s in segments {
        let (at, file_end) = (s.gpa as usize, s.gpa as usize + s.file_len);
        ram[at..file_end].copy_from_slice(&image[s.file_offset..s.file_offset + s.file_len]);
        ram[file_end..at + s.mem_len as usize].fill(0);
    }
    ram
}

const UNTOUCHED: u8 = 0xa5;

fuzz_target!(|data: &[u8]| {
    let Some((size, image)) = data.split_first_chunk::<4>() else { return };
    let ram_bytes = u64::from(u32::from_le_bytes(*size) & 0x1f_ffff);
    let Ok(parsed) = parse(image, ram_bytes) else { return };
    let segments = &parsed.segments;
    assert!(segments.len() <= MAX_SEGMENTS);
    for (i, s) in segments.iter().enumerate() {
        let file_end = s.file_offset.checked_add(s.file_len).expect("file range wraps");
        assert!(file_end <= image.len(), "segment {i}'s file bytes end past the input");
        assert!(s.file_len as u64 <= s.mem_len, "segment {i} has more file than memory");
        let end = s.gpa.checked_add(s.mem_len).expect("segment end wraps");
        assert!(end <= ram_bytes, "segment {i} ends at {end:#x}, RAM is {ram_bytes:#x}");
    }
    // RAM above the highest segment is never written: only that much is checked.
    let used = segments.iter().map(|s| s.gpa + s.mem_len).max().unwrap_or(0) as usize;
    let mut ram = vec![UNTOUCHED; used];
    load(&parsed, image, &mut ram).expect("an accepted image loads");
    let want = model(segments, image, used);
    if ram != want {
        let gpa = (0..used).find(|&i| ram[i] != want[i]).unwrap_or(0);
        panic!("guest-physical {gpa:#x} holds {:#x}, not {:#x}", ram[gpa], want[gpa]);
    }
});
