#![no_main]

#[global_allocator]
static ALLOC: wsmachine_fuzz::alloc::CountingAlloc = wsmachine_fuzz::alloc::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsmachine_fuzz::http_request(data));
