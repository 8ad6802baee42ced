//! The console driver process. The root task gives it exactly COM1's ports (an `IoPorts`
//! capability), IRQ 4's handler, a notification for it, and the endpoint it serves
//! (`protocols::console::slot`). It binds the IRQ, programs the UART, greets, and then
//! serves writes: each client's bytes become whole lines on COM1 (the kernel's own boot
//! log and panics share the port, which is expected).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

rt::entry!(start);

#[cfg(target_os = "none")]
mod process {
    use console_driver::lines::Lines;
    use console_driver::uart::{Hardware, Uart};
    use protocols::console::{decode, slot, Request, BAD_REQUEST, OK, PORTS};
    use protocols::io::PortWidth;
    use protocols::object::Invocation;
    use rt::ipc::{invoke, recv, reply_recv, Msg, Received};

    /// COM1 through the driver's capabilities.
    struct Com1;

    impl Hardware for Com1 {
        fn read(&mut self, offset: u16) -> u8 {
            let port = u64::from(PORTS.0) + u64::from(offset);
            // A refused read looks like an absent UART: all ones.
            invoke(slot::PORTS, Invocation::IoPortIn, &[port, PortWidth::Byte as u64])
                .map_or(0xff, |v| v as u8)
        }

        fn write(&mut self, offset: u16, value: u8) {
            let port = u64::from(PORTS.0) + u64::from(offset);
            let _ = invoke(
                slot::PORTS,
                Invocation::IoPortOut,
                &[port, PortWidth::Byte as u64, u64::from(value)],
            );
        }

        fn wait_interrupt(&mut self) {
            // If either fails the driver degrades to polling the line status.
            let _ = invoke(slot::IRQ_HANDLER, Invocation::IrqHandlerAck, &[]);
            let _ = recv(slot::IRQ_NOTIFICATION);
        }
    }

    fn handle(uart: &mut Uart<Com1>, lines: &mut Lines, r: &Received) -> Msg {
        match decode(r.msg.info, r.msg.words) {
            Some(Request::Write(chunk)) => {
                let bytes = chunk.as_bytes();
                lines.push(r.badge, bytes, &mut |line| uart.write_line(line));
                Msg::new(OK, &[bytes.len() as u64])
            }
            Some(Request::Stats) => {
                let s = uart.stats();
                Msg::new(OK, &[s.interrupts, s.lines, s.bytes])
            }
            None => Msg::new(BAD_REQUEST, &[]),
        }
    }

    /// Bind the IRQ, program the UART, serve for good.
    pub fn run() -> u64 {
        let bound = invoke(
            slot::IRQ_HANDLER,
            Invocation::IrqHandlerSetNotification,
            &[slot::IRQ_NOTIFICATION],
        );
        if let Err(e) = bound {
            rt::println!("console: cannot bind IRQ {}: {}", protocols::console::IRQ, e.name());
            return 1;
        }
        let mut uart = Uart::new(Com1);
        uart.write_line(b"console: COM1 driver ready, transmitting on IRQ 4");
        let mut lines = Lines::new();
        let mut next = recv(slot::ENDPOINT);
        loop {
            next = match next {
                Ok(r) => reply_recv(slot::ENDPOINT, &handle(&mut uart, &mut lines, &r)),
                Err(_) => recv(slot::ENDPOINT),
            };
        }
    }
}

#[cfg(target_os = "none")]
fn start(_: u64) -> u64 {
    process::run()
}

#[cfg(not(target_os = "none"))]
fn start(_: u64) -> u64 {
    0
}
