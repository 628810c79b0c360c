//! Drives broker-core with arbitrary sequences of connections, packets (valid and
//! protocol-violating), clock advances, store acknowledgements and restarts, checking its
//! invariants after every step. The operations and checks are `broker-fuzzing`'s (fuzz/harness),
//! which the workspace's tests also use to replay the inputs kept under fuzz/regressions/.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| broker_fuzzing::run_bytes(data));
