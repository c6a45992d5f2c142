//! AFL++ harness: `mpdr::fuzzing::npz` on every input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        mpdr::fuzzing::npz(data);
    });
}
