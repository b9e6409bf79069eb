//! libFuzzer on [`keyplane_fuzz::authorized_keys`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplane_fuzz::authorized_keys(data));
