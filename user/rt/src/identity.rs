//! Who this program is, for its panic line: a process that learns its name after it
//! starts (a VMM reads its VM's from the description frame) says so once, and a panic
//! printed among several processes' output then names it (`vmm vm_guest64: panic: ...`).

use spin::Once;

static IDENTITY: Once<(&'static str, &'static str)> = Once::new();

/// From now on the panic line starts `KIND NAME: ` (only the first call counts).
pub fn set(kind: &'static str, name: &'static str) {
    IDENTITY.call_once(|| (kind, name));
}

/// The kind and name set, if any.
pub fn get() -> Option<(&'static str, &'static str)> {
    IDENTITY.get().copied()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_identity_stays() {
        assert_eq!(super::get(), None);
        super::set("vmm", "vm_guest64");
        super::set("vmm", "another");
        assert_eq!(super::get(), Some(("vmm", "vm_guest64")));
    }
}
