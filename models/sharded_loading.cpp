#include "models/sharded_loading.h"

#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include "dist/flat_layout.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "engine/io/checkpoint_files.h"
#include "engine/numerics/nf4.h"

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

void copy_piece(const Tensor& from, dist::Range held, void* piece, const std::string& name) {
  QTUNE_CHECK(from.numel() == held.size(), "sharded load: ", name, ": a piece of ", from.numel(),
              " elements for a range of ", held.size());
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
      if (!nf4_ || nf4_->fqn != part->first) nf4_ = quantize_piece(part->first);
      const Tensor& from = nf4_->parts[part->second];
      // The mean is one element: the range says whether this rank keeps it.
      copy_piece(part->second == 3 ? from.narrow(0, 0, held.size()) : from, held, piece, name);
      if (++nf4_->served == std::size(kNF4Parts)) {
        files_.release(nf4_->fqn + ".weight");
        nf4_.reset();
      }
      return;
    }
    QTUNE_CHECK(files_.contains(name) && files_.tensor(name).numel() == whole.numel(), "sharded load: ", files_.dir(),
                " holds no tensor ", name, " of ", shape_str(whole.shape()));
    copy_piece(elements(name, held, whole.dtype()), held, piece, name);
    files_.release(name);
  }

 private:
  // Elements `range` of the flattened tensor `name`, in `dtype`: a view of the mapped file when the dtypes
  // agree, so only those pages are read.
  Tensor elements(const std::string& name, dist::Range range, DType dtype) const {
    const Tensor file = files_.tensor(name);
    return file.reshape({file.numel()}).narrow(0, range.begin, range.size()).to(dtype);
  }

  // Quantizes this rank's groups of <fqn>.weight: the codes and absmaxes locally, the mean from every rank's
  // absmaxes gathered in rank order (their block order), then the rank's scalers and factors against it.
  std::unique_ptr<NF4Piece> quantize_piece(const std::string& fqn) {
    const std::string weight = fqn + ".weight";
    QTUNE_CHECK(files_.contains(weight), "sharded load: ", files_.dir(), " holds no tensor ", weight);
    QTUNE_CHECK(dtype_ == DType::f32 || dtype_ == DType::bf16, "sharded load: NF4 quantizes f32 or bf16 weights, not ",
                dtype_name(dtype_), " (", weight, ")");
    const int64_t n = files_.tensor(weight).numel();
    const int64_t blocks = (n + numerics::kNF4BlockSize - 1) / numerics::kNF4BlockSize;
    const int64_t groups = (blocks + numerics::kNF4ScalerBlockSize - 1) / numerics::kNF4ScalerBlockSize;
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
