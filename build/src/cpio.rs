//! Writing a cpio archive in the "newc" format (magic `070701`), the one the Linux
//! kernel unpacks as its initramfs. Written here rather than by running `cpio`, so the
//! archive is exactly what the code says (owner root, fixed times, device nodes without
//! privileges) and the same bytes come out on every host.
//!
//! Each entry is a 110-byte ASCII header (the magic, then thirteen 8-digit hex fields),
//! the path with its NUL, padding to 4 bytes, the data, padding to 4 bytes; the archive
//! ends with an entry named `TRAILER!!!`.

/// Regular file.
const S_IFREG: u32 = 0o100_000;
/// Directory.
const S_IFDIR: u32 = 0o040_000;
/// Symbolic link.
const S_IFLNK: u32 = 0o120_000;
/// Character device.
const S_IFCHR: u32 = 0o020_000;
/// The magic of a newc header without checksums.
const MAGIC: &[u8; 6] = b"070701";
/// The last entry's name.
const TRAILER: &str = "TRAILER!!!";

/// A newc archive being written.
#[derive(Debug, Default)]
pub struct Newc {
    out: Vec<u8>,
    next_ino: u32,
}

/// One header's fields besides the name's length.
struct Header {
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
}

impl Newc {
    /// An empty archive.
    pub fn new() -> Self {
        Self { out: Vec::new(), next_ino: 1 }
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn entry(&mut self, path: &str, h: Header, data: &[u8]) {
        let ino = if path == TRAILER { 0 } else { self.next_ino };
        self.next_ino += 1;
        // ino, mode, uid, gid, nlink, mtime, filesize, dev major/minor, rdev major/minor,
        // namesize (with the NUL), check.
        let fields = [
            ino,
            h.mode,
            0,
            0,
            h.nlink,
            0,
            h.size,
            0,
            0,
            h.rdev.0,
            h.rdev.1,
            path.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(MAGIC);
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(path.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    /// A directory (`path` without a leading `/`, as the kernel expects).
    pub fn dir(&mut self, path: &str, perm: u32) {
        self.entry(path, Header { mode: S_IFDIR | perm, nlink: 2, size: 0, rdev: (0, 0) }, &[]);
    }

    /// A regular file; `None` when it is 4 GiB or larger (newc sizes are 32-bit).
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Option<()> {
        let size = u32::try_from(data.len()).ok()?;
        self.entry(path, Header { mode: S_IFREG | perm, nlink: 1, size, rdev: (0, 0) }, data);
        Some(())
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) {
        let size = target.len() as u32;
        let h = Header { mode: S_IFLNK | 0o777, nlink: 1, size, rdev: (0, 0) };
        self.entry(path, h, target.as_bytes());
    }

    /// A character device node.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        let h = Header { mode: S_IFCHR | perm, nlink: 1, size: 0, rdev: (major, minor) };
        self.entry(path, h, &[]);
    }

    /// End the archive with its trailer and return the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(TRAILER, Header { mode: 0, nlink: 1, size: 0, rdev: (0, 0) }, &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::Newc;

    /// Parse an archive back: (name, mode, size, rdev major, rdev minor, data).
    fn entries(mut b: &[u8]) -> Vec<(String, u32, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let start = b.as_ptr() as usize;
        let offset = |b: &[u8]| b.as_ptr() as usize - start;
        loop {
            assert_eq!(offset(b) % 4, 0, "every header starts 4-aligned");
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, major, minor, namesize) =
                (field(1), field(6), field(9), field(10), field(11) as usize);
            let name = std::str::from_utf8(&b[110..110 + namesize - 1]).unwrap().to_string();
            assert_eq!(b[110 + namesize - 1], 0, "the name ends with NUL");
            let data_at = (110 + namesize).next_multiple_of(4);
            let data = b[data_at..data_at + size as usize].to_vec();
            b = &b[(data_at + size as usize).next_multiple_of(4)..];
            let done = name == "TRAILER!!!";
            out.push((name, mode, size, major, minor, data));
            if done {
                assert!(b.is_empty(), "nothing after the trailer");
                return out;
            }
        }
    }

    #[test]
    fn an_archive_reads_back_entry_by_entry() {
        let mut a = Newc::new();
        a.dir("bin", 0o755);
        a.file("bin/busybox", 0o755, b"\x7fELF...").unwrap();
        a.symlink("bin/sh", "busybox");
        a.char_dev("dev/console", 0o600, 5, 1);
        a.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        let bytes = a.finish();
        assert_eq!(bytes.len() % 4, 0);
        let e = entries(&bytes);
        let names: Vec<_> = e.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["bin", "bin/busybox", "bin/sh", "dev/console", "init", "TRAILER!!!"]);
        assert_eq!(e[0].1, 0o040_755);
        assert_eq!((e[1].1, e[1].2, e[1].5.as_slice()), (0o100_755, 7, &b"\x7fELF..."[..]));
        assert_eq!((e[2].1, e[2].5.as_slice()), (0o120_777, &b"busybox"[..]));
        assert_eq!((e[3].1, e[3].3, e[3].4), (0o020_600, 5, 1));
        assert_eq!((e[5].1, e[5].2), (0, 0));
    }

    #[test]
    fn the_first_header_is_byte_exact() {
        let mut a = Newc::new();
        a.file("a", 0o644, b"xyz").unwrap();
        let bytes = a.finish();
        let want = "070701\
                    00000001000081a4000000000000000000000001000000000000000300000000\
                    0000000000000000000000000000000200000000a\0xyz\0";
        assert_eq!(&bytes[..want.len()], want.as_bytes());
        assert!(bytes.ends_with(b"TRAILER!!!\0\0\0\0"));
    }
}
