//! The rotation + codebook family: RHT, Lloyd–Max codebooks, TurboQuant,
//! QJL, PolarQuant.

pub mod gauss_proj;
pub mod lloyd_max;
pub mod polar;
pub mod qjl;
pub mod rht;
pub mod turbo;
