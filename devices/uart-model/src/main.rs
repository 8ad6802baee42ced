//! The UART device process: the root task gives it the endpoint it serves, a notification
//! to raise its line with, the page it shares with its VMM and a console endpoint
//! (`protocols::device_model::slot`); its start register says which device it is and
//! where. It maps the page and then serves its VMM's requests for good: receive, let
//! [`uart_model::Server`] answer, reply. Its line changes only with a request (an access
//! or input), so it never needs to signal its line notification.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

rt::entry!(start);

#[cfg(target_os = "none")]
mod process {
    use protocols::device_model::{slot, split_start_arg, Request, Response, PAGE_SIZE};
    use protocols::devices::Kind;
    use protocols::object::{map, Invocation};
    use rt::ipc::{invoke, recv, reply_recv, Msg, Received};
    use uart16550::LineSink;
    use uart_model::Server;

    /// Where the shared page is mapped.
    const PAGE_VA: u64 = 0x1000_0000;

    /// The shared page, mapped at `PAGE_VA`.
    #[allow(unsafe_code)]
    fn page() -> &'static mut [u8] {
        // SAFETY: `run` mapped the frame writable at PAGE_VA for good before the first
        // call; this single-threaded process holds one view of it at a time (one per
        // request). The VMM writes it only while it waits for this process's reply.
        unsafe { core::slice::from_raw_parts_mut(PAGE_VA as *mut u8, PAGE_SIZE) }
    }

    pub fn run(arg: u64) -> u64 {
        rt::console::attach(slot::CONSOLE);
        let Some((Kind::Uart16550, _irq, _first, ports)) = split_start_arg(arg) else {
            rt::println!("uart-model: start argument {arg:#x} is no UART");
            return 1;
        };
        if let Err(e) =
            invoke(slot::PAGE, Invocation::FrameMap, &[slot::VSPACE, PAGE_VA, map::WRITE])
        {
            rt::println!("uart-model: cannot map the shared page: {}", e.name());
            return 1;
        }
        let mut server = Server::new(LineSink::new(rt::console::write), ports);
        let mut next = recv(slot::ENDPOINT);
        loop {
            let Ok(Received { msg, .. }) = next else {
                rt::println!("uart-model: its endpoint is gone");
                return 1;
            };
            let answer = Request::decode(msg.info, msg.words)
                .and_then(|request| server.handle(&request, page()));
            let (info, words) = match answer {
                Ok(response) => response.encode(),
                Err(e) => Response::refusal(e),
            };
            next = reply_recv(slot::ENDPOINT, &Msg { info, words });
        }
    }
}

#[cfg(target_os = "none")]
fn start(arg: u64) -> u64 {
    process::run(arg)
}

#[cfg(not(target_os = "none"))]
fn start(_: u64) -> u64 {
    0
}
