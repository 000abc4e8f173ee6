#![no_main]
//! libFuzzer entry of `ssl_fuzz::tokenizer`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::tokenizer(data));
