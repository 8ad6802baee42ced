//! The local APICs of a VM's vCPUs other than the one whose exit is being handled.
//!
//! The platform's `lapic` is always the APIC of the vCPU the dispatcher serves now, so a
//! VM with one vCPU pays nothing for the others: an exit of another vCPU first swaps its
//! APIC in ([`VcpuApics::switch`]). Interrupts for a vCPU that is not being served (an
//! I/O APIC message, an IPI) are raised in its APIC here and mark it to be kicked
//! ([`VcpuApics::take_kicks`]): the VMM then makes it exit (`VCpuKick`) so that its
//! next exit injects them. INIT and STARTUP are latched for the VMM
//! ([`VcpuApics::take_start_signal`]).

use crate::devices::ioapic::{DeliveryMode, Message};
use crate::devices::lapic::{Ipi, Lapic, LapicConfig, StartSignal};
use protocols::vmm::MAX_VCPUS;

/// vCPU indices as bits (`MAX_VCPUS` ≤ 32).
pub type VcpuMask = u32;

const _: () = assert!(MAX_VCPUS as u32 <= VcpuMask::BITS);

/// Every vCPU's APIC but the served one's, which lives in the platform.
#[derive(Clone, Debug, Default)]
pub struct VcpuApics {
    /// By vCPU index; the served vCPU's entry is a stale placeholder. Empty with one vCPU.
    apics: heapless::Vec<Lapic, { MAX_VCPUS as usize }>,
    /// The vCPU being served.
    current: usize,
    /// vCPUs given something to take since the last [`Self::take_kicks`].
    kicks: VcpuMask,
}

impl VcpuApics {
    /// The APICs of vCPUs `1..vcpus` as after RESET, configured as `bsp`'s (the served
    /// vCPU 0's) but for their IDs (the vCPU index) and not being the bootstrap processor.
    pub fn new(bsp: LapicConfig, vcpus: u8) -> Self {
        let mut apics = heapless::Vec::new();
        if vcpus > 1 {
            for id in 0..u32::from(vcpus.min(MAX_VCPUS)) {
                let _ = apics.push(Lapic::new(LapicConfig { apic_id: id, bsp: id == 0, ..bsp }));
            }
        }
        Self { apics, current: 0, kicks: 0 }
    }

    /// How many vCPUs the VM has.
    pub fn count(&self) -> usize {
        self.apics.len().max(1)
    }

    /// The vCPU being served.
    pub fn current(&self) -> usize {
        self.current
    }

    /// Serve vCPU `to` from now on: its APIC goes into `live`, the served one's out.
    /// False (and nothing changes) for a vCPU the VM does not have.
    pub fn switch(&mut self, live: &mut Lapic, to: usize) -> bool {
        if to == self.current {
            return true;
        }
        let cur = self.current;
        let (Some(_), Some(_)) = (self.apics.get(to), self.apics.get(cur)) else { return false };
        if let Some(next) = self.apics.get_mut(to) {
            core::mem::swap(live, next);
        }
        // The served vCPU's APIC went into `to`'s entry: move it to its own.
        self.apics.swap(to, cur);
        self.current = to;
        true
    }

    /// Deliver an I/O APIC message to the APICs it names other than the served one's
    /// (`live_took` says whether that one took it). Whether anyone took it.
    pub fn route_message(&mut self, m: &Message, live_took: bool) -> bool {
        let mut taken = live_took;
        for (i, apic) in self.apics.iter_mut().enumerate() {
            // Lowest priority goes to one APIC: the first that accepts.
            let lowest = m.delivery == DeliveryMode::LowestPriority;
            if i == self.current || (taken && lowest) || !apic.accepts(m.destination, m.logical) {
                continue;
            }
            let took = match m.delivery {
                DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                    apic.raise(m.vector, m.trigger).is_ok()
                }
                DeliveryMode::Nmi => {
                    apic.raise_nmi();
                    true
                }
                _ => false,
            };
            if took {
                self.kicks |= 1 << i;
                taken = true;
            }
        }
        taken
    }

    /// Deliver an IPI the served vCPU sent to every other APIC it names. Whether any
    /// took it.
    pub fn route_ipi(&mut self, ipi: &Ipi) -> bool {
        let mut taken = false;
        for (i, apic) in self.apics.iter_mut().enumerate() {
            if i != self.current && apic.is_named_by(ipi) {
                if apic.receive(ipi) {
                    self.kicks |= 1 << i;
                }
                taken = true;
            }
        }
        taken
    }

    /// The vCPUs to kick, once.
    pub fn take_kicks(&mut self) -> VcpuMask {
        core::mem::take(&mut self.kicks)
    }

    /// An INIT or STARTUP a vCPU received, with its index, once each.
    pub fn take_start_signal(&mut self) -> Option<(usize, StartSignal)> {
        let current = self.current;
        self.apics
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| *i != current)
            .find_map(|(i, a)| a.take_start_signal().map(|s| (i, s)))
    }
}
