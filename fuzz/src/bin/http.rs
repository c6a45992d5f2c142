//! AFL++ harness: `mpdr::fuzzing::http` on every input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        mpdr::fuzzing::http(data);
    });
}
