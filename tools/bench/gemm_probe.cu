// Decode-shape GEMMs on the GPU: cublasGemmEx's default choice (what the CUDA backend runs) against every
// algorithm cublasLt's heuristic offers for the same problem, with the weights cold (each call reads the next of
// enough weight copies that L2 holds none of them). Prints one line per (shape, rows): the default's time and
// GB/s, the best cublasLt algorithm's, and that algorithm's description (id, tile, split-K, stages).
//
// The problem is the backend's: out[rows, n] = x[rows, k] · W[n, k]ᵀ, bf16 in and out, fp32 accumulation;
// in cuBLAS's column-major terms C (n × rows) = op(A)·op(B) with A = W (k × n, op T) and B = x (k × rows, op N).
//
// Build (here):  nvcc -O2 -std=c++17 -o gemm_probe tools/bench/gemm_probe.cu -lcublasLt -lcublas
// Run (device):  ./gemm_probe [reps]
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { \
    std::fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); std::exit(1); } } while (0)
#define CB(x) do { int s = (int) (x); if (s != 0) { \
    std::fprintf(stderr, "%s:%d cublas status %d\n", __FILE__, __LINE__, s); std::exit(1); } } while (0)

struct Shape { const char* name; int n, k; };

static const Shape SHAPES[] = {
    {"qkv", 12288, 4096}, {"o", 4096, 4096}, {"gate|up", 22016, 4096}, {"down", 4096, 11008},
};

int main(int argc, char** argv) {
    const int reps = argc > 1 ? std::atoi(argv[1]) : 50;
    const long long l2 = 60LL << 20;
    cublasHandle_t h;
    CB(cublasCreate(&h));
    cublasLtHandle_t lt;
    CB(cublasLtCreate(&lt));
    const size_t wsBytes = 32u << 20;
    void* ws;
    CK(cudaMalloc(&ws, wsBytes));
    CB(cublasSetWorkspace(h, ws, wsBytes));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::printf("shape,rows,n,k,default_us,default_gbs,best_lt_us,best_lt_gbs,algos_tried,best_algo\n");
    for (const Shape& s : SHAPES) {
        const long long wBytes = 2LL * s.n * s.k;
        const int copies = (int) std::max(4LL, (3 * l2) / wBytes + 2);
        std::vector<void*> w(copies);
        for (auto& p : w) {
            CK(cudaMalloc(&p, wBytes));
            CK(cudaMemset(p, 0x3c, wBytes));  // bf16 ~0.0115: finite values
        }
        for (int rows : {32, 64, 128}) {
            void *x, *c;
            CK(cudaMalloc(&x, 2LL * rows * s.k));
            CK(cudaMalloc(&c, 2LL * rows * s.n));
            CK(cudaMemset(x, 0x3c, 2LL * rows * s.k));
            const double bytes = (double) wBytes + 2.0 * rows * s.k + 2.0 * rows * s.n;
            float alpha = 1.0f, beta = 0.0f;
            auto timeIt = [&](auto&& call) {
                for (int i = 0; i < 5; i++) call(w[i % copies]);
                CK(cudaEventRecord(e0));
                for (int i = 0; i < reps; i++) call(w[i % copies]);
                CK(cudaEventRecord(e1));
                CK(cudaEventSynchronize(e1));
                float ms;
                CK(cudaEventElapsedTime(&ms, e0, e1));
                return 1000.0 * ms / reps;
            };
            double def = timeIt([&](void* wp) {
                CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s.n, rows, s.k, &alpha, wp, CUDA_R_16BF, s.k, x,
                                CUDA_R_16BF, s.k, &beta, c, CUDA_R_16BF, s.n, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT));
            });

            cublasLtMatmulDesc_t desc;
            CB(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
            cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
            CB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA));
            CB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB));
            cublasLtMatrixLayout_t la, lb, lc;
            CB(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, s.k, s.n, s.k));
            CB(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, s.k, rows, s.k));
            CB(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, s.n, rows, s.n));
            cublasLtMatmulPreference_t pref;
            CB(cublasLtMatmulPreferenceCreate(&pref));
            CB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsBytes,
                                                    sizeof wsBytes));
            cublasLtMatmulHeuristicResult_t res[64];
            int found = 0;
            CB(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 64, res, &found));
            double best = 1e30;
            int bestI = -1;
            for (int i = 0; i < found; i++) {
                if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
                double us = timeIt([&](void* wp) {
                    CB(cublasLtMatmul(lt, desc, &alpha, wp, la, x, lb, &beta, c, lc, c, lc, &res[i].algo, ws,
                                      wsBytes, 0));
                });
                if (us < best) { best = us; bestI = i; }
            }
            char what[160] = "none";
            if (bestI >= 0) {
                int id = 0, tile = 0, splitK = 0, stages = 0, red = 0;
                size_t got;
                cublasLtMatmulAlgoConfigGetAttribute(&res[bestI].algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &got);
                cublasLtMatmulAlgoConfigGetAttribute(&res[bestI].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile,
                                                     sizeof tile, &got);
                cublasLtMatmulAlgoConfigGetAttribute(&res[bestI].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitK,
                                                     sizeof splitK, &got);
                cublasLtMatmulAlgoConfigGetAttribute(&res[bestI].algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages,
                                                     sizeof stages, &got);
                cublasLtMatmulAlgoConfigGetAttribute(&res[bestI].algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red,
                                                     sizeof red, &got);
                std::snprintf(what, sizeof what, "heuristic#%d id=%d tile=%d splitK=%d stages=%d reduction=%d",
                              bestI, id, tile, splitK, stages, red);
            }
            std::printf("%s,%d,%d,%d,%.2f,%.0f,%.2f,%.0f,%d,%s\n", s.name, rows, s.n, s.k, def, bytes / def / 1e3,
                        best, bytes / best / 1e3, found, what);
            std::fflush(stdout);
            cublasLtMatmulPreferenceDestroy(pref);
            cublasLtMatrixLayoutDestroy(la);
            cublasLtMatrixLayoutDestroy(lb);
            cublasLtMatrixLayoutDestroy(lc);
            cublasLtMatmulDescDestroy(desc);
            CK(cudaFree(x));
            CK(cudaFree(c));
        }
        for (auto& p : w) CK(cudaFree(p));
    }
    return 0;
}
