//! AFL++ harness: `mpdr::fuzzing::safetensors` on every input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        mpdr::fuzzing::safetensors(data);
    });
}
