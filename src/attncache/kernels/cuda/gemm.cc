#include "attncache/kernels/cuda/gemm.h"

#include <algorithm>
#include <cstdint>

#include "attncache/kernels/cuda/check.h"

namespace attncache::cuda {

struct Gemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

namespace {

// Plans are small host objects (descriptors); a long run of varying shapes starts over past this.
constexpr size_t kMaxPlans = 4096;

int round_up_pow2(int m) {
  int b = 16;
  while (b < m) b *= 2;
  return b;
}

// The largest power of two up to 256 that divides the address (cuBLASLt picks kernels by it).
int alignment(const void* p) {
  const auto u = reinterpret_cast<uintptr_t>(p);
  int a = 256;
  while (a > 2 && u % a != 0) a /= 2;
  return a;
}

}  // namespace

Gemm::Gemm(size_t workspace_bytes) : workspace_(workspace_bytes, "the cuBLASLt workspace") {
  check(cublasLtCreate(&handle_), "cublasLtCreate");
}

Gemm::~Gemm() {
  plans_.clear();
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

void Gemm::linear(const void* x, int ldx, const void* w, int ldw, void* y, int ldy, OutType out,
                  int m, int n, int k, Epilogue epilogue, const void* bias, cudaStream_t stream,
                  const void* residual) {
  if (m == 0) return;
  const int align =
      std::min({alignment(x), alignment(w), alignment(y), bias != nullptr ? alignment(bias) : 256,
                residual != nullptr ? alignment(residual) : 256});
  const Key key{m, n, k, ldx, ldw, ldy, static_cast<int>(out), static_cast<int>(epilogue), align};
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    if (plans_.size() >= kMaxPlans) plans_.clear();
    // Column-major view: D (n × m, ld ldy) = op(A) · B with A = W stored k × n (ld ldw),
    // transposed, and B = X stored k × m (ld ldx).
    auto plan = std::make_unique<Plan>();
    const cudaDataType_t out_type = out == OutType::kBF16 ? CUDA_R_16BF : CUDA_R_32F;
    check(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
          "cublasLtMatmulDescCreate");
    const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
    check(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a,
                                         sizeof trans_a),
          "TRANSA");
    check(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b,
                                         sizeof trans_b),
          "TRANSB");
    cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_DEFAULT;
    if (epilogue == Epilogue::kBias) ep = CUBLASLT_EPILOGUE_BIAS;
    if (epilogue == Epilogue::kGeluBias) ep = CUBLASLT_EPILOGUE_GELU_BIAS;
    check(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep),
          "EPILOGUE");
    if (epilogue != Epilogue::kNone) {
      // A bias pointer is needed for the heuristic to consider the epilogue.
      check(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                           sizeof bias),
            "BIAS_POINTER");
    }
    check(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, k, n, ldw), "layout A");
    check(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, k, m, ldx), "layout B");
    check(cublasLtMatrixLayoutCreate(&plan->c, out_type, n, m, ldy), "layout C");

    cublasLtMatmulPreference_t pref = nullptr;
    check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    const size_t ws = workspace_.size();
    const uint32_t align_bytes = static_cast<uint32_t>(align);
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    for (auto attr :
         {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
      if (st == CUBLAS_STATUS_SUCCESS) {
        st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &align_bytes, sizeof align_bytes);
      }
    }
    constexpr int kCandidates = 8;
    cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
    int found = 0;
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->c, plan->c,
                                          pref, kCandidates, results, &found);
    }
    cublasLtMatmulPreferenceDestroy(pref);
    check(st, "cublasLtMatmulAlgoGetHeuristic");
    if (found == 0) {
      core::throw_internal("cuBLASLt has no algorithm for a bf16 GEMM of ", m, "×", n, "×", k,
                           " (epilogue ", static_cast<int>(epilogue), ")");
    }
    plan->algo = results[0].algo;
    // The heuristic's first pick is often not the fastest for these small-k, few-row shapes:
    // time the candidates once on the real operands and keep the fastest (never while the
    // stream is being captured into a graph; the encoder's first run of a shape is eager). A
    // shape whose m rounds to the same power of two as a tuned one reuses its pick when that
    // algorithm supports this shape.
    Key bucket = key;
    std::get<0>(bucket) = round_up_pow2(m);
    const auto tuned = tuned_.find(bucket);
    bool reused = false;
    if (tuned != tuned_.end()) {
      cublasLtMatmulHeuristicResult_t check_result = {};
      reused = cublasLtMatmulAlgoCheck(handle_, plan->desc, plan->a, plan->b, plan->c, plan->c,
                                       &tuned->second, &check_result) == CUBLAS_STATUS_SUCCESS &&
               check_result.workspaceSize <= workspace_.size();
      if (reused) plan->algo = tuned->second;
    }
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    check(cudaStreamIsCapturing(stream, &capturing), "cudaStreamIsCapturing");
    if (!reused && found > 1 && capturing == cudaStreamCaptureStatusNone) {
      if (epilogue != Epilogue::kNone) {
        check(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                             sizeof bias),
              "BIAS_POINTER");
      }
      const float alpha = 1.0f, beta = residual != nullptr ? 1.0f : 0.0f;
      const void* c_in = residual != nullptr ? residual : y;
      cudaEvent_t start = nullptr, stop = nullptr;
      check(cudaEventCreate(&start), "cudaEventCreate");
      check(cudaEventCreate(&stop), "cudaEventCreate");
      float best = 0;
      for (int i = 0; i < found; ++i) {
        auto run = [&] {
          return cublasLtMatmul(handle_, plan->desc, &alpha, w, plan->a, x, plan->b, &beta, c_in,
                                plan->c, y, plan->c, &results[i].algo, workspace_.data(),
                                workspace_.size(), stream);
        };
        if (run() != CUBLAS_STATUS_SUCCESS) continue;  // warm-up; skip what does not run
        check(cudaEventRecord(start, stream), "cudaEventRecord");
        for (int rep = 0; rep < 5; ++rep) (void)run();
        check(cudaEventRecord(stop, stream), "cudaEventRecord");
        check(cudaEventSynchronize(stop), "cudaEventSynchronize (GEMM autotune)");
        float ms = 0;
        check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
        if (i == 0 || ms < best) best = ms, plan->algo = results[i].algo;
      }
      cudaEventDestroy(start);
      cudaEventDestroy(stop);
      tuned_[bucket] = plan->algo;
    }
    it = plans_.emplace(key, std::move(plan)).first;
  }
  Plan& plan = *it->second;
  if (epilogue != Epilogue::kNone) {
    check(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                         sizeof bias),
          "BIAS_POINTER");
  }
  const float alpha = 1.0f, beta = residual != nullptr ? 1.0f : 0.0f;
  check(cublasLtMatmul(handle_, plan.desc, &alpha, w, plan.a, x, plan.b, &beta,
                       residual != nullptr ? residual : y, plan.c, y, plan.c, &plan.algo,
                       workspace_.data(), workspace_.size(), stream),
        "cublasLtMatmul");
}

}  // namespace attncache::cuda
