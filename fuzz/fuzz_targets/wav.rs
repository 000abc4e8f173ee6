#![no_main]
//! libFuzzer entry of `ssl_fuzz::wav`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::wav(data));
