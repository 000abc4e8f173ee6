#![no_main]
//! libFuzzer entry of `ssl_fuzz::manifest`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::manifest(data));
