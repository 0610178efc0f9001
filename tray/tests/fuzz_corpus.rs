//! The Assuan fuzz target's committed corpus (fuzz/corpus/assuan/), on the stable toolchain.

#[test]
fn every_assuan_corpus_file_runs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/assuan");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("the corpus") {
        let path = e.expect("an entry").path();
        let bytes = std::fs::read(&path).expect("a file");
        assert!(
            std::panic::catch_unwind(|| tokenbroker_tray::assuan::fuzz(&bytes)).is_ok(),
            "{} panics",
            path.display()
        );
        n += 1;
    }
    assert!(n > 0);
}
