//! libFuzzer on [`keyplane_fuzz::sshd_config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplane_fuzz::sshd_config(data));
