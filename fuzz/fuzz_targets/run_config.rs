#![no_main]
//! libFuzzer entry of `ssl_fuzz::run_config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::run_config(data));
