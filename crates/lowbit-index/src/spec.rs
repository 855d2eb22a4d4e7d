//! Index spec strings, parsed and printed in one place, in the spirit of
//! FAISS's `index_factory`: `flat`, `flat,turbo4`, `ivf256`,
//! `ivf256,turbo4`, `ivf256,turbo2,rerank=8`, `ivf64,pca4`.

use std::fmt;

use crate::error::{IndexError, Result};

pub const GRAMMAR: &str = "comma-separated items: `flat` or `ivfN` (N coarse lists, 1 ≤ N ≤ 65536) first; \
then optionally a code: `turboB` (B = 1..4 bits per dimension: rotation + Lloyd–Max codebook of the residual, plus \
f16 scalars per vector; needs no training) or `pcaB` (B = 1..8: exactly B·d/8 bytes per vector, scalars included, as \
FAISS's IndexPQ with d·B/8 bytes; principal axes, bits allocated by variance, a trained codebook per axis); then optionally `rerank=R` or `rerank=R:sq8` (R ≥ 1: take k·R candidates from the codes and re-rank \
them with the stored f32 vectors, or with 8-bit codes of the residual, d + 4 bytes per vector; needs a code). Examples: \
flat, flat,turbo4, flat,pca4, ivf256, ivf256,turbo4, ivf64,pca4, ivf256,turbo2,rerank=8, ivf256,turbo4,rerank=4:sq8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    L2,
    /// Inner product (larger is closer); cosine on unit vectors.
    Ip,
}

impl Metric {
    pub fn parse(s: &str) -> Result<Metric> {
        match s.trim().to_ascii_lowercase().as_str() {
            "l2" => Ok(Metric::L2),
            "ip" | "inner_product" | "cosine" => Ok(Metric::Ip),
            _ => Err(IndexError::BadMetric(s.to_string())),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Ip => "ip",
        }
    }
}

/// What re-ranking reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refine {
    /// The stored f32 vectors (exact).
    F32,
    /// 8-bit codes of the residual, one f32 scale per vector.
    Sq8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rerank {
    /// Candidates taken per result before re-ranking.
    pub factor: usize,
    pub with: Refine,
}

/// How residuals are coded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeSpec {
    /// `turboB`: B bits per dimension after a seeded rotation, plus scalars.
    Turbo(u32),
    /// `pcaB`: B·d/8 bytes per vector in all, trained ([`crate::pca`]).
    Pca(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexSpec {
    /// Coarse lists; `None` = flat (one list centred on the data mean).
    pub nlist: Option<usize>,
    /// The residual code; `None` = raw f32 vectors.
    pub code: Option<CodeSpec>,
    pub rerank: Option<Rerank>,
}

impl IndexSpec {
    pub fn parse(spec: &str) -> Result<IndexSpec> {
        let bad = |reason: String| IndexError::BadSpec { spec: spec.to_string(), reason, expected: GRAMMAR };
        let items: Vec<&str> = spec.split(',').map(str::trim).collect();
        let nlist = match items[0].to_ascii_lowercase().as_str() {
            "flat" => None,
            s if s.starts_with("ivf") => match s[3..].parse::<usize>() {
                Ok(n) if (1..=65536).contains(&n) => Some(n),
                _ => return Err(bad(format!("`{}`: the list count must be a number in 1..=65536", items[0]))),
            },
            "" => return Err(bad("empty spec".into())),
            s => return Err(bad(format!("`{s}` must be `flat` or `ivfN`"))),
        };
        let (mut code, mut rerank) = (None, None);
        for item in &items[1..] {
            let low = item.to_ascii_lowercase();
            let (turbo, pca) = (low.strip_prefix("turbo"), low.strip_prefix("pca"));
            if turbo.is_some() || pca.is_some() {
                if code.is_some() {
                    return Err(bad("more than one code".into()));
                }
                code = Some(match (turbo, pca) {
                    (Some(b), _) => match b.parse::<u32>() {
                        Ok(b @ 1..=4) => CodeSpec::Turbo(b),
                        _ => return Err(bad(format!("`{item}`: turbo takes 1..4 bits"))),
                    },
                    (_, Some(b)) => match b.parse::<u32>() {
                        Ok(b @ 1..=8) => CodeSpec::Pca(b),
                        _ => return Err(bad(format!("`{item}`: pca takes 1..8 bits per dimension"))),
                    },
                    _ => unreachable!(),
                });
            } else if let Some(r) = low.strip_prefix("rerank=") {
                let (factor, with) = r.split_once(':').unwrap_or((r, "f32"));
                let with = match with {
                    "f32" => Refine::F32,
                    "sq8" => Refine::Sq8,
                    w => return Err(bad(format!("`{item}`: re-rank with `f32` (default) or `sq8`, not `{w}`"))),
                };
                match factor.parse::<usize>() {
                    Ok(f) if (1..=1000).contains(&f) => rerank = Some(Rerank { factor: f, with }),
                    _ => return Err(bad(format!("`{item}`: rerank takes a factor in 1..=1000"))),
                }
            } else {
                return Err(bad(format!("unknown item `{item}`")));
            }
        }
        if rerank.is_some() && code.is_none() {
            return Err(bad("`rerank` needs a code to re-rank (raw f32 vectors are already exact)".into()));
        }
        Ok(IndexSpec { nlist, code, rerank })
    }
}

impl fmt::Display for IndexSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.nlist {
            None => write!(f, "flat")?,
            Some(n) => write!(f, "ivf{n}")?,
        }
        match self.code {
            Some(CodeSpec::Turbo(b)) => write!(f, ",turbo{b}")?,
            Some(CodeSpec::Pca(b)) => write!(f, ",pca{b}")?,
            None => {}
        }
        if let Some(r) = self.rerank {
            write!(f, ",rerank={}", r.factor)?;
            if r.with == Refine::Sq8 {
                write!(f, ":sq8")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_canonically() {
        for s in ["flat", "flat,turbo4", "ivf256", "ivf256,turbo4", "ivf256,turbo2,rerank=8", "ivf1,turbo1", "ivf16,turbo4,rerank=4:sq8", "flat,pca4", "ivf64,pca2,rerank=8"] {
            assert_eq!(IndexSpec::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(IndexSpec::parse(" IVF64 , Turbo3 ").unwrap().to_string(), "ivf64,turbo3");
        assert_eq!(IndexSpec::parse("flat,turbo2,rerank=3:f32").unwrap().to_string(), "flat,turbo2,rerank=3");
    }

    #[test]
    fn bad_specs_say_what_was_expected() {
        for (s, why) in [
            ("", "empty"),
            ("hnsw32", "`flat` or `ivfN`"),
            ("ivf0", "1..=65536"),
            ("ivfx", "1..=65536"),
            ("flat,turbo5", "1..4 bits"),
            ("flat,pca9", "1..8 bits"),
            ("flat,pca", "1..8 bits"),
            ("flat,pca4,turbo4", "more than one"),
            ("flat,rerank=4", "needs a code"),
            ("ivf8,turbo4,rerank=0", "1..=1000"),
            ("ivf8,turbo4,turbo2", "more than one"),
            ("ivf8,turbo4,rerank=4:pq", "`sq8`"),
            ("ivf8,pq16", "unknown item"),
        ] {
            let e = IndexSpec::parse(s).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("Expected"), "{s}: {e}");
        }
        assert!(Metric::parse("hamming").is_err());
        assert_eq!(Metric::parse("cosine").unwrap(), Metric::Ip);
    }
}
