//! The format table: every codec lowbit knows is one row here — its stable
//! [`FormatId`] (the ggml type number where ggml has the format), name,
//! spec syntax, presets, fixed block geometry where it has one, capability
//! flags ([`Caps`]) and how to build its kernels. Bits per element of a
//! parametric family come from the built codec (all overheads counted).
//! Code elsewhere asks a row's capabilities instead of testing names.
//! Adding a format means adding a row (and its kernel module), nothing else.

use std::sync::Arc;

use crate::codec::Codec;
use crate::ggml::{float, iq4_nl, legacy, q2_k, q3_k, q45_k, q6_k, q8_k, ternary};
use crate::grid::{pi_scaled::PiScaled, uniform::Uniform};
use crate::rot::{polar::Polar, qjl::Qjl, turbo};
use crate::spec::{apply_opts, split_bits, Params, DEFAULT_DIM, DEFAULT_GROUP, DEFAULT_SEED};

type ParseFn = fn(&str, &[&str]) -> Option<Result<Params, String>>;

/// A format's stable identity. Ids below 256 are ggml type numbers (as a
/// GGUF file stores them); lowbit's own families are numbered from 256.
/// Ids are never reused or renumbered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FormatId(pub u16);

impl FormatId {
    pub const F32: FormatId = FormatId(0);
    pub const F16: FormatId = FormatId(1);
    pub const Q4_0: FormatId = FormatId(2);
    pub const Q4_1: FormatId = FormatId(3);
    pub const Q5_0: FormatId = FormatId(6);
    pub const Q5_1: FormatId = FormatId(7);
    pub const Q8_0: FormatId = FormatId(8);
    pub const Q8_1: FormatId = FormatId(9);
    pub const Q2_K: FormatId = FormatId(10);
    pub const Q3_K: FormatId = FormatId(11);
    pub const Q4_K: FormatId = FormatId(12);
    pub const Q5_K: FormatId = FormatId(13);
    pub const Q6_K: FormatId = FormatId(14);
    pub const Q8_K: FormatId = FormatId(15);
    pub const IQ4_NL: FormatId = FormatId(20);
    pub const BF16: FormatId = FormatId(30);
    pub const TQ1_0: FormatId = FormatId(34);
    pub const TQ2_0: FormatId = FormatId(35);
    pub const TURBO: FormatId = FormatId(256);
    pub const TURBO_P: FormatId = FormatId(257);
    pub const QJL: FormatId = FormatId(258);
    pub const POLAR: FormatId = FormatId(259);
    pub const PI: FormatId = FormatId(260);
    pub const UNIFORM: FormatId = FormatId(261);

    /// The ggml type number, for formats ggml has.
    pub fn ggml_type(self) -> Option<u32> {
        (self.0 < 256).then_some(self.0 as u32)
    }

    /// The row of a ggml type number, if lowbit implements that type.
    pub fn from_ggml(ty: u32) -> Option<&'static FormatRow> {
        (ty < 256).then(|| row_of(FormatId(ty as u16))).flatten()
    }
}

/// The row with this id.
pub fn row_of(id: FormatId) -> Option<&'static FormatRow> {
    FORMATS.iter().find(|r| r.id == id)
}

/// What a format can be used for: a set of flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps(u16);

impl Caps {
    /// Stores model weights (matrix rows).
    pub const WEIGHTS: Caps = Caps(1);
    /// Codes one token's key or value head (block divides a head size).
    pub const KV: Caps = Caps(2);
    /// The encoder takes per-element importance weights (imatrix).
    pub const IMPORTANCE: Caps = Caps(4);
    /// Has an integer dot product against quantized activations.
    pub const INT_DOT: Caps = Caps(8);
    /// Has a CUDA kernel (lowbit-cuda decodes it in attention).
    pub const GPU: Caps = Caps(16);
    /// Mixes its input itself (a seeded RHT or projection of `d` dims).
    pub const ROTATES: Caps = Caps(32);
    /// The family is parametrised by a bit width (`turbo3`, `uniform4`).
    pub const BIT_WIDTH: Caps = Caps(64);
    /// Only used to quantize activations (q8_1, q8_k).
    pub const ACTIVATIONS: Caps = Caps(128);

    pub const fn union(self, o: Caps) -> Caps {
        Caps(self.0 | o.0)
    }
    pub fn has(self, o: Caps) -> bool {
        self.0 & o.0 == o.0
    }
}

const W: Caps = Caps::WEIGHTS;
const KV: Caps = Caps::KV;
const IMP: Caps = Caps::IMPORTANCE;
const DOT: Caps = Caps::INT_DOT;
const GPU: Caps = Caps::GPU;
const ROT: Caps = Caps::ROTATES;
const BITS: Caps = Caps::BIT_WIDTH;
const ACT: Caps = Caps::ACTIVATIONS;

pub struct FormatRow {
    pub id: FormatId,
    /// Family name.
    pub family: &'static str,
    /// The spec syntax shown in help and errors.
    pub syntax: &'static str,
    pub about: &'static str,
    /// `(elements, bytes)` of one block for fixed-geometry formats; `None`
    /// where the parameters choose it (group, dimension, bits).
    pub block: Option<(usize, usize)>,
    pub caps: Caps,
    /// Canonical specs `quant-bench` measures.
    pub presets: &'static [&'static str],
    /// `None` when the head is not this row's; `Some(Err)` for a bad option.
    pub parse: ParseFn,
    pub print: fn(&Params) -> String,
    pub build: fn(&Params) -> Arc<dyn Codec>,
}

impl FormatRow {
    pub fn has(&self, c: Caps) -> bool {
        self.caps.has(c)
    }
}

macro_rules! ggml {
    ($id:ident, $name:literal, $codec:expr, $block:expr, $caps:expr, $about:literal) => {
        FormatRow {
            id: FormatId::$id,
            family: $name,
            syntax: $name,
            about: $about,
            block: Some($block),
            caps: $caps,
            presets: &[$name],
            parse: |h, o| {
                (h == $name).then(|| if o.is_empty() { Ok(Params::default()) } else { Err(format!("{} takes no options", $name)) })
            },
            print: |_| $name.to_string(),
            build: |_| Arc::new($codec),
        }
    };
}

/// Parse `<prefix><bits><suffix>` with bits in `lo..=hi` and the given options.
fn family(head: &str, opts: &[&str], prefix: &str, suffix: &str, lo: u32, hi: u32, allowed: &[&str]) -> Option<Result<Params, String>> {
    let (bits, rest) = split_bits(head, prefix)?;
    if rest != suffix {
        return None;
    }
    Some((|| {
        let bits = bits.ok_or_else(|| format!("`{prefix}` needs a bit width {lo}..={hi}, e.g. `{prefix}{lo}{suffix}`"))?;
        if !(lo..=hi).contains(&bits) {
            return Err(format!("{prefix}{suffix} supports {lo}..={hi} bits, got {bits}"));
        }
        let mut p = Params { bits, ..Params::default() };
        apply_opts(&mut p, opts, allowed)?;
        check_dim_group(&p, prefix)?;
        Ok(p)
    })())
}

fn check_dim_group(p: &Params, name: &str) -> Result<(), String> {
    if p.dim < 8 || p.dim % 8 != 0 || p.dim > 65536 {
        return Err(format!("{name}: dimension d{} must be a multiple of 8 in 8..=65536", p.dim));
    }
    if p.group < 8 || p.group % 8 != 0 || p.group > 65536 {
        return Err(format!("{name}: group g{} must be a multiple of 8 in 8..=65536", p.group));
    }
    Ok(())
}

fn rot_opts(p: &Params) -> String {
    let mut s = String::new();
    if p.dim != DEFAULT_DIM {
        s += &format!(":d{}", p.dim);
    }
    if p.seed != DEFAULT_SEED {
        s += &format!(":seed={}", p.seed);
    }
    if p.fit {
        s += ":fit";
    }
    s
}

fn projection_dim(r: Result<Params, String>, name: &str) -> Result<Params, String> {
    let p = r?;
    if p.dim > 4096 {
        return Err(format!("{name}: a Gaussian projection needs d <= 4096, got d{}", p.dim));
    }
    Ok(p)
}

pub static FORMATS: &[FormatRow] = &[
    ggml!(F32, "f32", float::F32, (1, 4), W, "32-bit float"),
    ggml!(F16, "f16", float::F16, (1, 2), W.union(GPU), "IEEE half"),
    ggml!(BF16, "bf16", float::Bf16, (1, 2), W, "bfloat16"),
    ggml!(Q8_0, "q8_0", legacy::Q8_0, (32, 34), W.union(KV).union(DOT).union(GPU), "ggml 8-bit, f16 scale per 32"),
    ggml!(Q8_1, "q8_1", legacy::Q8_1, (32, 36), ACT.union(DOT), "ggml 8-bit with block sums (activations for q4_1/q5_1)"),
    ggml!(Q5_1, "q5_1", legacy::Q5_1, (32, 24), W.union(KV).union(DOT), "ggml 5-bit asymmetric, per 32"),
    ggml!(Q5_0, "q5_0", legacy::Q5_0, (32, 22), W.union(KV).union(DOT), "ggml 5-bit symmetric, per 32"),
    ggml!(Q4_1, "q4_1", legacy::Q4_1, (32, 20), W.union(KV).union(DOT), "ggml 4-bit asymmetric, per 32"),
    ggml!(Q4_0, "q4_0", legacy::Q4_0, (32, 18), W.union(KV).union(DOT), "ggml 4-bit symmetric, per 32"),
    ggml!(Q8_K, "q8_k", q8_k::Q8K, (256, 292), ACT.union(DOT), "ggml 8-bit k-quant (activations)"),
    ggml!(Q6_K, "q6_k", q6_k::Q6K, (256, 210), W.union(IMP).union(DOT), "ggml 6-bit k-quant"),
    ggml!(Q5_K, "q5_k", q45_k::Q5K, (256, 176), W.union(IMP).union(DOT), "ggml 5-bit k-quant"),
    ggml!(Q4_K, "q4_k", q45_k::Q4K, (256, 144), W.union(IMP).union(DOT), "ggml 4-bit k-quant"),
    ggml!(Q3_K, "q3_k", q3_k::Q3K, (256, 110), W.union(IMP).union(DOT), "ggml 3-bit k-quant"),
    ggml!(Q2_K, "q2_k", q2_k::Q2K, (256, 84), W.union(IMP).union(DOT), "ggml 2-bit k-quant"),
    ggml!(IQ4_NL, "iq4_nl", iq4_nl::Iq4Nl, (32, 18), W.union(KV).union(IMP).union(DOT), "ggml 4-bit non-linear grid, per 32"),
    ggml!(TQ2_0, "tq2_0", ternary::Tq2_0, (256, 66), W.union(DOT), "ggml ternary, 2 bits per trit"),
    ggml!(TQ1_0, "tq1_0", ternary::Tq1_0, (256, 54), W.union(DOT), "ggml ternary, 5 trits per byte"),
    FormatRow {
        id: FormatId::TURBO,
        family: "turbo",
        block: None,
        caps: W.union(KV).union(GPU).union(ROT).union(BITS),
        syntax: "turbo{1..5}[:d<dim>][:seed=<n>][:fit]",
        about: "TurboQuant MSE: norm + RHT + Lloyd-Max codes (fit: encoder searches codebook stretches)",
        presets: &["turbo1", "turbo2", "turbo3", "turbo4", "turbo5", "turbo4:fit"],
        parse: |h, o| family(h, o, "turbo", "", 1, 5, &["d", "seed", "fit"]),
        print: |p| format!("turbo{}{}", p.bits, rot_opts(p)),
        build: |p| Arc::new(turbo::TurboMse::new(p.dim, p.bits, p.seed).fitted(p.fit)),
    },
    FormatRow {
        id: FormatId::TURBO_P,
        family: "turbo-p",
        block: None,
        caps: KV.union(ROT).union(BITS),
        syntax: "turbo{2..5}p[:d<dim>][:seed=<n>]",
        about: "TurboQuant inner-product: (b-1)-bit MSE + 1-bit QJL residual, unbiased",
        presets: &["turbo2p", "turbo3p", "turbo4p", "turbo5p"],
        parse: |h, o| family(h, o, "turbo", "p", 2, 5, &["d", "seed"]).map(|r| projection_dim(r, "turbo-p")),
        print: |p| format!("turbo{}p{}", p.bits, rot_opts(p)),
        build: |p| Arc::new(turbo::TurboIp::new(p.dim, p.bits, p.seed)),
    },
    FormatRow {
        id: FormatId::QJL,
        family: "qjl",
        block: None,
        caps: KV.union(ROT),
        syntax: "qjl[:d<dim>][:seed=<n>]",
        about: "QJL: norm + sign bits of a Gaussian projection",
        presets: &["qjl"],
        parse: |h, o| {
            (h == "qjl").then(|| {
                let mut p = Params { bits: 1, ..Params::default() };
                apply_opts(&mut p, o, &["d", "seed"])?;
                check_dim_group(&p, "qjl")?;
                projection_dim(Ok(p), "qjl")
            })
        },
        print: |p| format!("qjl{}", rot_opts(p)),
        build: |p| Arc::new(Qjl::new(p.dim, p.seed)),
    },
    FormatRow {
        id: FormatId::POLAR,
        family: "polar",
        block: None,
        caps: W.union(KV).union(ROT).union(BITS),
        syntax: "polar{3,4}[:d<dim>][:seed=<n>][:fit]",
        about: "PolarQuant: RHT + pairs coded as points on rings (angles per ring)",
        presets: &["polar3", "polar4", "polar4:fit"],
        parse: |h, o| family(h, o, "polar", "", 3, 4, &["d", "seed", "fit"]),
        print: |p| format!("polar{}{}", p.bits, rot_opts(p)),
        build: |p| Arc::new(Polar::new(p.dim, p.bits, p.seed).fitted(p.fit)),
    },
    FormatRow {
        id: FormatId::PI,
        family: "pi",
        block: None,
        caps: W.union(BITS),
        syntax: "pi{2,3}[:g<group>]",
        about: "pi-scaled grid, step alpha*pi/k, f16 alpha per group",
        presets: &["pi2", "pi3"],
        parse: |h, o| family(h, o, "pi", "", 2, 3, &["g"]),
        print: |p| if p.group == DEFAULT_GROUP { format!("pi{}", p.bits) } else { format!("pi{}:g{}", p.bits, p.group) },
        build: |p| Arc::new(PiScaled { bits: p.bits, group: p.group }),
    },
    FormatRow {
        id: FormatId::UNIFORM,
        family: "uniform",
        block: None,
        caps: W.union(KV).union(GPU).union(BITS),
        syntax: "uniform{2..8}[:g<group>][:sym|:asym]",
        about: "uniform group quantization, f16 scale (+ min when asym)",
        presets: &[
            "uniform2:g32:asym",
            "uniform2:g32:sym",
            "uniform3:g32:asym",
            "uniform3:g32:sym",
            "uniform4:g32:asym",
            "uniform4:g32:sym",
            "uniform8:g32:sym",
        ],
        parse: |h, o| family(h, o, "uniform", "", 2, 8, &["g", "sym", "asym"]),
        print: |p| format!("uniform{}:g{}:{}", p.bits, p.group, if p.asym { "asym" } else { "sym" }),
        build: |p| Arc::new(Uniform { bits: p.bits, group: p.group, asym: p.asym }),
    },
];

/// Every preset spec of every row, in table order.
pub fn presets() -> impl Iterator<Item = &'static str> {
    FORMATS.iter().flat_map(|r| r.presets.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags and geometry a row declares agree with the codec it builds.
    #[test]
    fn rows_agree_with_their_codecs() {
        let mut ids = std::collections::HashSet::new();
        for row in FORMATS {
            assert!(ids.insert(row.id), "{}: duplicate id {:?}", row.family, row.id);
            assert_eq!(row_of(row.id).map(|r| r.family), Some(row.family));
            for preset in row.presets {
                let f = crate::Format::parse(preset).unwrap();
                assert_eq!(f.spec().row.id, row.id, "{preset}");
                let c = f.codec();
                if let Some((elems, bytes)) = row.block {
                    assert_eq!((c.block_elems(), c.block_bytes()), (elems, bytes), "{preset}: block geometry");
                }
                assert_eq!(row.has(Caps::IMPORTANCE), c.supports_importance(), "{preset}: importance flag");
                assert_eq!(row.has(Caps::INT_DOT), c.activation().is_some(), "{preset}: integer-dot flag");
                // QJL projects rather than rotates: no Rht, but it still mixes its input.
                assert!(row.has(Caps::ROTATES) || c.rotation().is_none(), "{preset}: rotation flag");
            }
        }
    }

    #[test]
    fn ggml_numbers_round_trip() {
        assert_eq!(FormatId::from_ggml(12).map(|r| r.family), Some("q4_k"));
        assert_eq!(FormatId::from_ggml(30).map(|r| r.family), Some("bf16"));
        assert_eq!(FormatId::from_ggml(16).map(|r| r.family), None, "iq2_xxs is not implemented");
        assert_eq!(FormatId::TURBO.ggml_type(), None);
        for row in FORMATS.iter().filter(|r| r.id.ggml_type().is_some()) {
            assert_eq!(FormatId::from_ggml(row.id.ggml_type().unwrap()).unwrap().id, row.id);
        }
    }
}
