//! The root task. It builds the system the manifest describes (the console driver first,
//! then every other process, each with exactly its listed capabilities), checks the
//! kernel's ring-3 interface from the inside (syscalls, user-pointer validation, FPU
//! state, capabilities, devices), runs the benchmarks and the VMs the manifest lists,
//! starts the processes that wait for the VMs (the in-image syscall fuzzer) and checks
//! the fuzzer's report, and ends the run with the verdict.
#![cfg_attr(target_os = "none", no_std, no_main)]

use protocols::error::Error;
use protocols::syscall::{ShutdownStatus, Syscall, DEBUG_WRITE_MAX};
use rt::syscall::{debug_write, raw, shutdown};
use rt::testing::{expect_eq, Suite};
use system::System;

mod alloc;
mod bench;
mod caps;
mod console;
mod cross_cpu;
mod deferred_reply;
mod deletion;
mod devices;
mod fuzz;
mod grant;
mod host_rtc;
mod isolated;
mod long_message;
mod port_probe;
mod process;
mod system;
mod threads;
mod vms;

rt::entry!(start);

fn start(_: u64) -> u64 {
    rt::println!("init: hello from ring 3");
    let mut t = Suite::new();
    let mut a = alloc::Alloc::from_bootinfo();
    let manifest = a.as_mut().and_then(|a| system::load(&mut t, a));
    // Boot modules mapped so far, shared by the processes and the VMMs.
    let mut images = process::Images::default();
    let mut system =
        a.as_mut().zip(manifest.as_ref()).map(|(a, m)| System::build(&mut t, a, m, &mut images));
    let console = system.as_ref().and_then(System::console);
    t.check("ring3_cpl", expect_eq(current_cpl(), 3));
    t.check("debug_write", expect_eq(debug_write(b"init: debug_write works\n"), Ok(24)));
    t.check("debug_write_empty", expect_eq(debug_write(&[]), Ok(0)));
    t.check(
        "debug_write_kernel_pointer",
        expect_eq(write_raw(0xffff_ffff_8010_0000, 16), Err(Error::BadUserPointer)),
    );
    t.check(
        "debug_write_physmap_pointer",
        expect_eq(write_raw(0xffff_8000_0010_0000, 16), Err(Error::BadUserPointer)),
    );
    t.check("debug_write_unmapped", expect_eq(write_raw(0x1000, 8), Err(Error::BadUserPointer)));
    t.check("debug_write_wraps", expect_eq(write_raw(u64::MAX - 3, 8), Err(Error::BadUserPointer)));
    t.check(
        "debug_write_too_long",
        expect_eq(write_raw(0x40_0000, DEBUG_WRITE_MAX as u64 + 1), Err(Error::InvalidArgument)),
    );
    t.check("invalid_syscall", expect_eq(status(raw(999, 0, 0, 0).0), Err(Error::InvalidSyscall)));
    t.check(
        "shutdown_bad_status",
        expect_eq(status(raw(Syscall::Shutdown as u64, 7, 0, 0).0), Err(Error::InvalidArgument)),
    );
    t.check(
        "sse_state_survives_syscall",
        expect_eq(sse_round_trip(0x1234_5678_9abc_def0), 0x1234_5678_9abc_def0),
    );
    t.check(
        "registers_survive_syscall",
        expect_eq(
            registers_survive(),
            [
                0x1111, 0x2222, 0x3333, 0x4444, 0x8888, 0x9999, 0xaaaa, 0xcccc, 0xdddd, 0xeeee,
                0xffff,
            ],
        ),
    );
    match a {
        Some(mut a) => match caps::run(&mut t, &mut a) {
            Ok(fixture) => {
                if let Err(e) = devices::run(&mut t, &mut a, console.as_ref()) {
                    t.check("device_checks_ran", Err(e.name()));
                }
                if let Err(e) = bench::run(&mut a, fixture.iso_ep) {
                    t.check("benchmarks_ran", Err(e.name()));
                }
                if let Some(m) = &manifest {
                    if let Err(e) = vms::run(&mut t, &mut a, m, console.as_ref(), &mut images) {
                        t.check("virtual_machines_started", Err(e.name()));
                    }
                }
                if let Some(s) = &mut system {
                    s.start_after_vms(&mut t, &mut a);
                    if let Err(e) = fuzz::run(&mut t, &mut a, s) {
                        t.check("in_image_fuzzer_reported", Err(e.name()));
                    }
                }
            }
            Err(e) => t.check("capability_setup", Err(e.name())),
        },
        None => t.check("bootinfo_page", Err("malformed boot-information page")),
    }
    let verdict = t.finish();
    let _ = shutdown(verdict);
    // Only reached if the kernel refused the shutdown.
    if verdict == ShutdownStatus::Pass {
        0
    } else {
        1
    }
}

fn status(raw_status: u64) -> Result<(), Error> {
    match protocols::error::check(raw_status) {
        Ok(()) => Ok(()),
        Err(e) => Err(e.error().unwrap_or(Error::InvalidArgument)),
    }
}

fn write_raw(ptr: u64, len: u64) -> Result<(), Error> {
    status(raw(Syscall::DebugWrite as u64, ptr, len, 0).0)
}

fn current_cpl() -> u64 {
    let cs: u64;
    // SAFETY: reading CS has no side effects.
    unsafe { core::arch::asm!("mov {}, cs", out(reg) cs, options(nomem, nostack)) };
    cs & 3
}

/// Put `v` in xmm0, make a syscall, and read xmm0 back. This program is built
/// soft-float, so the compiler never touches xmm0 itself.
fn sse_round_trip(v: u64) -> u64 {
    let out: u64;
    // SAFETY: uses xmm0 (unused by soft-float code) and a Yield syscall, which only
    // clobbers rax, rdx, rcx and r11.
    unsafe {
        core::arch::asm!(
            "movq xmm0, {v}",
            "syscall",
            "movq {out}, xmm0",
            v = in(reg) v,
            out = lateout(reg) out,
            inlateout("rax") Syscall::Yield as u64 => _,
            lateout("rdx") _,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    out
}

/// Fill the registers the kernel must preserve (all but rax, rdx, rcx, r11), make a
/// syscall, and read them back.
fn registers_survive() -> [u64; 11] {
    let (b, s, d, p, a8, a9, a10, a12, a13, a14, a15): (
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
    );
    // SAFETY: every register set before the syscall is declared as an output; rbx and rbp
    // cannot be named as operands, so they are saved by hand and read back through rax
    // and rdx, which the syscall clobbers anyway.
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "mov rbx, 0x1111",
            "mov rbp, 0x2222",
            "syscall",
            "mov rax, rbx",
            "mov rdx, rbp",
            "pop rbp",
            "pop rbx",
            inlateout("rax") Syscall::Yield as u64 => b,
            lateout("rdx") p,
            inlateout("rsi") 0x3333u64 => s,
            inlateout("rdi") 0x4444u64 => d,
            inlateout("r8") 0x8888u64 => a8,
            inlateout("r9") 0x9999u64 => a9,
            inlateout("r10") 0xaaaau64 => a10,
            inlateout("r12") 0xccccu64 => a12,
            inlateout("r13") 0xddddu64 => a13,
            inlateout("r14") 0xeeeeu64 => a14,
            inlateout("r15") 0xffffu64 => a15,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    [b, p, s, d, a8, a9, a10, a12, a13, a14, a15]
}
