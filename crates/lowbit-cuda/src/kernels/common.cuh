// Shared helpers for lowbit's CUDA kernels (compiled by NVRTC; no headers).
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

#define D 128          // head dimension the kernels are built for
#define G 4            // query heads per KV head (grouped-query attention)
#define BT 32          // tokens per cache block
#define NT 128         // threads per attention block
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

__device__ __forceinline__ float h2f(u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ u16 f2h(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Bytes of one token row of one KV head, per codec (for KIVI: a value row).
// codec 0 = f16, 1 = q8_0, 2 = turbo (norm f16 | BITS-bit codes),
// 3 = KIVI (keys: per-channel (scale, min) f16 header per block, then
// BITS-bit code rows; values: D/32 groups of scale f16 | min f16 | codes).
__host__ __device__ constexpr int token_bytes(int codec, int bits) {
    return codec == 0 ? 2 * D : codec == 1 ? (D / 32) * 34 : codec == 2 ? 2 + D * bits / 8 : (D / 32) * (4 + 32 * bits / 8);
}
// Bytes of one KV head's key region of a block.
__host__ __device__ constexpr int key_region_bytes(int codec, int bits) {
    return codec == 3 ? 4 * D + BT * D * bits / 8 : BT * token_bytes(codec, bits);
}

// In-place orthonormal Walsh–Hadamard transform of x[0..D) in shared
// memory by NT threads (NT >= D/2).
__device__ void fwht_smem(float* x) {
    for (int h = 1; h < D; h <<= 1) {
        __syncthreads();
        int i = threadIdx.x;
        if (i < D / 2) {
            int j = (i / h) * 2 * h + (i % h);
            float a = x[j], b = x[j + h];
            x[j] = a + b;
            x[j + h] = a - b;
        }
    }
    __syncthreads();
    if (threadIdx.x < D) x[threadIdx.x] *= 0.08838834764831845f;  // 1/sqrt(128)
    __syncthreads();
}
