//! libFuzzer on [`keyplane_fuzz::json_list`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplane_fuzz::json_list(data));
