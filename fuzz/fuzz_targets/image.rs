#![no_main]
//! libFuzzer entry of `ssl_fuzz::image`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::image(data));
