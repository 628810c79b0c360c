//! Prints the scenario an input file stands for, then plays it with the target's checks:
//! `cargo run -p broker-fuzzing --example replay -- FILE`, to see what a crash input does.

use arbitrary::{Arbitrary, Unstructured};

fn main() {
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).expect("an input file");
        match broker_fuzzing::Scenario::arbitrary_take_rest(Unstructured::new(&data)) {
            Ok(scenario) => {
                println!("{path}: {scenario:#?}");
                broker_fuzzing::run(&scenario);
                println!("{path}: passed");
            }
            Err(error) => println!("{path}: not a scenario ({error})"),
        }
    }
}
