//! `lowbit bench` end to end on the small stories260K model: the JSON
//! report, the context depth, and bad arguments as clear errors.

use std::process::Command;

fn lowbit(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lowbit")).args(args).env("RUST_BACKTRACE", "0").output().expect("lowbit runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bench_reports_speeds_at_a_depth_and_refuses_empty_tests() {
    let model = match lowbit_assets::data_file("models/stories260K.bin") {
        Ok(p) => p,
        Err(e) => return eprintln!("SKIPPED: {e}"),
    };
    let m = model.to_str().unwrap();
    let (ok, out, err) = lowbit(&["bench", "--model", m, "--prefill", "32", "--decode", "8", "--depth", "100", "--repeats", "1", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["prefill_tokens"].as_u64(), v["decode_tokens"].as_u64(), v["depth"].as_u64()), (Some(32), Some(8), Some(100)));
    for key in ["prefill_tok_s", "decode_tok_s", "peak_rss_mib"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {out}");
    }
    let (ok, _, err) = lowbit(&["bench", "--model", m, "--prefill", "0"]);
    assert!(!ok && err.contains("at least one token"), "{err}");
    // stories260K holds 512 positions.
    let (ok, _, err) = lowbit(&["bench", "--model", m, "--depth", "500"]);
    assert!(!ok && err.contains("exceeds the model's context"), "{err}");
}
