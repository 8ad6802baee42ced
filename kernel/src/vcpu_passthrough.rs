//! What a VMM lets its guest reach without exiting, granted through the kernel and never
//! by writing bitmap memory: I/O ports by `IoPorts` capability (`VCpuPassPorts`), and the
//! MSRs the kernel switches on every VM entry and exit (`VCpuSwitchMsr`).
//!
//! The I/O bitmaps start all ones (every port exits); passing a capability's range clears
//! exactly its bits, so a guest can only ever reach ports its VMM holds a capability for,
//! and never the PICs or the PIT, which are in no capability. The VCpu keeps a copy of
//! each capability it passes through, derived from the VMM's: when a copy goes (the
//! original revoked, the VCpu's slot deleted), the ports exit again before the guest next
//! runs.
//!
//! MSR switching uses the VMCS's MSR areas, which live in the VCpu object where the VMM
//! cannot reach them: the guest area serves as both the VM-entry MSR-load and the
//! VM-exit MSR-store area (what an exit saves is what the next entry loads), and the host
//! area is the VM-exit MSR-load area, holding the kernel's own values (its SYSCALL entry
//! point among them), so the kernel runs on its own values the moment a guest exits.
//! Entry `i` of both areas names the same MSR. Only a short list of MSRs qualifies
//! ([`vm::SWITCHABLE_MSRS`]): state the VMCS does not hold and that a guest must own while
//! it runs. Once an MSR is switched its value is live in the CPU while the guest runs, so
//! the MSR bitmap lets the guest read and write it directly.

use crate::cap::Cap;
use crate::cnode;
use crate::state::{Done, Kernel};
use crate::store::{vcpu_pass_slot, Store, VCPU_PASS_SLOTS};
use crate::vcpu::{IO_BITMAP_OFFSET, MSR_BITMAP_OFFSET};
use crate::vmx::vmcs_setup::MsrAreas;
use protocols::error::Error;
use protocols::object::vm::SWITCHABLE_MSRS;
use protocols::rights::Rights;

/// Offset of the guest MSR area in a VCpu object (VM-entry MSR-load, VM-exit MSR-store):
/// the first half of the object's last page.
pub const GUEST_MSR_AREA_OFFSET: u64 = 0x7000;
/// Offset of the host MSR area (VM-exit MSR-load): the second half of the same page.
pub const HOST_MSR_AREA_OFFSET: u64 = 0x7800;
/// Where the host area starts within that page.
const HOST_AREA_IN_PAGE: usize = (HOST_MSR_AREA_OFFSET - GUEST_MSR_AREA_OFFSET) as usize;
/// Bytes per MSR-area entry: index (32 bits), reserved (32 bits), value (64 bits).
const ENTRY_BYTES: usize = 16;
/// Offsets in the MSR bitmap page of the read and write bitmaps for MSRs
/// 0xc000_0000..=0xc000_1fff (SDM 25.6.9).
const MSR_READ_HIGH: usize = 0x400;
const MSR_WRITE_HIGH: usize = 0xc00;
const MSR_HIGH_BASE: u32 = 0xc000_0000;

const IA32_LSTAR: u32 = 0xc000_0082;
const IA32_CSTAR: u32 = 0xc000_0083;
const IA32_FMASK: u32 = 0xc000_0084;
const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
const IA32_TSC_AUX: u32 = 0xc000_0103;

/// The host's values of [`SWITCHABLE_MSRS`], read once at boot (the kernel never changes
/// them afterwards), and which of them this CPU has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostMsrs {
    /// `values[i]`: the host's value of `SWITCHABLE_MSRS[i]`.
    pub values: [u64; SWITCHABLE_MSRS.len()],
    /// Bit `i`: the CPU has `SWITCHABLE_MSRS[i]` (IA32_TSC_AUX needs RDTSCP or RDPID).
    pub present: u8,
}

const fn canonical(addr: u64) -> bool {
    let top = addr >> 47;
    top == 0 || top == 0x1_ffff
}

/// Whether WRMSR would accept `value` for `index`, so loading it on VM entry cannot fail:
/// addresses must be canonical, and IA32_FMASK and IA32_TSC_AUX have 32 bits.
pub const fn msr_value_ok(index: u32, value: u64) -> bool {
    match index {
        IA32_LSTAR | IA32_CSTAR | IA32_KERNEL_GS_BASE => canonical(value),
        IA32_FMASK | IA32_TSC_AUX => value >> 32 == 0,
        _ => true,
    }
}

/// Clear (`on = false`) or set the bits of `first..=last` in a bitmap (bit `n` is bit
/// `n % 8` of byte `n / 8`); bits past its end are ignored.
pub fn set_bits(bitmap: &mut [u8], first: usize, last: usize, on: bool) {
    for n in first..=last {
        if let Some(byte) = bitmap.get_mut(n / 8) {
            if on {
                *byte |= 1u8 << (n % 8);
            } else {
                *byte &= !(1u8 << (n % 8));
            }
        }
    }
}

fn entry(index: u32, value: u64) -> [u8; ENTRY_BYTES] {
    let mut e = [0u8; ENTRY_BYTES];
    e[..4].copy_from_slice(&index.to_le_bytes());
    e[8..].copy_from_slice(&value.to_le_bytes());
    e
}

fn entry_index(area: &[u8], i: usize) -> Option<u32> {
    let e = area.get(i * ENTRY_BYTES..i * ENTRY_BYTES + 4)?;
    Some(u32::from_le_bytes([e[0], e[1], e[2], e[3]]))
}

fn put_entry(area: &mut [u8], i: usize, index: u32, value: u64) {
    if let Some(e) = area.get_mut(i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES) {
        e.copy_from_slice(&entry(index, value));
    }
}

impl<S: Store> Kernel<S> {
    /// `VCpuPassPorts`: the guest of VCpu `v` reaches the ports of the `IoPorts`
    /// capability in slot `ports` without exiting, for as long as the copy of it the VCpu
    /// keeps lives (revoking the original withdraws it). `InUse` when every pass-through
    /// slot is taken.
    pub(crate) fn vcpu_pass_ports(&mut self, v: u64, ports: u64) -> Result<Done, Error> {
        let (at, cap) = self.lookup(ports)?;
        let Cap::IoPorts { first, last } = cap else { return Err(Error::WrongType) };
        // Ranges withdrawn meanwhile first give their slots back.
        self.refresh_pass_through(v);
        let free = (0..VCPU_PASS_SLOTS).find(|i| self.store.vcpu(v).passed[*i].is_none());
        let i = free.ok_or(Error::InUse)?;
        let copy = cap.derive(Rights::ALL).map_err(|_| Error::InvalidCapability)?;
        cnode::insert_child(&mut self.store, at, vcpu_pass_slot(v, i), copy)
            .map_err(|_| Error::InvalidArgument)?;
        self.store.vcpu(v).passed[i] = Some((first, last));
        self.set_port_exits(v, first, last, false);
        Ok(Done::Value(0))
    }

    /// Make the guest's accesses to `first..=last` exit (`exit`) or not.
    fn set_port_exits(&mut self, v: u64, first: u16, last: u16, exit: bool) {
        // Bitmap A covers ports 0x0000-0x7fff, bitmap B (the next page) 0x8000-0xffff.
        let (first, last) = (usize::from(first), usize::from(last));
        let half = 0x8000;
        if first < half {
            let a = self.store.frame(v + IO_BITMAP_OFFSET);
            set_bits(a, first, last.min(half - 1), exit);
        }
        if last >= half {
            let b = self.store.frame(v + IO_BITMAP_OFFSET + 0x1000);
            set_bits(b, first.max(half) - half, last - half, exit);
        }
    }

    /// Before VCpu `v` runs: if any `IoPorts` capability was deleted since its last
    /// check, ports whose pass-through copy is gone exit again (and the ranges still held
    /// are cleared again, in case they overlap a withdrawn one). Cheap when nothing was
    /// deleted: one comparison.
    #[inline]
    pub fn refresh_pass_through(&mut self, v: u64) {
        // Checked before every entry; an `IoPorts` capability is rarely deleted.
        if self.store.vcpu(v).pass_generation != self.io_ports_generation {
            self.withdraw_pass_through(v);
        }
    }

    #[inline(never)]
    fn withdraw_pass_through(&mut self, v: u64) {
        let generation = self.io_ports_generation;
        self.store.vcpu(v).pass_generation = generation;
        let mut withdrawn = false;
        for i in 0..VCPU_PASS_SLOTS {
            let Some((first, last)) = self.store.vcpu(v).passed[i] else { continue };
            if !matches!(self.store.slot(vcpu_pass_slot(v, i)).cap, Cap::IoPorts { .. }) {
                self.store.vcpu(v).passed[i] = None;
                self.set_port_exits(v, first, last, true);
                withdrawn = true;
            }
        }
        if withdrawn {
            for (first, last) in self.store.vcpu(v).passed.into_iter().flatten() {
                self.set_port_exits(v, first, last, false);
            }
        }
    }

    /// `VCpuSwitchMsr`: switch MSR `index` of VCpu `v` on entry and exit, with the guest
    /// value `value` from the next entry on.
    pub(crate) fn vcpu_switch_msr(
        &mut self,
        v: u64,
        index: u64,
        value: u64,
    ) -> Result<Done, Error> {
        let vmx = self.vmx.ok_or(Error::NotSupported)?;
        let index = u32::try_from(index).map_err(|_| Error::NotSupported)?;
        let which = SWITCHABLE_MSRS.iter().position(|&m| m == index).ok_or(Error::NotSupported)?;
        if vmx.host_msrs.present & (1 << which) == 0 {
            return Err(Error::NotSupported);
        }
        if !msr_value_ok(index, value) {
            return Err(Error::InvalidArgument);
        }
        let host = vmx.host_msrs.values.get(which).copied().unwrap_or(0);
        let count = usize::from(self.store.vcpu(v).msr_count);
        let (guest, host_area) =
            self.store.frame(v + GUEST_MSR_AREA_OFFSET).split_at_mut(HOST_AREA_IN_PAGE);
        if let Some(i) = (0..count).find(|&i| entry_index(guest, i) == Some(index)) {
            put_entry(guest, i, index, value);
            return Ok(Done::Value(0));
        }
        // Every index is listed once and the list is short, so there is always room.
        put_entry(guest, count, index, value);
        put_entry(host_area, count, index, host);
        let bit = (index - MSR_HIGH_BASE) as usize;
        let bitmap = self.store.frame(v + MSR_BITMAP_OFFSET);
        set_bits(
            bitmap.get_mut(MSR_READ_HIGH..MSR_WRITE_HIGH).unwrap_or_default(),
            bit,
            bit,
            false,
        );
        set_bits(bitmap.get_mut(MSR_WRITE_HIGH..).unwrap_or_default(), bit, bit, false);
        let data = self.store.vcpu(v);
        data.msr_count += 1;
        data.msr_areas_changed = true;
        Ok(Done::Value(0))
    }

    /// The MSR areas of VCpu `v` as its VMCS names them: the guest area is loaded on
    /// entry and stored on exit, the host area loaded on exit.
    pub(crate) fn msr_areas(&mut self, v: u64) -> MsrAreas {
        let count = self.store.vcpu(v).msr_count.into();
        let (guest, host) = (v + GUEST_MSR_AREA_OFFSET, v + HOST_MSR_AREA_OFFSET);
        MsrAreas {
            exit_store: guest,
            exit_store_count: count,
            exit_load: host,
            exit_load_count: count,
            entry_load: guest,
            entry_load_count: count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{msr_value_ok, set_bits};

    #[test]
    fn clearing_a_range_touches_exactly_its_bits() {
        let mut map = [0xffu8; 4];
        set_bits(&mut map, 3, 9, false);
        assert_eq!(map, [0b0000_0111, 0b1111_1100, 0xff, 0xff]);
        set_bits(&mut map, 31, 40, false);
        assert_eq!(map[3], 0x7f, "bits past the end are ignored");
        let mut one = [0xffu8; 2];
        set_bits(&mut one, 8, 8, false);
        assert_eq!(one, [0xff, 0xfe]);
        set_bits(&mut map, 4, 8, true);
        assert_eq!(map[..2], [0b1111_0111, 0b1111_1101], "setting puts exactly its bits back");
    }

    #[test]
    fn msr_values_are_those_wrmsr_accepts() {
        assert!(msr_value_ok(0xc000_0082, 0xffff_ffff_8000_1000));
        assert!(!msr_value_ok(0xc000_0082, 0x8000_0000_0000_0000));
        assert!(!msr_value_ok(0xc000_0102, 1 << 47));
        assert!(msr_value_ok(0xc000_0084, 0x4700));
        assert!(!msr_value_ok(0xc000_0084, 1 << 32));
        assert!(!msr_value_ok(0xc000_0103, 1 << 40));
        assert!(msr_value_ok(0xc000_0081, u64::MAX), "STAR takes any value");
    }
}
