//! Ring-3 check of long messages: words beyond the registers travel between the IPC
//! buffers of two threads, both ways, and a message to or from a thread without a buffer
//! arrives cut to the register words.

use crate::alloc::Alloc;
use crate::threads::spawn;
use protocols::bootinfo::slot;
use protocols::error::Error;
use protocols::ipc::{MsgInfo, IPC_BUFFER_WORDS, MSG_REGS};
use protocols::object::Invocation;
use protocols::object::ObjectType;
use rt::ipc::{call, invoke, recv, reply_recv, Msg};
use rt::testing::{expect_eq, Suite};

/// Words in the test message: registers plus sixteen in the buffer.
const LEN: usize = 20;

/// Word `i` of the IPC buffer mapped at `va`.
fn buffer_word(va: u64, i: usize) -> *mut u64 {
    (va as *mut u64).wrapping_add(i)
}

/// Echoes every message with each word plus one, the words beyond the registers read from
/// and written back to its own IPC buffer. `arg` = endpoint << 48 | buffer address.
extern "C" fn long_echo(arg: u64) -> ! {
    let (ep, buf) = (arg >> 48, arg & 0xffff_ffff_ffff);
    let mut r = recv(ep);
    loop {
        let m = match r {
            Ok(got) => got.msg,
            Err(_) => Msg::default(),
        };
        let extra = usize::from(m.info.len).saturating_sub(MSG_REGS).min(IPC_BUFFER_WORDS);
        for i in 0..extra {
            // SAFETY: the buffer page is mapped writable for this thread alone while it
            // runs; the kernel writes it only during this thread's syscalls.
            unsafe { buffer_word(buf, i).write_volatile(buffer_word(buf, i).read_volatile() + 1) };
        }
        let words = m.words.map(|w| w.wrapping_add(1));
        r = reply_recv(ep, &Msg { info: MsgInfo::new(0, m.info.len), words });
    }
}

/// Run the checks.
pub fn run(t: &mut Suite, a: &mut Alloc) -> Result<(), Error> {
    let ep = a.make(ObjectType::Endpoint, 0)?;
    let (own_frame, own_buf) = a.page()?;
    let (echo_frame, echo_buf) = a.page()?;
    let echo = spawn(a, long_echo as *const () as u64, ep << 48 | echo_buf, 254, u64::MAX)?;
    invoke(echo, Invocation::TcbSetIpcBuffer, &[echo_frame])?;
    invoke(slot::TCB, Invocation::TcbSetIpcBuffer, &[own_frame])?;
    for i in 0..LEN - MSG_REGS {
        // SAFETY: the root task's own buffer page, mapped writable above.
        unsafe { buffer_word(own_buf, i).write_volatile(1000 + i as u64) };
    }
    let msg = Msg { info: MsgInfo::new(1, LEN as u8), words: [10, 20, 30, 40] };
    let r = call(ep, &msg)?;
    let mut ok = r.msg.info.len == LEN as u8 && r.msg.words == [11, 21, 31, 41];
    for i in 0..LEN - MSG_REGS {
        // SAFETY: as above; the kernel wrote the reply's words there during the call.
        ok &= unsafe { buffer_word(own_buf, i).read_volatile() } == 1001 + i as u64;
    }
    t.check("long_message_through_ipc_buffers", if ok { Ok(()) } else { Err("words differ") });
    invoke(slot::TCB, Invocation::TcbSetIpcBuffer, &[u64::MAX])?;
    let cut = call(ep, &msg).map(|r| usize::from(r.msg.info.len));
    t.check("long_message_without_buffer_is_cut", expect_eq(cut, Ok(MSG_REGS)));
    invoke(echo, Invocation::TcbSuspend, &[])?;
    Ok(())
}
