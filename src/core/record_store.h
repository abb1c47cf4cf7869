// A file of binary records that is written once and then read in place through mmap: the storage
// under the attention-map database and the projector weights.
//
// Layout (little-endian): a 64-byte header (magic, format version, counts, offsets, CRC-32s of
// itself, the metadata and the table), the records (each 64-byte aligned, so a reader can view
// them as arrays of floats or halves), a JSON metadata blob, and a table of {offset, bytes, key,
// crc32} per record. The writer builds the file under a temporary name and renames it on
// finish(), so a reader never sees a half-written store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/mapped_file.h"

namespace core {

uint32_t crc32(const void* data, size_t bytes, uint32_t seed = 0);

class RecordStoreWriter {
 public:
  // `magic` is at most 8 characters; it and `version` are checked by RecordStore::open.
  RecordStoreWriter(std::string path, std::string magic, uint32_t version);

  // Appends one record; `key` is a caller-defined tag (the attention-map store keeps the token
  // count there). Records are numbered from 0 in the order they are added.
  void add(uint64_t key, std::span<const std::byte> bytes);
  // Same, from several pieces laid out back to back, each 64-byte aligned inside the record.
  void add(uint64_t key, std::span<const std::span<const std::byte>> pieces);
  size_t count() const { return table_.size(); }
  // Writes metadata and table, then renames the file into place. Throws core::Error.
  void finish(const nlohmann::json& meta);

 private:
  struct Entry {
    uint64_t offset, bytes, key;
    uint32_t crc;
  };
  void pad_to(uint64_t alignment);
  void put(const void* data, size_t bytes);

  AtomicFileWriter file_;
  std::string magic_;
  uint32_t version_;
  uint64_t position_ = 0;
  std::vector<Entry> table_;
};

class RecordStore {
 public:
  // Maps `path` and checks magic, version, header/metadata/table checksums and that every record
  // lies inside the file. Throws core::Error (bad input) naming the problem. Record contents are
  // checked only by verify(), which reads them all.
  static RecordStore open(const std::string& path, const std::string& magic, uint32_t version);

  size_t count() const { return count_; }
  uint64_t key(size_t i) const;
  std::span<const std::byte> record(size_t i) const;
  const nlohmann::json& meta() const { return meta_; }
  const std::string& path() const { return file_.path(); }
  uint64_t file_bytes() const { return file_.size(); }
  // The whole file as mapped (records lie inside it).
  std::span<const std::byte> file() const { return {file_.data(), file_.size()}; }

  // Checks the CRC-32 of every record; throws core::Error (bad input) at the first mismatch.
  void verify() const;

 private:
  const std::byte* entry(size_t i) const;

  MappedFile file_;
  size_t count_ = 0;
  uint64_t table_offset_ = 0;
  nlohmann::json meta_;
};

// Views a record (or part of one) as an array of T, checking size and alignment.
template <typename T>
std::span<const T> view_as(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T)};
}

}  // namespace core
