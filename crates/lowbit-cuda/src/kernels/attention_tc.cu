// Decode attention on tensor cores for turbo4, turbo3, turbo2 and kivi2 caches (same
// cache layout and partial results as attn_* in attention.cu; the window
// and the merge of the splits are attn_finish_tc at the end of this file).
//
// Each warp takes whole cache blocks (32 tokens) on its own, copied into a
// private three-stage shared-memory ring with cp.async, and keeps its own
// online-softmax state; the warps of a thread block merge at the end.
// Both products run as mma.m16n8k16 (f16 inputs, f32 accumulation):
//
//   scores  Sᵀ[row][t] = Σ_d Q[row][d] · K[t][d]   A = Q, B = Kᵀ
//           (turbo3, turbo2: S[t][row], A = K, B = Qᵀ — see SWAP)
//   values  Oᵀ[d][col] += Σ_t V[t][d] · P[t][col]  A = Vᵀ, B = Pᵀ
//
// Rows/columns 0–3 of Q and P are the 4 query heads rounded to f16, 4–7
// the rounding remainders (hi + lo keeps f32 accuracy at no extra cost:
// the MMA has 8 columns either way). Codes become f16 operands through a
// shared-memory table indexed by a code byte (layout below): one load per
// operand register (4-bit: two neighbouring dimensions of a key, or one
// dimension of two tokens for values — the PV product pairs tokens; 2-bit:
// both registers of a k-step at once; 3-bit: a 6-bit field = two
// neighbouring dimensions, for values two tokens' pairs regrouped by
// byte permutes). Each lane has its own copy of the
// table in its own bank, so random codes never conflict. (kivi2's codes
// are integers 0..3 and need no table: code2_h2.) The dot products
// are sums over d (and t), so each thread's fragment may take any fixed
// subset of dimensions (tokens) as long as both operands agree: threads
// read contiguous code bytes instead of the MMA's native columns.

// Per kernel: warps per thread block NW (they share one table), cache
// blocks each warp holds in shared memory STAGES (STAGES - 1 in flight
// while one is used) and blocks it prefetches into L2 past its newest copy
// PF — set by the host at compile time (device.rs: -DNW_<kernel>,
// -DSTAGES_<kernel>, -DPF_<kernel> from paged.rs's KvCodec::tc_kernels).
#if !defined(NW_attn_turbo4_tc)
#error "compile with -DNW_attn_…_tc=…, -DSTAGES_attn_…_tc=… and -DPF_attn_…_tc=… (device.rs passes them)"
#endif

// A block's K and V regions of one head in the pool.
struct KvPtrs {
    const u8* k;
    const u8* v;
};
__device__ __forceinline__ u32 pack_h2(float a, float b) { return (u32)f2h(a) | ((u32)f2h(b) << 16); }
__device__ __forceinline__ u32 hmul2(u32 a, u32 b) { u32 r; asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b)); return r; }
__device__ __forceinline__ u32 hfma2(u32 a, u32 b, u32 c) { u32 r; asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c)); return r; }

// The f16x2 pair (c, c') of the 2-bit codes at bits 2m and 16 + 2m of x
// (m = 0..7; x10 = x >> 10 serves m = 5..7), exact: OR-ed into the
// mantissa of 1024 (`h1024` = 0x64006400) a code at bit 2k gives
// 1024 + c·4^k, and one f16x2 FMA by (4^-k, −1024·4^-k) leaves c (no table
// load: kivi2, cuda_notes.md v33). `h1024` comes as a value the compiler
// cannot fold, so it stays in one register and the mask is the LOP3's
// immediate (as a constant, ptxas put each mask in a register instead:
// ~180 extra moves).
__device__ __forceinline__ u32 code2_h2(u32 x, u32 x10, int m, u32 h1024) {
    const int k = m < 5 ? m : m - 5;
    const u32 t = ((m < 5 ? x : x10) & (0x00030003u << 2 * k)) | h1024;
    const u32 sc = (15u - 2 * k) << 10, bias = 0x8000u | ((25u - 2 * k) << 10);
    return hfma2(t, sc | sc << 16, bias | bias << 16);
}

// The 8×8 f16 matrix held as an MMA fragment (lane 4r + c: row r, columns
// 2c, 2c + 1), transposed in the same layout.
__device__ __forceinline__ u32 transpose8x8(u32 x) {
    u32 r;
    asm("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(r) : "r"(x));
    return r;
}

__device__ __forceinline__ void mma16816(float c[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
    u32 s = (u32)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

// N 32-bit words of a shared-memory row that starts `sh` bits (0 or 16)
// past the word-aligned address `p`.
template <int N>
__device__ __forceinline__ void words(const u8* p, int sh, u32 w[N]) {
    const u32* a = (const u32*)p;
    u32 prev = a[0];
    #pragma unroll
    for (int k = 0; k < N; k++) {
        const u32 next = a[k + 1];
        w[k] = __funnelshift_r(prev, next, sh);
        prev = next;
    }
}

// Unnormalized Walsh–Hadamard transform of a 128-vector held by one warp,
// dimensions 4·lane + 0..3: two steps in the lane, five by shuffles.
__device__ __forceinline__ float4 fwht_warp(float4 v, int lane) {
    const float a0 = v.x + v.y, a1 = v.x - v.y, a2 = v.z + v.w, a3 = v.z - v.w;
    float x[4] = {a0 + a2, a1 + a3, a0 - a2, a1 - a3};
    #pragma unroll
    for (int m = 1; m < 32; m <<= 1)
        #pragma unroll
        for (int e = 0; e < 4; e++) {
            const float y = __shfl_xor_sync(0xffffffffu, x[e], m);
            x[e] = lane & m ? y - x[e] : x[e] + y;
        }
    return make_float4(x[0], x[1], x[2], x[3]);
}

// Dynamic shared memory: the code table, 256 rows of 256 B, at a 64 KB-
// aligned shared address A, so one byte permute makes the whole load
// address (no add). 4-bit codes: entry e = (level[e & 15], level[e >> 4])
// of lane l at 256e + 4l (bytes 128..255 of a row unused); 3-bit codes:
// the same for a 6-bit entry e = (level[e & 7], level[e >> 3]), 64 rows;
// 2-bit codes:
// entry e = the levels of its 4 codes as two f16 pairs (one 64-bit load =
// both operand registers of a k-step) at 256e + 8l. Each warp's stages
// fill the space below and above it; the table's space is reused for the
// final merge. The host allocates TC_LUT_BYTES + (NW·STAGES + 1) slots,
// at least 2 · TC_LUT_BYTES (paged.rs: TcShape::shared_bytes).
#define TC_LUT_BYTES (256 * 256)
// Merge rows keep dimension 16c + x at 17c + x: the warps' stores of
// dimensions 16·gi + … (gi = 0..7) then fall in distinct banks (were 8-way
// conflicts).
#define MROW (D / 16 * 17)
__device__ __forceinline__ int mcol(int d) { return d / 16 * 17 + d % 16; }
template <int NW>
struct TcMerge {
    float o[NW][G][MROW];
    float m[NW][G], l[NW][G];
};

// KIVI (kivi2 caches): no rotation; keys are bare 2-bit codes with a
// per-channel scale S and minimum M per block (region header), values
// uniform 2-bit with a scale and minimum per token and group of 32. No
// table: code2_h2 turns codes into exact f16 operands with two integer /
// f16x2 instructions, so key operands are exact; q is multiplied by S once
// per k-step (f16x2), the score's Σ q·M comes from one more MMA whose B
// column 0 is M (exact: M is stored in f16); value operands become k·d + m
// by one more f16x2 FMA. (The table's space is only used for the merge.)
template <int BITS, bool KIVI, int STAGES, int PF, int NW>
__device__ void attn_tc(const float* q, const u8* pool, const int* table, int max_blocks, const int* n_comp, int kvh,
                              i64 block_bytes, int blocks_per_split, int nparts, const float* levels, const float* signs,
                              float* part, float attn_scale, float level_scale) {
    static_assert(BITS >= 2 && BITS <= 4 && (!KIVI || BITS == 2), "tensor-core kernels for 2- to 4-bit turbo codes and kivi2");
    constexpr int TB = KIVI ? 4 * D / 32 + D * BITS / 8 : token_bytes(2, BITS);  // (value) row bytes: 66 for turbo4, 48 for kivi2
    constexpr int RBK = KIVI ? 4 * D + BT * D * BITS / 8 : BT * TB;            // key region bytes
    constexpr int RB = BT * TB;                                               // value region bytes
    constexpr int SLOT = RBK + RB + 16;  // a block's K and V (+ the word `words` reads past a row)
    constexpr float QSCALE = KIVI ? 1.f : 0.08838834764831845f;  // 1/√D of the transform (turbo)
    // Scores with the keys as the MMA's A operand (absorb below): turbo3 and
    // turbo2 (v40); turbo4 and kivi2 keep q as A.
    constexpr bool SWAP = !KIVI && BITS < 4;
    // turbo2 (v41): the block's maxima reduced across a head's lanes only
    // when some lane's exceeds the running one, and the softmax sums kept
    // per lane until the end (the same softmax, its sums added in another
    // order; measured faster for turbo2 only).
    constexpr bool LAZY = SWAP && BITS == 2;
    extern __shared__ __align__(16) u8 dyn[];
    const u32 dyn_at = (u32)__cvta_generic_to_shared(dyn);
    const u32 below = (0u - dyn_at) & 0xffffu;  // bytes before the first 64 KB boundary
    const int nbelow = below / SLOT;            // stage slots that fit there
    u32* pair_lut = (u32*)(dyn + below);
    u8* above = dyn + below + TC_LUT_BYTES;
    auto stage = [&](int k) { return k < nbelow ? dyn + k * SLOT : above + (k - nbelow) * SLOT; };
    const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, gi = lane >> 2, ci = lane & 3;

    // Every global read of the prologue goes out here, at once: one memory
    // round trip instead of one per step, and ahead of the first copies
    // instead of queued behind them (cuda_notes.md, v20).
    const int n = n_comp[b];
    const int b0 = split * blocks_per_split;
    const int* tab = table + (i64)b * max_blocks;
    // This warp's blocks are b0 + w + NW·k; lane k holds the pool index of
    // the k-th (read up front: a table read per block would stall the warp
    // for a memory round trip before each copy could start). Entries past
    // the sequence's blocks are read but never used.
    const int mine = b0 + w + NW * lane < max_blocks ? tab[b0 + w + NW * lane] : 0;
    // Lane l holds level l (of 16 or 4) for the table below.
    const float lv = levels[lane & ((1 << BITS) - 1)];
    // Warp w < G: query head w, dimensions 4·lane .. 4·lane + 3, sign-flipped.
    float4 qv = make_float4(0.f, 0.f, 0.f, 0.f);
    if (w < G) {
        qv = *(const float4*)(q + ((i64)b * kvh * G + h * G + w) * D + 4 * lane);
        if (!KIVI) {
            const float4 sg = *(const float4*)(signs + 4 * lane);
            qv.x *= sg.x, qv.y *= sg.y, qv.z *= sg.z, qv.w *= sg.w;
        }
    }
    const int nblk = (n + BT - 1) / BT;
    const int b1 = min(nblk, b0 + blocks_per_split);
    // Block i's K and V regions of this head in the pool.
    auto regions = [&](int i) {
        const int nth = (i - b0 - w) / NW;
        const int blk = __shfl_sync(0xffffffffu, mine, nth & 31);
        const u8* base = pool + (i64)(nth < 32 ? blk : tab[i]) * block_bytes;
        return KvPtrs{base + (i64)h * RBK, base + (i64)kvh * RBK + (i64)h * RB};
    };
    auto issue = [&](int i, int slot) {
        const auto kv = regions(i);
        const uint4* k = (const uint4*)kv.k;
        const uint4* v = (const uint4*)kv.v;
        uint4* dst = (uint4*)stage(STAGES * w + slot);
        #pragma unroll
        for (int r = 0; r < ((RBK + RB) / 16 + 31) / 32; r++) {
            const int x = lane + 32 * r;
            if (x < RBK / 16) cp_async16(dst + x, k + x);
            else if (x < (RBK + RB) / 16) cp_async16(dst + x, v + (x - RBK / 16));
        }
    };
    // The K and V regions of block i into L2 (one bulk prefetch each, lanes
    // 0 and 1): with PF > 0 the loop prefetches the block PF rounds past
    // its newest copy, more bytes in flight without shared memory.
    auto prefetch_l2 = [&](int i) {
        const auto kv = regions(i);
        const u8* src = lane == 0 ? kv.k : kv.v;
#if __CUDA_ARCH__ >= 900
        if (lane < 2) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(src), "r"(lane == 0 ? RBK : RB) : "memory");
#endif
    };
    // Let attn_finish_tc launch now (programmatic dependent launch): its
    // blocks take free multiprocessors and do the window part while the
    // splits run; they wait for this grid before reading `part`.
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
    // The first copies go out before the table and q are prepared (one
    // commit group per block, empty past the end: wait counts stay fixed).
    for (int k = 0; k < STAGES - 1; k++) {
        if (b0 + w + k * NW < b1) issue(b0 + w + k * NW, k);
        cp_async_commit();
    }

    // Rotated q rows: row g keeps dimension x at QROW·g + x + 4·(x / 32), so
    // the fragment loads below (16 bytes per lane, rows gi & 3, dimensions
    // 32·ci + 4·ks) hit eight distinct bank groups per quarter warp
    // (unpadded rows: 16-way conflicts).
#define QROW (D + 16)
    __shared__ __align__(16) float qs[G * QROW];
    // Table: warp w writes rows w, w + NW, …, a row at a time (each lane its
    // own copy: one conflict-free store per row; a thread per row was a
    // 32-way bank conflict). Levels come from the lanes by shuffle.
    for (int e = w; e < (KIVI ? 0 : BITS == 3 ? 64 : 256); e += NW) {
        if (BITS == 4) {
            pair_lut[64 * e + lane] = pack_h2(__shfl_sync(0xffffffffu, lv, e & 15), __shfl_sync(0xffffffffu, lv, e >> 4));
        } else if (BITS == 3) {
            pair_lut[64 * e + lane] = pack_h2(__shfl_sync(0xffffffffu, lv, e & 7), __shfl_sync(0xffffffffu, lv, e >> 3));
        } else {
            const u32 v0 = pack_h2(__shfl_sync(0xffffffffu, lv, e & 3), __shfl_sync(0xffffffffu, lv, (e >> 2) & 3));
            const u32 v1 = pack_h2(__shfl_sync(0xffffffffu, lv, (e >> 4) & 3), __shfl_sync(0xffffffffu, lv, e >> 6));
            ((uint2*)pair_lut)[32 * e + lane] = make_uint2(v0, v1);
        }
    }
    // Rotated q: each head's Walsh–Hadamard transform by its warp in
    // registers (was 7 block-wide barriers); one barrier for the table and q.
    if (w < G) {
        if (!KIVI) qv = fwht_warp(qv, lane);
        *(float4*)(qs + QROW * w + 4 * lane + 4 * (lane / 8)) = qv;
    }
    __syncthreads();
    // Q fragments: row gi = head gi & 3 (f16 part for gi < 4, remainder
    // otherwise); k-step ks covers dimensions 32·ci + 4·ks + 0..3.
    u32 qa[8], qb[8];
    {
        const float* qr = qs + QROW * (gi & 3) + 36 * ci;
        #pragma unroll
        for (int ks = 0; ks < 8; ks++) {
            // KIVI: k-step 4h + p takes dimensions 16h + 2p + {0, 8} (qa)
            // and + {1, 9} (qb), the code pairs code2_h2 makes.
            const float2 u = *(const float2*)(qr + 16 * (ks / 4) + 2 * (ks % 4)), u8 = *(const float2*)(qr + 16 * (ks / 4) + 2 * (ks % 4) + 8);
            const float4 x4 = KIVI ? make_float4(u.x, u8.x, u.y, u8.y) : *(const float4*)(qr + 4 * ks);
            const float xs[4] = {x4.x * QSCALE, x4.y * QSCALE, x4.z * QSCALE, x4.w * QSCALE};
            float v[4];
            #pragma unroll
            for (int e = 0; e < 4; e++) v[e] = gi < 4 ? xs[e] : xs[e] - h2f(f2h(xs[e]));
            qa[ks] = pack_h2(v[0], v[1]);
            qb[ks] = pack_h2(v[2], v[3]);
        }
    }
    // Table entry of byte j of x, for this lane: the permute puts the
    // lane's offset in byte 0, the code byte in byte 1 and the table's
    // address bits 16–31 (carried in bytes 1–2 of `key`) in bytes 2–3.
    const u32 key = (BITS == 4 ? 4 : 8) * lane | ((dyn_at + below) >> 8);
    auto lut = [&](u32 x, int j) {
        u32 v;
        asm("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(__byte_perm(x, key, 0x6504 + 16 * j)));
        return v;
    };
    auto lut2 = [&](u32 x, int j) {
        uint2 v;
        asm("ld.shared.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "r"(__byte_perm(x, key, 0x6504 + 16 * j)));
        return v;
    };
    // 3-bit: the table entry of the 6-bit field at bit P of the little-endian
    // words w (a compile-time position): the field moved to bits 8–13 (one
    // shift or funnel shift) and merged with this lane's table address.
    const u32 key3 = dyn_at + below + 4 * lane;
    auto lut6 = [&](const u32* w, int P) {
        u32 x;
        if (P < 8) x = w[0] << (8 - P);
        else if ((P - 8) % 32 + 14 <= 32) x = w[(P - 8) / 32] >> ((P - 8) % 32);
        else x = __funnelshift_r(w[(P - 8) / 32], w[(P - 8) / 32 + 1], (P - 8) % 32);
        u32 v;
        asm("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"((x & 0x3f00u) | key3));
        return v;
    };
    // `levels` come multiplied by level_scale (closer to f16 values); divide it out.
    const float kscale = QSCALE * attn_scale / level_scale, vscale = QSCALE / level_scale;
    const u32 h1024 = 0x64006400u + (blockDim.y - 1);  // blockDim.y is 1 (code2_h2)

    float o[8][4];
    #pragma unroll
    for (int mt = 0; mt < 8; mt++) o[mt][0] = o[mt][1] = o[mt][2] = o[mt][3] = 0.f;
    // Softmax state: [0] for head gi & 3 (q as A), or (SWAP) for the heads
    // of this lane's accumulator columns, (2ci) & 3 and (2ci + 1) & 3.
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};

    // Lane constants: the word-aligned offsets of this lane's key chunk
    // (row gi, bytes 2 + 16ci.., and how far it sits past a word) and of its
    // value rows (row 2ci, bytes 2 + 8gi..; + 8 rows per group of 8).
    constexpr int KC = 32 * BITS / 8, VC = 16 * BITS / 8;  // code bytes of a key chunk / value row part
    const int koff = (gi * TB + 2 + KC * ci) & ~3, ksh = ((gi * TB + 2 + KC * ci) & 2) * 8;
    const int voff = 2 * ci * TB + VC * gi;
    // 3-bit value rows: this lane's 6 code bytes sit at 2 + 6gi in a row,
    // word-aligned down, shifted by 0 or 16 bits (even / odd rows differ).
    const int v3e = (2 * ci * TB + 2 + VC * gi) & ~3, s3e = ((2 * ci * TB + 2 + VC * gi) & 2) * 8;
    const int v3o = ((2 * ci + 1) * TB + 2 + VC * gi) & ~3, s3o = (((2 * ci + 1) * TB + 2 + VC * gi) & 2) * 8;
    // One cache block already in this warp's stage: scores, softmax update,
    // values. FULL: all 32 tokens valid (no masks).
    // (A lambda, so each call below is inlined with FULL a constant.)
    auto absorb = [&](const u8* kb, int nv, bool FULL) {
        const u8* vb = kb + RBK;

            u32 pb[4];  // Pᵀ fragments: pb[j] = tokens 8j + 2ci + {0,1}, column gi
            if constexpr (!SWAP) {
                // Scores for the 4 groups of 8 tokens (A = q, or q·S for KIVI;
                // B = keys): this lane decodes token 8j + gi, dimensions 32·ci ..
                // 32·ci + 31, and receives row gi, tokens 8j + 2ci + {0,1}.
                float s[4][2];
                float kc = 0.f;  // KIVI: Σ q·M of head gi & 3
                if constexpr (KIVI) {
                    // Codes of a token: 8 bytes = two words of 16 dimensions (2
                    // bits each, from bit 0). Per k-step the 4 channels' (S, M)
                    // pairs (two 8-byte loads), then the 4 token groups and the
                    // minima column.
                    uint2 kw[4];
                    #pragma unroll
                    for (int j = 0; j < 4; j++) kw[j] = *(const uint2*)(kb + 4 * D + 32 * (8 * j + gi) + 8 * ci);
                    float c[5][4] = {};
                    u32 kw10[4][2];
                    #pragma unroll
                    for (int j = 0; j < 4; j++) kw10[j][0] = kw[j].x >> 10, kw10[j][1] = kw[j].y >> 10;
                    #pragma unroll
                    for (int ks = 0; ks < 8; ks++) {
                        // Channels 32ci + 16h + 2p + {0, 1} and + {8, 9} (k-step 4h + p).
                        const int ch = 32 * ci + 16 * (ks / 4) + 2 * (ks % 4);
                        const uint2 sa = *(const uint2*)(kb + 4 * ch), sb = *(const uint2*)(kb + 4 * (ch + 8));
                        const u32 s01 = __byte_perm(sa.x, sb.x, 0x5410), m01 = __byte_perm(sa.x, sb.x, 0x7632);
                        const u32 s23 = __byte_perm(sa.y, sb.y, 0x5410), m23 = __byte_perm(sa.y, sb.y, 0x7632);
                        // q·S once per k-step (not k·S per token): the codes stay exact.
                        const u32 qs0 = hmul2(qa[ks], s01), qs1 = hmul2(qb[ks], s23);
                        #pragma unroll
                        for (int j = 0; j < 4; j++) {
                            const u32 x = ks < 4 ? kw[j].x : kw[j].y, x10 = kw10[j][ks / 4];
                            mma16816(c[j], qs0, 0u, qs1, 0u, code2_h2(x, x10, 2 * (ks % 4), h1024), code2_h2(x, x10, 2 * (ks % 4) + 1, h1024));
                        }
                        mma16816(c[4], qa[ks], 0u, qb[ks], 0u, gi == 0 ? m01 : 0u, gi == 0 ? m23 : 0u);
                    }
                    #pragma unroll
                    for (int j = 0; j < 4; j++) {
                        s[j][0] = c[j][0];
                        s[j][1] = c[j][1];
                    }
                    // Column 0 of the minima tile (lanes ci = 0): f16 part + remainder, to the lanes of the head.
                    kc = c[4][0] + __shfl_xor_sync(0xffffffffu, c[4][0], 16);
                    kc = __shfl_sync(0xffffffffu, kc, lane & ~3);
                } else {
                    #pragma unroll
                    for (int j = 0; j < 4; j++) {
                        u32 wd[KC / 4];
                        words<KC / 4>(kb + koff + 8 * j * TB, ksh, wd);
                        // Two accumulators: shorter chains of dependent MMAs.
                        float c[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
                        #pragma unroll
                        for (int ks = 0; ks < 8; ks++) {  // a code byte = 2 dimensions
                            const u32 b01 = lut(wd[ks / 2], 2 * (ks & 1));
                            const u32 b23 = lut(wd[ks / 2], 2 * (ks & 1) + 1);
                            mma16816(c[ks & 1], qa[ks], 0u, qb[ks], 0u, b01, b23);
                        }
                        s[j][0] = c[0][0] + c[1][0];
                        s[j][1] = c[0][1] + c[1][1];
                    }
                }
                // Full scores (f16 part + remainder rows), scaled; softmax for head gi & 3.
                float mx = -INFINITY;
                #pragma unroll
                for (int j = 0; j < 4; j++)
                    #pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int t = 8 * j + 2 * ci + e;
                        float v = s[j][e] + __shfl_xor_sync(0xffffffffu, s[j][e], 16);
                        v = KIVI ? (v + kc) * kscale : v * h2f(*(const u16*)(kb + t * TB)) * kscale;
                        s[j][e] = FULL || t < nv ? v : -INFINITY;
                        mx = fmaxf(mx, s[j][e]);
                    }
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float mnew = fmaxf(m_run[0], mx);
                const float corr = __expf(m_run[0] - mnew);
                float sum = 0.f;
                #pragma unroll
                for (int j = 0; j < 4; j++) {
                    float pv[2];
                    #pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int t = 8 * j + 2 * ci + e;
                        const float p = FULL || t < nv ? __expf(s[j][e] - mnew) : 0.f;
                        sum += p;
                        const float x = FULL || t < nv ? (KIVI ? p : p * h2f(*(const u16*)(vb + t * TB)) * vscale) : 0.f;
                        pv[e] = gi < 4 ? x : x - h2f(f2h(x));
                    }
                    pb[j] = pack_h2(pv[0], pv[1]);
                }
                sum += __shfl_xor_sync(0xffffffffu, sum, 1);
                sum += __shfl_xor_sync(0xffffffffu, sum, 2);
                l_run[0] = l_run[0] * corr + sum;
                m_run[0] = mnew;
                // Rescale the accumulators: this lane's columns 2ci, 2ci+1 are heads
                // (2ci) & 3 and (2ci + 1) & 3, whose factors live in lanes 4·head.
                // (Skipped while no head's maximum moved: most blocks once it settles.)
                if (__any_sync(0xffffffffu, corr != 1.f)) {
                    const float c0 = __shfl_sync(0xffffffffu, corr, 4 * ((2 * ci) & 3));
                    const float c1 = __shfl_sync(0xffffffffu, corr, 4 * ((2 * ci + 1) & 3));
                    #pragma unroll
                    for (int mt = 0; mt < 8; mt++) {
                        o[mt][0] *= c0; o[mt][1] *= c1;
                        o[mt][2] *= c0; o[mt][3] *= c1;
                    }
                }
            } else {
                // Scores with the keys as A (tile tt's rows: tokens 16tt + gi in
                // a0 / a2 and 16tt + gi + 8 in a1 / a3; this lane decodes their
                // dimensions 32·ci .. 32·ci + 31) and q as B (columns: the 4
                // heads' f16 parts, then their remainders): half the MMAs of q as
                // A, whose rows 8–15 were zeros, and this lane's score columns
                // 2ci, 2ci + 1 are the heads of its accumulator columns.
                float sc[2][4];
                #pragma unroll
                for (int tt = 0; tt < 2; tt++) {
                    u32 wa[KC / 4], wb[KC / 4];
                    words<KC / 4>(kb + koff + 16 * tt * TB, ksh, wa);
                    words<KC / 4>(kb + koff + (16 * tt + 8) * TB, ksh, wb);
                    // Two accumulators: shorter chains of dependent MMAs.
                    float c[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
                    #pragma unroll
                    for (int ks = 0; ks < 8; ks++) {
                        u32 a0, a1, a2, a3;
                        if (BITS == 3) {  // 6-bit field = 2 dimensions
                            a0 = lut6(wa, 12 * ks);
                            a2 = lut6(wa, 12 * ks + 6);
                            a1 = lut6(wb, 12 * ks);
                            a3 = lut6(wb, 12 * ks + 6);
                        } else {  // byte = the k-step's 4 dimensions
                            const uint2 ea = lut2(wa[ks / 4], ks & 3), eb = lut2(wb[ks / 4], ks & 3);
                            a0 = ea.x, a2 = ea.y, a1 = eb.x, a3 = eb.y;
                        }
                        mma16816(c[ks & 1], a0, a1, a2, a3, qa[ks], qb[ks]);
                    }
                    #pragma unroll
                    for (int e = 0; e < 4; e++) sc[tt][e] = c[0][e] + c[1][e];
                }
                // Full scores: f16 part + remainder (columns c and c + 4 sit in
                // lanes ci and ci ^ 2), scaled by the norms. Element e: token
                // 16tt + gi + 8·(e >> 1), head (2ci + (e & 1)) & 3.
                float mx[2] = {-INFINITY, -INFINITY};
                #pragma unroll
                for (int tt = 0; tt < 2; tt++)
                    #pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int t = 16 * tt + gi + 8 * (e >> 1);
                        const float v = (sc[tt][e] + __shfl_xor_sync(0xffffffffu, sc[tt][e], 2)) * h2f(*(const u16*)(kb + t * TB)) * kscale;
                        sc[tt][e] = FULL || t < nv ? v : -INFINITY;
                        mx[e & 1] = fmaxf(mx[e & 1], sc[tt][e]);
                    }
                float mnew[2], corr[2], sum[2] = {0.f, 0.f};
                const bool grow = !LAZY || __any_sync(0xffffffffu, mx[0] > m_run[0] || mx[1] > m_run[1]);
                #pragma unroll
                for (int hb = 0; hb < 2; hb++) {
                    if (grow)
                        #pragma unroll
                        for (int x = 4; x < 32; x <<= 1) mx[hb] = fmaxf(mx[hb], __shfl_xor_sync(0xffffffffu, mx[hb], x));
                    mnew[hb] = fmaxf(m_run[hb], mx[hb]);
                    corr[hb] = __expf(m_run[hb] - mnew[hb]);
                }
                // P (times the value norms) in the A layout — tokens 16tt + gi
                // (+ 8), columns 2ci, 2ci + 1: f16 parts in lanes ci < 2,
                // remainders in ci ≥ 2 — transposed by movmatrix into the Pᵀ
                // fragments the value MMAs take.
                #pragma unroll
                for (int tt = 0; tt < 2; tt++)
                    #pragma unroll
                    for (int half = 0; half < 2; half++) {
                        const int t = 16 * tt + gi + 8 * half;
                        const float nvs = h2f(*(const u16*)(vb + t * TB)) * vscale;
                        float pv[2];
                        #pragma unroll
                        for (int hb = 0; hb < 2; hb++) {
                            const float p = FULL || t < nv ? __expf(sc[tt][2 * half + hb] - mnew[hb]) : 0.f;
                            sum[hb] += p;
                            const float x = p * nvs;
                            pv[hb] = ci < 2 ? x : x - h2f(f2h(x));
                        }
                        pb[2 * tt + half] = transpose8x8(pack_h2(pv[0], pv[1]));
                    }
                #pragma unroll
                for (int hb = 0; hb < 2; hb++) {
                    #pragma unroll
                    for (int x = 4; x < 32 && !LAZY; x <<= 1) sum[hb] += __shfl_xor_sync(0xffffffffu, sum[hb], x);
                    l_run[hb] = l_run[hb] * corr[hb] + sum[hb];  // LAZY: this lane's tokens only
                    m_run[hb] = mnew[hb];
                }
                // Rescale the accumulators (their columns are this lane's two heads).
                // (Skipped while no head's maximum moved: most blocks once it settles.)
                if (__any_sync(0xffffffffu, corr[0] != 1.f || corr[1] != 1.f)) {
                    #pragma unroll
                    for (int mt = 0; mt < 8; mt++) {
                        o[mt][0] *= corr[0]; o[mt][1] *= corr[1];
                        o[mt][2] *= corr[0]; o[mt][3] *= corr[1];
                    }
                }
            }
            // Values, two tiles of 16 tokens: this lane decodes tokens
            // 16tt + 2ci + {0, 1, 8, 9}, dimensions 16·gi .. 16·gi + 15; m-tile mt's
            // rows gi / gi + 8 are dimensions 16·gi + 2mt / + 1.
            #pragma unroll
            for (int tt = 0; tt < 2; tt++) {
                if (BITS == 3) {
                    // Rows 16tt + 2ci + {0, 1, 8, 9}: 48 bits each (dimension
                    // 16gi + m at bit 3m); the entry of a row's dimensions
                    // 2mt, 2mt + 1 for two tokens, regrouped by byte
                    // permutes into (token pair) × dimension registers.
                    const u8* t0 = vb + 16 * tt * TB;
                    u32 wv[4][2];
                    words<2>(t0 + v3e, s3e, wv[0]);
                    words<2>(t0 + v3o, s3o, wv[1]);
                    words<2>(t0 + v3e + 8 * TB, s3e, wv[2]);
                    words<2>(t0 + v3o + 8 * TB, s3o, wv[3]);
                    #pragma unroll
                    for (int mt = 0; mt < 8; mt++) {
                        const u32 a = lut6(wv[0], 6 * mt), b = lut6(wv[1], 6 * mt);
                        const u32 c = lut6(wv[2], 6 * mt), d = lut6(wv[3], 6 * mt);
                        mma16816(o[mt], __byte_perm(a, b, 0x5410), __byte_perm(a, b, 0x7632), __byte_perm(c, d, 0x5410),
                                 __byte_perm(c, d, 0x7632), pb[2 * tt], pb[2 * tt + 1]);
                    }
                    continue;
                }
                // Rows 16tt + 2ci + {0, 8} start 2 bytes past a word, {1, 9} on one.
                const u8* v0 = vb + voff + 16 * tt * TB;
                constexpr int NWV = VC / 4;
                u32 wv[4][NWV];
                // KIVI: the (scale, minimum) of group gi / 2 and the lane's
                // code word, per row; scale and minimum pairs per token pair.
                u32 d01 = 0, m01 = 0, d89 = 0, m89 = 0;
                if (KIVI) {
                    const u8* g0 = vb + 16 * tt * TB + 2 * ci * TB + 12 * (gi >> 1);
                    u32 hw[4];
                    #pragma unroll
                    for (int r = 0; r < 4; r++) {
                        const u8* gr = g0 + ((r & 1) + 8 * (r >> 1)) * TB;
                        hw[r] = *(const u32*)gr;
                        wv[r][0] = *(const u32*)(gr + 4 + 4 * (gi & 1));
                    }
                    d01 = __byte_perm(hw[0], hw[1], 0x5410), m01 = __byte_perm(hw[0], hw[1], 0x7632);
                    d89 = __byte_perm(hw[2], hw[3], 0x5410), m89 = __byte_perm(hw[2], hw[3], 0x7632);
                } else {
                    words<NWV>(v0, 16, wv[0]);
                    words<NWV>(v0 + TB + 2, 0, wv[1]);
                    words<NWV>(v0 + 8 * TB, 16, wv[2]);
                    words<NWV>(v0 + 9 * TB + 2, 0, wv[3]);
                }
                if (KIVI) {
                    // Row gi of m-tile mt = dimension 16gi + mt, row gi + 8 =
                    // 16gi + 8 + mt: the low / high halves of the token pairs' words.
                    const u32 pl = __byte_perm(wv[0][0], wv[1][0], 0x5410), ph = __byte_perm(wv[0][0], wv[1][0], 0x7632);
                    const u32 ql = __byte_perm(wv[2][0], wv[3][0], 0x5410), qh = __byte_perm(wv[2][0], wv[3][0], 0x7632);
                    const u32 pl10 = pl >> 10, ph10 = ph >> 10, ql10 = ql >> 10, qh10 = qh >> 10;
                    #pragma unroll
                    for (int mt = 0; mt < 8; mt++)
                        mma16816(o[mt], hfma2(code2_h2(pl, pl10, mt, h1024), d01, m01), hfma2(code2_h2(ph, ph10, mt, h1024), d01, m01),
                                 hfma2(code2_h2(ql, ql10, mt, h1024), d89, m89), hfma2(code2_h2(qh, qh10, mt, h1024), d89, m89), pb[2 * tt], pb[2 * tt + 1]);
                } else if (BITS == 4) {
                    #pragma unroll
                    for (int k = 0; k < 2; k++) {
                        // Byte j of ev / od: codes of dimension 16·gi + 8k + 2j (+ 1)
                        // for the token pair (low nibble = first token).
                        u32 ev[2], od[2];
                        #pragma unroll
                        for (int p = 0; p < 2; p++) {
                            const u32 a = wv[2 * p][k], c = wv[2 * p + 1][k];
                            ev[p] = (a & 0x0f0f0f0fu) | ((c << 4) & 0xf0f0f0f0u);
                            od[p] = ((a >> 4) & 0x0f0f0f0fu) | (c & 0xf0f0f0f0u);
                        }
                        #pragma unroll
                        for (int j = 0; j < 4; j++)
                            mma16816(o[4 * k + j], lut(ev[0], j), lut(od[0], j), lut(ev[1], j), lut(od[1], j), pb[2 * tt], pb[2 * tt + 1]);
                    }
                } else {
                    // Byte b of ev / od: codes of dimensions 16·gi + 4b + {0, 1}
                    // / {2, 3} for the token pair (first token, second, first,
                    // second): one 64-bit entry = (dim, dim + 1) operand pairs.
                    u32 ev[2], od[2];
                    #pragma unroll
                    for (int p = 0; p < 2; p++) {
                        const u32 a = wv[2 * p][0], c = wv[2 * p + 1][0];
                        ev[p] = (a & 0x03030303u) | ((a << 2) & 0x30303030u) | ((c << 2) & 0x0c0c0c0cu) | ((c << 4) & 0xc0c0c0c0u);
                        od[p] = ((a >> 4) & 0x03030303u) | ((a >> 2) & 0x30303030u) | ((c >> 2) & 0x0c0c0c0cu) | (c & 0xc0c0c0c0u);
                    }
                    #pragma unroll
                    for (int mt = 0; mt < 8; mt++) {
                        const uint2 lo = lut2(mt & 1 ? od[0] : ev[0], mt >> 1), hi = lut2(mt & 1 ? od[1] : ev[1], mt >> 1);
                        mma16816(o[mt], lo.x, lo.y, hi.x, hi.y, pb[2 * tt], pb[2 * tt + 1]);
                    }
                }
            }
    };
    int i = b0 + w;
    for (int slot = 0; i < b1; i += NW, slot = slot + 1 == STAGES ? 0 : slot + 1) {
        const int ahead = i + (STAGES - 1) * NW;
        if (ahead < b1) issue(ahead, slot == 0 ? STAGES - 1 : slot - 1);
        if (PF > 0 && ahead + PF * NW < b1) prefetch_l2(ahead + PF * NW);
        cp_async_commit();
        cp_async_wait<STAGES - 1>();
        __syncwarp();
        const u8* kb = stage(STAGES * w + slot);
        const int nv = min(BT, n - i * BT);
        if (nv == BT) absorb(kb, nv, true);  // every block but a sequence's last
        else absorb(kb, nv, false);
        __syncwarp();
    }
    cp_async_wait<0>();
    __syncthreads();
    static_assert(sizeof(TcMerge<NW>) <= TC_LUT_BYTES, "the merge reuses the table's space");
    TcMerge<NW>& mg = *(TcMerge<NW>*)pair_lut;  // the table is no longer read
    // Merge: f16 part + remainder columns, then the warps' states.
    #pragma unroll
    for (int mt = 0; mt < 8; mt++)
        #pragma unroll
        for (int e = 0; e < 4; e++) o[mt][e] += __shfl_xor_sync(0xffffffffu, o[mt][e], 2);
    if (ci < 2) {
        #pragma unroll
        for (int mt = 0; mt < 8; mt++) {
            const int d = KIVI ? 16 * gi + mt : 16 * gi + 2 * mt, d1 = KIVI ? d + 8 : d + 1;
            mg.o[w][2 * ci][mcol(d)] = o[mt][0];
            mg.o[w][2 * ci + 1][mcol(d)] = o[mt][1];
            mg.o[w][2 * ci][mcol(d1)] = o[mt][2];
            mg.o[w][2 * ci + 1][mcol(d1)] = o[mt][3];
        }
    }
    if (LAZY)  // the lanes of a head add up their sums (its maximum is the same in all)
        #pragma unroll
        for (int hb = 0; hb < 2; hb++)
            #pragma unroll
            for (int x = 4; x < 32; x <<= 1) l_run[hb] += __shfl_xor_sync(0xffffffffu, l_run[hb], x);
    if (!SWAP && ci == 0 && gi < G) {
        mg.m[w][gi] = m_run[0];
        mg.l[w][gi] = l_run[0];
    }
    if (SWAP && gi == 0 && ci < 2) {
        #pragma unroll
        for (int hb = 0; hb < 2; hb++) {
            mg.m[w][2 * ci + hb] = m_run[hb];
            mg.l[w][2 * ci + hb] = l_run[hb];
        }
    }
    __syncthreads();
    const int d = threadIdx.x % D;
    for (int g = threadIdx.x / D; g < G; g += 32 * NW / D) {
        float M = -INFINITY;
        for (int k = 0; k < NW; k++) M = fmaxf(M, mg.m[k][g]);
        float a = 0.f, l = 0.f;
        if (M != -INFINITY)
            for (int k = 0; k < NW; k++) {
                float e = __expf(mg.m[k][g] - M);
                a += e * mg.o[k][g][mcol(d)];
                l += e * mg.l[k][g];
            }
        float* out = part + ((i64)(b * kvh * G + h * G + g) * nparts + split) * (D + 2);
        out[d] = a;
        if (d == 0) {
            out[D] = M;
            out[D + 1] = l;
        }
    }
}

#define TC_KERNEL(NAME, BITS, KIVI)                                                                                    \
    extern "C" __global__ void __launch_bounds__(32 * NW_##NAME, 1)                                                   \
        NAME(const float* q, const u8* pool, const int* table, int max_blocks, const int* n_comp, int kvh,             \
             i64 block_bytes, int blocks_per_split, int nparts, const float* levels, const float* signs, float* part,  \
             float attn_scale, float level_scale) {                                                                    \
        attn_tc<BITS, KIVI, STAGES_##NAME, PF_##NAME, NW_##NAME>(q, pool, table, max_blocks, n_comp, kvh, block_bytes, \
                                                      blocks_per_split, nparts, levels, signs, part, attn_scale,       \
                                                      level_scale);                                                    \
    }
TC_KERNEL(attn_turbo2_tc, 2, false)
TC_KERNEL(attn_turbo3_tc, 3, false)
TC_KERNEL(attn_turbo4_tc, 4, false)
TC_KERNEL(attn_turbo4_tc_w8, 4, false)  // one sequence (paged.rs: KvCodec::tc_kernel)
TC_KERNEL(attn_kivi2_tc, 2, true)

// After attn_turbo4_tc: per (sequence, KV head), the f16 window and the
// merge of the splits in one launch (grid (kvh, batch), G·D threads: the
// window part a thread per (head g, dimension d), the merge a warp per
// head). Window rows are staged in shared memory, so each global read is
// one parallel batch.
// Dynamic shared memory: FIN_WT window rows of K and V, FIN_WT·G scores,
// 3·G softmax values.
#define FIN_WT 64
#define FIN_CHUNK 8  // splits per warp and memory round trip (two warps per head)
extern "C" __global__ void __launch_bounds__(G * D, 2)
    attn_finish_tc(const float* q, const float* part, int nsplit, const float* signs, const u16* win, const int* n_win,
                   int R, float attn_scale, float* out) {
    extern __shared__ __align__(16) u8 fin[];
    u16* wk = (u16*)fin;
    u16* wv = wk + FIN_WT * D;
    float* wsc = (float*)(wv + FIN_WT * D);  // [G][FIN_WT]
    // wsc + G·FIN_WT: per head the running maximum, the chunk's sum and maximum.
    __shared__ __align__(16) float x[G][D];
    const int h = blockIdx.x, kvh = gridDim.x, b = blockIdx.y;
    const int g = threadIdx.x / D, d = threadIdx.x % D, hq = h * G + g;
    const float* pp = part + (i64)(b * kvh * G + h * G) * nsplit * (D + 2);  // this KV head's G heads
    x[g][d] = q[((i64)b * kvh * G + hq) * D + d];
    // Window (original domain): online softmax over chunks of FIN_WT rows.
    const uint4* gk = (const uint4*)(win + ((i64)(b * 2 + 0) * kvh + h) * R * D);
    const uint4* gv = (const uint4*)(win + ((i64)(b * 2 + 1) * kvh + h) * R * D);
    const int nw = n_win[b], lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    float wm = -INFINITY, wl = 0.f, wacc = 0.f;
    if (threadIdx.x < G) wsc[G * FIN_WT + threadIdx.x] = -INFINITY;
    for (int t0 = 0; t0 < nw; t0 += FIN_WT) {
        const int cnt = min(FIN_WT, nw - t0);
        __syncthreads();
        for (int i = threadIdx.x; i < cnt * D / 8; i += G * D) {
            ((uint4*)wk)[i] = gk[(i64)t0 * D / 8 + i];
            ((uint4*)wv)[i] = gv[(i64)t0 * D / 8 + i];
        }
        __syncthreads();
        // Scores: a warp per token, all G heads at once (lane = 4 dimensions).
        for (int t = w; t < cnt; t += G * D / 32) {
            const uint2 k = *(const uint2*)(wk + t * D + 4 * lane);
            const float k0 = h2f(k.x & 0xffff), k1 = h2f(k.x >> 16), k2 = h2f(k.y & 0xffff), k3 = h2f(k.y >> 16);
            float sc[G];
            #pragma unroll
            for (int gg = 0; gg < G; gg++) {
                const float* xq = x[gg] + 4 * lane;
                sc[gg] = xq[0] * k0 + xq[1] * k1 + xq[2] * k2 + xq[3] * k3;
            }
            #pragma unroll
            for (int o = 16; o > 0; o >>= 1)
                #pragma unroll
                for (int gg = 0; gg < G; gg++) sc[gg] += __shfl_xor_sync(0xffffffffu, sc[gg], o);
            if (lane < G) wsc[lane * FIN_WT + t] = sc[lane] * attn_scale;
        }
        __syncthreads();
        // Softmax weights: warp g < G takes head g (2 tokens per lane).
        if (w < G) {
            float v0 = lane < cnt ? wsc[w * FIN_WT + lane] : -INFINITY;
            float v1 = lane + 32 < cnt ? wsc[w * FIN_WT + lane + 32] : -INFINITY;
            float mx = warp_max(fmaxf(v0, v1));
            mx = fmaxf(mx, wsc[G * FIN_WT + w]);  // running maximum of this head
            v0 = lane < cnt ? __expf(v0 - mx) : 0.f;
            v1 = lane + 32 < cnt ? __expf(v1 - mx) : 0.f;
            const float sum = warp_sum(v0 + v1);
            if (lane < cnt) wsc[w * FIN_WT + lane] = v0;
            if (lane + 32 < cnt) wsc[w * FIN_WT + lane + 32] = v1;
            __syncwarp();
            if (lane == 0) {
                wsc[G * FIN_WT + G + w] = sum;
                wsc[G * FIN_WT + 2 * G + w] = mx;
            }
        }
        __syncthreads();
        const float mx = wsc[G * FIN_WT + 2 * G + g];
        const float corr = __expf(wm - mx);
        float a[4] = {0.f, 0.f, 0.f, 0.f};
        for (int t = 0; t < cnt; t++) a[t & 3] += wsc[g * FIN_WT + t] * h2f(wv[t * D + d]);
        wacc = wacc * corr + (a[0] + a[1]) + (a[2] + a[3]);
        wl = wl * corr + wsc[G * FIN_WT + G + g];
        wm = mx;
        __syncthreads();
        if (d == 0) wsc[G * FIN_WT + g] = wm;  // running maximum for the next chunk
    }
    // The merge runs two warps per head, each over every other split, with
    // dimensions 4·lane .. 4·lane + 3 (the layout fwht_warp takes): after
    // the splits end only the pair meets (a 64-thread barrier), and ≤ 64
    // registers let two finish blocks share a multiprocessor. The window's
    // result goes through shared memory first (x, q's space: the window
    // loop's last barrier ended its reads; its running maximum is already
    // in wsc), the signs too (in wk, no longer read).
    x[g][d] = wacc;
    if (d == 0) wsc[G * FIN_WT + G + g] = wl;
    float* scr = (float*)wk;  // [D] signs, then per head the odd warp's state (D + 4 floats)
    if (threadIdx.x < D) scr[threadIdx.x] = signs ? signs[threadIdx.x] : 1.f;
    __syncthreads();
    if (w >= 2 * G) return;
    const int hh = w >> 1, half = w & 1;
    // Splits (rotated domain): written by the attention kernel, which may
    // still be running (launched as its programmatic dependent).
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
    // Chunks of FIN_CHUNK splits, each read in one batch (their maxima,
    // sums and this lane's values: one memory round trip per chunk, which
    // is all the time this part adds after the splits end), merged online.
    // (A split's row is D + 2 floats: 8-byte aligned, so two float2 loads.)
    const float* p = pp + (i64)hh * nsplit * (D + 2);
    float M = -INFINITY, L = 0.f;
    float4 A = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int s0 = half; s0 < nsplit; s0 += 2 * FIN_CHUNK) {
        float cm[FIN_CHUNK], cl[FIN_CHUNK];
        float4 ca[FIN_CHUNK];
        #pragma unroll
        for (int k = 0; k < FIN_CHUNK; k++) {
            const bool in = s0 + 2 * k < nsplit;
            const float* ps = p + (i64)(s0 + 2 * k) * (D + 2);
            const float2 lo = in ? *(const float2*)(ps + 4 * lane) : make_float2(0.f, 0.f);
            const float2 hi = in ? *(const float2*)(ps + 4 * lane + 2) : make_float2(0.f, 0.f);
            cm[k] = in ? ps[D] : -INFINITY;
            cl[k] = in ? ps[D + 1] : 0.f;
            ca[k] = make_float4(lo.x, lo.y, hi.x, hi.y);
        }
        float mx = M;
        #pragma unroll
        for (int k = 0; k < FIN_CHUNK; k++) mx = fmaxf(mx, cm[k]);
        if (mx == -INFINITY) continue;  // nothing scored yet
        const float c = __expf(M - mx);
        A.x *= c, A.y *= c, A.z *= c, A.w *= c;
        L *= c;
        #pragma unroll
        for (int k = 0; k < FIN_CHUNK; k++) {
            const float e = __expf(cm[k] - mx);
            A.x += e * ca[k].x, A.y += e * ca[k].y, A.z += e * ca[k].z, A.w += e * ca[k].w;
            L += e * cl[k];
        }
        M = mx;
    }
    // The odd warp hands its state to the even one.
    float* xo = scr + D + hh * (D + 4);
    if (half) {
        *(float4*)(xo + 4 * lane) = A;
        if (lane == 0) xo[D] = M, xo[D + 1] = L;
    }
    // (Barrier ids as constants: a register id makes ptxas reserve all 16.)
    static_assert(G == 4, "one named barrier per head pair below");
    switch (hh) {
        case 0: asm volatile("bar.sync 1, 64;" ::: "memory"); break;
        case 1: asm volatile("bar.sync 2, 64;" ::: "memory"); break;
        case 2: asm volatile("bar.sync 3, 64;" ::: "memory"); break;
        default: asm volatile("bar.sync 4, 64;" ::: "memory"); break;
    }
    if (half) return;
    {
        const float4 B = *(const float4*)(xo + 4 * lane);
        const float Mb = xo[D], Lb = xo[D + 1], mx = fmaxf(M, Mb);
        if (mx != -INFINITY) {
            const float ea = __expf(M - mx), eb = __expf(Mb - mx);
            A = make_float4(A.x * ea + B.x * eb, A.y * ea + B.y * eb, A.z * ea + B.z * eb, A.w * ea + B.w * eb);
            L = L * ea + Lb * eb;
            M = mx;
        }
    }
    // Undo the rotation (turbo; KIVI passes no signs): transform, then signs.
    if (signs) {
        A = fwht_warp(A, lane);
        const float4 sg = *(const float4*)(scr + 4 * lane);
        constexpr float S = 0.08838834764831845f;
        A.x *= S * sg.x, A.y *= S * sg.y, A.z *= S * sg.z, A.w *= S * sg.w;
    }
    const float wmh = wsc[G * FIN_WT + hh], wlh = wsc[G * FIN_WT + G + hh];
    const float4 wa = *(const float4*)&x[hh][4 * lane];
    const float MM = fmaxf(M, wmh);
    const float ec = M == -INFINITY ? 0.f : __expf(M - MM), ew = wmh == -INFINITY ? 0.f : __expf(wmh - MM);
    const float inv = 1.f / (L * ec + wlh * ew);
    *(float4*)(out + ((i64)b * kvh * G + h * G + hh) * D + 4 * lane) =
        make_float4((A.x * ec + wa.x * ew) * inv, (A.y * ec + wa.y * ew) * inv, (A.z * ec + wa.z * ew) * inv, (A.w * ec + wa.w * ew) * inv);
}
