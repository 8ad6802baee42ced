//! Exit traces end to end: the `trace` image's VMM prints guest32's exits and replies
//! under Bochs, the host tool turns the serial log back into the trace, and replaying it
//! against the VMM's dispatcher gives every reply again, word for word (so recording and
//! replaying agree on the live code, not only on the checked-in trace).

use system_tests::{assert_suite_passed, boot, check, Emulator};

#[test]
fn a_recorded_trace_replays_exactly() {
    let out = boot("trace", Emulator::Bochs);
    assert_suite_passed(&out, 40);
    check(&out, out.serial.contains("TEST PASS vm_guest32"), "guest32 did not pass");
    let bytes = xtask::trace::extract(&out.serial);
    check(&out, bytes.is_ok(), &format!("no trace in the log: {:?}", bytes.as_ref().err()));
    let replayed = xtask::trace::replay(&bytes.unwrap_or_default());
    check(
        &out,
        replayed.as_ref().is_ok_and(|n| *n > 100),
        &format!("the replay: {:?}", replayed.as_ref().map_err(ToString::to_string)),
    );
}
