#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gridcase_core::fuzzing::let_caught_panics_pass();
    gridcase_core::fuzzing::compact(data);
});
