#![no_main]
//! libFuzzer entry of `ssl_fuzz::cifar`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::cifar(data));
