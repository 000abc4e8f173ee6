#![no_main]
//! libFuzzer entry of `ssl_fuzz::config_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::config_file(data));
