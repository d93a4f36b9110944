# Writes a host-compilable copy of attention_tc.cu: the PTX wrappers replaced by emu_primitives.h, the dynamic
# shared memory by a per-block host buffer, common.cuh inlined.
import os, re, sys
src = open(sys.argv[1]).read()
a = src.index("__device__ __forceinline__ unsigned smem_u32")
b = src.index("#define TC_PARAMS")
src = src[:a] + '#include "emu_primitives.h"\n\n' + src[b:]
old = "extern __shared__ __attribute__((aligned(16))) bf16 tc_smem[];"
assert old in src
src = src.replace(old, "bf16* tc_smem = (bf16*) g_smem;")
src = '#include "emu_prelude.h"\ninline unsigned char* g_smem;\n' + src
# common.cuh inlined, its inline PTX (PDL, L2 prefetch: not used by this kernel on the host) dropped.
common = open(os.path.join(os.path.dirname(sys.argv[1]), "common.cuh")).read().replace("asm volatile(", "emu_asm(")
src = src.replace('#include "common.cuh"', common.replace("#pragma once", ""))
open(sys.argv[2], "w").write(src)
