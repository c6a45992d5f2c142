//! AFL++ harness: `mpdr::fuzzing::labels` on every input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        mpdr::fuzzing::labels(data);
    });
}
