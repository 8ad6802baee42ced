//! The console driver process. The root task gives it exactly COM1's ports (an `IoPorts`
//! capability), IRQ 4's handler, a notification for it, the endpoint it serves, and for
//! receiving, untyped memory and the input owner's notification
//! (`protocols::console::slot`). It binds the IRQ, programs the UART, greets, and then
//! serves writes: each client's bytes become whole lines on COM1 (the kernel's own boot
//! log and panics share the port, which is expected).
//!
//! With the untyped memory it starts a second thread that alone waits on IRQ 4: it moves
//! received bytes into a ring, signals the input owner's notification, and signals the
//! transmitter's own notification on every interrupt. The serving thread so never waits
//! for a client, nor the interrupt thread for anyone: the owner fetches its bytes with a
//! `READ_INPUT` call.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

rt::entry!(start);

#[cfg(target_os = "none")]
mod process {
    use console_driver::input::{self, InputRing};
    use console_driver::lines::Lines;
    use console_driver::uart::{Hardware, Uart};
    use protocols::console::{self, decode, slot, Request, BAD_REQUEST, OK, PORTS};
    use protocols::io::PortWidth;
    use protocols::object::{map, Invocation, ObjectType};
    use rt::ipc::{invoke, nb_send, recv, reply_recv, retype, Msg, Received};

    /// What COM1 received, from the interrupt thread to the serving thread.
    static INPUT: InputRing = InputRing::new();
    /// Where the interrupt thread's stack page is mapped.
    const IRQ_STACK_VA: u64 = 0x6000_0000;

    /// COM1 through the driver's capabilities. With an interrupt thread the transmitter
    /// waits on that thread's notification; without one it waits on the IRQ itself.
    struct Com1 {
        irq_thread: bool,
    }

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
            if self.irq_thread {
                let _ = recv(slot::TX_NOTIFICATION);
                return;
            }
            let _ = invoke(slot::IRQ_HANDLER, Invocation::IrqHandlerAck, &[]);
            let _ = recv(slot::IRQ_NOTIFICATION);
        }
    }

    /// The interrupt thread: every IRQ 4 empties the UART's receiver into [`INPUT`], wakes
    /// the input owner if bytes came, and wakes the transmitter.
    extern "C" fn irq_thread(_: u64) -> ! {
        let mut hw = Com1 { irq_thread: true };
        loop {
            let _ = invoke(slot::IRQ_HANDLER, Invocation::IrqHandlerAck, &[]);
            let _ = recv(slot::IRQ_NOTIFICATION);
            if input::service(&mut hw, &INPUT) > 0 {
                // Empty when no VM owns the input: the bytes wait (or drop) unread.
                let _ = nb_send(slot::INPUT_NOTIFICATION, &Msg::default());
            }
            let _ = nb_send(slot::TX_NOTIFICATION, &Msg::default());
        }
    }

    /// Start the interrupt thread from the untyped memory in `slot::UNTYPED`, at the
    /// highest priority this thread may give (its own).
    fn start_irq_thread() -> Result<(), protocols::error::Error> {
        retype(slot::UNTYPED, ObjectType::Tcb, 0, slot::IRQ_TCB, 1)?;
        retype(slot::UNTYPED, ObjectType::Frame, 0, slot::IRQ_STACK, 1)?;
        retype(slot::UNTYPED, ObjectType::Notification, 0, slot::TX_NOTIFICATION, 1)?;
        invoke(slot::IRQ_STACK, Invocation::FrameMap, &[slot::VSPACE, IRQ_STACK_VA, map::WRITE])?;
        let tcb = slot::IRQ_TCB;
        invoke(tcb, Invocation::TcbConfigure, &[slot::CNODE, slot::VSPACE, u64::MAX])?;
        // A call-aligned stack: 16-byte aligned minus the return-address slot.
        let rsp = IRQ_STACK_VA + 4096 - 8;
        invoke(tcb, Invocation::TcbWriteRegisters, &[irq_thread as *const () as u64, rsp, 0])?;
        // The kernel refuses a priority above the caller's, which this thread cannot read.
        let _ = (0..=u8::MAX)
            .rev()
            .find(|p| invoke(tcb, Invocation::TcbSetPriority, &[u64::from(*p)]).is_ok());
        invoke(tcb, Invocation::TcbResume, &[]).map(|_| ())
    }

    /// Up to [`console::MAX_WRITE`] received bytes, for the input owner only.
    fn read_input(badge: u64) -> Msg {
        if badge & console::INPUT_BADGE == 0 {
            return Msg::new(console::NOT_OWNER, &[]);
        }
        let mut buf = [0u8; console::MAX_WRITE];
        let n = INPUT.pop_into(&mut buf);
        match console::input_message(buf.get(..n).unwrap_or_default()) {
            Some((info, words)) => Msg { info, words },
            None => Msg::new(BAD_REQUEST, &[]),
        }
    }

    fn handle(uart: &mut Uart<Com1>, lines: &mut Lines, r: &Received) -> Msg {
        match decode(r.msg.info, r.msg.words) {
            Some(Request::Write(chunk)) => {
                let bytes = chunk.as_bytes();
                if r.badge & console::INPUT_BADGE != 0 {
                    // The console's owner is a terminal session: its bytes go out as they
                    // come, partial lines included.
                    uart.write_stream(bytes);
                } else {
                    lines.push(r.badge, bytes, &mut |line| uart.write_line(line));
                }
                Msg::new(OK, &[bytes.len() as u64])
            }
            Some(Request::Stats) => {
                let s = uart.stats();
                Msg::new(OK, &[s.interrupts, s.lines, s.bytes, INPUT.dropped()])
            }
            Some(Request::ReadInput) => read_input(r.badge),
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
        let irq_thread = start_irq_thread().is_ok();
        let mut uart = Uart::new(Com1 { irq_thread });
        if irq_thread {
            uart.enable_receive();
        }
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
