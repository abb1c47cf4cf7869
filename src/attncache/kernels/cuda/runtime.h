// The CUDA runtime as the rest of the engine sees it: whether a device is there, errors turned into
// core::Error, and a device buffer that frees itself. This header needs no CUDA headers, so code
// compiled without the toolkit's include paths (the CLI, tests) can use it.
#pragma once

#include <cstddef>
#include <string>

namespace attncache::cuda {

// Number of usable CUDA devices; 0 when there is no driver, no device, or the runtime cannot
// start (never throws: callers use it to decide whether to skip or fall back).
int device_count();

// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB (78.6 GiB free)". Throws core::Error.
std::string describe_device(int device);

// Bytes free and total on `device`. Throws core::Error.
void memory_info(int device, size_t* free_bytes, size_t* total_bytes);

// Device memory, freed on destruction. Allocation failure throws core::Error (bad input: too
// little device memory), naming `what` and the sizes.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t bytes, const char* what);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  // Synchronous copies (the engine's hot path uses its own stream instead).
  void upload(const void* host, size_t bytes, size_t offset = 0);
  void download(void* host, size_t bytes, size_t offset = 0) const;

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Page-locked host memory (cudaMallocHost), freed on destruction: the device copies it
// asynchronously and at full PCIe speed. Failure throws core::Error (bad input), naming `what`.
class PinnedHostBuffer {
 public:
  PinnedHostBuffer() = default;
  PinnedHostBuffer(size_t bytes, const char* what);
  ~PinnedHostBuffer();
  PinnedHostBuffer(PinnedHostBuffer&& other) noexcept;
  PinnedHostBuffer& operator=(PinnedHostBuffer&& other) noexcept;
  PinnedHostBuffer(const PinnedHostBuffer&) = delete;
  PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Whether `p` points into page-locked host memory (a PinnedHostBuffer, or memory registered with
// the driver).
bool page_locked(const void* p);

}  // namespace attncache::cuda
