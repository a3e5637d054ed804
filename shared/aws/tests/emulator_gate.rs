//! Says what to run for the suites that need the AWS emulator. They are built only with the
//! `emulator` feature (a plain `cargo test --workspace` needs nothing running); without it, this
//! ignored test names the command in the test output.

#[cfg(not(feature = "emulator"))]
#[test]
#[ignore = "tests/contracts.rs and tests/provisioned.rs need the AWS emulator: run scripts/test.sh, or start `.venv/bin/moto_server -H 127.0.0.1 -p PORT`, export AWS_ENDPOINT_URL=http://127.0.0.1:PORT AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing, then `cargo test -p prism-aws --features emulator`"]
fn emulator_suites_are_off_without_the_emulator_feature() {}
