//! Token blocks, their reference counts and the free list. A fork shares
//! blocks; the first write to a shared block copies it ([`Pool::unique`]).

use half::f16;

use crate::layout::Side;

/// One plane (keys or values) of a block.
#[derive(Clone, Default)]
pub(super) struct Plane {
    /// f16 rows of tokens not yet coded (all KV heads, token-major).
    pub raw: Vec<f16>,
    /// One region per KV head.
    pub codes: Vec<u8>,
    /// Index into the layer's tier codecs the codes are in.
    pub tier: u8,
}

impl Plane {
    pub fn bytes(&self) -> usize {
        self.raw.len() * 2 + self.codes.len()
    }
}

#[derive(Clone, Default)]
pub(super) struct Block {
    planes: [Plane; 2],
}

impl Block {
    pub fn plane(&self, side: Side) -> &Plane {
        &self.planes[side as usize]
    }
    pub fn plane_mut(&mut self, side: Side) -> &mut Plane {
        &mut self.planes[side as usize]
    }
    pub fn bytes(&self) -> usize {
        self.planes.iter().map(Plane::bytes).sum()
    }
}

#[derive(Default)]
pub(super) struct Pool {
    blocks: Vec<Block>,
    refs: Vec<u32>,
    free: Vec<u32>,
}

impl Pool {
    pub fn alloc(&mut self, b: Block) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.blocks[id as usize] = b;
                self.refs[id as usize] = 1;
                id
            }
            None => {
                self.blocks.push(b);
                self.refs.push(1);
                (self.blocks.len() - 1) as u32
            }
        }
    }

    /// One more holder of block `id`.
    pub fn retain(&mut self, id: u32) {
        self.refs[id as usize] += 1;
    }

    pub fn release(&mut self, id: u32) {
        let r = &mut self.refs[id as usize];
        *r -= 1;
        if *r == 0 {
            self.blocks[id as usize] = Block::default();
            self.free.push(id);
        }
    }

    pub fn get(&self, id: u32) -> &Block {
        &self.blocks[id as usize]
    }

    /// Block `id` for an edit every holder agrees with (freeing raw rows
    /// all holders have coded); other writes go through [`Pool::unique`].
    pub fn get_mut(&mut self, id: u32) -> &mut Block {
        &mut self.blocks[id as usize]
    }

    /// The block a table entry points to, made private to that table first
    /// (copied, and the entry re-pointed, when another table shares it).
    pub fn unique(&mut self, entry: &mut u32) -> &mut Block {
        let id = *entry as usize;
        if self.refs[id] > 1 {
            let copy = self.blocks[id].clone();
            self.refs[id] -= 1;
            *entry = self.alloc(copy);
        }
        &mut self.blocks[*entry as usize]
    }

    /// Blocks held by at least one table.
    pub fn in_use(&self) -> usize {
        self.refs.iter().filter(|&&r| r > 0).count()
    }

    /// Bytes of every block plus one reference count per slot.
    pub fn bytes(&self) -> usize {
        self.blocks.iter().map(Block::bytes).sum::<usize>() + self.refs.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_blocks_are_copied_on_first_write_and_freed_by_the_last_holder() {
        let mut p = Pool::default();
        let mut a = p.alloc(Block::default());
        p.retain(a);
        let mut b = a;
        p.unique(&mut b).plane_mut(Side::Key).codes = vec![7];
        assert_ne!(a, b, "the second holder got a copy");
        assert!(p.get(a).plane(Side::Key).codes.is_empty(), "the original is untouched");
        assert_eq!(p.in_use(), 2);
        let before = a;
        p.unique(&mut a);
        assert_eq!(a, before, "a private block is written in place");
        p.release(a);
        p.release(b);
        assert_eq!(p.in_use(), 0);
        assert_eq!(p.alloc(Block::default()), b, "freed slots are reused");
    }
}
