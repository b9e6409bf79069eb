//! libFuzzer on [`keyplane_fuzz::form`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplane_fuzz::form(data));
