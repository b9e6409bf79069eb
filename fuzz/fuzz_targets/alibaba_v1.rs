//! libFuzzer on [`keyplane_fuzz::alibaba_v1`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplane_fuzz::alibaba_v1(data));
