//! Fuzz target: `cargo +nightly fuzz run token_info` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wix_elevate::fuzz::token_info(data));
