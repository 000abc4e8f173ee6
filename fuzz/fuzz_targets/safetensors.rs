#![no_main]
//! libFuzzer entry of `ssl_fuzz::safetensors`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::safetensors(data));
