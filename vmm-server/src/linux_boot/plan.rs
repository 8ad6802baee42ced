//! Deciding where a Linux guest's pieces go, then writing them. [`plan`] checks the
//! kernel, the command line and the initramfs against the VM's RAM and returns a
//! [`LoadPlan`]: addresses, the e820 map and the register state at the 64-bit entry, all
//! small values the VMM can print or pass on. [`LoadPlan::write`] then copies everything
//! into guest memory through [`GuestMemory`], so the VMM's own part is: parse, plan,
//! write, start the vCPU with [`Entry`].
//!
//! The kernel goes at its preferred address (aligned as it asks, never below 1 MiB) with
//! `init_size` bytes of RAM after it: a relocatable kernel decompresses to the higher of
//! its load address and its preferred one, so loading lower would save nothing. The
//! initramfs goes as high as RAM and `initrd_addr_max` allow, page-aligned, above the
//! kernel's `init_size`, as other boot loaders place it.

use super::boot_params::{self, Placement};
use super::bzimage::LinuxImage;
use super::e820::{self, E820Entry};
use super::layout::{
    CMDLINE, CMDLINE_ROOM, GDT, INITRD_ALIGN, KERNEL_MIN, PAGE_TABLES, STACK_TOP, ZERO_PAGE,
};
use super::page_tables::{self, BOOT_CS, BOOT_DS, GDT_SIZE, PAGE, TABLE_PAGES};
use super::LinuxBootError;
use crate::guest_memory::GuestMemory;

/// The 64-bit entry point's offset from the protected-mode kernel's load address.
const ENTRY_64: u64 = 0x200;

/// The vCPU's state at the 64-bit entry. Besides these: long mode with paging (CR0.PE
/// and PG, CR4.PAE, EFER.LME and LMA), interrupts disabled, DS/ES/SS = [`Entry::ds`],
/// every other general register 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// RIP: the protected-mode kernel's load address + 0x200.
    pub rip: u64,
    /// RSI: `boot_params`.
    pub rsi: u64,
    /// RSP.
    pub rsp: u64,
    /// CR3: the identity map's PML4.
    pub cr3: u64,
    /// GDTR base.
    pub gdt_base: u64,
    /// GDTR limit.
    pub gdt_limit: u16,
    /// CS: flat 64-bit code (`__BOOT_CS`).
    pub cs: u16,
    /// DS, ES, SS: flat data (`__BOOT_DS`).
    pub ds: u16,
}

/// Where each piece of a Linux guest goes, and how it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    /// Guest-physical address of the protected-mode kernel.
    pub kernel: u64,
    /// Its length.
    pub kernel_len: u64,
    /// The end of the RAM the kernel needs (`kernel + init_size`).
    pub kernel_end: u64,
    /// Guest-physical address of the initramfs (0 without one).
    pub initrd: u64,
    /// Its length (0 without one).
    pub initrd_len: u64,
    /// Guest-physical address of the command line (NUL-terminated there).
    pub cmdline: u64,
    /// Its length, without the NUL.
    pub cmdline_len: u64,
    /// Guest-physical address of `boot_params`.
    pub boot_params: u64,
    /// Guest-physical address of the page tables ([`TABLE_PAGES`] pages).
    pub page_tables: u64,
    /// The e820 map `boot_params` gives.
    pub e820: [E820Entry; 3],
    /// The vCPU's state at entry.
    pub entry: Entry,
    /// The RSDP of the ACPI tables the VMM wrote, for `boot_params` (0: none).
    pub acpi_rsdp: u64,
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    let mask = align.checked_sub(1)?;
    Some(value.checked_add(mask)? & !mask)
}

/// Plan a guest of `ram_bytes` of RAM (from guest-physical 0) booting `image` with
/// `cmdline` and an initramfs of `initrd_len` bytes (0 for none).
pub fn plan(
    image: &LinuxImage<'_>,
    ram_bytes: u64,
    cmdline: &[u8],
    initrd_len: u64,
) -> Result<LoadPlan, LinuxBootError> {
    let e820 = e820::map(ram_bytes).ok_or(LinuxBootError::RamTooSmall(ram_bytes))?;
    if cmdline.contains(&0) {
        return Err(LinuxBootError::CmdlineHasNul);
    }
    let cmdline_len = cmdline.len() as u64;
    let max = u64::from(image.cmdline_size).min(CMDLINE_ROOM.saturating_sub(1));
    if cmdline_len > max {
        return Err(LinuxBootError::CmdlineTooLong { len: cmdline_len, max });
    }
    let past_ram = |end| LinuxBootError::KernelPastRam { end, ram: ram_bytes };
    let kernel = align_up(image.pref_address.max(KERNEL_MIN), u64::from(image.kernel_alignment))
        .ok_or(past_ram(u64::MAX))?;
    let kernel_end = kernel.checked_add(u64::from(image.init_size)).ok_or(past_ram(u64::MAX))?;
    if kernel_end > ram_bytes {
        return Err(past_ram(kernel_end));
    }
    let initrd = place_initrd(image, ram_bytes, kernel_end, initrd_len)?;
    let entry = Entry {
        rip: kernel.checked_add(ENTRY_64).ok_or(past_ram(u64::MAX))?,
        rsi: ZERO_PAGE,
        rsp: STACK_TOP,
        cr3: PAGE_TABLES,
        gdt_base: GDT,
        gdt_limit: (GDT_SIZE as u16).saturating_sub(1),
        cs: BOOT_CS,
        ds: BOOT_DS,
    };
    Ok(LoadPlan {
        kernel,
        kernel_len: image.kernel().len() as u64,
        kernel_end,
        initrd,
        initrd_len,
        cmdline: CMDLINE,
        cmdline_len,
        boot_params: ZERO_PAGE,
        page_tables: PAGE_TABLES,
        e820,
        entry,
        acpi_rsdp: 0,
    })
}

/// The initramfs's address: as high as RAM and `initrd_addr_max` allow, above
/// `kernel_end`.
fn place_initrd(
    image: &LinuxImage<'_>,
    ram_bytes: u64,
    kernel_end: u64,
    len: u64,
) -> Result<u64, LinuxBootError> {
    if len > ram_bytes {
        return Err(LinuxBootError::InitrdLargerThanRam { len, ram: ram_bytes });
    }
    if len == 0 {
        return Ok(0);
    }
    // `initrd_addr_max` is the highest address its last byte may have.
    let top = ram_bytes.min(u64::from(image.initrd_addr_max).saturating_add(1));
    let room = top.saturating_sub(kernel_end);
    let start = top.checked_sub(len).map(|s| s & !(INITRD_ALIGN - 1));
    match start {
        Some(start) if start >= kernel_end => Ok(start),
        _ => Err(LinuxBootError::InitrdDoesNotFit { len, room }),
    }
}

impl LoadPlan {
    /// The `boot_params` page this plan writes.
    pub fn zero_page(&self, image: &LinuxImage<'_>) -> [u8; boot_params::SIZE] {
        // Both are below 4 GiB by construction (`initrd_addr_max` is 32-bit; the
        // command line is in low memory).
        let placement = Placement {
            cmdline: u32::try_from(self.cmdline).unwrap_or(0),
            initrd: u32::try_from(self.initrd).unwrap_or(0),
            initrd_len: u32::try_from(self.initrd_len).unwrap_or(0),
            e820: &self.e820,
            acpi_rsdp: self.acpi_rsdp,
        };
        boot_params::build(image, &placement)
    }

    /// Write everything into guest memory: the GDT, the page tables, `boot_params`, the
    /// command line, the kernel and the initramfs. The bytes must be those planned for.
    pub fn write<M: GuestMemory + ?Sized>(
        &self,
        image: &LinuxImage<'_>,
        cmdline: &[u8],
        initrd: &[u8],
        mem: &mut M,
    ) -> Result<(), LinuxBootError> {
        let same = image.kernel().len() as u64 == self.kernel_len
            && cmdline.len() as u64 == self.cmdline_len
            && initrd.len() as u64 == self.initrd_len;
        if !same {
            return Err(LinuxBootError::PlanMismatch);
        }
        mem.write(self.entry.gdt_base, &page_tables::gdt())?;
        for (i, gpa) in (self.page_tables..).step_by(PAGE).take(TABLE_PAGES).enumerate() {
            let page = page_tables::table_page(self.page_tables, i)
                .ok_or(LinuxBootError::OutsideRam(gpa))?;
            mem.write(gpa, &page)?;
        }
        mem.write(self.boot_params, &self.zero_page(image))?;
        mem.write(self.cmdline, cmdline)?;
        let nul = self.cmdline.checked_add(self.cmdline_len).ok_or(LinuxBootError::PlanMismatch)?;
        mem.write(nul, &[0])?;
        mem.write(self.kernel, image.kernel())?;
        if !initrd.is_empty() {
            mem.write(self.initrd, initrd)?;
        }
        Ok(())
    }
}
