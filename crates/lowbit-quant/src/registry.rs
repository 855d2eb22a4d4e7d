//! The format table: every codec lowbit knows is one row here — its name,
//! spec syntax, presets, and how to build its kernels. Bits per element and
//! block size come from the built codec (all overheads counted). Adding a
//! format means adding a row (and its kernel module), nothing else.

use std::sync::Arc;

use crate::codec::Codec;
use crate::ggml::{float, iq4_nl, legacy, q2_k, q3_k, q45_k, q6_k, q8_k, ternary};
use crate::grid::{pi_scaled::PiScaled, uniform::Uniform};
use crate::rot::{polar::Polar, qjl::Qjl, turbo};
use crate::spec::{apply_opts, split_bits, Params, DEFAULT_DIM, DEFAULT_GROUP, DEFAULT_SEED};

type ParseFn = fn(&str, &[&str]) -> Option<Result<Params, String>>;

pub struct FormatRow {
    /// Family name.
    pub family: &'static str,
    /// The spec syntax shown in help and errors.
    pub syntax: &'static str,
    pub about: &'static str,
    /// Canonical specs `quant-bench` measures.
    pub presets: &'static [&'static str],
    /// `None` when the head is not this row's; `Some(Err)` for a bad option.
    pub parse: ParseFn,
    pub print: fn(&Params) -> String,
    pub build: fn(&Params) -> Arc<dyn Codec>,
}

macro_rules! ggml {
    ($name:literal, $codec:expr, $about:literal) => {
        FormatRow {
            family: $name,
            syntax: $name,
            about: $about,
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
    ggml!("f32", float::F32, "32-bit float"),
    ggml!("f16", float::F16, "IEEE half"),
    ggml!("bf16", float::Bf16, "bfloat16"),
    ggml!("q8_0", legacy::Q8_0, "ggml 8-bit, f16 scale per 32"),
    ggml!("q8_1", legacy::Q8_1, "ggml 8-bit with block sums (activations for q4_1/q5_1)"),
    ggml!("q5_1", legacy::Q5_1, "ggml 5-bit asymmetric, per 32"),
    ggml!("q5_0", legacy::Q5_0, "ggml 5-bit symmetric, per 32"),
    ggml!("q4_1", legacy::Q4_1, "ggml 4-bit asymmetric, per 32"),
    ggml!("q4_0", legacy::Q4_0, "ggml 4-bit symmetric, per 32"),
    ggml!("q8_k", q8_k::Q8K, "ggml 8-bit k-quant (activations)"),
    ggml!("q6_k", q6_k::Q6K, "ggml 6-bit k-quant"),
    ggml!("q5_k", q45_k::Q5K, "ggml 5-bit k-quant"),
    ggml!("q4_k", q45_k::Q4K, "ggml 4-bit k-quant"),
    ggml!("q3_k", q3_k::Q3K, "ggml 3-bit k-quant"),
    ggml!("q2_k", q2_k::Q2K, "ggml 2-bit k-quant"),
    ggml!("iq4_nl", iq4_nl::Iq4Nl, "ggml 4-bit non-linear grid, per 32"),
    ggml!("tq2_0", ternary::Tq2_0, "ggml ternary, 2 bits per trit"),
    ggml!("tq1_0", ternary::Tq1_0, "ggml ternary, 5 trits per byte"),
    FormatRow {
        family: "turbo",
        syntax: "turbo{1..5}[:d<dim>][:seed=<n>][:fit]",
        about: "TurboQuant MSE: norm + RHT + Lloyd-Max codes (fit: encoder searches codebook stretches)",
        presets: &["turbo1", "turbo2", "turbo3", "turbo4", "turbo5", "turbo4:fit"],
        parse: |h, o| family(h, o, "turbo", "", 1, 5, &["d", "seed", "fit"]),
        print: |p| format!("turbo{}{}", p.bits, rot_opts(p)),
        build: |p| Arc::new(turbo::TurboMse::new(p.dim, p.bits, p.seed).fitted(p.fit)),
    },
    FormatRow {
        family: "turbo-p",
        syntax: "turbo{2..5}p[:d<dim>][:seed=<n>]",
        about: "TurboQuant inner-product: (b-1)-bit MSE + 1-bit QJL residual, unbiased",
        presets: &["turbo2p", "turbo3p", "turbo4p", "turbo5p"],
        parse: |h, o| family(h, o, "turbo", "p", 2, 5, &["d", "seed"]).map(|r| projection_dim(r, "turbo-p")),
        print: |p| format!("turbo{}p{}", p.bits, rot_opts(p)),
        build: |p| Arc::new(turbo::TurboIp::new(p.dim, p.bits, p.seed)),
    },
    FormatRow {
        family: "qjl",
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
        family: "polar",
        syntax: "polar{3,4}[:d<dim>][:seed=<n>][:fit]",
        about: "PolarQuant: RHT + pairs coded as points on rings (angles per ring)",
        presets: &["polar3", "polar4", "polar4:fit"],
        parse: |h, o| family(h, o, "polar", "", 3, 4, &["d", "seed", "fit"]),
        print: |p| format!("polar{}{}", p.bits, rot_opts(p)),
        build: |p| Arc::new(Polar::new(p.dim, p.bits, p.seed).fitted(p.fit)),
    },
    FormatRow {
        family: "pi",
        syntax: "pi{2,3}[:g<group>]",
        about: "pi-scaled grid, step alpha*pi/k, f16 alpha per group",
        presets: &["pi2", "pi3"],
        parse: |h, o| family(h, o, "pi", "", 2, 3, &["g"]),
        print: |p| if p.group == DEFAULT_GROUP { format!("pi{}", p.bits) } else { format!("pi{}:g{}", p.bits, p.group) },
        build: |p| Arc::new(PiScaled { bits: p.bits, group: p.group }),
    },
    FormatRow {
        family: "uniform",
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
