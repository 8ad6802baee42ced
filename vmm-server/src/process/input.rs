//! Console input for the VM that owns it, on a thread of its own.
//!
//! The serving thread waits on the exit endpoint only, so the input thread turns input
//! into a message there: it waits on the notification the console driver signals, fetches
//! the bytes with `READ_INPUT` calls through the badged console endpoint (whose badge
//! carries the input right), and sends each batch to the exit endpoint with
//! `vmm::INPUT_LABEL`, one way. The driver never waits for this thread, and the serving
//! thread never waits for it either: it takes the message whenever it next receives.
//!
//! The thread touches neither the VM nor the vCPU state page; everything it shares with
//! the serving thread goes through the exit endpoint.

use protocols::console;
use protocols::error::Error;
use protocols::ipc::MsgInfo;
use protocols::object::{map, Invocation, ObjectType};
use protocols::vmm::{slot, INPUT_LABEL};
use rt::ipc::{call, invoke, nb_recv, recv, retype, send, Msg};

/// Where the input thread's stack page is mapped.
const STACK_VA: u64 = 0x1802_0000;

/// The slots this module fills, after the VM's own objects.
pub struct Slots {
    /// The input thread's TCB.
    pub tcb: u64,
    /// Its stack frame.
    pub stack: u64,
    /// The Reply object a halted vCPU's reply waits in until input wakes it.
    pub parked: u64,
}

/// The slots after the VM's own objects.
pub const SLOTS: Slots = Slots {
    tcb: super::GUEST_SPACE + 4,
    stack: super::GUEST_SPACE + 5,
    parked: super::GUEST_SPACE + 6,
};

/// The exit endpoint the input thread sends to (set before it starts).
static EXIT_EP: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// If this VM owns the console input (its `slot::CONSOLE_INPUT` holds a notification),
/// make the Reply object for a parked vCPU and start the input thread at `priority` (or
/// the highest below it the kernel allows), sending to `exit_ep`. `Ok(false)`: no input.
pub fn start(s: &Slots, exit_ep: u64, priority: u64) -> Result<bool, Error> {
    match nb_recv(slot::CONSOLE_INPUT) {
        Ok(_) => {}
        Err(Error::InvalidCapability) => return Ok(false),
        Err(e) => return Err(e),
    }
    EXIT_EP.store(exit_ep, core::sync::atomic::Ordering::Relaxed);
    retype(slot::UNTYPED, ObjectType::Reply, 0, s.parked, 1)?;
    retype(slot::UNTYPED, ObjectType::Tcb, 0, s.tcb, 1)?;
    retype(slot::UNTYPED, ObjectType::Frame, 0, s.stack, 1)?;
    invoke(s.stack, Invocation::FrameMap, &[slot::VSPACE, STACK_VA, map::WRITE])?;
    invoke(s.tcb, Invocation::TcbConfigure, &[slot::CNODE, slot::VSPACE, u64::MAX])?;
    // A call-aligned stack: 16-byte aligned minus the return-address slot.
    let rsp = STACK_VA + 4096 - 8;
    invoke(s.tcb, Invocation::TcbWriteRegisters, &[input_thread as *const () as u64, rsp, 0])?;
    let _ = (0..=priority).rev().find(|p| invoke(s.tcb, Invocation::TcbSetPriority, &[*p]).is_ok());
    invoke(s.tcb, Invocation::TcbResume, &[])?;
    Ok(true)
}

/// The input thread: wait, fetch until the driver has nothing more, forward.
extern "C" fn input_thread(_: u64) -> ! {
    let exit_ep = EXIT_EP.load(core::sync::atomic::Ordering::Relaxed);
    loop {
        // Fetch first: bytes may have come before this thread started waiting.
        while let Some(chunk) = fetch() {
            if let Some((info, words)) = console::bytes_message(INPUT_LABEL, chunk.as_bytes()) {
                let _ = send(exit_ep, &Msg { info, words });
            }
        }
        if recv(slot::CONSOLE_INPUT).is_err() {
            rt::syscall::thread_exit(1);
        }
    }
}

/// The next bytes the console driver holds; `None` when it holds none (or refuses).
fn fetch() -> Option<console::Chunk> {
    let r = call(slot::CONSOLE, &Msg::new(console::READ_INPUT, &[])).ok()?;
    let chunk = console::decode_bytes(console::INPUT, r.msg.info, r.msg.words)?;
    (!chunk.as_bytes().is_empty()).then_some(chunk)
}

/// The bytes of an input message received on the exit endpoint, if `info` is one.
pub fn decode(info: MsgInfo, words: [u64; protocols::ipc::MSG_REGS]) -> Option<console::Chunk> {
    console::decode_bytes(INPUT_LABEL, info, words)
}
