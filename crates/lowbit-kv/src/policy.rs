//! KV policies as spec strings, parsed and printed in one place.
//!
//! Grammar (comma-separated items):
//! - `CODEC` or `kv=CODEC` — the codec of keys and values;
//! - `k=CODEC`, `v=CODEC` — keys or values alone;
//! - `k[0-3]=CODEC`, `v[5]=CODEC`, `kv[0-1]=CODEC` — per-layer overrides;
//! - `window=R` — the most recent R tokens stay in f16;
//! - `sink=S` — the first S tokens stay in f16 (attention sinks: most
//!   heads put much of their weight on the first token, so its error is
//!   not averaged away);
//! - `tiers=B1@A1,B2@A2,…,Bn` — progressive tiers by age: coded tokens
//!   younger than A1 use B1 bits, younger than A2 use B2, older ones Bn.
//!   The plane codecs give the family (kivi, turbo, uniform, polar); a
//!   block is re-coded once all its tokens cross an age, at the next store.
//!
//! CODEC is `f16`; a ggml block format `q8_0`, `q5_0`, `q5_1`, `q4_0`,
//! `q4_1`, `iq4_nl`; `kivi{2..8}[:g<G>]` (keys per channel in groups of G
//! tokens, values per token in groups of G channels, asymmetric); a
//! rotating codec `turbo{1..5}`, `turbo{2..5}p`, `qjl`, `polar{3,4}` (its
//! dimension is the model's head size); or `uniform{2..8}[:g<G>][:sym|:asym]`.
//! `+rht` rotates a non-rotating codec's input with a seeded RHT first.
//! `+center` (per-token codecs) codes each block's per-channel mean once
//! (q8_0) and the tokens' differences from it: keys carry a large common
//! component (60–80% of their energy in SmolLM2) that per-token codecs
//! otherwise spend their bits on.
//! The whole policy `f32` selects the uncompressed f32 reference cache.

use std::fmt;

use lowbit_quant::{Caps, FormatId, Spec};

use crate::error::{KvError, Result};

const EXPECTED: &str = "CODEC | kv=CODEC | k=CODEC | v=CODEC | k[a-b]=CODEC | v[a]=CODEC | window=R | sink=S | tiers=B@AGE,…,B, \
CODEC one of f16, q8_0, q5_0, q5_1, q4_0, q4_1, iq4_nl, kivi{2..8}[:g<G>], turbo{1..5}, turbo{2..5}p, qjl, polar{3,4}, \
uniform{2..8}[:g<G>][:sym|:asym], with +rht on the non-rotating ones; or the whole policy `f32`";

/// The policy grammar, for command-line help.
pub const GRAMMAR: &str = "KV policy grammar (comma-separated items):
  CODEC | kv=CODEC        keys and values
  k=CODEC, v=CODEC        keys or values alone
  k[0-3]=CODEC, v[5]=...  per-layer overrides (also kv[a-b]=)
  window=R                the R most recent tokens stay f16
  sink=S                  the first S tokens stay f16 (attention sinks)
  tiers=B@AGE,...,B       re-code blocks at fewer bits as they age
CODEC: f16 | q8_0 q5_0 q5_1 q4_0 q4_1 iq4_nl | kivi{2..8}[:g<G>] |
  turbo{1..5} | turbo{2..5}p | qjl | polar{3,4} | uniform{2..8}[:g<G>][:sym|:asym]
  +rht  rotate a non-rotating codec's input (seeded RHT)
  +center  code each block's channel mean once and tokens as differences
Examples: q8_0 | k=turbo4,v=turbo3,window=64 | k=kivi4:g64,v=turbo4+center,sink=1";

/// The codec of one plane (keys or values) of one layer.
#[derive(Clone, Debug, PartialEq)]
pub enum CodecSpec {
    F16,
    /// KIVI: `bits`, group `group` (tokens for keys, channels for values).
    Kivi { bits: u32, group: usize, rht: bool },
    /// A row of lowbit-quant's format table, coded per token; `center`
    /// subtracts each block's channel mean first.
    Quant { spec: Spec, rht: bool, center: bool },
}

impl CodecSpec {
    pub fn parse(s: &str) -> std::result::Result<CodecSpec, String> {
        let mut name = s;
        let (mut rht, mut center) = (false, false);
        loop {
            if let Some(n) = name.strip_suffix("+rht") {
                (name, rht) = (n, true);
            } else if let Some(n) = name.strip_suffix("+center") {
                (name, center) = (n, true);
            } else {
                break;
            }
        }
        if name == "f16" {
            return if rht || center { Err("f16 takes no +rht or +center".into()) } else { Ok(CodecSpec::F16) };
        }
        if let Some(rest) = name.strip_prefix("kivi") {
            let mut parts = rest.split(':');
            let bits: u32 = parts.next().unwrap_or("").parse().map_err(|_| format!("`{name}`: kivi needs a bit width 2..=8, e.g. kivi2"))?;
            if !(2..=8).contains(&bits) {
                return Err(format!("kivi supports 2..=8 bits, got {bits}"));
            }
            let mut group = 32;
            for o in parts {
                group = o
                    .strip_prefix('g')
                    .and_then(|g| g.parse().ok())
                    .ok_or_else(|| format!("`{name}`: unknown kivi option `{o}` (expected g<G>)"))?;
                if !(8..=1024).contains(&group) || group % 8 != 0 {
                    return Err(format!("kivi group g{group} must be a multiple of 8 in 8..=1024"));
                }
            }
            if center {
                return Err("kivi keys already have a per-channel minimum; +center is for per-token codecs".into());
            }
            return Ok(CodecSpec::Kivi { bits, group, rht });
        }
        // The quant table's own list of formats would name weight-only ones;
        // the caller appends the KV codecs instead.
        let spec = Spec::parse(name).map_err(|e| match e {
            lowbit_quant::QuantError::BadSpec { reason, .. } => reason,
            other => other.to_string(),
        })?;
        if !spec.row.has(Caps::KV) {
            return Err(format!("`{name}` is not a KV codec"));
        }
        if spec.row.has(Caps::ROTATES) {
            if rht {
                return Err(format!("`{name}` already rotates; +rht is for the others"));
            }
            if spec.params.dim != lowbit_quant::spec::DEFAULT_DIM {
                return Err(format!("`{name}`: the dimension is the model's head size, leave out :d"));
            }
        }
        Ok(CodecSpec::Quant { spec, rht, center })
    }

    /// The same codec at another bit width (for tiers).
    pub fn with_bits(&self, bits: u32) -> std::result::Result<CodecSpec, String> {
        let mut c = self.clone();
        match &mut c {
            CodecSpec::Kivi { bits: b, .. } => *b = bits,
            // turbo-p splits its bits between two codes; tiers keep it whole.
            CodecSpec::Quant { spec, .. } if spec.row.has(Caps::BIT_WIDTH) && spec.row.id != FormatId::TURBO_P => spec.params.bits = bits,
            _ => return Err(format!("tiers need a codec family with a bit width (kivi, turbo, polar, uniform), not `{self}`")),
        }
        // Printing and parsing again checks the width against the family.
        CodecSpec::parse(&c.to_string())
    }

    pub fn is_f16(&self) -> bool {
        matches!(self, CodecSpec::F16)
    }
}

impl fmt::Display for CodecSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, rht, center) = match self {
            CodecSpec::F16 => ("f16".to_string(), false, false),
            CodecSpec::Kivi { bits, group, rht } => (format!("kivi{bits}:g{group}"), *rht, false),
            CodecSpec::Quant { spec, rht, center } => (spec.to_string(), *rht, *center),
        };
        write!(f, "{name}{}{}", if rht { "+rht" } else { "" }, if center { "+center" } else { "" })
    }
}

/// A per-layer override: layers `first..=last` use these codecs.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerOverride {
    pub first: usize,
    pub last: usize,
    pub k: Option<CodecSpec>,
    pub v: Option<CodecSpec>,
}

/// A whole KV policy: codecs for keys and values, per-layer overrides and
/// the full-precision window.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub k: CodecSpec,
    pub v: CodecSpec,
    pub window: usize,
    /// The first `sink` tokens stay in f16.
    pub sink: usize,
    /// Progressive tiers: (bits, age limit); the last has no limit.
    pub tiers: Vec<(u32, Option<usize>)>,
    pub overrides: Vec<LayerOverride>,
    /// The plain f32 reference cache (policy `f32`).
    pub f32_reference: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::f16()
    }
}

impl Policy {
    pub fn f16() -> Policy {
        Policy { k: CodecSpec::F16, v: CodecSpec::F16, window: 0, sink: 0, tiers: vec![], overrides: vec![], f32_reference: false }
    }

    pub fn f32() -> Policy {
        Policy { f32_reference: true, ..Policy::f16() }
    }

    pub fn parse(s: &str) -> Result<Policy> {
        let bad = |reason: String| KvError::BadPolicy { spec: s.to_string(), reason, expected: EXPECTED };
        let text = s.trim().to_ascii_lowercase();
        if text == "f32" {
            return Ok(Policy::f32());
        }
        if text.is_empty() {
            return Err(bad("empty policy".into()));
        }
        let mut p = Policy::f16();
        let (mut k, mut v, mut window, mut sink) = (None, None, None, None);
        let mut in_tiers = false;
        for item in text.split(',').map(str::trim) {
            // Tier entries continue a `tiers=` list: `B@AGE`, then a final `B`.
            let tier = |e: &str| -> std::result::Result<(u32, Option<usize>), String> {
                let (b, a) = match e.split_once('@') {
                    Some((b, a)) => (b, Some(a.parse::<usize>().map_err(|_| format!("tier `{e}`: bad age"))?)),
                    None => (e, None),
                };
                Ok((b.parse::<u32>().map_err(|_| format!("tier `{e}`: expected BITS@AGE or BITS"))?, a))
            };
            if in_tiers && item.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                let t = tier(item).map_err(&bad)?;
                in_tiers = t.1.is_some();
                p.tiers.push(t);
                continue;
            }
            if let Some(first) = item.strip_prefix("tiers=") {
                if !p.tiers.is_empty() {
                    return Err(bad("tiers given twice".into()));
                }
                let t = tier(first.trim()).map_err(&bad)?;
                in_tiers = t.1.is_some();
                p.tiers.push(t);
                continue;
            }
            if in_tiers {
                return Err(bad(format!("tiers must end with a bare bit width (e.g. `tiers=4@1024,2`), got `{item}`")));
            }
            let (key, val) = match item.split_once('=') {
                Some((key, val)) => (key.trim(), val.trim()),
                None => ("kv", item),
            };
            let codec = || CodecSpec::parse(val).map_err(|r| bad(format!("item `{item}`: {r}")));
            let set = |slot: &mut Option<CodecSpec>, c: CodecSpec| {
                if slot.replace(c).is_some() {
                    Err(bad(format!("item `{item}` sets a codec twice")))
                } else {
                    Ok(())
                }
            };
            if key == "window" {
                let r: usize = val.parse().map_err(|_| bad(format!("`{item}`: window needs a token count")))?;
                if window.replace(r).is_some() {
                    return Err(bad("window given twice".into()));
                }
            } else if key == "sink" {
                let r: usize = val.parse().map_err(|_| bad(format!("`{item}`: sink needs a token count")))?;
                if sink.replace(r).is_some() {
                    return Err(bad("sink given twice".into()));
                }
            } else if let Some((plane, range)) = key.split_once('[') {
                let range = range.strip_suffix(']').ok_or_else(|| bad(format!("`{item}`: expected `{plane}[a-b]=CODEC`")))?;
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                let (first, last) = match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    (Ok(a), Ok(b)) if a <= b => (a, b),
                    _ => return Err(bad(format!("`{item}`: bad layer range `{range}`"))),
                };
                let c = codec()?;
                let (ko, vo) = match plane {
                    "k" => (Some(c), None),
                    "v" => (None, Some(c)),
                    "kv" => (Some(c.clone()), Some(c)),
                    _ => return Err(bad(format!("`{item}`: expected k[..], v[..] or kv[..]"))),
                };
                p.overrides.push(LayerOverride { first, last, k: ko, v: vo });
            } else {
                match key {
                    "k" => set(&mut k, codec()?)?,
                    "v" => set(&mut v, codec()?)?,
                    "kv" => {
                        let c = codec()?;
                        set(&mut k, c.clone())?;
                        set(&mut v, c)?;
                    }
                    _ => return Err(bad(format!("unknown item `{item}`"))),
                }
            }
        }
        if in_tiers {
            return Err(bad("tiers must end with a bare bit width (e.g. `tiers=4@1024,2`)".into()));
        }
        if p.tiers.windows(2).any(|w| w[0].1 >= w[1].1 && w[1].1.is_some()) {
            return Err(bad("tier ages must increase".into()));
        }
        p.k = k.unwrap_or(CodecSpec::F16);
        p.v = v.unwrap_or(CodecSpec::F16);
        p.window = window.unwrap_or(0);
        p.sink = sink.unwrap_or(0);
        Ok(p)
    }

    /// The codecs of keys and values of `layer`, overrides applied in order.
    pub fn layer(&self, layer: usize) -> (&CodecSpec, &CodecSpec) {
        let (mut k, mut v) = (&self.k, &self.v);
        for o in self.overrides.iter().filter(|o| (o.first..=o.last).contains(&layer)) {
            if let Some(c) = &o.k {
                k = c;
            }
            if let Some(c) = &o.v {
                v = c;
            }
        }
        (k, v)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.f32_reference {
            return f.write_str("f32");
        }
        write!(f, "k={},v={}", self.k, self.v)?;
        if self.window > 0 {
            write!(f, ",window={}", self.window)?;
        }
        if self.sink > 0 {
            write!(f, ",sink={}", self.sink)?;
        }
        for (i, (b, a)) in self.tiers.iter().enumerate() {
            write!(f, "{}{b}", if i == 0 { ",tiers=" } else { "," })?;
            if let Some(a) = a {
                write!(f, "@{a}")?;
            }
        }
        for o in &self.overrides {
            let r = if o.first == o.last { o.first.to_string() } else { format!("{}-{}", o.first, o.last) };
            match (&o.k, &o.v) {
                (Some(k), Some(v)) if k == v => write!(f, ",kv[{r}]={k}")?,
                (k, v) => {
                    if let Some(k) = k {
                        write!(f, ",k[{r}]={k}")?;
                    }
                    if let Some(v) = v {
                        write!(f, ",v[{r}]={v}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Policy {
    type Err = KvError;
    fn from_str(s: &str) -> Result<Policy> {
        Policy::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        for (input, canon) in [
            ("f16", "k=f16,v=f16"),
            ("f32", "f32"),
            ("q4_0", "k=q4_0,v=q4_0"),
            ("k=q8_0,v=q4_0", "k=q8_0,v=q4_0"),
            ("k=turbo4, v=turbo3, window=64", "k=turbo4,v=turbo3,window=64"),
            ("sink=4,turbo3,window=16", "k=turbo3,v=turbo3,window=16,sink=4"),
            ("kivi4,tiers=8@1024,4@8192,2", "k=kivi4:g32,v=kivi4:g32,tiers=8@1024,4@8192,2"),
            ("tiers=4@64,2,k=turbo4+center,v=turbo4", "k=turbo4+center,v=turbo4,tiers=4@64,2"),
            ("kivi2", "k=kivi2:g32,v=kivi2:g32"),
            ("kv=kivi4:g128,window=128", "k=kivi4:g128,v=kivi4:g128,window=128"),
            ("k=q4_0+rht,v=uniform3:g32:asym", "k=q4_0+rht,v=uniform3:g32:asym"),
            ("k=turbo4+center,v=q4_0+center+rht", "k=turbo4+center,v=q4_0+rht+center"),
            ("k=turbo4p,v=polar3,kv[0-1]=q8_0,v[29]=f16", "k=turbo4p,v=polar3,kv[0-1]=q8_0,v[29]=f16"),
        ] {
            let p = Policy::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(p.to_string(), canon);
            assert_eq!(Policy::parse(canon).unwrap(), p, "{canon} reparses");
        }
    }

    #[test]
    fn layer_overrides_apply() {
        let p = Policy::parse("k=turbo3,v=turbo3,kv[0-1]=q8_0,v[1]=f16").unwrap();
        assert_eq!(p.layer(0).0.to_string(), "q8_0");
        assert_eq!(p.layer(1).1.to_string(), "f16");
        assert_eq!(p.layer(2).0.to_string(), "turbo3");
    }

    #[test]
    fn rejects_bad_policies_with_a_reason() {
        for (bad, needle) in [
            ("", "empty"),
            ("k=q4_k", "not a KV codec"),
            ("k=turbo9", "1..=5"),
            ("k=turbo4+rht", "already rotates"),
            ("k=turbo4:d64", "head size"),
            ("kivi9", "2..=8"),
            ("kivi2:g7", "multiple of 8"),
            ("k=q8_0,k=q4_0", "twice"),
            ("window=x", "token count"),
            ("k[3-1]=q8_0", "layer range"),
            ("depth=3", "unknown item"),
            ("kivi4,tiers=4@100", "bare bit width"),
            ("kivi4,tiers=4@100,3@50,2", "increase"),
            ("kivi4,tiers=4@x,2", "bad age"),
            ("zzz", "unknown format"),
        ] {
            let e = Policy::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "`{bad}` -> {e}");
        }
    }
}
