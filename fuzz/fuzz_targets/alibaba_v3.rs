//! libFuzzer on [`keyplane_fuzz::alibaba_v3`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplane_fuzz::alibaba_v3(data));
