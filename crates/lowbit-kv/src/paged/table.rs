//! Sequences: each is, per layer, a table of block ids plus how far each
//! plane's tokens are coded. Sequences are named by [`SeqId`]s handed out
//! by the cache; any number may be live at once.

use std::collections::HashMap;

use half::f16;

use crate::error::{KvError, Result};

/// A live sequence of a [`super::PagedCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u32);

impl std::fmt::Display for SeqId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One plane's coding state in one layer of one sequence.
#[derive(Clone, Default)]
pub(super) struct Progress {
    /// Tokens 0..coded are coded.
    pub coded: usize,
    /// `coded` when the current store batch began: those tokens' raw rows
    /// may be gone, so every query must use their codes.
    pub base: usize,
    /// Blocks below this index had their raw rows freed.
    pub settled: usize,
    /// Per tier age: how many leading blocks have crossed it.
    pub tiered: Vec<usize>,
}

#[derive(Clone, Default)]
pub(super) struct SeqLayer {
    /// f16 rows of the sink tokens, per side.
    pub sink: [Vec<f16>; 2],
    pub table: Vec<u32>,
    /// Positions stored (sink included).
    pub len: usize,
    /// Per side.
    pub progress: [Progress; 2],
}

/// The live sequences.
#[derive(Default)]
pub(super) struct Seqs {
    live: HashMap<SeqId, Vec<SeqLayer>>,
    next: u32,
}

impl Seqs {
    pub fn add(&mut self, layers: Vec<SeqLayer>) -> SeqId {
        let id = SeqId(self.next);
        self.next += 1;
        self.live.insert(id, layers);
        id
    }

    pub fn get(&self, id: SeqId) -> Result<&[SeqLayer]> {
        self.live.get(&id).map(Vec::as_slice).ok_or(KvError::NoSequence(id.0 as usize))
    }

    pub fn layer_mut(&mut self, id: SeqId, layer: usize) -> Result<&mut SeqLayer> {
        Ok(&mut self.live.get_mut(&id).ok_or(KvError::NoSequence(id.0 as usize))?[layer])
    }

    pub fn remove(&mut self, id: SeqId) -> Result<Vec<SeqLayer>> {
        self.live.remove(&id).ok_or(KvError::NoSequence(id.0 as usize))
    }

    pub fn all(&self) -> impl Iterator<Item = (&SeqId, &Vec<SeqLayer>)> {
        self.live.iter()
    }
}
