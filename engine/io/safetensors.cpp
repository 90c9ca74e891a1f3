#include "engine/io/safetensors.h"

#include <cstring>

#include "engine/check.h"
#include "engine/io/mapped_file.h"
#include "engine/io/safetensors_writer.h"
#include "engine/storage.h"

namespace qtune::io {

std::optional<DType> to_dtype(StDType t) {
  switch (t) {
    case StDType::F64:
      return DType::f64;
    case StDType::F32:
      return DType::f32;
    case StDType::F16:
      return DType::f16;
    case StDType::BF16:
      return DType::bf16;
    case StDType::F8_E4M3:
      return DType::f8_e4m3;
    case StDType::F8_E5M2:
      return DType::f8_e5m2;
    case StDType::I64:
      return DType::i64;
    case StDType::I32:
      return DType::i32;
    case StDType::I16:
      return std::nullopt;
    case StDType::I8:
      return DType::i8;
    case StDType::U8:
      return DType::u8;
    case StDType::BOOL:
      return DType::boolean;
  }
  return std::nullopt;
}

StDType to_st_dtype(DType t) {
  switch (t) {
    case DType::f64:
      return StDType::F64;
    case DType::f32:
      return StDType::F32;
    case DType::bf16:
      return StDType::BF16;
    case DType::f16:
      return StDType::F16;
    case DType::f8_e4m3:
      return StDType::F8_E4M3;
    case DType::f8_e5m2:
      return StDType::F8_E5M2;
    case DType::i64:
      return StDType::I64;
    case DType::i32:
      return StDType::I32;
    case DType::i8:
      return StDType::I8;
    case DType::u8:
      return StDType::U8;
    case DType::boolean:
      return StDType::BOOL;
  }
  QTUNE_FAIL("no safetensors dtype for ", dtype_name(t));
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  MappedFile mapped = map_file(path);
  SafetensorsFile file = parse(mapped.bytes, path);
  file.mapping_ = std::move(mapped.mapping);
  return file;
}

SafetensorsFile SafetensorsFile::parse(std::span<const std::byte> bytes, std::string label) {
  SafetensorsHeader header = parse_safetensors_header(bytes, label);
  SafetensorsFile file;
  file.label_ = std::move(label);
  file.data_ = bytes.data() + header.data_offset;
  file.data_size_ = header.data_size;
  file.entries_ = std::move(header.entries);
  file.metadata_ = std::move(header.metadata);
  for (size_t i = 0; i < file.entries_.size(); ++i) file.index_[file.entries_[i].name] = i;
  return file;
}

const TensorEntry* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const TensorEntry& SafetensorsFile::at(std::string_view name) const {
  const TensorEntry* e = find(name);
  QTUNE_CHECK(e != nullptr, label_, ": no tensor named \"", name, "\"");
  return *e;
}

std::span<const std::byte> SafetensorsFile::bytes(const TensorEntry& e) const {
  return {data_ + e.begin, static_cast<size_t>(e.nbytes())};
}

Tensor SafetensorsFile::tensor(std::string_view name) const {
  const TensorEntry& e = at(name);
  const auto dtype = to_dtype(e.dtype);
  QTUNE_CHECK(dtype.has_value(), label_, ": tensor \"", name, "\" has dtype ", st_dtype_name(e.dtype),
              ", which qtune cannot compute with");
  const auto span = bytes(e);
  const auto address = reinterpret_cast<uintptr_t>(span.data());
  if (!mapping_ || address % dtype_size(*dtype) != 0) {
    // Not memory-mapped (parse() of a caller's buffer) or misaligned for the dtype: copy.
    return Tensor::from_data(span.data(), e.shape, *dtype);
  }
  auto keep_alive = mapping_;
  auto storage = Storage::wrap(const_cast<std::byte*>(span.data()), span.size(), Device::cpu(),
                               [keep_alive]() mutable { keep_alive.reset(); });
  return Tensor::from_storage(std::move(storage), e.shape, contiguous_strides(e.shape), 0, *dtype);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, lazy_tensors(tensors, path), metadata);
}

void save_safetensors(const std::string& path, const std::vector<LazyTensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  for (const LazyTensor& t : tensors) specs.push_back(t.spec);
  SafetensorsWriter out(path, std::move(specs), metadata);
  for (const LazyTensor& t : tensors) out.write(t.produce());
  out.commit();
}

void SafetensorsFile::release(const TensorEntry& e, uint64_t begin_byte, uint64_t end_byte) const {
  if (!mapping_) return;  // parse() of a caller's buffer: not ours to drop
  QTUNE_CHECK(begin_byte <= end_byte && end_byte <= e.nbytes(), label_, ": bytes [", begin_byte, ", ", end_byte,
              ") lie outside tensor \"", e.name, "\" (", e.nbytes(), " bytes)");
  release_pages({data_ + e.begin + begin_byte, static_cast<size_t>(end_byte - begin_byte)});
}

}  // namespace qtune::io
