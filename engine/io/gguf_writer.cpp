#include "engine/io/gguf_writer.h"

#include <bit>
#include <cstring>
#include <set>

#include "engine/check.h"
#include "engine/io/gguf_header.h"

namespace qtune::io {
namespace {

// Collects the header's bytes before they go to the file in one write.
class Bytes {
 public:
  template <class T>
  void put(T v) {
    const size_t at = data_.size();
    data_.resize(at + sizeof(T));
    std::memcpy(data_.data() + at, &v, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    const size_t at = data_.size();
    data_.resize(at + s.size());
    std::memcpy(data_.data() + at, s.data(), s.size());
  }
  void put_scalar(const GgufValue& v) {
    if (v.type() == GgufType::string) return put_string(v.text());
    switch (gguf_scalar_bytes(v.type())) {
      case 1:
        return put(static_cast<uint8_t>(v.bits()));
      case 2:
        return put(static_cast<uint16_t>(v.bits()));
      case 4:
        return put(static_cast<uint32_t>(v.bits()));
      default:
        return put(v.bits());
    }
  }
  void put_value(const GgufValue& v) {
    put(static_cast<uint32_t>(v.type()));
    if (v.type() != GgufType::array) return put_scalar(v);
    put(static_cast<uint32_t>(v.item_type()));
    put<uint64_t>(v.items().size());
    for (const GgufValue& item : v.items()) put_scalar(item);
  }
  std::span<const std::byte> view() const { return {reinterpret_cast<const std::byte*>(data_.data()), data_.size()}; }

 private:
  std::vector<char> data_;
};

uint32_t alignment_of(const GgufMetadata& metadata, const std::string& path) {
  const GgufValue* a = find_gguf_value(metadata, "general.alignment");
  if (!a) return kGgufDefaultAlignment;
  QTUNE_CHECK(a->type() == GgufType::u32 && a->bits() != 0 && std::has_single_bit(a->bits()), path,
              ": general.alignment must be a u32 power of two");
  return static_cast<uint32_t>(a->bits());
}

uint64_t padded(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

}  // namespace

uint64_t GgufWriter::tensor_bytes(const GgufTensorSpec& spec) {
  uint64_t elements = 1;
  for (const int64_t d : spec.shape) elements *= static_cast<uint64_t>(d);
  return ggml_row_bytes(spec.type, elements);
}

GgufWriter::GgufWriter(const std::string& path, const GgufMetadata& metadata, std::vector<GgufTensorSpec> specs)
    : path_(path), specs_(std::move(specs)), alignment_(alignment_of(metadata, path)), out_(path) {
  Bytes header;
  header.put<uint32_t>(0x46554747);  // "GGUF" read as a little-endian u32
  header.put<uint32_t>(3);
  header.put<uint64_t>(specs_.size());
  header.put<uint64_t>(metadata.size());
  std::set<std::string, std::less<>> keys;
  for (const auto& [key, value] : metadata) {
    QTUNE_CHECK(!key.empty() && keys.insert(key).second, path, ": metadata key '", key, "' is empty or repeated");
    header.put_string(key);
    header.put_value(value);
  }
  std::set<std::string, std::less<>> names;
  uint64_t offset = 0;
  for (const GgufTensorSpec& spec : specs_) {
    QTUNE_CHECK(!spec.name.empty() && spec.name.size() <= kGgufMaxNameBytes && names.insert(spec.name).second, path,
                ": tensor name '", spec.name, "' is empty, longer than ", kGgufMaxNameBytes, " bytes or repeated");
    QTUNE_CHECK(!spec.shape.empty() && spec.shape.size() <= kGgufMaxDims, path, ": tensor ", spec.name, " has ",
                spec.shape.size(), " dimensions (1 to 4 allowed)");
    for (const int64_t d : spec.shape) QTUNE_CHECK(d > 0, path, ": tensor ", spec.name, " has a dimension of ", d);
    const int64_t block = ggml_type_layout(spec.type).block;
    QTUNE_CHECK(spec.shape.back() % block == 0, path, ": tensor ", spec.name, ": rows of ", spec.shape.back(),
                " elements are not whole ", ggml_type_name(spec.type), " blocks of ", block);
    header.put_string(spec.name);
    header.put<uint32_t>(static_cast<uint32_t>(spec.shape.size()));
    for (auto d = spec.shape.rbegin(); d != spec.shape.rend(); ++d) header.put<uint64_t>(static_cast<uint64_t>(*d));
    header.put<uint32_t>(static_cast<uint32_t>(spec.type));
    header.put<uint64_t>(offset);
    offset = padded(offset + tensor_bytes(spec), alignment_);
  }
  out_.write(header.view());
  written_ = header.view().size();
  pad_to_alignment();
}

void GgufWriter::pad_to_alignment() {
  static const std::byte zeros[256] = {};
  uint64_t pad = padded(written_, alignment_) - written_;
  while (pad > 0) {
    const uint64_t n = std::min<uint64_t>(pad, sizeof zeros);
    out_.write({zeros, static_cast<size_t>(n)});
    written_ += n;
    pad -= n;
  }
}

void GgufWriter::write(std::span<const std::byte> bytes) {
  QTUNE_CHECK(next_ < specs_.size(), path_, ": more tensors written than the ", specs_.size(), " declared");
  const GgufTensorSpec& spec = specs_[next_];
  QTUNE_CHECK(bytes.size() == tensor_bytes(spec), path_, ": tensor ", spec.name, " (", ggml_type_name(spec.type),
              ") needs ", tensor_bytes(spec), " bytes, got ", bytes.size());
  out_.write(bytes);
  written_ += bytes.size();
  pad_to_alignment();
  ++next_;
}

void GgufWriter::commit() {
  QTUNE_CHECK(next_ == specs_.size(), path_, ": ", specs_.size() - next_, " of ", specs_.size(),
              " tensors were not written (next: ", next_ < specs_.size() ? specs_[next_].name : "", ")");
  out_.commit();
}

}  // namespace qtune::io
