// CUDA and cuBLASLt status codes turned into core::Error (internal: the GPU or the driver failed,
// not the user's input). For .cc and .cu files that include the toolkit's headers.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "core/error.h"

namespace attncache::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    core::throw_internal("CUDA error in ", what, ": ", cudaGetErrorName(status), " (",
                         cudaGetErrorString(status), ")");
  }
}

inline const char* cublas_status_name(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    default:
      return "cuBLAS status";
  }
}

// (cublasGetStatusName lives in libcublas, which the engine does not link.)
inline void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    core::throw_internal("cuBLASLt error in ", what, ": ", cublas_status_name(status), " (",
                         static_cast<int>(status), ")");
  }
}

// After a kernel launch: a bad configuration shows up here, a fault at the next synchronization.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace attncache::cuda
