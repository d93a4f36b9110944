// Generated from ai.punica.backend.cuda.KernelConstants: edit that class, not this file
// (KernelConstantsTest fails while the two differ and writes the fresh header to target/).
#pragma once

#define SGMV_THREADS 256
#define SGMV_TILE_ROWS 8
#define SHRINK_RANKS_PER_BLOCK 32
#define SGMV_GROUP_MAX 3
#define EXPAND_MAX_RANK 256
#define FUSED_CLUSTER 4
#define FUSED_CLUSTER_WIDE 8
#define FUSED_MAX_RANK 64
#define TC_THREADS 128
#define TC_ROWS 64
#define TC_MAX_RANK 64
#define TC_K_STEP 64
#define TC_OUT_COLS 128
#define ATT_MAX_GROUP 16
#define ATT_MAX_HEAD_DIM 256
#define ATT_THREADS 128
#define ATT_TILE 128
#define DEC_THREADS 128
#define ATT_TC_BLOCK_M 64
#define ATT_TC_BLOCK_N 64
#define ATT_TC_THREADS 128
#define SAMPLE_THREADS 1024
#define DIGITS 16
#define MAX_TOP 20
#define P_TEMPERATURE 0
#define P_TOP_K 1
#define P_TOP_P 2
#define P_MIN_P 3
#define P_REPETITION 4
#define P_PRESENCE 5
#define P_FREQUENCY 6
#define P_UNIFORM_LO 7
#define P_UNIFORM_HI 8
#define P_LOGPROBS 9
#define P_PENALTY_BEGIN 10
#define P_PENALTY_END 11
#define P_BIAS_BEGIN 12
#define P_BIAS_END 13
#define ROW_INTS 14
#define OUT_INTS 43
