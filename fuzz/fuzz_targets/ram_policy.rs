//! libFuzzer on [`keyplane_fuzz::ram_policy`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplane_fuzz::ram_policy(data));
