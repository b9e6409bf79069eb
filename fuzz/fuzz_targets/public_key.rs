//! libFuzzer on [`keyplane_fuzz::public_key`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplane_fuzz::public_key(data));
