// The distance kernels of each VectorStorage (vector_storage.h): portable scalar code, and AVX2 + FMA (+ F16C
// for F16) chosen at run time when the CPU has them, as inner_product.cpp chooses for float32. AVX-512 forms
// (vcvtph2ps on 16 lanes, VNNI's vpdpbusd) would slot in beside the AVX2 ones; they are not here because no
// machine this project builds on has those units to test them.
#include <cstdint>
#include <cstring>

#include "inner_product.h"
#include "vector_storage.h"

#if defined(__x86_64__) || defined(_M_X64)
#define FUNNELRANK_X86 1
#include <immintrin.h>
#endif

namespace funnelrank {

namespace {

std::size_t dim_of(const void* dim_ptr) { return *static_cast<const std::size_t*>(dim_ptr); }

float scale_of(const void* v) {
    float s;
    std::memcpy(&s, v, sizeof s);
    return s;
}

const std::int8_t* codes_of(const void* v) {
    return reinterpret_cast<const std::int8_t*>(static_cast<const unsigned char*>(v) + sizeof(float));
}

std::uint16_t half_at(const void* v, std::size_t j) {
    std::uint16_t h;
    std::memcpy(&h, static_cast<const unsigned char*>(v) + 2 * j, sizeof h);
    return h;
}

// ---- scalar ----

float dot_f32_f16_scalar(const float* q, const void* h, std::size_t dim) {
    float s[4] = {0.f, 0.f, 0.f, 0.f};
    std::size_t j = 0;
    for (; j + 4 <= dim; j += 4)
        for (std::size_t l = 0; l < 4; ++l) s[l] += q[j + l] * half_to_float(half_at(h, j + l));
    for (; j < dim; ++j) s[0] += q[j] * half_to_float(half_at(h, j));
    return (s[0] + s[1]) + (s[2] + s[3]);
}

float dot_f16_f16_scalar(const void* a, const void* b, std::size_t dim) {
    float s[4] = {0.f, 0.f, 0.f, 0.f};
    std::size_t j = 0;
    for (; j + 4 <= dim; j += 4)
        for (std::size_t l = 0; l < 4; ++l)
            s[l] += half_to_float(half_at(a, j + l)) * half_to_float(half_at(b, j + l));
    for (; j < dim; ++j) s[0] += half_to_float(half_at(a, j)) * half_to_float(half_at(b, j));
    return (s[0] + s[1]) + (s[2] + s[3]);
}

std::int32_t dot_i8_scalar(const std::int8_t* a, const std::int8_t* b, std::size_t dim) {
    std::int32_t s = 0;
    for (std::size_t j = 0; j < dim; ++j) s += static_cast<std::int32_t>(a[j]) * b[j];
    return s;
}

float f16_stored_scalar(const void* a, const void* b, const void* dim_ptr) {
    return 1.f - dot_f16_f16_scalar(a, b, dim_of(dim_ptr));
}
float f16_query_scalar(const void* q, const void* b, const void* dim_ptr) {
    return 1.f - dot_f32_f16_scalar(static_cast<const float*>(q), b, dim_of(dim_ptr));
}
void f16_query4_scalar(const void* q, const void* const* b, std::size_t dim, float* out) {
    for (std::size_t v = 0; v < 4; ++v) out[v] = 1.f - dot_f32_f16_scalar(static_cast<const float*>(q), b[v], dim);
}
float i8_scalar(const void* a, const void* b, const void* dim_ptr) {
    const auto dot = static_cast<float>(dot_i8_scalar(codes_of(a), codes_of(b), dim_of(dim_ptr)));
    return 1.f - scale_of(a) * scale_of(b) * dot;
}
void i8_query4_scalar(const void* q, const void* const* b, std::size_t dim, float* out) {
    for (std::size_t v = 0; v < 4; ++v) out[v] = i8_scalar(q, b[v], &dim);
}

// ---- float32: inner_product.h's kernels in this file's signatures ----

InnerProductDistance4Fn f32_four = nullptr;  // set once by pick(), before any kernel is handed out

void f32_query4(const void* q, const void* const* b, std::size_t dim, float* out) {
    const float* rows[4] = {static_cast<const float*>(b[0]), static_cast<const float*>(b[1]),
                            static_cast<const float*>(b[2]), static_cast<const float*>(b[3])};
    f32_four(static_cast<const float*>(q), rows, dim, out);
}

float f32_scalar(const void* a, const void* b, const void* dim_ptr) {
    return 1.f - inner_product_scalar(static_cast<const float*>(a), static_cast<const float*>(b), dim_of(dim_ptr));
}
void f32_query4_scalar(const void* q, const void* const* b, std::size_t dim, float* out) {
    for (std::size_t v = 0; v < 4; ++v)
        out[v] = 1.f - inner_product_scalar(static_cast<const float*>(q), static_cast<const float*>(b[v]), dim);
}

#if defined(FUNNELRANK_X86) && (defined(__GNUC__) || defined(__clang__))

// ---- AVX2 + FMA + F16C ----

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 acc) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2"))) inline std::int32_t hsum256i(__m256i acc) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

__attribute__((target("avx2,fma,f16c"))) inline __m256 load_half8(const void* h, std::size_t j) {
    return _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const unsigned char*>(h) + 2 * j)));
}

__attribute__((target("avx2,fma,f16c"))) float dot_f32_f16_avx2(const float* q, const void* h, std::size_t dim) {
    __m256 acc0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps();
    std::size_t j = 0;
    for (; j + 16 <= dim; j += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), load_half8(h, j), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j + 8), load_half8(h, j + 8), acc1);
    }
    for (; j + 8 <= dim; j += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), load_half8(h, j), acc0);
    float sum = hsum256(_mm256_add_ps(acc0, acc1));
    for (; j < dim; ++j) sum += q[j] * half_to_float(half_at(h, j));
    return sum;
}

__attribute__((target("avx2,fma,f16c"))) float dot_f16_f16_avx2(const void* a, const void* b, std::size_t dim) {
    __m256 acc0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps();
    std::size_t j = 0;
    for (; j + 16 <= dim; j += 16) {
        acc0 = _mm256_fmadd_ps(load_half8(a, j), load_half8(b, j), acc0);
        acc1 = _mm256_fmadd_ps(load_half8(a, j + 8), load_half8(b, j + 8), acc1);
    }
    for (; j + 8 <= dim; j += 8) acc0 = _mm256_fmadd_ps(load_half8(a, j), load_half8(b, j), acc0);
    float sum = hsum256(_mm256_add_ps(acc0, acc1));
    for (; j < dim; ++j) sum += half_to_float(half_at(a, j)) * half_to_float(half_at(b, j));
    return sum;
}

// One query against four f16 rows: each query load serves four FMAs, the four rows' loads are in flight together.
__attribute__((target("avx2,fma,f16c"))) void f16_query4_avx2(const void* q_ptr, const void* const* b, std::size_t dim,
                                                              float* out) {
    const auto* q = static_cast<const float*>(q_ptr);
    __m256 acc[4][2];
    for (auto& row : acc) row[0] = row[1] = _mm256_setzero_ps();
    std::size_t j = 0;
    for (; j + 16 <= dim; j += 16) {
        const __m256 q0 = _mm256_loadu_ps(q + j);
        const __m256 q1 = _mm256_loadu_ps(q + j + 8);
#pragma GCC unroll 4
        for (std::size_t v = 0; v < 4; ++v) {
            acc[v][0] = _mm256_fmadd_ps(q0, load_half8(b[v], j), acc[v][0]);
            acc[v][1] = _mm256_fmadd_ps(q1, load_half8(b[v], j + 8), acc[v][1]);
        }
    }
    for (; j + 8 <= dim; j += 8) {
        const __m256 q0 = _mm256_loadu_ps(q + j);
        for (std::size_t v = 0; v < 4; ++v) acc[v][0] = _mm256_fmadd_ps(q0, load_half8(b[v], j), acc[v][0]);
    }
    for (std::size_t v = 0; v < 4; ++v) {
        float sum = hsum256(_mm256_add_ps(acc[v][0], acc[v][1]));
        for (std::size_t t = j; t < dim; ++t) sum += q[t] * half_to_float(half_at(b[v], t));
        out[v] = 1.f - sum;
    }
}

__attribute__((target("avx2,fma,f16c"))) float f16_stored_avx2(const void* a, const void* b, const void* dim_ptr) {
    return 1.f - dot_f16_f16_avx2(a, b, dim_of(dim_ptr));
}
__attribute__((target("avx2,fma,f16c"))) float f16_query_avx2(const void* q, const void* b, const void* dim_ptr) {
    return 1.f - dot_f32_f16_avx2(static_cast<const float*>(q), b, dim_of(dim_ptr));
}

// Signed int8 products with the unsigned x signed vpmaddubsw: |a| * (b with a's sign). Pairs sum to at most
// 2 * 127 * 128 < 2^15 (codes are in [-127, 127]; load() refuses -128), so nothing saturates; vpmaddwd with ones
// then widens to int32 (at most 65536 * 127 * 127 < 2^31 in all).
__attribute__((target("avx2"))) inline __m256i i8_products(__m256i abs_a, __m256i a, __m256i b) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(abs_a, _mm256_sign_epi8(b, a)), _mm256_set1_epi16(1));
}

__attribute__((target("avx2"))) inline __m256i load_i8x32(const std::int8_t* p, std::size_t j) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + j));
}

__attribute__((target("avx2"))) std::int32_t dot_i8_avx2(const std::int8_t* a, const std::int8_t* b, std::size_t dim) {
    __m256i acc = _mm256_setzero_si256();
    std::size_t j = 0;
    for (; j + 32 <= dim; j += 32) {
        const __m256i va = load_i8x32(a, j);
        acc = _mm256_add_epi32(acc, i8_products(_mm256_abs_epi8(va), va, load_i8x32(b, j)));
    }
    std::int32_t sum = hsum256i(acc);
    for (; j < dim; ++j) sum += static_cast<std::int32_t>(a[j]) * b[j];
    return sum;
}

__attribute__((target("avx2"))) float i8_avx2(const void* a, const void* b, const void* dim_ptr) {
    const auto dot = static_cast<float>(dot_i8_avx2(codes_of(a), codes_of(b), dim_of(dim_ptr)));
    return 1.f - scale_of(a) * scale_of(b) * dot;
}

__attribute__((target("avx2"))) void i8_query4_avx2(const void* q, const void* const* b, std::size_t dim, float* out) {
    const std::int8_t* a = codes_of(q);
    const std::int8_t* rows[4] = {codes_of(b[0]), codes_of(b[1]), codes_of(b[2]), codes_of(b[3])};
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    std::size_t j = 0;
    for (; j + 32 <= dim; j += 32) {
        const __m256i va = load_i8x32(a, j);
        const __m256i abs_a = _mm256_abs_epi8(va);
#pragma GCC unroll 4
        for (std::size_t v = 0; v < 4; ++v)
            acc[v] = _mm256_add_epi32(acc[v], i8_products(abs_a, va, load_i8x32(rows[v], j)));
    }
    const float sq = scale_of(q);
    for (std::size_t v = 0; v < 4; ++v) {
        std::int32_t sum = hsum256i(acc[v]);
        for (std::size_t t = j; t < dim; ++t) sum += static_cast<std::int32_t>(a[t]) * rows[v][t];
        out[v] = 1.f - sq * scale_of(b[v]) * static_cast<float>(sum);
    }
}

bool has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool has_f16c() { return __builtin_cpu_supports("f16c"); }

#endif

struct KernelTable {
    StorageKernels best[3];
    StorageKernels scalar[3];
};

KernelTable pick() {
#if defined(FUNNELRANK_X86) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
#endif
    f32_four = best_inner_product_distance4();
    KernelTable t{};
    t.scalar[0] = {f32_scalar, f32_scalar, f32_query4_scalar, "scalar"};
    t.scalar[1] = {f16_stored_scalar, f16_query_scalar, f16_query4_scalar, "scalar"};
    t.scalar[2] = {i8_scalar, i8_scalar, i8_query4_scalar, "scalar"};
    t.best[0] = {best_inner_product_distance(), best_inner_product_distance(), f32_query4, inner_product_kernel_name()};
    t.best[1] = t.scalar[1];
    t.best[2] = t.scalar[2];
#if defined(FUNNELRANK_X86) && (defined(__GNUC__) || defined(__clang__))
    if (has_avx2_fma() && has_f16c()) t.best[1] = {f16_stored_avx2, f16_query_avx2, f16_query4_avx2, "avx2+f16c"};
    if (has_avx2_fma()) t.best[2] = {i8_avx2, i8_avx2, i8_query4_avx2, "avx2"};
#endif
    return t;
}

const KernelTable& table() {
    static const KernelTable t = pick();
    return t;
}

}  // namespace

const StorageKernels& storage_kernels(VectorStorage storage) {
    return table().best[static_cast<std::size_t>(storage)];
}

const StorageKernels& scalar_storage_kernels(VectorStorage storage) {
    return table().scalar[static_cast<std::size_t>(storage)];
}

}  // namespace funnelrank
