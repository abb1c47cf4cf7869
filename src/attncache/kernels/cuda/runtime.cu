#include <cstdio>
#include <utility>

#include "attncache/kernels/cuda/check.h"
#include "attncache/kernels/cuda/runtime.h"

namespace attncache::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver / no device" status
    return 0;
  }
  return n;
}

void memory_info(int device, size_t* free_bytes, size_t* total_bytes) {
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaMemGetInfo(free_bytes, total_bytes), "cudaMemGetInfo");
}

std::string describe_device(int device) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  size_t free_bytes = 0, total_bytes = 0;
  memory_info(device, &free_bytes, &total_bytes);
  char buf[1024];
  std::snprintf(buf, sizeof buf, "%s, sm_%d%d, %d SMs, %.1f GiB (%.1f GiB free)", prop.name,
                prop.major, prop.minor, prop.multiProcessorCount, total_bytes / 1073741824.0,
                free_bytes / 1073741824.0);
  return buf;
}

DeviceBuffer::DeviceBuffer(size_t bytes, const char* what) : size_(bytes) {
  if (bytes == 0) return;
  const cudaError_t status = cudaMalloc(&data_, bytes);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    data_ = nullptr;
    size_t free_bytes = 0, total_bytes = 0;
    (void)cudaMemGetInfo(&free_bytes, &total_bytes);
    core::throw_bad_input("too little GPU memory for ", what, ": asked for ", bytes / 1048576.0,
                          " MiB, ", free_bytes / 1048576.0, " MiB of ", total_bytes / 1048576.0,
                          " MiB free (", cudaGetErrorName(status), ")");
  }
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) (void)cudaFree(data_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) (void)cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void DeviceBuffer::upload(const void* host, size_t bytes, size_t offset) {
  if (offset + bytes > size_) core::throw_internal("DeviceBuffer::upload past the end");
  check(cudaMemcpy(static_cast<char*>(data_) + offset, host, bytes, cudaMemcpyHostToDevice),
        "cudaMemcpy (upload)");
}

void DeviceBuffer::download(void* host, size_t bytes, size_t offset) const {
  if (offset + bytes > size_) core::throw_internal("DeviceBuffer::download past the end");
  check(cudaMemcpy(host, static_cast<const char*>(data_) + offset, bytes, cudaMemcpyDeviceToHost),
        "cudaMemcpy (download)");
}

PinnedHostBuffer::PinnedHostBuffer(size_t bytes, const char* what) : size_(bytes) {
  if (bytes == 0) return;
  const cudaError_t status = cudaMallocHost(&data_, bytes);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    data_ = nullptr;
    core::throw_bad_input("cannot allocate ", bytes / 1048576.0,
                          " MiB of page-locked host memory for ", what, " (",
                          cudaGetErrorName(status), ")");
  }
}

PinnedHostBuffer::~PinnedHostBuffer() {
  if (data_ != nullptr) (void)cudaFreeHost(data_);
}

PinnedHostBuffer::PinnedHostBuffer(PinnedHostBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

PinnedHostBuffer& PinnedHostBuffer::operator=(PinnedHostBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) (void)cudaFreeHost(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

bool page_locked(const void* p) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return attributes.type == cudaMemoryTypeHost;
}

}  // namespace attncache::cuda
