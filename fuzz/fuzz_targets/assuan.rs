#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenbroker_tray::assuan::fuzz(data));
