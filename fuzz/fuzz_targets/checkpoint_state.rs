#![no_main]
//! libFuzzer entry of `ssl_fuzz::checkpoint_state`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ssl_fuzz::checkpoint_state(data));
