#!/usr/bin/env bash
# The whole CI, runnable the same on a laptop: formatting, lints, tests, docs, benches compile.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Keep the 2-core CI machine's build fast and deterministic.
export CARGO_INCREMENTAL=0

echo "== fmt";    cargo fmt --all -- --check
echo "== clippy"; cargo clippy --workspace --all-targets -- -D warnings
echo "== test";   cargo test --workspace
echo "== examples (each runs to completion and checks what it did)"
for ex in echo timers signals; do cargo run -q -p ioman --example "$ex" > /dev/null; done
cargo run -q -p ioman-poll --example custom_manager > /dev/null
cargo run -q -p ioman --example http_server -- --quick > /dev/null
echo "== loom";   RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p ioman-wakeup -p ioman --release --lib loom
echo "== doc";    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
echo "== bench (compile only)"; cargo bench --workspace --no-run
