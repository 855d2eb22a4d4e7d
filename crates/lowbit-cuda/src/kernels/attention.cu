// Decode attention over paged, compressed KV blocks (flash-decoding).
//
// Cache layout (lowbit-kv's): a pool of blocks of BT tokens; a block holds
// plane K then plane V, each `kvh` regions (one per KV head) of BT token
// rows of token_bytes(codec) bytes: f16 rows; q8_0 rows (D/32 × (f16 scale,
// 32 × i8)); turbo rows (norm f16 | BITS-bit Lloyd–Max codes of the RHT-
// rotated unit vector). Each sequence has a block table (pool indices);
// its most recent tokens may sit in an f16 window instead.
//
// attn_*: grid (nsplit, kvh, batch), NT threads. A thread block takes one
// KV head of one sequence and a range of cache blocks for all G query
// heads sharing it, keeps an online-softmax state per head and writes a
// partial result (rotated-domain accumulator for turbo, m, l). The window
// is one more split (attn_window_f16). attn_combine merges the splits,
// undoes the rotation once per head and normalizes.

template <int CODEC, int BITS>
struct Codec {
    static constexpr int TB = token_bytes(CODEC, BITS);        // value row
    static constexpr int RBV = BT * TB;                        // value region
    static constexpr int RBK = key_region_bytes(CODEC, BITS);  // key region
    static constexpr int KHEAD = CODEC == 3 ? 4 * D : 0;       // key region header
    static constexpr int TBK = CODEC == 3 ? D * BITS / 8 : TB; // key row
    static constexpr int V4K = RBK / 16, V4V = RBV / 16;       // 16-byte loads per region
    static constexpr int PERK = (V4K + NT - 1) / NT, PERV = (V4V + NT - 1) / NT;

    // Elements 16·sl .. 16·sl+15 of a token row, with the widest aligned
    // loads each layout allows (rows and their code areas start at even bytes).
    __device__ static __forceinline__ void slice16(const u8* row, int sl, const float* lut, float e[16]) {
        if (CODEC == 0) {
            const uint4* p = (const uint4*)(row + 32 * sl);
            uint4 a = p[0], b = p[1];
            u32 w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                e[2 * k] = h2f((u16)(w[k] & 0xffff));
                e[2 * k + 1] = h2f((u16)(w[k] >> 16));
            }
        } else if (CODEC == 1) {
            const u8* blk = row + 34 * (sl >> 1);
            float sc = h2f(*(const u16*)blk);
            const u16* c = (const u16*)(blk + 2 + 16 * (sl & 1));
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                u32 v = c[k];
                e[2 * k] = sc * (float)(signed char)(v & 255);
                e[2 * k + 1] = sc * (float)(signed char)(v >> 8);
            }
        } else if (CODEC == 3) {
            // KIVI key row: bare codes (the per-channel constants are in q').
            if (BITS == 2) {
                u32 v = *(const u32*)(row + 4 * sl);
                #pragma unroll
                for (int i = 0; i < 16; i++) e[i] = (float)((v >> (2 * i)) & 3);
            } else {
                uint2 v = *(const uint2*)(row + 8 * sl);
                #pragma unroll
                for (int i = 0; i < 8; i++) {
                    e[i] = (float)((v.x >> (4 * i)) & 15);
                    e[8 + i] = (float)((v.y >> (4 * i)) & 15);
                }
            }
        } else if (BITS == 4 || BITS == 2) {
            // BITS 16-bit words, 16 / BITS codes each.
            const u16* c = (const u16*)(row + 2 + 2 * BITS * sl);
            #pragma unroll
            for (int k = 0; k < BITS; k++) {
                u32 v = c[k];
                #pragma unroll
                for (int i = 0; i < 16 / BITS; i++) e[16 / BITS * k + i] = lut[(v >> (BITS * i)) & ((1 << BITS) - 1)];
            }
        } else {
            const u16* c = (const u16*)(row + 2 + 6 * sl);
            unsigned long long v = (unsigned long long)c[0] | ((unsigned long long)c[1] << 16) | ((unsigned long long)c[2] << 32);
            #pragma unroll
            for (int i = 0; i < 16; i++) e[i] = lut[(v >> (3 * i)) & 7];
        }
    }
    // Elements 4l .. 4l+3 of a token row.
    __device__ static __forceinline__ void quad(const u8* row, int l, const float* lut, float e[4]) {
        if (CODEC == 0) {
            uint2 a = *(const uint2*)(row + 8 * l);
            e[0] = h2f((u16)(a.x & 0xffff)); e[1] = h2f((u16)(a.x >> 16));
            e[2] = h2f((u16)(a.y & 0xffff)); e[3] = h2f((u16)(a.y >> 16));
        } else if (CODEC == 1) {
            const u8* blk = row + 34 * (l >> 3);
            float sc = h2f(*(const u16*)blk);
            const u16* c = (const u16*)(blk + 2 + 4 * (l & 7));
            u32 v = c[0] | ((u32)c[1] << 16);
            #pragma unroll
            for (int i = 0; i < 4; i++) e[i] = sc * (float)(signed char)((v >> (8 * i)) & 255);
        } else if (CODEC == 3) {
            // KIVI value row: group l/8 of 32 dims = scale f16 | min f16 | codes.
            const u8* grp = row + (l >> 3) * (4 + 32 * BITS / 8);
            float sc = h2f(((const u16*)grp)[0]), mn = h2f(((const u16*)grp)[1]);
            u32 v = BITS == 2 ? (u32)grp[4 + (l & 7)] : (u32)((const u16*)(grp + 4))[l & 7];
            #pragma unroll
            for (int i = 0; i < 4; i++) e[i] = (float)((v >> (BITS * i)) & ((1 << BITS) - 1)) * sc + mn;
        } else if (BITS == 4) {
            u32 v = ((const u16*)(row + 2))[l];
            #pragma unroll
            for (int i = 0; i < 4; i++) e[i] = lut[(v >> (4 * i)) & 15];
        } else if (BITS == 2) {
            u32 v = row[2 + l];
            #pragma unroll
            for (int i = 0; i < 4; i++) e[i] = lut[(v >> (2 * i)) & 3];
        } else {
            const u8* c = row + 2;
            int bit = 12 * l, b = bit >> 3;
            u32 v = ((u32)c[b] | ((u32)c[b + 1] << 8)) >> (bit & 7);
            #pragma unroll
            for (int i = 0; i < 4; i++) e[i] = lut[(v >> (3 * i)) & 7];
        }
    }
    // Per-token factor applied to the dot product / value (turbo: ‖x‖/√D).
    __device__ static __forceinline__ float token_scale(const u8* row) {
        return CODEC == 2 ? h2f((u16)(row[0] | (row[1] << 8))) * 0.08838834764831845f : 1.0f;
    }
};

struct Shared {
    float4 q[D];            // q[d] = the G = 4 heads' values at dimension d
    float4 qk[D];           // KIVI: q[d] · scale[d] of the current key block
    float kconst[G];        // KIVI: Σ_d q[d] · min[d] of the current key block
    float qh[D];            // scratch for rotating one head
    float red[NT / 16][G][BT];
    float4 pw[BT];          // softmax weight × value scale per token, G heads
    float m[G], l[G], corr[G];
    float lut[16];
    float part_acc[NT / 32 - 1][32][4 * G];
};

#define NS (NT / 16)             // score phase: dimension slices of D / NS
#define SL (D / NS)              // dimensions per slice (16)

// One cache block already in shared memory: update the softmax state and
// the accumulators (thread = dimension) of the G heads.
template <int CODEC, int BITS>
__device__ void absorb(Shared& sh, const u8* kb, const u8* vb, int nv, float attn_scale, float acc[4 * G]) {
    typedef Codec<CODEC, BITS> C;
    if (CODEC == 3) {
        // KIVI keys: k[t][d] = code·scale[d] + min[d], so q·k = (q∘scale)·code + q·min.
        const int d = threadIdx.x;
        float sc = h2f(((const u16*)kb)[2 * d]), mn = h2f(((const u16*)kb)[2 * d + 1]);
        float4 a = sh.q[d];
        sh.qk[d] = make_float4(a.x * sc, a.y * sc, a.z * sc, a.w * sc);
        float c0 = warp_sum(a.x * mn), c1 = warp_sum(a.y * mn), c2 = warp_sum(a.z * mn), c3 = warp_sum(a.w * mn);
        if ((d & 31) == 0) {
            sh.red[d >> 5][0][0] = c0;
            sh.red[d >> 5][1][0] = c1;
            sh.red[d >> 5][2][0] = c2;
            sh.red[d >> 5][3][0] = c3;
        }
        __syncthreads();
        if (d < G) sh.kconst[d] = sh.red[0][d][0] + sh.red[1][d][0] + sh.red[2][d][0] + sh.red[3][d][0];
        __syncthreads();
    }
    const float4* qs = CODEC == 3 ? sh.qk : sh.q;
    const u8* krows = kb + C::KHEAD;
    // Scores: thread = (slice sl of SL dimensions, token pair p and p + 16),
    // so each q read serves two tokens.
    {
        const int sl = threadIdx.x >> 4, p = threadIdx.x & 15;
        float s0[G], s1[G];
        for (int g = 0; g < G; g++) s0[g] = s1[g] = 0.f;
        const bool v0 = p < nv, v1 = p + 16 < nv;
        const u8* r0 = krows + p * C::TBK;
        const u8* r1 = krows + (p + 16) * C::TBK;
        if (CODEC == 2 && BITS == 4) {
            // Decode as the FMAs go (fewer live registers than slice16:
            // measured faster for turbo4).
            const u16* c0 = (const u16*)(r0 + 2 + SL / 2 * sl);
            const u16* c1 = (const u16*)(r1 + 2 + SL / 2 * sl);
            #pragma unroll
            for (int k = 0; k < SL / 4; k++) {
                u32 w0 = v0 ? c0[k] : 0, w1 = v1 ? c1[k] : 0;
                #pragma unroll
                for (int i = 0; i < 4; i++) {
                    float4 a = qs[SL * sl + 4 * k + i];
                    float e0 = sh.lut[(w0 >> (4 * i)) & 15], e1 = sh.lut[(w1 >> (4 * i)) & 15];
                    s0[0] += a.x * e0; s0[1] += a.y * e0; s0[2] += a.z * e0; s0[3] += a.w * e0;
                    s1[0] += a.x * e1; s1[1] += a.y * e1; s1[2] += a.z * e1; s1[3] += a.w * e1;
                }
            }
        } else {
            float e0[SL], e1[SL];
            if (v0) C::slice16(r0, sl, sh.lut, e0); else for (int j = 0; j < SL; j++) e0[j] = 0.f;
            if (v1) C::slice16(r1, sl, sh.lut, e1); else for (int j = 0; j < SL; j++) e1[j] = 0.f;
            #pragma unroll
            for (int j = 0; j < SL; j++) {
                float4 a = qs[SL * sl + j];
                s0[0] += a.x * e0[j]; s0[1] += a.y * e0[j]; s0[2] += a.z * e0[j]; s0[3] += a.w * e0[j];
                s1[0] += a.x * e1[j]; s1[1] += a.y * e1[j]; s1[2] += a.z * e1[j]; s1[3] += a.w * e1[j];
            }
        }
        for (int g = 0; g < G; g++) {
            sh.red[sl][g][p] = s0[g];
            sh.red[sl][g][p + 16] = s1[g];
        }
    }
    __syncthreads();
    const int w = threadIdx.x >> 5, t = threadIdx.x & 31;
    if (w < G) {
        const int g = w;
        float sc = -INFINITY;
        if (t < nv) {
            sc = 0.f;
            for (int k = 0; k < NS; k++) sc += sh.red[k][g][t];
            if (CODEC == 3) sc += sh.kconst[g];
            sc *= C::token_scale(krows + t * C::TBK) * attn_scale;
        }
        float mold = sh.m[g];
        float mnew = fmaxf(mold, warp_max(sc));
        float p = t < nv ? __expf(sc - mnew) : 0.f;
        float corr = __expf(mold - mnew);
        float sum = warp_sum(p);
        ((float*)&sh.pw[t])[g] = t < nv ? p * C::token_scale(vb + t * C::TB) : 0.f;
        if (t == 0) {
            sh.l[g] = sh.l[g] * corr + sum;
            sh.m[g] = mnew;
            sh.corr[g] = corr;
        }
    }
    __syncthreads();
    // Values: warp w takes tokens 8w..8w+7, lane l dimensions 4l..4l+3
    // (acc[4g + i] = head g, dimension 4l + i).
    for (int g = 0; g < G; g++)
        for (int i = 0; i < 4; i++) acc[4 * g + i] *= sh.corr[g];
    const int t1 = min(nv, (w + 1) * (BT / 4));
    for (int tt = w * (BT / 4); tt < t1; tt++) {
        const u8* row = vb + tt * C::TB;
        float e[4];
        C::quad(row, t, sh.lut, e);
        float4 p = sh.pw[tt];
        for (int i = 0; i < 4; i++) {
            acc[i] += p.x * e[i];
            acc[4 + i] += p.y * e[i];
            acc[8 + i] += p.z * e[i];
            acc[12 + i] += p.w * e[i];
        }
    }
    __syncthreads();
}

// Add the four warps' token groups and write this split's state:
// accumulators (dimension-major), m and l per query head.
__device__ void write_partial(Shared& sh, float* part, int nparts, int b, int h, int kvh, int split, const float acc[4 * G]) {
    const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    if (w > 0)
        for (int k = 0; k < 4 * G; k++) sh.part_acc[w - 1][l][k] = acc[k];
    __syncthreads();
    if (w == 0) {
        for (int g = 0; g < G; g++) {
            int hq = h * G + g;
            float* o = part + ((i64)(b * kvh * G + hq) * nparts + split) * (D + 2);
            for (int i = 0; i < 4; i++) {
                float a = acc[4 * g + i];
                for (int r = 0; r < NT / 32 - 1; r++) a += sh.part_acc[r][l][4 * g + i];
                o[4 * l + i] = a;
            }
            if (l == 0) {
                o[D] = sh.m[g];
                o[D + 1] = sh.l[g];
            }
        }
    }
}

__device__ void load_q(Shared& sh, const float* q, int b, int h, int kvh, const float* signs) {
    const int d = threadIdx.x;
    for (int g = 0; g < G; g++) {
        float v = q[((i64)b * kvh * G + h * G + g) * D + d];
        sh.qh[d] = signs ? v * signs[d] : v;
        if (signs) fwht_smem(sh.qh);
        __syncthreads();
        ((float*)&sh.q[d])[g] = sh.qh[d];
        __syncthreads();
    }
    if (threadIdx.x < G) {
        sh.m[threadIdx.x] = -INFINITY;
        sh.l[threadIdx.x] = 0.f;
    }
    __syncthreads();
}

template <int CODEC, int BITS>
__device__ void attn_paged(const float* q, const u8* pool, const int* table, int max_blocks, const int* n_comp, int kvh,
                           i64 block_bytes, int blocks_per_split, int nparts, const float* levels, const float* signs,
                           float* part, float attn_scale) {
    typedef Codec<CODEC, BITS> C;
    __shared__ Shared sh;
    __shared__ __align__(16) u8 kbuf[2][C::RBK];
    __shared__ __align__(16) u8 vbuf[2][C::RBV];
    const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    if (threadIdx.x < 16) sh.lut[threadIdx.x] = (CODEC == 2 && threadIdx.x < (1 << BITS)) ? levels[threadIdx.x] : 0.f;
    load_q(sh, q, b, h, kvh, CODEC == 2 ? signs : nullptr);
    float acc[4 * G];
    for (int k = 0; k < 4 * G; k++) acc[k] = 0.f;
    const int n = n_comp[b];
    const int nblk = (n + BT - 1) / BT;
    const int b0 = split * blocks_per_split, b1 = min(nblk, b0 + blocks_per_split);
    const int* tab = table + (i64)b * max_blocks;
    // Key and value regions of cache block i, as 16-byte words.
    auto kregion = [&](int i) { return (const uint4*)(pool + (i64)tab[i] * block_bytes + (i64)h * C::RBK); };
    auto vregion = [&](int i) { return (const uint4*)(pool + (i64)tab[i] * block_bytes + (i64)kvh * C::RBK + (i64)h * C::RBV); };
    uint4 rk[C::PERK], rv[C::PERV];
    auto fetch = [&](int i) {
        const uint4* k = kregion(i);
        const uint4* v = vregion(i);
        #pragma unroll
        for (int r = 0; r < C::PERK; r++) {
            int idx = threadIdx.x + r * NT;
            if (idx < C::V4K) rk[r] = k[idx];
        }
        #pragma unroll
        for (int r = 0; r < C::PERV; r++) {
            int idx = threadIdx.x + r * NT;
            if (idx < C::V4V) rv[r] = v[idx];
        }
    };
    auto stash = [&](int slot) {
        #pragma unroll
        for (int r = 0; r < C::PERK; r++) {
            int idx = threadIdx.x + r * NT;
            if (idx < C::V4K) ((uint4*)kbuf[slot])[idx] = rk[r];
        }
        #pragma unroll
        for (int r = 0; r < C::PERV; r++) {
            int idx = threadIdx.x + r * NT;
            if (idx < C::V4V) ((uint4*)vbuf[slot])[idx] = rv[r];
        }
    };
    if (b0 < b1) {
        fetch(b0);
        stash(0);
        __syncthreads();
        for (int i = b0; i < b1; i++) {
            const int slot = (i - b0) & 1;
            if (i + 1 < b1) fetch(i + 1);  // in flight while this block is computed
            absorb<CODEC, BITS>(sh, kbuf[slot], vbuf[slot], min(BT, n - i * BT), attn_scale, acc);
            if (i + 1 < b1) stash(slot ^ 1);
            __syncthreads();
        }
    }
    write_partial(sh, part, nparts, b, h, kvh, split, acc);
}

// The f16 recent window of each sequence: rows [R] per (sequence, KV head),
// the first n_win[b] valid; written as split `nparts - 1`.
extern "C" __global__ void __launch_bounds__(NT) attn_window_f16(const float* q, const u16* win, const int* n_win, int R, int kvh,
                                                               int nparts, float* part, float attn_scale) {
    typedef Codec<0, 16> C;
    __shared__ Shared sh;
    __shared__ __align__(16) u8 buf[2][C::RBV];
    const int h = blockIdx.y, b = blockIdx.z;
    load_q(sh, q, b, h, kvh, nullptr);
    float acc[4 * G];
    for (int k = 0; k < 4 * G; k++) acc[k] = 0.f;
    const int n = n_win[b];
    const u16* k = win + ((i64)(b * 2 + 0) * kvh + h) * R * D;
    const u16* v = win + ((i64)(b * 2 + 1) * kvh + h) * R * D;
    for (int t0 = 0; t0 < n; t0 += BT) {
        int nv = min(BT, n - t0);
        for (int idx = threadIdx.x; idx < nv * D / 8; idx += NT) {
            ((uint4*)buf[0])[idx] = ((const uint4*)(k + (i64)t0 * D))[idx];
            ((uint4*)buf[1])[idx] = ((const uint4*)(v + (i64)t0 * D))[idx];
        }
        __syncthreads();
        absorb<0, 16>(sh, buf[0], buf[1], nv, attn_scale, acc);
    }
    write_partial(sh, part, nparts, b, h, kvh, nparts - 1, acc);
}

#define PAGED(NAME, CODEC, BITS)                                                                                        \
    extern "C" __global__ void __launch_bounds__(NT)                                                                    \
        NAME(const float* q, const u8* pool, const int* table, int max_blocks, const int* n_comp, int kvh,              \
             i64 block_bytes, int blocks_per_split, int nparts, const float* levels, const float* signs, float* part,   \
             float attn_scale) {                                                                                        \
        attn_paged<CODEC, BITS>(q, pool, table, max_blocks, n_comp, kvh, block_bytes, blocks_per_split, nparts,         \
                                levels, signs, part, attn_scale);                                                       \
    }
PAGED(attn_f16, 0, 16)
PAGED(attn_q8_0, 1, 8)
PAGED(attn_turbo2, 2, 2)
PAGED(attn_turbo3, 2, 3)
PAGED(attn_turbo4, 2, 4)
PAGED(attn_kivi2, 3, 2)
PAGED(attn_kivi4, 3, 4)

// Merge the `nparts` partial states of each (sequence, query head): splits
// 0..nparts-2 hold cache blocks (rotated domain when `signs` is set), the
// last one the f16 window. out[b][hq][D].
extern "C" __global__ void __launch_bounds__(NT) attn_combine(const float* part, int nparts, const float* signs, float* out) {
    __shared__ float x[D];
    const int hq = blockIdx.x, b = blockIdx.y, H = gridDim.x;
    const float* p = part + (i64)(b * H + hq) * nparts * (D + 2);
    float M = -INFINITY;
    for (int s = 0; s < nparts; s++) M = fmaxf(M, p[s * (D + 2) + D]);
    float L = 0.f, a = 0.f;
    for (int s = 0; s < nparts - 1; s++) {
        float m = p[s * (D + 2) + D];
        if (m == -INFINITY) continue;
        float e = __expf(m - M);
        L += e * p[s * (D + 2) + D + 1];
        a += e * p[s * (D + 2) + threadIdx.x];
    }
    x[threadIdx.x] = a;
    if (signs) {
        fwht_smem(x);
        x[threadIdx.x] *= signs[threadIdx.x];
    }
    const float* w = p + (nparts - 1) * (D + 2);
    float r = x[threadIdx.x];
    if (w[D] != -INFINITY) {
        float e = __expf(w[D] - M);
        L += e * w[D + 1];
        r += e * w[threadIdx.x];
    }
    out[((i64)b * H + hq) * D + threadIdx.x] = r / L;
}

// Does nothing (after `spin_ns` of busy waiting by one thread):
// `lowbit bench attention` times it as it times a call (CUDA events around
// one launch) for the floor every timed call includes, whatever its
// kernels do. One spinning launch first keeps the GPU busy while the timed
// launches are queued behind it, so the events see the GPU's own gaps, not
// the host's pace.
extern "C" __global__ void launch_floor(long long spin_ns) {
    if (spin_ns > 0 && threadIdx.x == 0) {
        long long t0, t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
        do asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); while (t - t0 < spin_ns);
    }
}
