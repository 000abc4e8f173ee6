#![no_main]
//! libFuzzer entry of `ssl_fuzz::bert_config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::bert_config(data));
