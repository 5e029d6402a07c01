#pragma once
// How HNSWIndex stores its vectors in the graph (HNSWParams::storage), the encodings and the distance
// kernels over them, dispatched at run time to the widest SIMD the CPU has (AVX2 + FMA + F16C, or portable
// scalar code), as inner_product.h does for float32.
//
//   F32   4 * dim bytes: the vector as given (L2-normalised under cosine). Kernels: inner_product.h's.
//   F16   2 * dim bytes: IEEE half precision, rounded to nearest even. The graph is built on f16 x f16
//         distances; a search scores its float32 query against the f16 rows (asymmetric, no query rounding).
//   Int8  4 + dim bytes: a float32 scale s = max|x| / 127, then round(x / s) as int8 in [-127, 127]. Built and
//         searched on int8 x int8 dot products (the query quantized the same way), exact in int32; the top
//         candidates of a search are then re-scored against the float32 vectors (hnsw_rescore.h).
#include <cstddef>
#include <cstdint>
#include <string>

namespace funnelrank {

enum class VectorStorage : std::uint32_t { F32 = 0, F16 = 1, Int8 = 2 };

// "f32" / "f16" / "int8"; anything else throws InvalidArgument.
VectorStorage parse_storage(const std::string& name);
const char* storage_name(VectorStorage storage);
// Whether `code` (as saved in a file) names a storage.
bool valid_storage_code(std::uint32_t code);

// Bytes of one stored vector of `dim` values.
std::size_t stored_vector_bytes(VectorStorage storage, std::size_t dim);

// The largest magnitude an F16 value can hold (65504); add() refuses larger values under F16 storage.
constexpr float kMaxF16 = 65504.f;

// Writes v[0, dim) in `storage`'s encoding to out (stored_vector_bytes(storage, dim) bytes).
void encode_vector(VectorStorage storage, const float* v, std::size_t dim, void* out);
// The float32 values a stored vector stands for (F16: exact; Int8: s * code).
void decode_vector(VectorStorage storage, const void* in, std::size_t dim, float* out);
// Whether a stored vector decodes to finite values (a file check: F16 without inf/NaN halves, Int8 with a
// finite non-negative scale).
bool stored_vector_is_finite(VectorStorage storage, const void* in, std::size_t dim);

// IEEE half <-> float, round to nearest even (what F16C's vcvtps2ph does with _MM_FROUND_TO_NEAREST_INT).
std::uint16_t float_to_half(float f);
float half_to_float(std::uint16_t h);

// hnswlib's distance signature: 1 - <a, b>, with `dim_ptr` pointing at a std::size_t dimension.
using VectorDistanceFn = float (*)(const void* a, const void* b, const void* dim_ptr);
// Four distances from one query at once: out[i] = 1 - <q, b[i]>.
using VectorDistance4Fn = void (*)(const void* q, const void* const* b, std::size_t dim, float* out);

// The kernels of one storage. `stored` compares two stored vectors (the graph's construction); `query` and
// `query4` compare a query in the storage's query form (F32 and F16: float32; Int8: an encoded Int8 vector)
// with stored vectors (the search).
struct StorageKernels {
    VectorDistanceFn stored;
    VectorDistanceFn query;
    VectorDistance4Fn query4;
    const char* name;  // "avx512", "avx2", "f16c", "scalar", ...
};

// The fastest kernels this CPU supports for `storage` (chosen once, on first call).
const StorageKernels& storage_kernels(VectorStorage storage);
// The portable kernels (tests compare the SIMD ones against them).
const StorageKernels& scalar_storage_kernels(VectorStorage storage);

// Bytes of a query in the storage's query form: 4 * dim for F32 and F16, stored_vector_bytes for Int8.
std::size_t query_form_bytes(VectorStorage storage, std::size_t dim);
// Writes the (prepared, float32) query in its query form to out (F32/F16: a copy; Int8: encode_vector).
void encode_query(VectorStorage storage, const float* q, std::size_t dim, void* out);

}  // namespace funnelrank
