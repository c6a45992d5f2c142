//! AFL++ harness: `mpdr::fuzzing::manifest` on every input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        mpdr::fuzzing::manifest(data);
    });
}
