//! Plain grids with a per-group scale: uniform (sym/asym) and pi-scaled.

pub mod pi_scaled;
pub mod uniform;
