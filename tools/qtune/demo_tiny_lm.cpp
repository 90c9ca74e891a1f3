#include "qtune/demo_tiny_lm.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/module.h"
#include "engine/rng.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise.h"
#include "ops/nn/embedding.h"
#include "ops/nn/linear.h"
#include "ops/nn/rmsnorm.h"
#include "ops/rope.h"
#include "ops/softmax.h"

namespace qtune::cli {
namespace {

namespace fs = std::filesystem;

struct TinyConfig {
  int64_t vocab = 256, dim = 128, heads = 4, layers = 2, hidden = 352, seq = 64, batch = 16;
  double rope_theta = 10000.0, eps = 1e-5;
};

// One pre-norm transformer block: attention then a SwiGLU MLP, each with a residual.
class Block : public Module {
 public:
  Block(const TinyConfig& c, Generator* gen) : Module("Block"), c_(c) {
    const nn::Linear::Options no_bias{.bias = false, .generator = gen};
    attn_norm_ = std::make_shared<nn::RMSNorm>(c.dim, nn::RMSNorm::Options{.eps = c.eps});
    q_ = std::make_shared<nn::Linear>(c.dim, c.dim, no_bias);
    k_ = std::make_shared<nn::Linear>(c.dim, c.dim, no_bias);
    v_ = std::make_shared<nn::Linear>(c.dim, c.dim, no_bias);
    o_ = std::make_shared<nn::Linear>(c.dim, c.dim, no_bias);
    mlp_norm_ = std::make_shared<nn::RMSNorm>(c.dim, nn::RMSNorm::Options{.eps = c.eps});
    gate_ = std::make_shared<nn::Linear>(c.dim, c.hidden, no_bias);
    up_ = std::make_shared<nn::Linear>(c.dim, c.hidden, no_bias);
    down_ = std::make_shared<nn::Linear>(c.hidden, c.dim, no_bias);
    register_module("input_layernorm", &attn_norm_);
    register_module("q_proj", &q_);
    register_module("k_proj", &k_);
    register_module("v_proj", &v_);
    register_module("o_proj", &o_);
    register_module("post_attention_layernorm", &mlp_norm_);
    register_module("gate_proj", &gate_);
    register_module("up_proj", &up_);
    register_module("down_proj", &down_);
  }

  // h: [B, T, C]; cos, sin: [T, C / heads / 2]
  Tensor forward(const Tensor& h, const Tensor& cos, const Tensor& sin) {
    const int64_t b = h.size(0), t = h.size(1), hd = c_.dim / c_.heads;
    const Tensor x = attn_norm_->forward(h);
    const Tensor q = ops::rope((*q_)(x).view({b, t, c_.heads, hd}), cos, sin);
    const Tensor k = ops::rope((*k_)(x).view({b, t, c_.heads, hd}), cos, sin);
    const Tensor v = (*v_)(x).view({b, t, c_.heads, hd});
    const Tensor h2 = h + (*o_)(ops::scaled_dot_product_attention(q, k, v, true).view({b, t, c_.dim}));
    const Tensor y = mlp_norm_->forward(h2);
    return h2 + (*down_)(ops::swiglu((*gate_)(y), (*up_)(y)));
  }

 private:
  TinyConfig c_;
  ModulePtr attn_norm_, q_, k_, v_, o_, mlp_norm_, gate_, up_, down_;
};

class TinyLM : public Module {
 public:
  TinyLM(const TinyConfig& c, Generator* gen) : Module("TinyLM"), c_(c) {
    embed_ = std::make_shared<nn::Embedding>(c.vocab, c.dim, nn::Embedding::Options{.generator = gen});
    layers_ = std::make_shared<ModuleList>();
    for (int64_t i = 0; i < c.layers; ++i) static_cast<ModuleList&>(*layers_).append(std::make_shared<Block>(c, gen));
    norm_ = std::make_shared<nn::RMSNorm>(c.dim, nn::RMSNorm::Options{.eps = c.eps});
    head_ = std::make_shared<nn::Linear>(c.dim, c.vocab, nn::Linear::Options{.bias = false, .generator = gen});
    register_module("embed_tokens", &embed_);
    register_module("layers", &layers_);
    register_module("norm", &norm_);
    register_module("lm_head", &head_);
  }

  // ids: [B, T] i64 -> logits [B, T, vocab]
  Tensor forward(const Tensor& ids) override {
    auto [cos, sin] = ops::rope_tables(0, ids.size(1), c_.dim / c_.heads, c_.rope_theta);
    Tensor h = (*embed_)(ids);
    auto& layers = static_cast<ModuleList&>(*layers_);
    for (size_t i = 0; i < layers.size(); ++i) h = static_cast<Block&>(layers[i]).forward(h, cos, sin);
    return (*head_)(norm_->forward(h));
  }

 private:
  TinyConfig c_;
  ModulePtr embed_, layers_, norm_, head_;
};

// Adam with bias correction, written against the ops so the demo needs nothing beyond the engine.
class Adam {
 public:
  Adam(std::vector<Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {
    for (const Tensor& p : params_) {
      m_.push_back(Tensor::zeros(p.shape()));
      v_.push_back(Tensor::zeros(p.shape()));
    }
  }
  void step() {
    NoGradGuard no_grad;
    ++t_;
    const double c1 = 1.0 - std::pow(beta1_, static_cast<double>(t_)),
                 c2 = 1.0 - std::pow(beta2_, static_cast<double>(t_));
    for (size_t i = 0; i < params_.size(); ++i) {
      const Tensor g = params_[i].grad();
      if (!g.defined()) continue;
      m_[i].copy_(m_[i] * beta1_ + g * (1.0 - beta1_));
      v_[i].copy_(v_[i] * beta2_ + ops::square(g) * (1.0 - beta2_));
      const Tensor update = (m_[i] * (1.0 / c1)) / (ops::sqrt(v_[i] * (1.0 / c2)) + 1e-8);
      params_[i].copy_(params_[i] - update * lr_);
      params_[i].zero_grad();
    }
  }

 private:
  std::vector<Tensor> params_, m_, v_;
  double lr_, beta1_ = 0.9, beta2_ = 0.99;
  int64_t t_ = 0;
};

// Fortune files are "%"-separated quotes; returns them, each ending in a newline.
std::vector<std::string> read_fortunes(const std::string& dir) {
  QTUNE_CHECK(fs::is_directory(dir), "corpus directory ", dir,
              " not found; install the fortunes package (apt-get install fortunes) or pass --corpus DIR");
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file() && !entry.is_symlink() && entry.path().extension().empty())
      files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  std::vector<std::string> docs;
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find("\n%\n", start);
      if (end == std::string::npos) end = text.size();
      if (end > start + 1) docs.push_back(text.substr(start, end - start) + "\n");
      start = end + 3;
    }
  }
  QTUNE_CHECK(!docs.empty(), "no fortune texts found under ", dir);
  return docs;
}

// A [B, T + 1] batch of byte windows from `data`, at offsets drawn from `gen`.
Tensor sample_batch(const std::string& data, const TinyConfig& c, Generator& gen) {
  const Tensor u = rand({c.batch}, DType::f64, Device::cpu(), &gen);
  const auto starts = u.to_vector<double>();
  std::vector<int64_t> ids;
  const auto span = static_cast<double>(data.size() - static_cast<size_t>(c.seq) - 1);
  for (double s : starts) {
    const auto at = static_cast<size_t>(s * span);
    for (int64_t j = 0; j <= c.seq; ++j) ids.push_back(static_cast<unsigned char>(data[at + static_cast<size_t>(j)]));
  }
  return Tensor::from_vector(ids, {c.batch, c.seq + 1});
}

// Mean next-byte loss over disjoint windows of the held-out text.
double evaluate(TinyLM& model, const std::string& data, const TinyConfig& c) {
  NoGradGuard no_grad;
  double total = 0.0;
  int64_t windows = 0;
  const int64_t stride = c.seq + 1, per_batch = c.batch * stride;
  for (int64_t at = 0; at + per_batch <= static_cast<int64_t>(data.size()) && windows < 64; at += per_batch) {
    std::vector<int64_t> ids(static_cast<size_t>(per_batch));
    for (int64_t j = 0; j < per_batch; ++j)
      ids[static_cast<size_t>(j)] = static_cast<unsigned char>(data[static_cast<size_t>(at + j)]);
    const Tensor batch = Tensor::from_vector(ids, {c.batch, stride});
    total += ops::cross_entropy(model(batch.narrow(1, 0, c.seq)), batch.narrow(1, 1, c.seq).contiguous()).item();
    ++windows;
  }
  return total / static_cast<double>(windows);
}

std::string generate(TinyLM& model, const std::string& prompt, int64_t new_bytes, const TinyConfig& c, Generator& gen) {
  NoGradGuard no_grad;
  std::string text = prompt;
  for (int64_t i = 0; i < new_bytes; ++i) {
    const std::string window =
        text.size() > static_cast<size_t>(c.seq) ? text.substr(text.size() - static_cast<size_t>(c.seq)) : text;
    std::vector<int64_t> ids;
    for (unsigned char ch : window) ids.push_back(ch);
    const Tensor logits = model(Tensor::from_vector(ids, {1, static_cast<int64_t>(ids.size())}));
    const Tensor last = logits.select(1, logits.size(1) - 1) * (1.0 / 0.8);  // temperature 0.8
    const auto probs = ops::softmax(last).to_vector<double>();
    double u = rand({1}, DType::f64, Device::cpu(), &gen).item(), acc = 0.0;
    size_t pick = probs.size() - 1;
    for (size_t j = 0; j < probs.size(); ++j) {
      acc += probs[j];
      if (u < acc) {
        pick = j;
        break;
      }
    }
    text.push_back(static_cast<char>(pick));
  }
  return text;
}

}  // namespace

int run_demo(const DemoOptions& options) {
  const TinyConfig c;
  const auto docs = read_fortunes(options.corpus_dir);
  std::string train, heldout;
  for (size_t i = 0; i < docs.size(); ++i) (i % 10 == 9 ? heldout : train) += docs[i];
  std::printf("qtune demo: byte-level transformer (%lld layers, dim %lld, %lld heads) on %zu fortunes\n",
              static_cast<long long>(c.layers), static_cast<long long>(c.dim), static_cast<long long>(c.heads),
              docs.size());
  std::printf("  corpus %s: %zu bytes train, %zu bytes held out (every 10th fortune)\n", options.corpus_dir.c_str(),
              train.size(), heldout.size());

  Generator gen(static_cast<uint64_t>(options.seed));
  TinyLM model(c, &gen);
  int64_t n_params = 0;
  for (const Tensor& p : model.parameters()) n_params += p.numel();
  std::printf("  %lld parameters, batch %lld x %lld bytes, Adam lr 3e-3, %lld steps\n\n",
              static_cast<long long>(n_params), static_cast<long long>(c.batch), static_cast<long long>(c.seq),
              static_cast<long long>(options.steps));

  fs::create_directories(options.out_dir);
  const std::string metrics_path = options.out_dir + "/metrics.jsonl";
  std::ofstream metrics(metrics_path + ".tmp");
  Adam opt(model.parameters(), 3e-3);
  reset_peak_memory(Device::cpu());
  const double initial = evaluate(model, heldout, c);
  std::printf("  %6s %9s %12s %14s\n", "step", "loss", "tokens/s", "peak memory");
  const auto start = std::chrono::steady_clock::now();
  auto last = start;
  for (int64_t step = 1; step <= options.steps; ++step) {
    const Tensor batch = sample_batch(train, c, gen);
    const Tensor loss = ops::cross_entropy(model(batch.narrow(1, 0, c.seq)), batch.narrow(1, 1, c.seq).contiguous());
    loss.backward();
    opt.step();
    const auto now = std::chrono::steady_clock::now();
    const double tok_s = static_cast<double>(c.batch * c.seq) / std::chrono::duration<double>(now - last).count();
    last = now;
    const double value = loss.item();
    const size_t peak = memory_stats(Device::cpu()).peak_allocated;
    metrics << "{\"step\": " << step << ", \"loss\": " << value << ", \"tokens_per_s\": " << tok_s
            << ", \"peak_mem_bytes\": " << peak << "}\n";
    if (step % 25 == 0 || step == 1)
      std::printf("  %6lld %9.4f %12.0f %11.1f MB\n", static_cast<long long>(step), value, tok_s, peak / 1e6);
    std::fflush(stdout);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double final_loss = evaluate(model, heldout, c);
  metrics.close();
  fs::rename(metrics_path + ".tmp", metrics_path);

  std::printf("\n  held-out loss: %.4f nats/byte before training, %.4f after (%.3f bits/byte)\n", initial, final_loss,
              final_loss / std::log(2.0));
  std::printf("  trained %lld steps in %.1f s (%.0f tokens/s)\n", static_cast<long long>(options.steps), seconds,
              static_cast<double>(options.steps * c.batch * c.seq) / seconds);
  std::printf("  metrics: %s\n\n  sample (temperature 0.8):\n%s\n", metrics_path.c_str(),
              generate(model, "Q: ", 160, c, gen).c_str());
  return final_loss < initial ? 0 : 1;
}

}  // namespace qtune::cli
