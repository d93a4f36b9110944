"""CPU check of sgmv_tc.cu's tensor-core index math (no GPU needed; numpy).

Emulates ldmatrix.x4 (lanes 8i..8i+7 address the rows of matrix i; thread l receives row l/4, elements
2(l%4), 2(l%4)+1) and mma.m16n8k16.row.col with the fragment layouts of the PTX ISA ("Matrix Fragments for
mma.m16n8k16", .bf16: a0..a3 = (g, 2t), (g+8, 2t), (g, 2t+8), (g+8, 2t+8); b0, b1 = (k 2t, n g), (k 2t+8, n g);
c0..c3 = (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)), then runs the shrink's and the expand's address
expressions as sgmv_tc.cu writes them (copied by hand: change both together) on random shared-memory tiles and
compares with numpy's product. Exits 1 on a mismatch.
Run: python3 tools/bench/sgmv_tc_fragments.py
"""
import sys

import numpy as np
rng = np.random.default_rng(0)

def ldmatrix_x4(smem, addr):  # addr(lane) -> (row, col) ; returns regs[lane][i] = (lo, hi)
    regs = [[None]*4 for _ in range(32)]
    for i in range(4):
        M = np.array([smem[addr(8*i+j)[0], addr(8*i+j)[1]:addr(8*i+j)[1]+8] for j in range(8)])
        for t in range(32):
            regs[t][i] = (M[t//4, 2*(t%4)], M[t//4, 2*(t%4)+1])
    return regs

def mma(acc, a, b0, b1):  # acc[lane] = [4], a[lane]=[4 pairs], b0[lane], b1[lane]
    A = np.zeros((16,16)); B = np.zeros((16,8))
    for l in range(32):
        g, t = l >> 2, l & 3
        A[g, 2*t:2*t+2] = a[l][0]; A[g+8, 2*t:2*t+2] = a[l][1]
        A[g, 2*t+8:2*t+10] = a[l][2]; A[g+8, 2*t+8:2*t+10] = a[l][3]
        B[2*t:2*t+2, g] = b0[l]; B[2*t+8:2*t+10, g] = b1[l]
    D = A @ B
    for l in range(32):
        g, t = l >> 2, l & 3
        acc[l][0] += D[g, 2*t]; acc[l][1] += D[g, 2*t+1]; acc[l][2] += D[g+8, 2*t]; acc[l][3] += D[g+8, 2*t+1]

# shrink: xs [64][72], as [64][72] (one stage of K=64), rank 40 -> pairs 3
KS = 72
xs = np.zeros((64, KS)); xs[:, :64] = rng.standard_normal((64, 64))
rank = 40; pairs = (rank + 15) // 16
as_ = np.zeros((64, KS)); as_[:rank, :64] = rng.standard_normal((rank, 64))
want = xs[:, :64] @ as_[:, :64].T
got = np.zeros((64, 64))
for warp in range(4):
    acc = [[[0.0]*4 for _ in range(32)] for _ in range(8)]
    for kk in range(0, 64, 16):
        af = ldmatrix_x4(xs, lambda lane: (warp*16 + (lane & 15), kk + (lane >> 4)*8))
        for p in range(pairs):
            bf = ldmatrix_x4(as_, lambda lane: (p*16 + (lane & 7) + ((lane >> 4) << 3), kk + ((lane >> 3) & 1)*8))
            mma(acc[2*p], af, [bf[l][0] for l in range(32)], [bf[l][1] for l in range(32)])
            mma(acc[2*p+1], af, [bf[l][2] for l in range(32)], [bf[l][3] for l in range(32)])
    for lane in range(32):
        g, tq = lane >> 2, lane & 3
        for j in range(8):
            for e in range(4):
                r = warp*16 + g + (e >> 1)*8; c = j*8 + 2*tq + (e & 1)
                got[r, c] = acc[j][lane][e]
shrink_err = np.abs(got[:, :rank] - want[:, :rank]).max(); print("shrink max err", shrink_err)

# expand: v [64][72] (rank 24 -> kSteps 2), b [128][72]
rank = 24; ks = (rank + 15)//16
v = np.zeros((64, KS)); v[:, :rank] = rng.standard_normal((64, rank))
b = np.zeros((128, KS)); b[:, :rank] = rng.standard_normal((128, rank))
want = v[:, :rank] @ b[:, :rank].T
out = np.zeros((64, 132))
for warp in range(4):
    wm, wn = warp >> 1, warp & 1
    acc = [[[[0.0]*4 for _ in range(32)] for _ in range(8)] for _ in range(2)]
    for s in range(ks):
        kk = s*16
        af = [ldmatrix_x4(v, lambda lane, i=i: (wm*32 + i*16 + (lane & 15), kk + (lane >> 4)*8)) for i in range(2)]
        for jp in range(4):
            bf = ldmatrix_x4(b, lambda lane: (wn*64 + jp*16 + (lane & 7) + ((lane >> 4) << 3), kk + ((lane >> 3) & 1)*8))
            for i in range(2):
                mma(acc[i][2*jp], af[i], [bf[l][0] for l in range(32)], [bf[l][1] for l in range(32)])
                mma(acc[i][2*jp+1], af[i], [bf[l][2] for l in range(32)], [bf[l][3] for l in range(32)])
    for lane in range(32):
        g, tq = lane >> 2, lane & 3
        for i in range(2):
            for j in range(8):
                r = wm*32 + i*16 + g; c = wn*64 + j*8 + 2*tq
                out[r, c], out[r, c+1] = acc[i][j][lane][0], acc[i][j][lane][1]
                out[r+8, c], out[r+8, c+1] = acc[i][j][lane][2], acc[i][j][lane][3]
expand_err = np.abs(out[:, :128] - want).max(); print("expand max err", expand_err)
if not (shrink_err < 1e-9 and expand_err < 1e-9):
    print("FAIL: the kernels' fragment addressing does not compute the product")
    sys.exit(1)
print("ok")
