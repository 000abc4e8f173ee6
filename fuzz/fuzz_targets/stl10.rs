#![no_main]
//! libFuzzer entry of `ssl_fuzz::stl10`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::stl10(data));
