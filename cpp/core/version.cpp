// Keeps the core library non-empty before components land.
namespace funnelrank {
const char* core_version() { return "0.1.0"; }
}  // namespace funnelrank
