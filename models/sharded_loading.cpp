#include "models/sharded_loading.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <utility>

#include "dist/flat_layout.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "engine/io/checkpoint_files.h"
#include "engine/io/safetensors.h"
#include "engine/numerics/nf4.h"
#include "engine/storage.h"

namespace qtune::models {
namespace {

constexpr int64_t kGroupWeights = numerics::kNF4BlockSize * numerics::kNF4ScalerBlockSize;
constexpr std::string_view kNF4Parts[] = {".nf4_codes", ".nf4_scalers", ".nf4_factors", ".nf4_mean"};

// For "<fqn>.nf4_<part>": fqn and the part's index in kNF4Parts.
std::optional<std::pair<std::string, size_t>> nf4_part(const std::string& name) {
  for (size_t i = 0; i < std::size(kNF4Parts); ++i) {
    const std::string_view suffix = kNF4Parts[i];
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      return std::pair{name.substr(0, name.size() - suffix.size()), i};
  }
  return std::nullopt;
}

// `from` (this rank's piece, computed) into the shard, which expects `held` elements of whole's dtype.
void copy_piece(const Tensor& from, const Tensor& whole, dist::Range held, void* piece, const std::string& name) {
  QTUNE_CHECK(from.numel() == held.size() && from.dtype() == whole.dtype(), "sharded load: ", name, ": a piece of ",
              from.numel(), " ", dtype_name(from.dtype()), " elements for ", held.size(), " of ",
              dtype_name(whole.dtype()));
  if (held.size() > 0) std::memcpy(piece, from.contiguous().data_ptr(), from.nbytes());
}

// One rank's piece of an NF4 weight, its parts as FrozenNF4Linear stores them.
struct NF4Piece {
  std::string fqn;
  Tensor parts[4];  // codes, scalers, factors, mean (the mean whole: rank 0 keeps it)
  size_t served = 0;
};

class CheckpointPieces {
 public:
  CheckpointPieces(const std::string& dir, dist::Communicator& comm, DType dtype)
      : files_(io::CheckpointFiles::open(dir)), comm_(comm), dtype_(dtype) {}

  void fill(const std::string& name, const Tensor& whole, dist::Range held, void* piece) {
    NoGradGuard no_grad;
    if (const auto part = nf4_part(name)) {
      if (!nf4_ || nf4_->fqn != part->first) {
        // Checked alike on every rank: an error here ends them all before the collective that follows.
        QTUNE_CHECK(!nf4_, "sharded load: the NF4 parts of ", part->first, " were asked for before those of ",
                    nf4_ ? nf4_->fqn : "", " were complete");
        nf4_ = quantize_piece(part->first, part->second, whole);
      }
      const Tensor& from = nf4_->parts[part->second];
      // The mean is one element: the range says whether this rank keeps it.
      copy_piece(part->second == 3 ? from.narrow(0, 0, held.size()) : from, whole, held, piece, name);
      if (++nf4_->served == std::size(kNF4Parts)) {
        files_.release(nf4_->fqn + ".weight");
        nf4_.reset();
      }
      return;
    }
    check_shape(name, whole.shape());
    copy_piece(elements(name, held, whole.dtype()), whole, held, piece, name);
    files_.release(name);
  }

 private:
  // Fails naming the tensor when the checkpoint lacks it or holds another shape (on every rank alike).
  void check_shape(const std::string& name, const Shape& expected) const {
    QTUNE_CHECK(files_.contains(name), "sharded load: ", files_.dir(), " holds no tensor ", name);
    const Shape stored(files_.entry(name).shape.begin(), files_.entry(name).shape.end());
    QTUNE_CHECK(stored == expected, "sharded load: ", files_.dir(), ": ", name, " is ", shape_str(stored),
                ", the model expects ", shape_str(expected));
  }

  // Elements `range` of the flattened tensor `name`, converted to `dtype`: only those bytes of the mapped
  // file are read. Used before the next call: a view of the mapping where its alignment allows, else a copy
  // of the range.
  Tensor elements(const std::string& name, dist::Range range, DType dtype) const {
    const io::TensorEntry& e = files_.entry(name);
    const std::optional<DType> stored = io::to_dtype(e.dtype);
    QTUNE_CHECK(stored.has_value(), "sharded load: ", files_.dir(), ": ", name, " has dtype ",
                io::st_dtype_name(e.dtype), ", which qtune cannot compute with");
    const auto size = static_cast<int64_t>(dtype_size(*stored));
    const std::span<const std::byte> bytes = files_.file_of(name).bytes(e).subspan(
        static_cast<size_t>(range.begin * size), static_cast<size_t>(range.size() * size));
    if (reinterpret_cast<uintptr_t>(bytes.data()) % static_cast<uintptr_t>(size) != 0)
      return Tensor::from_data(bytes.data(), {range.size()}, *stored).to(dtype);
    auto storage = Storage::wrap(const_cast<std::byte*>(bytes.data()), bytes.size(), Device::cpu(), {});
    return Tensor::from_storage(std::move(storage), {range.size()}, {1}, 0, *stored).to(dtype);
  }

  // Quantizes this rank's groups of <fqn>.weight: the codes and absmaxes locally, the mean from every rank's
  // absmaxes gathered in rank order (their block order), then the rank's scalers and factors against it.
  // part, whole: the first part asked for, whose size the weight in the file must give.
  std::unique_ptr<NF4Piece> quantize_piece(const std::string& fqn, size_t part, const Tensor& whole) {
    const std::string weight = fqn + ".weight";
    QTUNE_CHECK(files_.contains(weight), "sharded load: ", files_.dir(), " holds no tensor ", weight);
    QTUNE_CHECK(dtype_ == DType::f32 || dtype_ == DType::bf16, "sharded load: NF4 quantizes f32 or bf16 weights, not ",
                dtype_name(dtype_), " (", weight, ")");
    const Shape shape(files_.entry(weight).shape.begin(), files_.entry(weight).shape.end());
    const int64_t n = numel_of(shape);
    const int64_t blocks = (n + numerics::kNF4BlockSize - 1) / numerics::kNF4BlockSize;
    const int64_t groups = (blocks + numerics::kNF4ScalerBlockSize - 1) / numerics::kNF4ScalerBlockSize;
    const int64_t part_sizes[] = {blocks * numerics::kNF4BlockSize / 2, blocks, groups, 1};
    QTUNE_CHECK(part_sizes[part] == whole.numel(), "sharded load: ", files_.dir(), ": ", weight, " is ",
                shape_str(shape), ", which does not give the model's NF4 ", kNF4Parts[part].substr(1), " of ",
                whole.numel(), " elements");
    // The groups this rank keeps, cut as FSDP cuts the parts (whole groups, rank order).
    const dist::FlatLayout layout({dist::Segment{fqn, DType::u8, groups, 1}}, comm_.size());
    const dist::Range mine = layout.held(comm_.rank(), 0);
    const int64_t first = std::min(n, mine.begin * kGroupWeights),
                  count = std::min(n, mine.end * kGroupWeights) - first;
    const int64_t my_blocks = (count + numerics::kNF4BlockSize - 1) / numerics::kNF4BlockSize;

    auto out = std::make_unique<NF4Piece>();
    out->fqn = fqn;
    Backend& cpu = backend_for(Device::cpu());
    out->parts[0] = Tensor::empty({my_blocks * numerics::kNF4BlockSize / 2}, DType::u8);
    out->parts[1] = Tensor::empty({my_blocks}, DType::i8);
    out->parts[2] = Tensor::empty({mine.size()}, dtype_);
    const int64_t stride = layout.piece_count(0) * numerics::kNF4ScalerBlockSize;  // absmaxes per rank
    const Tensor absmax = Tensor::zeros({stride});
    if (count > 0) {
      cpu.nf4_encode(elements(weight, {first, first + count}, dtype_), out->parts[0], absmax.narrow(0, 0, my_blocks));
    }
    const Tensor all = Tensor::empty({stride * comm_.size()});
    comm_.all_gather(dist::buffer_of(absmax), dist::buffer_of(all))->wait();
    const float* a = all.data<float>();
    const float mean = dtype_ == DType::bf16 ? numerics::nf4_absmax_mean<bf16_t>(a, blocks)
                                             : numerics::nf4_absmax_mean<float>(a, blocks);
    out->parts[3] = Tensor::full({1}, mean, dtype_);
    if (count > 0) cpu.nf4_double_quantize(absmax.narrow(0, 0, my_blocks), out->parts[3], out->parts[1], out->parts[2]);
    return out;
  }

  io::CheckpointFiles files_;
  dist::Communicator& comm_;
  DType dtype_;
  std::unique_ptr<NF4Piece> nf4_;
};

}  // namespace

dist::PieceSource checkpoint_pieces(const std::string& dir, dist::Communicator& comm, DType dtype) {
  auto pieces = std::make_shared<CheckpointPieces>(dir, comm, dtype);
  return [pieces](const std::string& name, const Tensor& whole, dist::Range held, void* piece) {
    pieces->fill(name, whole, held, piece);
  };
}

}  // namespace qtune::models
