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
    static constexpr int TB = token_bytes(CODEC, BITS);
    static constexpr int RB = BT * TB;          // bytes of one region
    static constexpr int V4 = RB / 16;          // 16-byte loads per region
    static constexpr int PER = (V4 + NT - 1) / NT;

    // Element d of a token row (before the per-token scale of turbo).
    __device__ static __forceinline__ float elem(const u8* row, int d, const float* lut) {
        if (CODEC == 0) {
            return h2f(((const u16*)row)[d]);
        } else if (CODEC == 1) {
            const u8* blk = row + 34 * (d >> 5);
            return h2f((u16)(blk[0] | (blk[1] << 8))) * (float)(signed char)blk[2 + (d & 31)];
        } else {
            const u8* c = row + 2;
            int code;
            if (BITS == 4) {
                code = (c[d >> 1] >> ((d & 1) * 4)) & 15;
            } else if (BITS == 2) {
                code = (c[d >> 2] >> ((d & 3) * 2)) & 3;
            } else {
                int p = 3 * d, b = p >> 3, s = p & 7;
                int v = c[b];
                if (s > 5) v |= c[b + 1] << 8;
                code = (v >> s) & 7;
            }
            return lut[code];
        }
    }
    // Per-token factor applied to the dot product / value (turbo: ‖x‖/√D).
    __device__ static __forceinline__ float token_scale(const u8* row) {
        return CODEC == 2 ? h2f((u16)(row[0] | (row[1] << 8))) * 0.08838834764831845f : 1.0f;
    }
};

struct Shared {
    float4 q[D];            // q[d] = the G = 4 heads' values at dimension d
    float qh[D];            // scratch for rotating one head
    float red[NT / 32][G][BT];
    float4 pw[BT];          // softmax weight × value scale per token, G heads
    float m[G], l[G], corr[G];
    float lut[16];
    float half_acc[NT / 2][2 * G];
};

// One cache block already in shared memory: update the softmax state and
// the accumulators (thread = dimension) of the G heads.
template <int CODEC, int BITS>
__device__ void absorb(Shared& sh, const u8* kb, const u8* vb, int nv, float attn_scale, float acc[2 * G]) {
    typedef Codec<CODEC, BITS> C;
    const int w = threadIdx.x >> 5, t = threadIdx.x & 31;
    float s[G];
    for (int g = 0; g < G; g++) s[g] = 0.f;
    if (t < nv) {
        const u8* row = kb + t * C::TB;
        if (CODEC == 2 && BITS == 4) {
            // Two codes per byte: one byte load, two table reads, 8 FMAs.
            const u8* c = row + 2 + 16 * w;
            #pragma unroll
            for (int j = 0; j < 16; j++) {
                int d = 32 * w + 2 * j;
                int byte = c[j];
                // 16-entry table: lanes reading different entries hit different banks.
                float e0 = sh.lut[byte & 15], e1 = sh.lut[byte >> 4];
                float4 a = sh.q[d], b = sh.q[d + 1];
                s[0] += a.x * e0 + b.x * e1;
                s[1] += a.y * e0 + b.y * e1;
                s[2] += a.z * e0 + b.z * e1;
                s[3] += a.w * e0 + b.w * e1;
            }
        } else {
            #pragma unroll 8
            for (int j = 0; j < 32; j++) {
                int d = 32 * w + j;
                float e = C::elem(row, d, sh.lut);
                float4 a = sh.q[d];
                s[0] += a.x * e;
                s[1] += a.y * e;
                s[2] += a.z * e;
                s[3] += a.w * e;
            }
        }
    }
    for (int g = 0; g < G; g++) sh.red[w][g][t] = s[g];
    __syncthreads();
    if (w < G) {
        const int g = w;
        float sc = -INFINITY;
        if (t < nv) {
            sc = 0.f;
            for (int k = 0; k < NT / 32; k++) sc += sh.red[k][g][t];
            sc *= C::token_scale(kb + t * C::TB) * attn_scale;
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
    // Values: thread j of each half owns dimensions 2j and 2j+1; the two
    // halves of the thread block take tokens 0..15 and 16..31.
    const int j = threadIdx.x & (NT / 2 - 1), half = threadIdx.x / (NT / 2);
    for (int g = 0; g < G; g++) {
        acc[2 * g] *= sh.corr[g];
        acc[2 * g + 1] *= sh.corr[g];
    }
    const int t1 = min(nv, (half + 1) * (BT / 2));
    for (int tt = half * (BT / 2); tt < t1; tt++) {
        const u8* row = vb + tt * C::TB;
        float2 e;
        if (CODEC == 2 && BITS == 4) {
            int byte = row[2 + j];
            e = make_float2(sh.lut[byte & 15], sh.lut[byte >> 4]);
        } else {
            e = make_float2(C::elem(row, 2 * j, sh.lut), C::elem(row, 2 * j + 1, sh.lut));
        }
        float4 p = sh.pw[tt];
        acc[0] += p.x * e.x; acc[1] += p.x * e.y;
        acc[2] += p.y * e.x; acc[3] += p.y * e.y;
        acc[4] += p.z * e.x; acc[5] += p.z * e.y;
        acc[6] += p.w * e.x; acc[7] += p.w * e.y;
    }
    __syncthreads();
}

// Add the two token halves and write this split's state: accumulators
// (dimension-major), m and l per query head.
__device__ void write_partial(Shared& sh, float* part, int nparts, int b, int h, int kvh, int split, const float acc[2 * G]) {
    const int j = threadIdx.x & (NT / 2 - 1), half = threadIdx.x / (NT / 2);
    if (half == 1)
        for (int k = 0; k < 2 * G; k++) sh.half_acc[j][k] = acc[k];
    __syncthreads();
    if (half == 0) {
        for (int g = 0; g < G; g++) {
            int hq = h * G + g;
            float* o = part + ((i64)(b * kvh * G + hq) * nparts + split) * (D + 2);
            o[2 * j] = acc[2 * g] + sh.half_acc[j][2 * g];
            o[2 * j + 1] = acc[2 * g + 1] + sh.half_acc[j][2 * g + 1];
            if (j == 0) {
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
    __shared__ __align__(16) u8 buf[2][2][C::RB];
    const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    if (threadIdx.x < 16) sh.lut[threadIdx.x] = (CODEC == 2 && threadIdx.x < (1 << BITS)) ? levels[threadIdx.x] : 0.f;
    load_q(sh, q, b, h, kvh, CODEC == 2 ? signs : nullptr);
    float acc[2 * G];
    for (int k = 0; k < 2 * G; k++) acc[k] = 0.f;
    const int n = n_comp[b];
    const int nblk = (n + BT - 1) / BT;
    const int b0 = split * blocks_per_split, b1 = min(nblk, b0 + blocks_per_split);
    const int* tab = table + (i64)b * max_blocks;
    // Region of plane p (0 = K, 1 = V) of cache block i, as 16-byte words.
    auto region = [&](int i, int p) {
        return (const uint4*)(pool + (i64)tab[i] * block_bytes + (i64)(p * kvh + h) * C::RB);
    };
    uint4 rk[C::PER], rv[C::PER];
    auto fetch = [&](int i) {
        const uint4* k = region(i, 0);
        const uint4* v = region(i, 1);
        #pragma unroll
        for (int r = 0; r < C::PER; r++) {
            int idx = threadIdx.x + r * NT;
            if (idx < C::V4) {
                rk[r] = k[idx];
                rv[r] = v[idx];
            }
        }
    };
    auto stash = [&](int slot) {
        #pragma unroll
        for (int r = 0; r < C::PER; r++) {
            int idx = threadIdx.x + r * NT;
            if (idx < C::V4) {
                ((uint4*)buf[slot][0])[idx] = rk[r];
                ((uint4*)buf[slot][1])[idx] = rv[r];
            }
        }
    };
    if (b0 < b1) {
        fetch(b0);
        stash(0);
        __syncthreads();
        for (int i = b0; i < b1; i++) {
            const int slot = (i - b0) & 1;
            if (i + 1 < b1) fetch(i + 1);  // in flight while this block is computed
            absorb<CODEC, BITS>(sh, buf[slot][0], buf[slot][1], min(BT, n - i * BT), attn_scale, acc);
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
    __shared__ __align__(16) u8 buf[2][C::RB];
    const int h = blockIdx.y, b = blockIdx.z;
    load_q(sh, q, b, h, kvh, nullptr);
    float acc[2 * G];
    for (int k = 0; k < 2 * G; k++) acc[k] = 0.f;
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
