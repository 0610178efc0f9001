//! Every committed fuzz corpus file (fuzz/corpus/TARGET/) through its target's entry point, on
//! the stable toolchain: what the fuzzers found worth keeping stays a regression test.

#![allow(clippy::panic, clippy::unwrap_used)]

use std::path::PathBuf;

/// A fuzz target's entry point.
type Target = fn(&[u8]);

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_default();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no corpus in {}", dir.display());
    out
}

#[test]
fn every_corpus_file_runs_through_its_target() {
    let targets: [(&str, Target); 6] = [
        ("socket_lines", tokenbrokerd::fuzz::socket_lines),
        ("rpc_request", tokenbrokerd::fuzz::rpc_request),
        ("token_reply", tokenbrokerd::fuzz::token_reply),
        ("discovery", tokenbrokerd::fuzz::discovery),
        ("config", tokenbrokerd::fuzz::config),
        ("sealed_file", tokenbrokerd::fuzz::sealed_file),
    ];
    for (name, run) in targets {
        for (path, bytes) in corpus(name) {
            let r = std::panic::catch_unwind(|| run(&bytes));
            assert!(r.is_ok(), "{name}: {} panics", path.display());
        }
    }
}
