//! AFL++ harness: `mpdr::fuzzing::signal` on every input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        mpdr::fuzzing::signal(data);
    });
}
