#![no_main]
//! libFuzzer entry of `ssl_fuzz::labeled_csv`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::labeled_csv(data));
