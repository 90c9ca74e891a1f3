#include "engine/io/safetensors_writer.h"

#include <array>
#include <cstdint>
#include <span>

#include <nlohmann/json.hpp>

#include "engine/check.h"
#include "engine/io/safetensors.h"

namespace qtune::io {
namespace {

uint64_t spec_bytes(const TensorSpec& spec) {
  int64_t numel = 1;
  for (const int64_t d : spec.shape) numel *= d;
  return static_cast<uint64_t>(numel) * dtype_size(spec.dtype);
}

std::string header_text(const std::string& path, const std::vector<TensorSpec>& specs,
                        const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorSpec& spec : specs) {
    QTUNE_CHECK(spec.name != "__metadata__" && !header.contains(spec.name), path, ": tensor name \"", spec.name,
                "\" is reserved or repeated");
    const uint64_t nbytes = spec_bytes(spec);
    header[spec.name] = {{"dtype", st_dtype_name(to_st_dtype(spec.dtype))},
                         {"shape", spec.shape},
                         {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  // Spaces pad the header so the data section starts 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

std::vector<LazyTensor> lazy_tensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                     const std::string& where) {
  std::vector<LazyTensor> out;
  for (const auto& [name, t] : tensors) {
    QTUNE_CHECK(t.defined(), where, ": tensor \"", name, "\" is undefined");
    out.push_back({{name, t.dtype(), t.shape()}, [t] { return t; }});
  }
  return out;
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<TensorSpec> specs,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), specs_(std::move(specs)), out_(path) {
  const std::string text = header_text(path_, specs_, metadata);
  std::array<std::byte, 8> length{};
  for (size_t i = 0; i < 8; ++i) length[i] = static_cast<std::byte>((text.size() >> (8 * i)) & 0xFF);
  out_.write(length);
  out_.write(text);
}

void SafetensorsWriter::write(const Tensor& tensor) {
  QTUNE_CHECK(next_ < specs_.size(), path_, ": all ", specs_.size(), " tensors are written already");
  const TensorSpec& spec = specs_[next_];
  QTUNE_CHECK(tensor.defined() && tensor.dtype() == spec.dtype && tensor.shape() == spec.shape, path_, ": tensor \"",
              spec.name, "\" was declared ", dtype_name(spec.dtype), " ", shape_str(spec.shape), ", got ",
              tensor.defined() ? std::string(dtype_name(tensor.dtype())) + " " + shape_str(tensor.shape())
                               : std::string("undefined"));
  const Tensor host = tensor.to(Device::cpu()).contiguous();
  out_.write({static_cast<const std::byte*>(host.data_ptr()), static_cast<size_t>(spec_bytes(spec))});
  ++next_;
}

void SafetensorsWriter::commit() {
  QTUNE_CHECK(next_ == specs_.size(), path_, ": only ", next_, " of ", specs_.size(),
              " tensors were written; the next is \"", next_ < specs_.size() ? specs_[next_].name : "", "\"");
  out_.commit();
}

}  // namespace qtune::io
