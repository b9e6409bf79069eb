//! libFuzzer on [`keyplane_fuzz::volcengine`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplane_fuzz::volcengine(data));
