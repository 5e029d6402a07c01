#pragma once
// Dot products of float32 vectors, dispatched at run time to the widest SIMD the CPU has
// (AVX-512, AVX2+FMA, or portable scalar code), so the build itself stays portable.
#include <cstddef>

namespace funnelrank {

using InnerProductFn = float (*)(const float* a, const float* b, std::size_t dim);
// hnswlib's distance signature: 1 - <a, b>, with `dim_ptr` pointing at a std::size_t dimension.
using InnerProductDistanceFn = float (*)(const void* a, const void* b, const void* dim_ptr);

// Four distances from one vector `a`: out[i] = 1 - <a, b[i]>, each bit-identical to what
// best_inner_product_distance() returns for that pair (the same kernel's arithmetic, with the four
// vectors' memory loads overlapped).
using InnerProductDistance4Fn = void (*)(const float* a, const float* const* b, std::size_t dim, float* out);

// The fastest kernel this CPU supports (chosen once, on first call).
InnerProductFn best_inner_product();

// The same kernel as a distance (1 - <a, b>) in hnswlib's calling convention.
InnerProductDistanceFn best_inner_product_distance();

// The four-at-once form of best_inner_product_distance(), from the same kernel.
InnerProductDistance4Fn best_inner_product_distance4();

// Name of the kernel best_inner_product() returns: "avx512", "avx2" or "scalar".
const char* inner_product_kernel_name();

// Portable reference implementation (used by tests to check the SIMD kernels).
float inner_product_scalar(const float* a, const float* b, std::size_t dim);

}  // namespace funnelrank
