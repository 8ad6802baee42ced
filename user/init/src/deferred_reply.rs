//! Ring-3 check of Reply objects: a server puts the root task's call aside, serves a
//! second client first, and then answers the root through the reply capability; a
//! reply object deleted while it holds a caller releases that caller with an error.

use crate::alloc::Alloc;
use crate::threads::spawn;
use protocols::bootinfo::slot;
use protocols::error::Error;
use protocols::object::{Invocation, ObjectType};
use rt::ipc::{call, invoke, recv, reply_recv, send, Msg};
use rt::testing::{expect_eq, Suite};

/// The root task's request: put my reply aside, answer it after the next client.
const DEFER: u64 = 1;
/// The root task's request: put my reply aside, then delete the reply object.
const DROP: u64 = 2;
/// The second client's request.
const OTHER: u64 = 3;

/// The two slots a thread argument carries: `(endpoint, reply object)`.
fn unpack(arg: u64) -> (u64, u64) {
    (arg & 0xffff_ffff, arg >> 32)
}

/// The deferring server. Answers the second client with its word doubled, and the
/// deferred root task with its own word plus what the second client sent, which shows
/// the second call was served while the root's reply was put aside.
extern "C" fn deferring_server(arg: u64) -> ! {
    let (ep, reply_obj) = unpack(arg);
    let mut deferred_word = None;
    let mut r = recv(ep);
    loop {
        let next = match r {
            Ok(m) if m.msg.info.label == DEFER || m.msg.info.label == DROP => {
                match invoke(reply_obj, Invocation::ReplySave, &[]) {
                    Ok(_) if m.msg.info.label == DROP => {
                        let _ = invoke(slot::CNODE, Invocation::CNodeDelete, &[reply_obj]);
                    }
                    Ok(_) => deferred_word = Some(m.msg.words[0]),
                    Err(e) => rt::println!("reply object: ReplySave refused: {}", e.name()),
                }
                recv(ep)
            }
            Ok(m) if m.msg.info.label == OTHER => {
                let w = m.msg.words[0];
                if let Some(d) = deferred_word.take() {
                    let _ = send(reply_obj, &Msg::new(0, &[d + w]));
                }
                reply_recv(ep, &Msg::new(0, &[w * 2]))
            }
            _ => recv(ep),
        };
        r = next;
    }
}

/// The second client: one call, then it stops.
extern "C" fn second_client(ep: u64) -> ! {
    let _ = call(ep, &Msg::new(OTHER, &[21]));
    rt::syscall::thread_exit(0)
}

/// Run the checks.
pub fn run(t: &mut Suite, a: &mut Alloc) -> Result<(), Error> {
    let ep = a.make(ObjectType::Endpoint, 0)?;
    let reply_obj = a.make(ObjectType::Reply, 0)?;
    let server =
        spawn(a, deferring_server as *const () as u64, ep | reply_obj << 32, 254, u64::MAX)?;
    // The second client runs only once the root task waits: below everybody.
    let client = spawn(a, second_client as *const () as u64, ep, 1, u64::MAX)?;
    let r = call(ep, &Msg::new(DEFER, &[100]));
    t.check("reply_object_defers_a_reply", expect_eq(r.map(|r| r.msg.words[0]), Ok(121)));
    let r = call(ep, &Msg::new(DROP, &[0]));
    t.check(
        "deleted_reply_object_releases_its_caller",
        expect_eq(r.map(|_| ()), Err(Error::ObjectDeleted)),
    );
    invoke(server, Invocation::TcbSuspend, &[])?;
    invoke(client, Invocation::TcbSuspend, &[])?;
    Ok(())
}
