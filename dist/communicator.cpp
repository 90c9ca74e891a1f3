#include "dist/communicator.h"

#include <cmath>
#include <cstring>
#include <type_traits>

#include "engine/numerics/element.h"
#include "engine/tensor.h"

namespace qtune::dist {

std::string_view collective_name(Collective c) {
  switch (c) {
    case Collective::all_gather:
      return "all_gather";
    case Collective::reduce_scatter:
      return "reduce_scatter";
    case Collective::all_reduce:
      return "all_reduce";
    case Collective::broadcast:
      return "broadcast";
    case Collective::barrier:
      return "barrier";
  }
  return "an unknown collective";
}

std::string_view reduce_name(Reduce r) { return r == Reduce::sum ? "sum" : "max"; }

Buffer buffer_of(const Tensor& t) {
  QTUNE_CHECK(t.is_contiguous(), "collectives take contiguous tensors, got a strided view of shape ",
              shape_str(t.shape()), ": call .contiguous() first");
  return Buffer{t.data_ptr(), t.numel(), t.dtype(), t.device()};
}

std::string describe(const CallSignature& call) {
  switch (call.kind) {
    case Collective::barrier:
      return "barrier";
    case Collective::broadcast:
      return detail::concat("broadcast of ", call.send_count, " ", dtype_name(call.dtype), " from rank ", call.root);
    case Collective::all_gather:
      return detail::concat("all_gather of ", call.send_count, " ", dtype_name(call.dtype), " per rank");
    case Collective::reduce_scatter:
      return detail::concat("reduce_scatter (", reduce_name(call.op), ") of ", call.send_count, " ",
                            dtype_name(call.dtype), " into ", call.recv_count);
    case Collective::all_reduce:
      return detail::concat("all_reduce (", reduce_name(call.op), ") of ", call.send_count, " ",
                            dtype_name(call.dtype));
  }
  return "an unknown collective";
}

std::string find_mismatch(const std::vector<CallSignature>& by_rank) {
  for (size_t r = 1; r < by_rank.size(); ++r) {
    const CallSignature &a = by_rank[0], &b = by_rank[r];
    const bool same = a.sequence == b.sequence && a.kind == b.kind && a.dtype == b.dtype &&
                      a.send_count == b.send_count && a.recv_count == b.recv_count && a.root == b.root &&
                      (a.op == b.op || (a.kind != Collective::all_reduce && a.kind != Collective::reduce_scatter));
    if (!same)
      return detail::concat("collective #", a.sequence, ": rank 0 calls ", describe(a), ", rank ", r, " calls ",
                            describe(b), b.sequence != a.sequence ? detail::concat(" (its #", b.sequence, ")") : "");
  }
  return "";
}

void check_buffers(const CallSignature& call, int world_size, const Buffer& send, const Buffer& recv) {
  const std::string what = describe(call);
  QTUNE_CHECK(send.count >= 0 && recv.count >= 0 && (send.count == 0 || send.data != nullptr) &&
                  (recv.count == 0 || recv.data != nullptr),
              what, ": a buffer with elements needs memory");
  QTUNE_CHECK(send.dtype == recv.dtype, what, ": send is ", dtype_name(send.dtype), " but recv ",
              dtype_name(recv.dtype));
  QTUNE_CHECK(send.device == recv.device, what, ": send is on ", send.device.str(), " but recv on ", recv.device.str());
  switch (call.kind) {
    case Collective::all_gather:
      QTUNE_CHECK(recv.count == send.count * world_size, what, ": recv holds ", recv.count, " elements, not ",
                  world_size, " ranks x ", send.count);
      break;
    case Collective::reduce_scatter:
      QTUNE_CHECK(send.count == recv.count * world_size, what, ": send holds ", send.count, " elements, not ",
                  world_size, " ranks x ", recv.count, " (pad it to a multiple of the world size)");
      break;
    case Collective::broadcast:
      QTUNE_CHECK(call.root >= 0 && call.root < world_size, what, ": root ", call.root, " is not a rank of ",
                  world_size);
      break;
    default:
      break;
  }
  if (call.kind == Collective::all_reduce || call.kind == Collective::reduce_scatter) {
    const DType t = send.dtype;
    QTUNE_CHECK(
        t == DType::f64 || t == DType::f32 || t == DType::bf16 || t == DType::f16 || t == DType::i64 || t == DType::i32,
        what, ": reductions take f64, f32, bf16, f16, i64 or i32");
  }
}

namespace {

template <class T>
void reduce_typed(Reduce op, const T* parts, int ranks, int64_t count, int64_t stride, T* out) {
  for (int64_t i = 0; i < count; ++i) {
    T acc = parts[i];
    for (int r = 1; r < ranks; ++r) {
      const T x = parts[static_cast<int64_t>(r) * stride + i];
      if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>) {
        const float a = numerics::load(&acc), b = numerics::load(&x);
        numerics::store(&acc, op == Reduce::sum ? a + b : (std::isnan(a) || a >= b ? a : b));
      } else if constexpr (std::is_floating_point_v<T>) {
        acc = op == Reduce::sum ? acc + x : (std::isnan(acc) || acc >= x ? acc : x);
      } else {
        acc = op == Reduce::sum ? static_cast<T>(acc + x) : (acc >= x ? acc : x);
      }
    }
    out[i] = acc;
  }
}

}  // namespace

void reduce_in_rank_order(Reduce op, DType dtype, const void* parts, int ranks, int64_t count, int64_t stride,
                          void* out) {
  auto run = [&](auto tag) {
    using T = decltype(tag);
    reduce_typed(op, static_cast<const T*>(parts), ranks, count, stride, static_cast<T*>(out));
  };
  switch (dtype) {
    case DType::f64:
      return run(double{});
    case DType::f32:
      return run(float{});
    case DType::bf16:
      return run(bf16_t{});
    case DType::f16:
      return run(f16_t{});
    case DType::i64:
      return run(int64_t{});
    case DType::i32:
      return run(int32_t{});
    default:
      QTUNE_FAIL("reduce: dtype ", dtype_name(dtype), " is not reducible (f64, f32, bf16, f16, i64, i32)");
  }
}

}  // namespace qtune::dist
