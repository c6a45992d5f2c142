//! AFL++ harness: `mpdr::fuzzing::train_toml` on every input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        mpdr::fuzzing::train_toml(data);
    });
}
