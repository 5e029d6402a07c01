#include "inner_product.h"

#if defined(__x86_64__) || defined(_M_X64)
#define FUNNELRANK_X86 1
#include <immintrin.h>
#endif

namespace funnelrank {

float inner_product_scalar(const float* a, const float* b, std::size_t dim) {
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
    std::size_t i = 0;
    for (; i + 4 <= dim; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < dim; ++i) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

#if defined(FUNNELRANK_X86) && (defined(__GNUC__) || defined(__clang__))
namespace {

// The sum of four accumulators' lanes, in one fixed order (both AVX-512 kernels use it, so a product
// comes out bit-identical from either). 16 -> 8 -> 4 -> 2 -> 1 lanes with AVX-512F shuffles. GCC 12's
// unmasked shuffles (and _mm512_reduce_add_ps) start from _mm512_undefined_ps and trip
// -Werror=uninitialized; the all-lanes masked forms compute the same.
__attribute__((target("avx512f"), always_inline)) inline float sum_avx512(__m512 acc0, __m512 acc1, __m512 acc2,
                                                                          __m512 acc3) {
    const __m512 acc = _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3));
    constexpr __mmask16 all = 0xFFFF;
    const __m512 h8 = _mm512_add_ps(acc, _mm512_mask_shuffle_f32x4(acc, all, acc, acc, _MM_SHUFFLE(1, 0, 3, 2)));
    const __m512 h4 = _mm512_add_ps(h8, _mm512_mask_shuffle_f32x4(h8, all, h8, h8, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m512 h2 = _mm512_add_ps(h4, _mm512_mask_permute_ps(h4, all, h4, _MM_SHUFFLE(1, 0, 3, 2)));
    const __m512 h1 = _mm512_add_ps(h2, _mm512_mask_permute_ps(h2, all, h2, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_cvtss_f32(h1);
}

// Four independent accumulators (a chain of dim/64 dependent FMAs instead of dim/16) and a shuffle-tree
// horizontal sum: the walk of an HNSW graph is a sequence of these calls, so their latency is the cost.
__attribute__((target("avx512f"))) float inner_product_avx512(const float* a, const float* b, std::size_t dim) {
    __m512 acc0 = _mm512_setzero_ps();
    __m512 acc1 = _mm512_setzero_ps();
    __m512 acc2 = _mm512_setzero_ps();
    __m512 acc3 = _mm512_setzero_ps();
    std::size_t i = 0;
    for (; i + 64 <= dim; i += 64) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
        acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), acc2);
        acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), acc3);
    }
    for (; i + 16 <= dim; i += 16) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    }
    if (i < dim) {
        const auto mask = static_cast<__mmask16>((1u << (dim - i)) - 1u);
        acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + i), _mm512_maskz_loadu_ps(mask, b + i), acc1);
    }
    return sum_avx512(acc0, acc1, acc2, acc3);
}

// inner_product_avx512 of `a` with four vectors at once, each with exactly its arithmetic (so each result
// is bit-identical): the four vectors' loads are in flight together, and each load of `a` serves four FMAs.
__attribute__((target("avx512f"))) void inner_product4_avx512(const float* a, const float* const* b,
                                                               std::size_t dim, float* out) {
    const float* b0 = b[0];
    const float* b1 = b[1];
    const float* b2 = b[2];
    const float* b3 = b[3];
    __m512 acc[4][4];
    for (auto& row : acc)
        for (auto& x : row) x = _mm512_setzero_ps();
    std::size_t i = 0;
    for (; i + 64 <= dim; i += 64) {
#pragma GCC unroll 4
        for (std::size_t c = 0; c < 4; ++c) {
            const __m512 q = _mm512_loadu_ps(a + i + 16 * c);
            acc[0][c] = _mm512_fmadd_ps(q, _mm512_loadu_ps(b0 + i + 16 * c), acc[0][c]);
            acc[1][c] = _mm512_fmadd_ps(q, _mm512_loadu_ps(b1 + i + 16 * c), acc[1][c]);
            acc[2][c] = _mm512_fmadd_ps(q, _mm512_loadu_ps(b2 + i + 16 * c), acc[2][c]);
            acc[3][c] = _mm512_fmadd_ps(q, _mm512_loadu_ps(b3 + i + 16 * c), acc[3][c]);
        }
    }
    for (; i + 16 <= dim; i += 16) {
        const __m512 q = _mm512_loadu_ps(a + i);
        acc[0][0] = _mm512_fmadd_ps(q, _mm512_loadu_ps(b0 + i), acc[0][0]);
        acc[1][0] = _mm512_fmadd_ps(q, _mm512_loadu_ps(b1 + i), acc[1][0]);
        acc[2][0] = _mm512_fmadd_ps(q, _mm512_loadu_ps(b2 + i), acc[2][0]);
        acc[3][0] = _mm512_fmadd_ps(q, _mm512_loadu_ps(b3 + i), acc[3][0]);
    }
    if (i < dim) {
        const auto mask = static_cast<__mmask16>((1u << (dim - i)) - 1u);
        const __m512 q = _mm512_maskz_loadu_ps(mask, a + i);
        acc[0][1] = _mm512_fmadd_ps(q, _mm512_maskz_loadu_ps(mask, b0 + i), acc[0][1]);
        acc[1][1] = _mm512_fmadd_ps(q, _mm512_maskz_loadu_ps(mask, b1 + i), acc[1][1]);
        acc[2][1] = _mm512_fmadd_ps(q, _mm512_maskz_loadu_ps(mask, b2 + i), acc[2][1]);
        acc[3][1] = _mm512_fmadd_ps(q, _mm512_maskz_loadu_ps(mask, b3 + i), acc[3][1]);
    }
#pragma GCC unroll 4
    for (std::size_t v = 0; v < 4; ++v) out[v] = sum_avx512(acc[v][0], acc[v][1], acc[v][2], acc[v][3]);
}

// The end of inner_product_avx2 for one vector: its two accumulators' lanes summed in one fixed order, then the
// last dim % 8 products one by one. Shared by the one- and four-vector kernels, so both round alike.
__attribute__((target("avx2,fma"), always_inline)) inline float finish_avx2(__m256 acc0, __m256 acc1, const float* a,
                                                                            const float* b, std::size_t i,
                                                                            std::size_t dim) {
    const __m256 acc = _mm256_add_ps(acc0, acc1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float sum = _mm_cvtss_f32(s);
    for (; i < dim; ++i) sum += a[i] * b[i];
    return sum;
}

__attribute__((target("avx2,fma"))) float inner_product_avx2(const float* a, const float* b, std::size_t dim) {
    __m256 acc0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 16 <= dim; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= dim; i += 8) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    }
    return finish_avx2(acc0, acc1, a, b, i, dim);
}

// inner_product_avx2 of `a` with four vectors at once, each with exactly its arithmetic (so each result is
// bit-identical): eight independent FMA chains where one vector has two (one alone waits on the FMA latency),
// the four vectors' loads in flight together, and each load of `a` serving four FMAs.
__attribute__((target("avx2,fma"))) void inner_product4_avx2(const float* a, const float* const* b, std::size_t dim,
                                                             float* out) {
    __m256 acc[4][2];
    for (auto& row : acc) row[0] = row[1] = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 16 <= dim; i += 16) {
        const __m256 q0 = _mm256_loadu_ps(a + i);
        const __m256 q1 = _mm256_loadu_ps(a + i + 8);
#pragma GCC unroll 4
        for (std::size_t v = 0; v < 4; ++v) {
            acc[v][0] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(b[v] + i), acc[v][0]);
            acc[v][1] = _mm256_fmadd_ps(q1, _mm256_loadu_ps(b[v] + i + 8), acc[v][1]);
        }
    }
    for (; i + 8 <= dim; i += 8) {
        const __m256 q0 = _mm256_loadu_ps(a + i);
#pragma GCC unroll 4
        for (std::size_t v = 0; v < 4; ++v) acc[v][0] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(b[v] + i), acc[v][0]);
    }
#pragma GCC unroll 4
    for (std::size_t v = 0; v < 4; ++v) out[v] = finish_avx2(acc[v][0], acc[v][1], a, b[v], i, dim);
}

__attribute__((target("avx512f"))) void distance4_avx512(const float* a, const float* const* b, std::size_t dim,
                                                          float* out) {
    inner_product4_avx512(a, b, dim, out);
    for (std::size_t v = 0; v < 4; ++v) out[v] = 1.f - out[v];
}

__attribute__((target("avx2,fma"))) void distance4_avx2(const float* a, const float* const* b, std::size_t dim,
                                                        float* out) {
    inner_product4_avx2(a, b, dim, out);
    for (std::size_t v = 0; v < 4; ++v) out[v] = 1.f - out[v];
}

__attribute__((target("avx512f"))) float distance_avx512(const void* a, const void* b, const void* dim_ptr) {
    return 1.f - inner_product_avx512(static_cast<const float*>(a), static_cast<const float*>(b),
                                      *static_cast<const std::size_t*>(dim_ptr));
}

__attribute__((target("avx2,fma"))) float distance_avx2(const void* a, const void* b, const void* dim_ptr) {
    return 1.f - inner_product_avx2(static_cast<const float*>(a), static_cast<const float*>(b),
                                    *static_cast<const std::size_t*>(dim_ptr));
}

float distance_scalar(const void* a, const void* b, const void* dim_ptr) {
    return 1.f - inner_product_scalar(static_cast<const float*>(a), static_cast<const float*>(b),
                                      *static_cast<const std::size_t*>(dim_ptr));
}

void distance4_scalar(const float* a, const float* const* b, std::size_t dim, float* out) {
    for (std::size_t v = 0; v < 4; ++v) out[v] = 1.f - inner_product_scalar(a, b[v], dim);
}

struct Kernel {
    InnerProductFn fn;
    InnerProductDistanceFn distance;
    InnerProductDistance4Fn distance4;
    const char* name;
};

Kernel pick_kernel() {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return {inner_product_avx512, distance_avx512, distance4_avx512, "avx512"};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return {inner_product_avx2, distance_avx2, distance4_avx2, "avx2"};
    return {inner_product_scalar, distance_scalar, distance4_scalar, "scalar"};
}

}  // namespace
#else
namespace {
float distance_scalar(const void* a, const void* b, const void* dim_ptr) {
    return 1.f - inner_product_scalar(static_cast<const float*>(a), static_cast<const float*>(b),
                                      *static_cast<const std::size_t*>(dim_ptr));
}

void distance4_scalar(const float* a, const float* const* b, std::size_t dim, float* out) {
    for (std::size_t v = 0; v < 4; ++v) out[v] = 1.f - inner_product_scalar(a, b[v], dim);
}
struct Kernel {
    InnerProductFn fn;
    InnerProductDistanceFn distance;
    InnerProductDistance4Fn distance4;
    const char* name;
};
Kernel pick_kernel() { return {inner_product_scalar, distance_scalar, distance4_scalar, "scalar"}; }
}  // namespace
#endif

namespace {
const Kernel& kernel() {
    static const Kernel k = pick_kernel();
    return k;
}
}  // namespace

InnerProductFn best_inner_product() { return kernel().fn; }
InnerProductDistanceFn best_inner_product_distance() { return kernel().distance; }
InnerProductDistance4Fn best_inner_product_distance4() { return kernel().distance4; }
const char* inner_product_kernel_name() { return kernel().name; }

}  // namespace funnelrank
