#!/usr/bin/env python3
"""Checks a GGUF file that `qtune export --format gguf` wrote against its Hugging Face source, with the `gguf`
package (llama.cpp's own Python reader and its numpy ports of ggml's reference quantizers), not with qtune:

  - the metadata llama.cpp reads (architecture, sizes, heads, RoPE, norm epsilon, file type) against config.json;
  - every tensor: present under llama.cpp's name, its shape, and its bytes -- F32 equal to the source, F16 equal
    to numpy's cast, BF16 / Q8_0 / Q5_0 / Q4_0 byte-identical to gguf.quants.quantize of the source (q and k rows
    first permuted as llama.cpp's converter does) -- and its dequantized values within the format's error of the
    source (the only check of Q4_K / Q5_K / Q6_K, which the package cannot write: their bytes are compared with
    llama-quantize's by the gguf_llama_quantize test);
  - the tokenizer: tokens equal to tokenizer.json's vocabulary (byte-level BPE) or, when the `sentencepiece`
    package is installed, to tokenizer.model's pieces.

usage: check_gguf.py FILE.gguf HF_MODEL_DIR
Exit status 0 when everything agrees, 1 with a message per disagreement, 77 when `gguf` is not installed.
"""
import json
import os
import re
import struct
import sys

try:
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf import quants
except ImportError as e:
    print(f"the gguf package is not installed ({e}): SKIPPED (pip install gguf)")
    sys.exit(77)

LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
MODEL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 7: "Q8_0", 15: "Q4_K_M", 32: "BF16"}

problems = []


def problem(message):
    problems.append(message)
    print("MISMATCH:", message)


def gguf_name(hf_name):
    if hf_name in MODEL_NAMES:
        return MODEL_NAMES[hf_name]
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", hf_name)
    if m and m.group(2) in LAYER_NAMES:
        return f"blk.{m.group(1)}.{LAYER_NAMES[m.group(2)]}"
    return None


def read_safetensors(model_dir):
    """Every tensor of the directory's safetensors files as f32 numpy arrays (without the safetensors package)."""
    tensors = {}
    files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    for name in files:
        with open(os.path.join(model_dir, name), "rb") as f:
            data = f.read()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        base = 8 + n
        for key, info in header.items():
            if key == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            raw = data[base + begin : base + end]
            dtype = info["dtype"]
            if dtype == "F32":
                arr = np.frombuffer(raw, dtype=np.float32)
            elif dtype == "F16":
                arr = np.frombuffer(raw, dtype=np.float16).astype(np.float32)
            elif dtype == "BF16":
                arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                problem(f"{name}: tensor {key} has dtype {dtype}")
                continue
            tensors[key] = arr.reshape(info["shape"]).copy()
    return tensors


def permute(w, n_head):
    """llama.cpp's convert_hf_to_gguf.py permutation of q / k rows for its RoPE."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def check_metadata(reader, config):
    fields = reader.fields

    def value(key):
        if key not in fields:
            problem(f"metadata {key} is missing")
            return None
        return fields[key].contents()

    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope = config.get("rope_parameters") or {}
    theta = config.get("rope_theta", rope.get("rope_theta", 10000.0))
    expected = {
        "general.architecture": "llama",
        "llama.block_count": config["num_hidden_layers"],
        "llama.embedding_length": config["hidden_size"],
        "llama.feed_forward_length": config["intermediate_size"],
        "llama.attention.head_count": heads,
        "llama.attention.head_count_kv": config.get("num_key_value_heads", heads),
        "llama.rope.dimension_count": head_dim,
        "llama.context_length": config.get("max_position_embeddings", 2048),
        "llama.vocab_size": config["vocab_size"],
    }
    for key, want in expected.items():
        got = value(key)
        if got is not None and got != want:
            problem(f"metadata {key} = {got!r}, config.json says {want!r}")
    for key, want in [("llama.rope.freq_base", theta),
                      ("llama.attention.layer_norm_rms_epsilon", config.get("rms_norm_eps", 1e-6))]:
        got = value(key)
        if got is not None and np.float32(got) != np.float32(want):
            problem(f"metadata {key} = {got!r}, config.json says {want!r}")
    file_type = value("general.file_type")
    if file_type not in FILE_TYPES:
        problem(f"general.file_type {file_type} is not one qtune writes")
    return FILE_TYPES.get(file_type)


def check_tensor(t, source):
    """t: a ReaderTensor; source: the f32 numpy array it was written from (rows already permuted)."""
    qtype = t.tensor_type
    raw = np.asarray(t.data)
    shape = tuple(int(d) for d in reversed(t.shape))  # gguf-py lists ggml's ne (innermost first)
    if shape != source.shape:
        problem(f"{t.name}: shape {shape}, source {source.shape}")
        return
    if qtype == Q.F32:
        if not np.array_equal(raw.reshape(source.shape).view(np.uint32), source.view(np.uint32)):
            problem(f"{t.name}: F32 values differ from the source")
        return
    if qtype == Q.F16:
        if not np.array_equal(raw.reshape(source.shape).view(np.uint16), source.astype(np.float16).view(np.uint16)):
            problem(f"{t.name}: F16 values differ from numpy's cast of the source")
        return
    bounds = {Q.BF16: 2.0**-8, Q.Q8_0: 1.0 / 127 * 1.01, Q.Q5_0: 1.0 / 16 * 1.01, Q.Q4_0: 1.0 / 8 * 1.01,
              Q.Q4_K: 2.0 / 15, Q.Q5_K: 2.0 / 31, Q.Q6_K: 1.0 / 32}
    if qtype not in bounds:
        problem(f"{t.name}: type {qtype.name} is not one qtune writes")
        return
    got = raw.view(np.uint8).reshape(source.shape[0], -1)
    if qtype not in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
        want = quants.quantize(source, qtype)
        if not np.array_equal(got, want):
            rows = np.nonzero((got != want).any(axis=1))[0]
            problem(f"{t.name}: {qtype.name} bytes differ from gguf.quants.quantize in {len(rows)} rows "
                    f"(first {rows[0]})")
    back = quants.dequantize(got, qtype)
    scale = float(np.abs(source).max()) or 1.0
    bound = bounds[qtype]
    err = float(np.abs(back - source).max()) / scale
    if err > bound:
        problem(f"{t.name}: {qtype.name} dequantizes {err:.3g} (relative to max |w|) away from the source")


def check_tokenizer(reader, model_dir):
    tokens = [str(bytes(reader.fields["tokenizer.ggml.tokens"].parts[i]), "utf-8")
              for i in reader.fields["tokenizer.ggml.tokens"].data]
    model = reader.fields["tokenizer.ggml.model"].contents()
    tj = os.path.join(model_dir, "tokenizer.json")
    tm = os.path.join(model_dir, "tokenizer.model")
    if model == "gpt2" and os.path.exists(tj):
        with open(tj, encoding="utf-8") as f:
            doc = json.load(f)
        want = {i: p for p, i in doc["model"]["vocab"].items()}
        for t in doc.get("added_tokens", []):
            want[t["id"]] = t["content"]
        for i, piece in want.items():
            if i >= len(tokens) or tokens[i] != piece:
                problem(f"token {i}: {tokens[i] if i < len(tokens) else None!r}, tokenizer.json has {piece!r}")
                break
        merges = reader.fields["tokenizer.ggml.merges"].contents()
        want_merges = [m if isinstance(m, str) else " ".join(m) for m in doc["model"]["merges"]]
        if merges != want_merges:
            problem("tokenizer.ggml.merges differ from tokenizer.json's merges")
        print(f"tokenizer: {len(tokens)} tokens and {len(merges)} merges equal tokenizer.json's")
    elif model == "llama" and os.path.exists(tm):
        try:
            import sentencepiece
        except ImportError:
            print("tokenizer: sentencepiece not installed, tokens not compared with tokenizer.model")
            return
        sp = sentencepiece.SentencePieceProcessor(model_file=tm)
        pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
        if tokens != pieces:
            problem("tokenizer.ggml.tokens differ from tokenizer.model's pieces")
        scores = reader.fields["tokenizer.ggml.scores"].contents()
        if any(np.float32(a) != np.float32(sp.get_score(i)) for i, a in enumerate(scores)):
            problem("tokenizer.ggml.scores differ from tokenizer.model's scores")
        print(f"tokenizer: {len(tokens)} pieces and scores equal tokenizer.model's")
    else:
        problem(f"tokenizer.ggml.model {model!r} does not match the files in {model_dir}")


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    path, model_dir = sys.argv[1], sys.argv[2]
    reader = gguf.GGUFReader(path)
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    file_type = check_metadata(reader, config)

    source = read_safetensors(model_dir)
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    by_name = {t.name: t for t in reader.tensors}
    expected = set()
    for hf_name, w in source.items():
        name = gguf_name(hf_name)
        if name is None:
            problem(f"source tensor {hf_name} has no llama.cpp name")
            continue
        if name == "output.weight" and config.get("tie_word_embeddings"):
            continue
        expected.add(name)
        if name not in by_name:
            problem(f"{name} (from {hf_name}) is missing")
            continue
        if name.endswith("attn_q.weight"):
            w = permute(w, heads)
        elif name.endswith("attn_k.weight"):
            w = permute(w, kv_heads)
        check_tensor(by_name[name], np.ascontiguousarray(w, dtype=np.float32))
    extra = set(by_name) - expected - {"rope_freqs.weight"}
    if extra:
        problem(f"tensors not in the source: {sorted(extra)}")
    check_tokenizer(reader, model_dir)

    types = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(types.items()))
    if problems:
        print(f"{path}: {len(problems)} disagreement(s) with {model_dir}")
        return 1
    print(f"{path}: file type {file_type}, {len(reader.tensors)} tensors ({summary}) agree with {model_dir} "
          f"(gguf {getattr(gguf, '__version__', 'installed')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
