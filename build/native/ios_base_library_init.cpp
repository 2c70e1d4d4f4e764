// GCC 13 moved the construction of the standard streams into libstdc++ and made objects that use
// <iostream> call std::ios_base_library_init(). Debian 12's libstdc++ (GCC 12) lacks that function,
// so this library defines it and constructs the streams the GCC 12 way, with an ios_base::Init.
#include <ios>

namespace std {
void ios_base_library_init() {}
}

static std::ios_base::Init updp_ios_init;
