//! AFL++ harness: `mpdr::fuzzing::idx` on every input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        mpdr::fuzzing::idx(data);
    });
}
