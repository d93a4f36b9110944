# Writes a host-compilable copy of sgmv.cu's fused decode kernel (sgmv_fused_row_group): the section from "---- decode
# steps" on, common.cuh inlined (its inline PTX dropped), compiled as for sm_90, the cluster helpers replaced by
# emu_cluster.h's, and each __shared__ declaration of the kernel turned into region k of the block's shared memory
# (emu_shared); the regions' sizes follow as emuRegions, for the driver to lay each block's shared memory out.
import os, re, sys
src = open(sys.argv[1]).read()
here = os.path.dirname(sys.argv[1])
head = src[:src.index("#define SHRINK_RANKS_PER_WARP")]
body = src[src.index("// ---- decode steps: shrink and expand in one launch"):]
a = body.index("#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900")
b = body.index("#endif", a) + len("#endif")
body = body[:a] + '#include "emu_cluster.h"' + body[b:]
sizes = []
def shared(m):
    t, name, dims = m.group(1), m.group(2), m.group(3)
    k = len(sizes)
    sizes.append("sizeof(%s%s)" % (t, dims))
    return "%s (&%s)%s = *reinterpret_cast<%s(*)%s>(emu_shared(%d, sizeof(%s%s)));" % (t, name, dims, t, dims, k, t, dims)
body = re.sub(r"__shared__ (\w+) (\w+)((?:\[[^\]]+\])+);", shared, body)
assert "__shared__" not in body, "a __shared__ declaration the rewrite does not know"
common = open(os.path.join(here, "common.cuh")).read().replace("asm volatile(", "emu_asm(").replace("#pragma once", "")
head = head.replace('#include "common.cuh"', common)
out = '#include "emu_prelude.h"\n#define __CUDA_ARCH__ 900\n' + head + "#define SHRINK_RANKS_PER_WARP 4\n" + body
out += "\ninline const std::vector<size_t> emuRegions = {" + ", ".join(sizes) + "};\n"
open(sys.argv[2], "w").write(out)
