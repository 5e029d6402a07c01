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
    const __m512 acc = _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3));
    // 16 -> 8 -> 4 -> 2 -> 1 lanes with AVX-512F shuffles. GCC 12's unmasked shuffles (and
    // _mm512_reduce_add_ps) start from _mm512_undefined_ps and trip -Werror=uninitialized; the
    // all-lanes masked forms compute the same.
    constexpr __mmask16 all = 0xFFFF;
    const __m512 h8 = _mm512_add_ps(acc, _mm512_mask_shuffle_f32x4(acc, all, acc, acc, _MM_SHUFFLE(1, 0, 3, 2)));
    const __m512 h4 = _mm512_add_ps(h8, _mm512_mask_shuffle_f32x4(h8, all, h8, h8, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m512 h2 = _mm512_add_ps(h4, _mm512_mask_permute_ps(h4, all, h4, _MM_SHUFFLE(1, 0, 3, 2)));
    const __m512 h1 = _mm512_add_ps(h2, _mm512_mask_permute_ps(h2, all, h2, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_cvtss_f32(h1);
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
    const __m256 acc = _mm256_add_ps(acc0, acc1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float sum = _mm_cvtss_f32(s);
    for (; i < dim; ++i) sum += a[i] * b[i];
    return sum;
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

struct Kernel {
    InnerProductFn fn;
    InnerProductDistanceFn distance;
    const char* name;
};

Kernel pick_kernel() {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return {inner_product_avx512, distance_avx512, "avx512"};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return {inner_product_avx2, distance_avx2, "avx2"};
    return {inner_product_scalar, distance_scalar, "scalar"};
}

}  // namespace
#else
namespace {
float distance_scalar(const void* a, const void* b, const void* dim_ptr) {
    return 1.f - inner_product_scalar(static_cast<const float*>(a), static_cast<const float*>(b),
                                      *static_cast<const std::size_t*>(dim_ptr));
}
struct Kernel {
    InnerProductFn fn;
    InnerProductDistanceFn distance;
    const char* name;
};
Kernel pick_kernel() { return {inner_product_scalar, distance_scalar, "scalar"}; }
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
const char* inner_product_kernel_name() { return kernel().name; }

}  // namespace funnelrank
