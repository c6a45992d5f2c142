//! AFL++ harness: `mpdr::fuzzing::wav` on every input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        mpdr::fuzzing::wav(data);
    });
}
