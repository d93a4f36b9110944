// The problems an emulator runs: `fixed` (the first N with `emu N`), or with a seed (`emu N SEED`) N random ones,
// each from draw(rng, any), where any(values) picks one of the values.
#pragma once
#include <cstdlib>
#include <random>
#include <vector>

template <typename P, typename Draw>
std::vector<P> problems(int argc, char** argv, std::vector<P> fixed, Draw draw) {
    size_t limit = argc > 1 ? std::atoi(argv[1]) : 1000;
    if (argc <= 2) {
        if (fixed.size() > limit) fixed.resize(limit);
        return fixed;
    }
    std::mt19937 rng(std::atoi(argv[2]));
    auto any = [&](std::vector<int> values) { return values[rng() % values.size()]; };
    std::vector<P> out;
    for (size_t i = 0; i < limit; i++) out.push_back(draw(rng, any));
    return out;
}
