#include <gtest/gtest.h>

#include <string>

namespace funnelrank {
const char* core_version();
}

TEST(Core, HasVersion) { EXPECT_EQ(std::string(funnelrank::core_version()), "0.1.0"); }
