//! Prints how a structured target reads an input, then runs it:
//! `cargo run -p wsmachine-fuzz --bin explain -- connection fuzz/artifacts/connection/crash-…`.

use arbitrary::{Arbitrary, Unstructured};
use wsmachine_fuzz::{alloc::CountingAlloc, ConnInput, RtInput, TARGETS};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(target), Some(path)) = (args.next(), args.next()) else {
        eprintln!("usage: explain <target> <input file>");
        std::process::exit(2);
    };
    let data = std::fs::read(&path).expect("read input");
    match target.as_str() {
        "connection" => println!(
            "{:#?}",
            ConnInput::arbitrary_take_rest(Unstructured::new(&data))
        ),
        "round_trip" => println!(
            "{:#?}",
            RtInput::arbitrary_take_rest(Unstructured::new(&data))
        ),
        _ => println!("{} bytes: {:?}", data.len(), String::from_utf8_lossy(&data)),
    }
    let (_, run) = TARGETS
        .iter()
        .find(|(t, _)| *t == target)
        .expect("known target");
    run(&data);
    println!("passed");
}
