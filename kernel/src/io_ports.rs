//! `IoPorts` capabilities: host port I/O, performed by the kernel on the holder's behalf.
//!
//! seL4's x86 model rather than an I/O permission bitmap: ring 3 never runs `in`/`out`
//! itself (IOPL 0, no bitmap in the TSS, so the instructions fault), and every access is
//! an invocation checked against the capability's range. A capability is plain data, a
//! range; a narrower one is carved from it as a derived copy, so revoking the wider one
//! takes every carved range with it. The kernel's own ports are in no capability.

use crate::cap::Cap;
use crate::cnode;
use crate::state::{Done, Kernel, Platform};
use crate::store::Store;
use protocols::error::Error;
use protocols::io::PortWidth;

/// A port access whose arguments are all checked.
struct Access {
    port: u16,
    width: PortWidth,
}

/// Check `port` and `width` against the capability's range `first..=last`: every byte
/// of the access must be inside it.
fn decode_access(first: u16, last: u16, port: u64, width: u64) -> Result<Access, Error> {
    let width = PortWidth::from_raw(width).ok_or(Error::InvalidArgument)?;
    let port = u16::try_from(port).map_err(|_| Error::InvalidArgument)?;
    let end = u32::from(port) + u32::from(width.bytes()) - 1;
    if port < first || end > u32::from(last) {
        return Err(Error::InsufficientRights);
    }
    Ok(Access { port, width })
}

impl<S: Store> Kernel<S> {
    /// `IoPortIn` on a capability for `first..=last`: the value read.
    pub(crate) fn io_port_in(
        &mut self,
        p: &mut impl Platform,
        (first, last): (u16, u16),
        port: u64,
        width: u64,
    ) -> Result<Done, Error> {
        let a = decode_access(first, last, port, width)?;
        Ok(Done::Value(u64::from(p.port_in(a.port, a.width))))
    }

    /// `IoPortOut` on a capability for `first..=last`.
    pub(crate) fn io_port_out(
        &mut self,
        p: &mut impl Platform,
        (first, last): (u16, u16),
        [port, width, value]: [u64; 3],
    ) -> Result<Done, Error> {
        let a = decode_access(first, last, port, width)?;
        if !a.width.fits(value) {
            return Err(Error::InvalidArgument);
        }
        p.port_out(a.port, a.width, value as u32);
        Ok(Done::Value(0))
    }

    /// `IoPortsCarve` on the capability in slot `at` (for `first..=last`): a capability
    /// for `new_first..=new_last`, derived from it, in the caller's CSpace root `dst`.
    pub(crate) fn io_ports_carve(
        &mut self,
        at: u64,
        (first, last): (u16, u16),
        [new_first, new_last, dst]: [u64; 3],
    ) -> Result<Done, Error> {
        let new_first = u16::try_from(new_first).map_err(|_| Error::InvalidArgument)?;
        let new_last = u16::try_from(new_last).map_err(|_| Error::InvalidArgument)?;
        if new_first > new_last {
            return Err(Error::InvalidArgument);
        }
        if new_first < first || new_last > last {
            return Err(Error::InsufficientRights);
        }
        let dst = self.empty_root_slot(dst)?;
        let cap = Cap::IoPorts { first: new_first, last: new_last };
        cnode::insert_child(&mut self.store, at, dst, cap).map_err(|_| Error::InvalidArgument)?;
        Ok(Done::Value(0))
    }
}
