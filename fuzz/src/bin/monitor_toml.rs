//! AFL++ harness: `mpdr::fuzzing::monitor_toml` on every input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        mpdr::fuzzing::monitor_toml(data);
    });
}
