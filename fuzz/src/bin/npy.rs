//! AFL++ harness: `mpdr::fuzzing::npy` on every input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        mpdr::fuzzing::npy(data);
    });
}
