// Quantize-on-append: rows of new K or V vectors (f32, [B][T][kvh][D], the
// T tokens of sequence b going to positions pos0[b]..) are coded straight
// into their cache blocks (layout in attention.cu). One warp per row; lane
// l holds elements 4l..4l+3.

__device__ __forceinline__ u8* dest_row(u8* pool, const int* table, int max_blocks, i64 block_bytes, int kvh, int plane,
                                        int rbk, int rbv, int tb, int b, int pos, int h) {
    int blk = table[(i64)b * max_blocks + pos / BT];
    i64 region = plane == 0 ? (i64)h * rbk : (i64)kvh * rbk + (i64)h * rbv;
    return pool + (i64)blk * block_bytes + region + (pos % BT) * tb;
}

// turbo: lowbit-quant's stretch search (rot/turbo.rs), its constants
// passed by the host (device.rs): the codebook also stretched by each of
// TURBO_STRETCHES, then ±TURBO_REFINE and ±TURBO_REFINE/2 around the best;
// a stretch wins only by more than TURBO_MARGIN·‖u‖²; the stored scale is
// ‖x‖ times the least-squares scale of the chosen codes.
#if !defined(TURBO_STRETCHES) || !defined(TURBO_REFINE) || !defined(TURBO_MARGIN)
#error "compile with -DTURBO_STRETCHES=… -DTURBO_REFINE=… -DTURBO_MARGIN=… (device.rs passes them)"
#endif
// The warp's fit of its codes to u (4 coordinates per lane) with the
// codebook stretched by a: gain <u,c>²/<c,c> and scale <u,c>/<c,c>.
template <int BITS>
__device__ __forceinline__ void turbo_fit(const float u[4], float a, const float* bounds, const float* levels, float& gain, float& scale) {
    float uc = 0.f, cc = 0.f;
    for (int e = 0; e < 4; e++) {
        int c = 0;
        for (int j = 0; j < (1 << BITS) - 1; j++) c += u[e] > bounds[j] * a;
        const float l = levels[c];
        uc += u[e] * l;
        cc += l * l;
    }
    uc = warp_sum(uc);
    cc = warp_sum(cc);
    gain = cc > 0.f ? uc * uc / cc : 0.f;
    scale = cc > 0.f ? uc / cc : 0.f;
}

template <int CODEC, int BITS>
__device__ void quantize_rows(const float* x, int B, int T, int kvh, const int* pos0, const int* table, int max_blocks,
                              u8* pool, i64 block_bytes, int plane, const float* signs, const float* bounds,
                              const float* levels) {
    const int tb = token_bytes(CODEC, BITS), rbv = BT * tb, rbk = key_region_bytes(CODEC, BITS);
    const int lane = threadIdx.x & 31;
    const i64 row = (i64)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    if (row >= (i64)B * T * kvh) return;
    const int h = row % kvh, t = (row / kvh) % T, b = row / ((i64)kvh * T);
    u8* o = dest_row(pool, table, max_blocks, block_bytes, kvh, plane, rbk, rbv, tb, b, pos0[b] + t, h);
    float4 xv = ((const float4*)(x + row * D))[lane];
    float v[4] = {xv.x, xv.y, xv.z, xv.w};
    if (CODEC == 0) {
        ((ushort2*)o)[2 * lane] = make_ushort2(f2h(v[0]), f2h(v[1]));
        ((ushort2*)o)[2 * lane + 1] = make_ushort2(f2h(v[2]), f2h(v[3]));
    } else if (CODEC == 1) {
        // ggml q8_0: d = amax/127, q = round(x/d); 8 lanes per 32-element block.
        float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
        for (int s = 1; s < 8; s <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, s));
        float d = amax / 127.f, id = d != 0.f ? 1.f / d : 0.f;
        u8* blk = o + 34 * (lane >> 3);
        // The scale as one 16-bit store (rows and blocks start at even bytes).
        if ((lane & 7) == 0) *(u16*)blk = f2h(d);
        for (int k = 0; k < 4; k++) blk[2 + (lane & 7) * 4 + k] = (u8)(signed char)roundf(v[k] * id);
    } else if (CODEC == 3) {
        // KIVI values = uniform asymmetric groups of 32 (lowbit-quant's
        // uniform{b}:g32:asym): d = f16((max − min)/qmax), m = f16(min),
        // code = round((x − m) · (1/d)); 8 lanes per group.
        float lo = fminf(fminf(v[0], v[1]), fminf(v[2], v[3])), hi = fmaxf(fmaxf(v[0], v[1]), fmaxf(v[2], v[3]));
        for (int s = 1; s < 8; s <<= 1) {
            lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, s));
            hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, s));
        }
        const float qmax = (float)((1 << BITS) - 1);
        u16 hd = f2h((hi - lo) / qmax), hm = f2h(lo);
        float d = h2f(hd), m = h2f(hm), id = d > 0.f ? 1.f / d : 0.f;
        u8* grp = o + (lane >> 3) * (4 + 32 * BITS / 8);
        if ((lane & 7) == 0) {
            ((u16*)grp)[0] = hd;
            ((u16*)grp)[1] = hm;
        }
        u32 packed = 0;
        for (int k = 0; k < 4; k++) {
            float q = fminf(fmaxf(roundf((v[k] - m) * id), 0.f), qmax);
            packed |= (u32)q << (BITS * k);
        }
        if (BITS == 2) grp[4 + (lane & 7)] = (u8)packed;
        else ((u16*)(grp + 4))[lane & 7] = (u16)packed;
    } else {
        float ss = warp_sum(v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + v[3] * v[3]);
        float norm = sqrtf(ss);
        for (int k = 0; k < 4; k++) v[k] *= signs[4 * lane + k];
        // Walsh–Hadamard: strides 1 and 2 inside the lane, 4..64 across lanes.
        float a0 = v[0] + v[1], a1 = v[0] - v[1], a2 = v[2] + v[3], a3 = v[2] - v[3];
        v[0] = a0 + a2; v[1] = a1 + a3; v[2] = a0 - a2; v[3] = a1 - a3;
        for (int m = 1; m < 32; m <<= 1) {
            bool hi = lane & m;
            for (int k = 0; k < 4; k++) {
                float other = __shfl_xor_sync(0xffffffffu, v[k], m);
                v[k] = hi ? other - v[k] : v[k] + other;
            }
        }
        // u = H·D·x·√D/‖x‖ with H orthonormal (the unnormalized transform / √D).
        float k = norm > 0.f ? 1.f / norm : 0.f;
        float u[4];
        for (int e = 0; e < 4; e++) u[e] = v[e] * k;
        const float margin = TURBO_MARGIN * warp_sum(u[0] * u[0] + u[1] * u[1] + u[2] * u[2] + u[3] * u[3]);
        float best = 1.f, gain = 0.f, scale = 0.f;
        auto consider = [&](float a) {
            float g, sc;
            turbo_fit<BITS>(u, a, bounds, levels, g, sc);
            if (g > gain + margin) {
                best = a;
                gain = g;
                scale = sc;
            }
        };
        consider(1.f);
        constexpr float stretches[] = {TURBO_STRETCHES};
        #pragma unroll
        for (int i = 0; i < (int)(sizeof(stretches) / sizeof(float)); i++) consider(stretches[i]);
        for (float step = TURBO_REFINE, r = 0; r < 2; r++, step *= 0.5f) {
            const float c = best;
            consider(c - step);
            consider(c + step);
        }
        int code[4];
        for (int e = 0; e < 4; e++) {
            int c = 0;
            for (int j = 0; j < (1 << BITS) - 1; j++) c += u[e] > bounds[j] * best;
            code[e] = c;
        }
        u8* c = o + 2;
        if (BITS == 4) {
            c[2 * lane] = code[0] | (code[1] << 4);
            c[2 * lane + 1] = code[2] | (code[3] << 4);
        } else if (BITS == 2) {
            c[lane] = code[0] | (code[1] << 2) | (code[2] << 4) | (code[3] << 6);
        } else {
            int mine = code[0] | (code[1] << 3) | (code[2] << 6) | (code[3] << 9);
            int next = __shfl_down_sync(0xffffffffu, mine, 1);
            if ((lane & 1) == 0) {
                int w = mine | (next << 12);
                c[(lane >> 1) * 3] = w & 255;
                c[(lane >> 1) * 3 + 1] = (w >> 8) & 255;
                c[(lane >> 1) * 3 + 2] = (w >> 16) & 255;
            }
        }
        if (lane == 0) *(u16*)o = f2h(norm > 0.f ? norm * scale : 0.f);
    }
}

#define QUANT(NAME, CODEC, BITS)                                                                                      \
    extern "C" __global__ void NAME(const float* x, int B, int T, int kvh, const int* pos0, const int* table,          \
                                    int max_blocks, u8* pool, i64 block_bytes, int plane, const float* signs,          \
                                    const float* bounds, const float* levels) {                                       \
        quantize_rows<CODEC, BITS>(x, B, T, kvh, pos0, table, max_blocks, pool, block_bytes, plane, signs, bounds,    \
                                   levels);                                                                           \
    }
QUANT(quant_f16, 0, 16)
QUANT(quant_q8_0, 1, 8)
QUANT(quant_turbo2, 2, 2)
QUANT(quant_turbo3, 2, 3)
QUANT(quant_turbo4, 2, 4)
QUANT(quant_kivi2, 3, 2)
QUANT(quant_kivi4, 3, 4)

// KIVI keys, a whole block at a time (per-channel constants over its BT
// tokens, as lowbit-kv's KIVI keys): grid (blocks appended, kvh, B), D
// threads = channels. s = f16((max − min)/qmax), m = f16(min), code =
// round((x − m)/s); the region gets the (s, m) header then BT code rows.
template <int BITS>
__device__ void quantize_kivi_keys(const float* x, int B, int T, int kvh, const int* pos0, const int* table, int max_blocks,
                                   u8* pool, i64 block_bytes) {
    __shared__ u8 codes[BT][D];
    const int c = threadIdx.x, j = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int t0 = j * BT, pos = pos0[b] + t0;
    const int rbk = key_region_bytes(3, BITS), rb = D * BITS / 8;
    u8* region = pool + (i64)table[(i64)b * max_blocks + pos / BT] * block_bytes + (i64)h * rbk;
    float lo = INFINITY, hi = -INFINITY;
    for (int t = 0; t < BT; t++) {
        float v = x[(((i64)b * T + t0 + t) * kvh + h) * D + c];
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
    }
    const float qmax = (float)((1 << BITS) - 1);
    u16 hs = f2h((hi - lo) / qmax), hm = f2h(lo);
    float s = h2f(hs), m = h2f(hm);
    ((u16*)region)[2 * c] = hs;
    ((u16*)region)[2 * c + 1] = hm;
    for (int t = 0; t < BT; t++) {
        float v = x[(((i64)b * T + t0 + t) * kvh + h) * D + c];
        float q = s > 0.f ? roundf((v - m) / s) : 0.f;
        codes[t][c] = (u8)fminf(fmaxf(q, 0.f), qmax);
    }
    __syncthreads();
    const int per = 8 / BITS;  // codes per byte
    for (int i = threadIdx.x; i < BT * rb; i += blockDim.x) {
        int t = i / rb, k = i % rb;
        u32 v = 0;
        for (int e = 0; e < per; e++) v |= (u32)codes[t][k * per + e] << (BITS * e);
        region[4 * D + t * rb + k] = (u8)v;
    }
}

#define QUANT_KIVI_KEYS(NAME, BITS)                                                                                 \
    extern "C" __global__ void NAME(const float* x, int B, int T, int kvh, const int* pos0, const int* table,        \
                                    int max_blocks, u8* pool, i64 block_bytes, int plane, const float* signs,        \
                                    const float* bounds, const float* levels) {                                     \
        quantize_kivi_keys<BITS>(x, B, T, kvh, pos0, table, max_blocks, pool, block_bytes);                          \
    }
QUANT_KIVI_KEYS(quant_kivi2_keys, 2)
QUANT_KIVI_KEYS(quant_kivi4_keys, 4)

// Deterministic pseudo-normal test data: x[i] = N(0,1) from a hash of
// (seed, i), times 6 on every `outlier`-th channel (like real keys).
__device__ __forceinline__ u32 mix(u32 x) {
    x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
    return x;
}
extern "C" __global__ void fill_normal(float* x, i64 n, u32 seed, int outlier) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        u32 a = mix((u32)i ^ mix(seed ^ (u32)(i >> 32)));
        u32 c = mix(a ^ 0x9e3779b9u);
        float u1 = (a + 1.f) * 2.3283064e-10f, u2 = c * 2.3283064e-10f;
        float z = sqrtf(-2.f * __logf(u1)) * __cosf(6.2831853f * u2);
        x[i] = (outlier > 0 && (i % D) % outlier == 0) ? 6.f * z : z;
    }
}
