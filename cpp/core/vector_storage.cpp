// VectorStorage: names, sizes and the encodings (vector_storage.h). The kernels are in storage_kernels.cpp.
#include "vector_storage.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "errors.h"

namespace funnelrank {

VectorStorage parse_storage(const std::string& name) {
    if (name == "f32") return VectorStorage::F32;
    if (name == "f16") return VectorStorage::F16;
    if (name == "int8") return VectorStorage::Int8;
    throw InvalidArgument("storage must be \"f32\", \"f16\" or \"int8\", got \"" + name + "\"");
}

const char* storage_name(VectorStorage storage) {
    switch (storage) {
        case VectorStorage::F16:
            return "f16";
        case VectorStorage::Int8:
            return "int8";
        case VectorStorage::F32:
            break;
    }
    return "f32";
}

bool valid_storage_code(std::uint32_t code) { return code <= static_cast<std::uint32_t>(VectorStorage::Int8); }

std::size_t stored_vector_bytes(VectorStorage storage, std::size_t dim) {
    switch (storage) {
        case VectorStorage::F16:
            return 2 * dim;
        case VectorStorage::Int8:
            return sizeof(float) + dim;
        case VectorStorage::F32:
            break;
    }
    return sizeof(float) * dim;
}

std::size_t query_form_bytes(VectorStorage storage, std::size_t dim) {
    return storage == VectorStorage::Int8 ? stored_vector_bytes(storage, dim) : sizeof(float) * dim;
}

// Round to nearest even, as vcvtps2ph does: the normal range by integer rounding on the bits (the carry of a
// rounded-up mantissa correctly bumps the exponent, up to infinity), the subnormal range by a float
// multiplication that rounds to nearest even in the default rounding mode.
std::uint16_t float_to_half(float f) {
    std::uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);  // NaN (quiet)
    if (x >= 0x47800000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65536: infinity
    if (x < 0x38800000u) {                                                      // below 2^-14: subnormal or 0
        float magnitude;
        std::memcpy(&magnitude, &x, sizeof magnitude);
        // magnitude * 2^24 < 1024 is exact in float; nearbyint rounds to nearest even (default mode).
        return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(std::nearbyint(magnitude * 16777216.f)));
    }
    const std::uint32_t odd = (x >> 13) & 1u;
    x += 0xc8000fffu + odd;  // rebias the exponent (-112 << 23) and round half to even
    return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(x >> 13));
}

float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t exponent = (h >> 10) & 0x1fu;
    std::uint32_t mantissa = h & 0x3ffu;
    std::uint32_t bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            exponent = 113;
            while ((mantissa & 0x400u) == 0) {
                mantissa <<= 1;
                --exponent;
            }
            bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
        }
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

void encode_vector(VectorStorage storage, const float* v, std::size_t dim, void* out) {
    switch (storage) {
        case VectorStorage::F32:
            std::memcpy(out, v, dim * sizeof(float));
            return;
        case VectorStorage::F16: {
            auto* h = static_cast<unsigned char*>(out);
            for (std::size_t j = 0; j < dim; ++j) {
                const std::uint16_t x = float_to_half(v[j]);
                std::memcpy(h + 2 * j, &x, sizeof x);
            }
            return;
        }
        case VectorStorage::Int8: {
            float max_abs = 0.f;
            for (std::size_t j = 0; j < dim; ++j) max_abs = std::max(max_abs, std::fabs(v[j]));
            const float scale = max_abs / 127.f;
            auto* bytes = static_cast<unsigned char*>(out);
            std::memcpy(bytes, &scale, sizeof scale);
            auto* codes = reinterpret_cast<std::int8_t*>(bytes + sizeof scale);
            if (!(scale > 0.f)) {  // the zero vector (inner product allows it), or a scale that underflowed
                std::memset(codes, 0, dim);
                return;
            }
            const float inverse = 127.f / max_abs;
            for (std::size_t j = 0; j < dim; ++j) {
                const float q = std::nearbyint(v[j] * inverse);
                codes[j] = static_cast<std::int8_t>(std::clamp(q, -127.f, 127.f));
            }
            return;
        }
    }
}

void decode_vector(VectorStorage storage, const void* in, std::size_t dim, float* out) {
    const auto* bytes = static_cast<const unsigned char*>(in);
    switch (storage) {
        case VectorStorage::F32:
            std::memcpy(out, in, dim * sizeof(float));
            return;
        case VectorStorage::F16:
            for (std::size_t j = 0; j < dim; ++j) {
                std::uint16_t h;
                std::memcpy(&h, bytes + 2 * j, sizeof h);
                out[j] = half_to_float(h);
            }
            return;
        case VectorStorage::Int8: {
            float scale;
            std::memcpy(&scale, bytes, sizeof scale);
            const auto* codes = reinterpret_cast<const std::int8_t*>(bytes + sizeof scale);
            for (std::size_t j = 0; j < dim; ++j) out[j] = scale * static_cast<float>(codes[j]);
            return;
        }
    }
}

bool stored_vector_is_finite(VectorStorage storage, const void* in, std::size_t dim) {
    const auto* bytes = static_cast<const unsigned char*>(in);
    switch (storage) {
        case VectorStorage::F32:
            for (std::size_t j = 0; j < dim; ++j) {
                float x;
                std::memcpy(&x, bytes + 4 * j, sizeof x);
                if (!std::isfinite(x)) return false;
            }
            return true;
        case VectorStorage::F16:
            for (std::size_t j = 0; j < dim; ++j) {
                std::uint16_t h;
                std::memcpy(&h, bytes + 2 * j, sizeof h);
                if ((h & 0x7c00u) == 0x7c00u) return false;
            }
            return true;
        case VectorStorage::Int8: {
            float scale;
            std::memcpy(&scale, bytes, sizeof scale);
            if (!std::isfinite(scale) || scale < 0.f) return false;
            for (std::size_t j = 0; j < dim; ++j)
                if (static_cast<std::int8_t>(bytes[sizeof scale + j]) == -128) return false;  // never encoded
            return true;
        }
    }
    return false;
}

void encode_query(VectorStorage storage, const float* q, std::size_t dim, void* out) {
    if (storage == VectorStorage::Int8)
        encode_vector(storage, q, dim, out);
    else
        std::memcpy(out, q, dim * sizeof(float));
}

}  // namespace funnelrank
