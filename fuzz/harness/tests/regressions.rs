//! Replays every input the fuzzer ever reported (fuzz/regressions/broker_core_sequences/)
//! through the same checks as the fuzz target, so a fixed bug stays fixed in `cargo test`.

use std::path::Path;

#[test]
fn broker_core_sequences_regressions_replay() {
    let directory =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../regressions/broker_core_sequences");
    let mut count = 0;
    for entry in std::fs::read_dir(&directory).expect("the regressions directory") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = std::fs::read(&path).expect("a regression input");
        eprintln!("replaying {}", path.display());
        broker_fuzzing::run_bytes(&data);
        count += 1;
    }
    eprintln!("{count} inputs replayed");
}
