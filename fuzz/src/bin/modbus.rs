//! AFL++ harness: `mpdr::fuzzing::modbus` on every input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        mpdr::fuzzing::modbus(data);
    });
}
