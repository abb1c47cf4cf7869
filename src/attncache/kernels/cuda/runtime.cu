#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

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

namespace {

// memcpy in parts of at least 16 MiB over up to 16 host threads, as the map cache stages (one
// thread copying whole layers in turn staged measurably slower: docs/gpu.md, "Staging in
// pieces"). Where no thread can be started, this one copies the rest.
void parallel_copy(void* to, const void* from, size_t bytes) {
  const size_t threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 16);
  const size_t part = std::max<size_t>((bytes + threads - 1) / threads, size_t{16} << 20);
  auto copy = [to, from](size_t at, size_t n) {
    std::memcpy(static_cast<unsigned char*>(to) + at, static_cast<const unsigned char*>(from) + at,
                n);
  };
  std::vector<std::thread> copies;
  copies.reserve(threads);
  size_t at = 0;
  try {
    for (; at + part < bytes; at += part) copies.emplace_back(copy, at, part);
  } catch (...) {  // no more threads (std::system_error, or bad_alloc while starting one)
  }
  copy(at, bytes - at);
  for (std::thread& c : copies) c.join();
}

}  // namespace

PageLockedBytes::PageLockedBytes(const void* data, size_t bytes, const char* what) {
  const std::string size = std::to_string(bytes / 1048576) + " MiB";
  if (page_locked(data)) {
    data_ = static_cast<const unsigned char*>(data);
    note_ = std::string(what) + " already page-locked (" + size + ")";
    return;
  }
  copy_ = PinnedHostBuffer(bytes, what);
  if (bytes > 0) parallel_copy(copy_.data(), data, bytes);
  data_ = static_cast<const unsigned char*>(copy_.data());
  note_ = std::string(what) + " copied into page-locked memory (" + size + ")";
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
