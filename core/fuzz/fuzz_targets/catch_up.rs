#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gridcase_core::fuzzing::catch_up(data));
