//! libFuzzer on [`keyplane_fuzz::name_list`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplane_fuzz::name_list(data));
