// Quantize-on-append: rows of new K or V vectors (f32, [B][T][kvh][D], the
// T tokens of sequence b going to positions pos0[b]..) are coded straight
// into their cache blocks (layout in attention.cu). One warp per row; lane
// l holds elements 4l..4l+3.

__device__ __forceinline__ u8* dest_row(u8* pool, const int* table, int max_blocks, i64 block_bytes, int kvh, int plane,
                                        int rb, int tb, int b, int pos, int h) {
    int blk = table[(i64)b * max_blocks + pos / BT];
    return pool + (i64)blk * block_bytes + (i64)(plane * kvh + h) * rb + (pos % BT) * tb;
}

template <int CODEC, int BITS>
__device__ void quantize_rows(const float* x, int B, int T, int kvh, const int* pos0, const int* table, int max_blocks,
                              u8* pool, i64 block_bytes, int plane, const float* signs, const float* bounds) {
    const int tb = token_bytes(CODEC, BITS), rb = BT * tb;
    const int lane = threadIdx.x & 31;
    const i64 row = (i64)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    if (row >= (i64)B * T * kvh) return;
    const int h = row % kvh, t = (row / kvh) % T, b = row / ((i64)kvh * T);
    u8* o = dest_row(pool, table, max_blocks, block_bytes, kvh, plane, rb, tb, b, pos0[b] + t, h);
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
        int code[4];
        for (int e = 0; e < 4; e++) {
            float u = v[e] * k;
            int c = 0;
            for (int j = 0; j < (1 << BITS) - 1; j++) c += u > bounds[j];
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
        if (lane == 0) *(u16*)o = f2h(norm);
    }
}

#define QUANT(NAME, CODEC, BITS)                                                                                      \
    extern "C" __global__ void NAME(const float* x, int B, int T, int kvh, const int* pos0, const int* table,          \
                                    int max_blocks, u8* pool, i64 block_bytes, int plane, const float* signs,          \
                                    const float* bounds) {                                                            \
        quantize_rows<CODEC, BITS>(x, B, T, kvh, pos0, table, max_blocks, pool, block_bytes, plane, signs, bounds);  \
    }
QUANT(quant_f16, 0, 16)
QUANT(quant_q8_0, 1, 8)
QUANT(quant_turbo2, 2, 2)
QUANT(quant_turbo3, 2, 3)
QUANT(quant_turbo4, 2, 4)

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
