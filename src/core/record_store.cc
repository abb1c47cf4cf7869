#include "core/record_store.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace core {
namespace {

constexpr uint64_t kAlign = 64;
constexpr size_t kHeaderBytes = 64;
constexpr size_t kEntryBytes = 32;

// The fixed header; its last field is the CRC-32 of the bytes before it.
struct Header {
  char magic[8];
  uint32_t version;
  uint32_t header_bytes;
  uint64_t count;
  uint64_t meta_offset;
  uint64_t meta_bytes;
  uint64_t table_offset;
  uint32_t meta_crc;
  uint32_t table_crc;
  uint32_t reserved;
  uint32_t header_crc;
};
static_assert(sizeof(Header) == kHeaderBytes);

template <typename T>
T read_at(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

uint32_t crc32(const void* data, size_t bytes, uint32_t seed) {
  const auto* p = static_cast<const Bytef*>(data);
  uLong crc = seed;
  while (bytes > 0) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(bytes, 1u << 30));
    crc = ::crc32(crc, p, chunk);
    p += chunk;
    bytes -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

RecordStoreWriter::RecordStoreWriter(std::string path, std::string magic, uint32_t version)
    : file_(std::move(path)), magic_(std::move(magic)), version_(version) {
  if (magic_.size() > 8) throw_internal("record store magic longer than 8 bytes: ", magic_);
  const char zeros[kHeaderBytes] = {};
  put(zeros, sizeof zeros);  // rewritten by finish()
}

void RecordStoreWriter::put(const void* data, size_t bytes) {
  file_.write({static_cast<const char*>(data), bytes});
  position_ += bytes;
}

void RecordStoreWriter::pad_to(uint64_t alignment) {
  static const char zeros[kAlign] = {};
  const uint64_t pad = (alignment - position_ % alignment) % alignment;
  put(zeros, pad);
}

void RecordStoreWriter::add(uint64_t key, std::span<const std::byte> bytes) {
  const std::span<const std::byte> pieces[] = {bytes};
  add(key, pieces);
}

void RecordStoreWriter::add(uint64_t key, std::span<const std::span<const std::byte>> pieces) {
  pad_to(kAlign);
  Entry e{position_, 0, key, 0};
  static const std::byte zeros[kAlign] = {};
  for (const auto& piece : pieces) {
    const uint64_t pad = (kAlign - (position_ - e.offset) % kAlign) % kAlign;
    if (pad != 0 && e.bytes != 0) {
      put(zeros, pad);
      e.crc = crc32(zeros, pad, e.crc);
      e.bytes += pad;
    }
    put(piece.data(), piece.size());
    e.crc = crc32(piece.data(), piece.size(), e.crc);
    e.bytes += piece.size();
  }
  table_.push_back(e);
}

void RecordStoreWriter::finish(const nlohmann::json& meta) {
  Header h{};
  std::memcpy(h.magic, magic_.data(), magic_.size());
  h.version = version_;
  h.header_bytes = kHeaderBytes;
  h.count = table_.size();
  const std::string meta_text = meta.dump();
  pad_to(8);
  h.meta_offset = position_;
  h.meta_bytes = meta_text.size();
  h.meta_crc = crc32(meta_text.data(), meta_text.size());
  put(meta_text.data(), meta_text.size());
  pad_to(8);
  h.table_offset = position_;
  std::vector<std::byte> table(table_.size() * kEntryBytes);
  for (size_t i = 0; i < table_.size(); ++i) {
    std::byte* p = table.data() + i * kEntryBytes;
    std::memcpy(p, &table_[i].offset, 8);
    std::memcpy(p + 8, &table_[i].bytes, 8);
    std::memcpy(p + 16, &table_[i].key, 8);
    std::memcpy(p + 24, &table_[i].crc, 4);
  }
  h.table_crc = crc32(table.data(), table.size());
  put(table.data(), table.size());
  h.header_crc = crc32(&h, offsetof(Header, header_crc));
  if (std::fseek(file_.stream(), 0, SEEK_SET) != 0) throw_internal("seek failed while writing");
  file_.write({reinterpret_cast<const char*>(&h), sizeof h});
  file_.commit();
}

RecordStore RecordStore::open(const std::string& path, const std::string& magic, uint32_t version) {
  RecordStore store;
  store.file_ = MappedFile::open(path);
  const std::byte* base = store.file_.data();
  const uint64_t size = store.file_.size();
  if (size < kHeaderBytes) {
    throw_bad_input(path, ": truncated (", size, " bytes, shorter than the header)");
  }
  const Header h = read_at<Header>(base);
  char expected[8] = {};
  std::memcpy(expected, magic.data(), std::min<size_t>(magic.size(), 8));
  if (std::memcmp(h.magic, expected, 8) != 0) {
    throw_bad_input(path, ": not a '", magic, "' file (wrong magic)");
  }
  if (h.header_crc != crc32(&h, offsetof(Header, header_crc))) {
    throw_bad_input(path, ": corrupt header (checksum mismatch)");
  }
  if (h.version != version) {
    throw_bad_input(path, ": format version ", h.version, ", but this build reads version ",
                    version, "; rebuild it");
  }
  const uint64_t table_bytes = h.count * kEntryBytes;
  if (h.count > size / kEntryBytes || h.meta_offset > size || h.meta_bytes > size - h.meta_offset ||
      h.table_offset > size || table_bytes > size - h.table_offset) {
    throw_bad_input(path, ": truncated (", size, " bytes; the header promises more)");
  }
  if (crc32(base + h.meta_offset, h.meta_bytes) != h.meta_crc) {
    throw_bad_input(path, ": corrupt metadata (checksum mismatch)");
  }
  if (crc32(base + h.table_offset, table_bytes) != h.table_crc) {
    throw_bad_input(path, ": corrupt record table (checksum mismatch)");
  }
  store.meta_ = nlohmann::json::parse(
      std::string_view(reinterpret_cast<const char*>(base + h.meta_offset), h.meta_bytes), nullptr,
      false);
  if (store.meta_.is_discarded()) throw_bad_input(path, ": metadata is not valid JSON");
  store.count_ = h.count;
  store.table_offset_ = h.table_offset;
  for (size_t i = 0; i < store.count_; ++i) {
    const uint64_t offset = read_at<uint64_t>(store.entry(i));
    const uint64_t bytes = read_at<uint64_t>(store.entry(i) + 8);
    if (offset % kAlign != 0 || offset > size || bytes > size - offset) {
      throw_bad_input(path, ": record ", i, " lies outside the file");
    }
  }
  return store;
}

const std::byte* RecordStore::entry(size_t i) const {
  return file_.data() + table_offset_ + i * kEntryBytes;
}

uint64_t RecordStore::key(size_t i) const { return read_at<uint64_t>(entry(i) + 16); }

std::span<const std::byte> RecordStore::record(size_t i) const {
  return {file_.data() + read_at<uint64_t>(entry(i)),
          static_cast<size_t>(read_at<uint64_t>(entry(i) + 8))};
}

void RecordStore::verify() const {
  for (size_t i = 0; i < count_; ++i) {
    const auto r = record(i);
    if (crc32(r.data(), r.size()) != read_at<uint32_t>(entry(i) + 24)) {
      throw_bad_input(path(), ": record ", i, " is corrupt (checksum mismatch)");
    }
  }
}

}  // namespace core
