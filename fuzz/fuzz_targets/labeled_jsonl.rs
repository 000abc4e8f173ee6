#![no_main]
//! libFuzzer entry of `ssl_fuzz::labeled_jsonl`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::labeled_jsonl(data));
