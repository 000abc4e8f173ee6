#![no_main]
//! libFuzzer entry of `ssl_fuzz::corpus`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::corpus(data));
