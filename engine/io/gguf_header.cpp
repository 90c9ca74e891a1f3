#include "engine/io/gguf_header.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string_view>

#include "engine/check.h"
#include "engine/io/utf8.h"

namespace qtune::io {

bool is_gguf_file(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

int64_t GgufTensorInfo::elements() const {
  int64_t n = 1;
  for (const int64_t d : dims) n *= d;
  return n;
}

namespace {

// Reads the image front to back; every read checks the bytes left first and names what it was reading.
class Cursor {
 public:
  Cursor(std::span<const std::byte> image, const std::string& label) : image_(image), label_(label) {}

  uint64_t position() const { return pos_; }
  uint64_t left() const { return image_.size() - pos_; }

  // `what` then `of` name the field in the error; they are joined only when the read fails (an array item's key
  // is not copied once per item).
  template <class T>
  T read(std::string_view what, std::string_view of = {}) {
    need(sizeof(T), what, of);
    T v;
    std::memcpy(&v, image_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(std::string_view what, std::string_view of = {}) {
    const uint64_t length = read<uint64_t>(what, of);
    need(length, what, of);
    std::string s(reinterpret_cast<const char*>(image_.data() + pos_), static_cast<size_t>(length));
    pos_ += length;
    return s;
  }

  [[noreturn]] void fail(const std::string& message) const {
    QTUNE_FAIL(label_, ": ", message, " (at byte ", pos_, ")");
  }

 private:
  void need(uint64_t bytes, std::string_view what, std::string_view of) const {
    if (bytes > left())
      QTUNE_FAIL(label_, ": file ends inside ", what, of, " (needs ", bytes, " bytes at byte ", pos_, ", ", left(),
                 " left)");
  }

  std::span<const std::byte> image_;
  const std::string& label_;
  uint64_t pos_ = 0;
};

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::f64); }

GgufValue read_scalar(Cursor& in, GgufType type, const std::string& key) {
  if (type == GgufType::string) return GgufValue::string(in.read_string("the string value of ", key));
  uint64_t bits = 0;
  switch (gguf_scalar_bytes(type)) {
    case 1:
      bits = in.read<uint8_t>("the value of ", key);
      break;
    case 2:
      bits = in.read<uint16_t>("the value of ", key);
      break;
    case 4:
      bits = in.read<uint32_t>("the value of ", key);
      break;
    default:
      bits = in.read<uint64_t>("the value of ", key);
      break;
  }
  if (type == GgufType::boolean && bits > 1) in.fail(key + ": a bool holds " + std::to_string(bits) + ", not 0 or 1");
  return GgufValue::scalar(type, bits);
}

GgufValue read_value(Cursor& in, const std::string& key) {
  const uint32_t type_id = in.read<uint32_t>("the value type of " + key);
  if (!valid_value_type(type_id)) in.fail(key + ": unknown value type " + std::to_string(type_id));
  const auto type = static_cast<GgufType>(type_id);
  if (type != GgufType::array) return read_scalar(in, type, key);

  const uint32_t item_id = in.read<uint32_t>("the item type of " + key);
  if (!valid_value_type(item_id)) in.fail(key + ": unknown array item type " + std::to_string(item_id));
  const auto item_type = static_cast<GgufType>(item_id);
  if (item_type == GgufType::array) in.fail(key + ": an array of arrays (not supported)");
  const uint64_t count = in.read<uint64_t>("the length of " + key);
  // Each item takes at least one byte (a string at least its 8-byte length): a count the file cannot
  // hold is refused before anything is reserved for it.
  const uint64_t least = item_type == GgufType::string ? 8 : gguf_scalar_bytes(item_type);
  if (count > in.left() / least)
    in.fail(key + ": an array of " + std::to_string(count) + " " + std::string(gguf_type_name(item_type)) +
            " items does not fit in the " + std::to_string(in.left()) + " bytes left");
  // Each item is held as a value of its own (tens of bytes): the largest vocabularies and merge lists have well
  // under a million entries.
  if (count > kGgufMaxArrayItems)
    in.fail(key + ": an array of " + std::to_string(count) + " items is longer than qtune reads (" +
            std::to_string(kGgufMaxArrayItems) + ")");
  std::vector<GgufValue> items;
  items.reserve(static_cast<size_t>(count));
  for (uint64_t i = 0; i < count; ++i) items.push_back(read_scalar(in, item_type, key));
  return GgufValue::array(item_type, std::move(items));
}

void check_name(Cursor& in, const std::string& name, std::string_view what) {
  if (name.empty()) in.fail("an empty " + std::string(what));
  const size_t bad = first_invalid_utf8(name);
  if (bad != std::string_view::npos)
    in.fail(std::string(what) + " is not valid UTF-8 (byte " + std::to_string(bad) + ")");
}

GgmlType read_tensor_type(Cursor& in, const std::string& name) {
  const uint32_t id = in.read<uint32_t>("the type of tensor " + name);
  const auto type = ggml_type_from_id(id);
  if (!type) in.fail("tensor " + name + " has ggml type " + ggml_type_name(id) + ", which qtune does not read");
  return *type;
}

GgufTensorInfo read_tensor_info(Cursor& in) {
  GgufTensorInfo t;
  t.name = in.read_string("a tensor name");
  check_name(in, t.name, "tensor name");
  if (t.name.size() > kGgufMaxNameBytes)
    in.fail("tensor name " + t.name + " is longer than " + std::to_string(kGgufMaxNameBytes) + " bytes");
  const uint32_t n_dims = in.read<uint32_t>("the dimension count of tensor " + t.name);
  if (n_dims < 1 || n_dims > kGgufMaxDims)
    in.fail("tensor " + t.name + " has " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
  uint64_t elements = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    const uint64_t dim = in.read<uint64_t>("the dimensions of tensor " + t.name);
    if (dim == 0 || dim > static_cast<uint64_t>(INT64_MAX) / elements)
      in.fail("tensor " + t.name + ": dimension " + std::to_string(d) + " is " + std::to_string(dim) +
              (dim == 0 ? " (empty tensors are not allowed)" : " (the element count overflows)"));
    elements *= dim;
    t.dims.push_back(static_cast<int64_t>(dim));
  }
  t.type = read_tensor_type(in, t.name);
  const GgmlTypeLayout layout = ggml_type_layout(t.type);
  if (t.dims[0] % layout.block != 0)
    in.fail("tensor " + t.name + ": its rows of " + std::to_string(t.dims[0]) + " elements are not whole " +
            ggml_type_name(t.type) + " blocks of " + std::to_string(layout.block));
  const uint64_t blocks = elements / static_cast<uint64_t>(layout.block);
  if (blocks > UINT64_MAX / static_cast<uint64_t>(layout.block_bytes))
    in.fail("tensor " + t.name + ": its byte size overflows");
  t.nbytes = blocks * static_cast<uint64_t>(layout.block_bytes);
  t.offset = in.read<uint64_t>("the offset of tensor " + t.name);
  return t;
}

}  // namespace

GgufHeader parse_gguf_header(std::span<const std::byte> image, const std::string& label) {
  Cursor in(image, label);
  GgufHeader header;
  const auto magic = in.read<uint32_t>("the magic");
  if (std::memcmp(&magic, "GGUF", 4) != 0) in.fail("not a GGUF file (the first 4 bytes are not \"GGUF\")");
  header.version = in.read<uint32_t>("the version");
  if (header.version != 2 && header.version != 3)
    in.fail("GGUF version " + std::to_string(header.version) + " is not supported (2 and 3 are)");
  const uint64_t n_tensors = in.read<uint64_t>("the tensor count");
  const uint64_t n_kv = in.read<uint64_t>("the metadata count");
  // A key-value pair takes at least 8 + 1 + 4 + 1 bytes and a tensor info 8 + 1 + 4 + 8 + 4 + 8.
  if (n_kv > in.left() / 14) in.fail(std::to_string(n_kv) + " metadata pairs cannot fit in the file");
  if (n_tensors > in.left() / 33) in.fail(std::to_string(n_tensors) + " tensor infos cannot fit in the file");

  std::set<std::string, std::less<>> keys;
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = in.read_string("a metadata key");
    check_name(in, key, "metadata key");
    if (!keys.insert(key).second) in.fail("metadata key " + key + " appears twice");
    GgufValue value = read_value(in, key);
    header.metadata.emplace_back(std::move(key), std::move(value));
  }
  if (const GgufValue* alignment = find_gguf_value(header.metadata, "general.alignment")) {
    if (alignment->type() != GgufType::u32) in.fail("general.alignment is not a u32");
    const auto a = static_cast<uint32_t>(alignment->bits());
    if (a == 0 || !std::has_single_bit(a)) in.fail("general.alignment " + std::to_string(a) + " is not a power of two");
    header.alignment = a;
  }

  std::set<std::string, std::less<>> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t = read_tensor_info(in);
    if (!names.insert(t.name).second) in.fail("tensor " + t.name + " appears twice");
    if (t.offset % header.alignment != 0)
      in.fail("tensor " + t.name + ": offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
              std::to_string(header.alignment));
    header.tensors.push_back(std::move(t));
  }

  const uint64_t end_of_infos = in.position();
  const uint64_t data_offset = (end_of_infos + header.alignment - 1) / header.alignment * header.alignment;
  header.data_offset = data_offset;
  if (header.tensors.empty()) return header;
  if (data_offset > image.size()) in.fail("the data section starts past the end of the file");
  const uint64_t data_size = image.size() - data_offset;

  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& t : header.tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  uint64_t end = 0;
  const GgufTensorInfo* previous = nullptr;
  for (const GgufTensorInfo* t : by_offset) {
    if (t->offset > data_size || t->nbytes > data_size - t->offset)
      QTUNE_FAIL(label, ": tensor ", t->name, " (", ggml_type_name(t->type), ", ", t->nbytes, " bytes at offset ",
                 t->offset, ") runs past the end of the file (data section of ", data_size, " bytes)");
    if (previous && t->offset < end)
      QTUNE_FAIL(label, ": tensors ", previous->name, " and ", t->name, " overlap (", t->name, " starts at ", t->offset,
                 ", ", previous->name, " ends at ", end, ")");
    end = t->offset + t->nbytes;
    previous = t;
  }
  return header;
}

}  // namespace qtune::io
