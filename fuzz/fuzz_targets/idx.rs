#![no_main]
//! libFuzzer entry of `ssl_fuzz::idx`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::idx(data));
