# Writes a host-compilable copy of attention.cu's decode kernels and attention_merge: common.cuh inlined (its
# inline PTX dropped), __shared__ variables as statics (the emulator runs one block at a time), the general
# kernel (dynamic shared memory) left out.
import os, sys
src = open(sys.argv[1]).read()
a = src.index("// ---- general:")
b = src.index("// Merges the splits of one (row, head)")
src = src[:a] + src[b:]
common = open(os.path.join(os.path.dirname(sys.argv[1]), "common.cuh")).read().replace("asm volatile(", "emu_asm(")
src = src.replace('#include "common.cuh"', common.replace("#pragma once", ""))
src = '#include "emu_prelude.h"\n#define __shared__ static\n' + src
open(sys.argv[2], "w").write(src)
