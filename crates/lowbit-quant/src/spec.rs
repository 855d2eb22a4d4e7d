//! Spec strings: the one place where a user's format choice is parsed and
//! printed back in canonical form. Grammar: `head[:opt]*`, where the head
//! names a row of [`crate::registry::FORMATS`] (e.g. `q4_k`, `turbo3`,
//! `turbo4p`, `uniform4`) and options refine it (`g32`, `asym`, `sym`,
//! `d128`, `seed=7`).

use std::fmt;

use crate::codec::Format;
use crate::error::{QuantError, Result};
use crate::registry::{FormatRow, FORMATS};

/// Parameters a spec can set; each row reads the ones it uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub bits: u32,
    pub group: usize,
    pub asym: bool,
    pub dim: usize,
    pub seed: u64,
    /// `fit`: rotation codecs search codebook stretches when encoding
    /// (slower encode, lower error, same format; rot/turbo.rs).
    pub fit: bool,
}

pub const DEFAULT_DIM: usize = 128;
pub const DEFAULT_GROUP: usize = 32;
pub const DEFAULT_SEED: u64 = 0x10B1;

impl Default for Params {
    fn default() -> Self {
        Params { bits: 0, group: DEFAULT_GROUP, asym: true, dim: DEFAULT_DIM, seed: DEFAULT_SEED, fit: false }
    }
}

/// A parsed spec: a row of the format table and its parameters.
#[derive(Clone)]
pub struct Spec {
    pub row: &'static FormatRow,
    pub params: Params,
}

impl PartialEq for Spec {
    fn eq(&self, o: &Self) -> bool {
        self.to_string() == o.to_string()
    }
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Spec({self})")
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&(self.row.print)(&self.params))
    }
}

impl std::str::FromStr for Spec {
    type Err = QuantError;
    fn from_str(s: &str) -> Result<Spec> {
        Spec::parse(s)
    }
}

impl Spec {
    pub fn parse(s: &str) -> Result<Spec> {
        let text = s.trim().to_ascii_lowercase();
        let mut parts = text.split(':');
        let head = parts.next().unwrap_or("");
        let opts: Vec<&str> = parts.collect();
        if head.is_empty() {
            return Err(bad(s, "empty format name"));
        }
        for row in FORMATS {
            if let Some(params) = (row.parse)(head, &opts) {
                let params = params.map_err(|reason| bad(s, &reason))?;
                return Ok(Spec { row, params });
            }
        }
        Err(bad(s, &format!("unknown format `{head}`")))
    }

    pub fn build(&self) -> Result<Format> {
        let codec = (self.row.build)(&self.params);
        Ok(Format::new(self.clone(), codec))
    }
}

fn bad(spec: &str, reason: &str) -> QuantError {
    let expected: Vec<&str> = FORMATS.iter().map(|r| r.syntax).collect();
    QuantError::BadSpec { spec: spec.to_string(), reason: reason.to_string(), expected: expected.join(", ") }
}

/// Split `turbo4p` into ("turbo", Some(4), "p") given the family prefix.
pub fn split_bits<'a>(head: &'a str, prefix: &str) -> Option<(Option<u32>, &'a str)> {
    let rest = head.strip_prefix(prefix)?;
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    let bits = if digits == 0 { None } else { rest[..digits].parse().ok() };
    Some((bits, &rest[digits..]))
}

/// Apply `g<n>`, `d<n>`, `seed=<n>`, `sym`, `asym`, `fit` options a row allows.
pub fn apply_opts(p: &mut Params, opts: &[&str], allowed: &[&str]) -> std::result::Result<(), String> {
    for &o in opts {
        let (key, val) = if let Some(v) = o.strip_prefix("seed=") {
            ("seed", v)
        } else if o == "sym" || o == "asym" || o == "fit" {
            (o, "")
        } else if let Some(v) = o.strip_prefix('g').filter(|v| v.chars().all(|c| c.is_ascii_digit())) {
            ("g", v)
        } else if let Some(v) = o.strip_prefix('d').filter(|v| v.chars().all(|c| c.is_ascii_digit())) {
            ("d", v)
        } else {
            return Err(format!("unknown option `{o}` (allowed here: {})", allowed.join(", ")));
        };
        if !allowed.contains(&key) {
            return Err(format!("option `{o}` does not apply here (allowed: {})", allowed.join(", ")));
        }
        let num = || val.parse::<u64>().map_err(|_| format!("option `{o}` needs a number"));
        match key {
            "seed" => p.seed = num()?,
            "sym" => p.asym = false,
            "asym" => p.asym = true,
            "fit" => p.fit = true,
            "g" => p.group = num()? as usize,
            "d" => p.dim = num()? as usize,
            _ => unreachable!(),
        }
    }
    Ok(())
}
