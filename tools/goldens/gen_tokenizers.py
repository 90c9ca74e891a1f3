#!/usr/bin/env python3
"""Writes the tokenizer goldens under tests/golden/tokenizers/ (tests/test_tokenizer.cpp):

  sp_bpe.model        SentencePiece BPE (vocab 1000, byte fallback, Llama 2's normalizer settings)
                      trained by Python `sentencepiece` on train.txt
  llama3_style.json   byte-level BPE tokenizer.json built by `tokenizers` on train.txt: Llama 3's
                      Split regex + ByteLevel, ignore_merges, <|begin_of_text|> / <|end_of_text|>
                      added after the model vocabulary, TemplateProcessing adding bos
  gpt2_style.json     the same vocabulary in GPT-2's layout: a lone ByteLevel pre-tokenizer with its
                      own regex (and add_prefix_space), merges as "a b" strings, no bos template
  goldens.json        ids and decoded text of held-out samples for the three files above, plus
                      decode cases (every prefix of some encodings: partial UTF-8, special ids)
  llama2_goldens.json the same samples through ../shared/data/llama2-tokenizer.model, when present

The reference libraries' versions are recorded in the goldens. Samples are held out: none of them is
a line of train.txt.

Usage: python3 tools/goldens/gen_tokenizers.py   (pip install sentencepiece tokenizers)
"""
import json
import os
import sys
import tempfile

import sentencepiece as spm
import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden", "tokenizers")
TRAIN = os.path.join(OUT, "train.txt")
# The project's shared data folder sits beside the main checkout; worktrees live one level deeper.
LLAMA2_CANDIDATES = [os.path.join(ROOT, *up, "shared", "data", "llama2-tokenizer.model") for up in [[".."], ["..", ".."]]]

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
BOS, EOS, EOT = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"

SAMPLES = [
    ("empty", ""),
    ("hello", "Hello world"),
    ("leading_space", " leading space"),
    ("spaces_both_ends", "   three leading spaces and two trailing  "),
    ("only_spaces", "     "),
    ("newlines", "\nfirst line\n\nsecond line\n\n\n  indented third\r\nwindows line\r\n"),
    ("tabs", "tabs\tand\t\tmore\t\t\ttabs\t"),
    ("whitespace_runs", "a     b\t \t c   \n   d                    e"),
    ("digits", "1234567890 12 345 6789 3.14159 2024-06-30 1,000,000 007 0.000001 99999999999"),
    ("contractions", "I'm sure they'll say it's fine; we've done what we'd planned. DON'T SHOUT, YOU'RE LOUD"),
    ("prose",
     "The ferry left at dawn, carrying three cars, a tractor and a crate of very unhappy chickens. "
     "By the time it reached the island the fog had lifted, and the passengers could see the whole "
     "harbour: the red boats, the white houses and the old church with its crooked tower. Nobody "
     "was waiting on the pier except a cat, which inspected each arrival with great seriousness."),
    ("code",
     "int main(int argc, char** argv) {\n    std::vector<int> xs{1, 2, 3};\n"
     "    for (auto& x : xs) x *= 2;  // doubles\n\treturn xs.size() == 3 ? 0 : 1;\n}\n"),
    ("python", "def f(x):\n    return {'a': x ** 2, \"b\": [x, x + 1]}  # dict\n"),
    ("german", "Schöne Grüße aus München! Die Bäckerei öffnet um 7 Uhr; Brötchen kosten 0,45 €."),
    ("french", "L'été dernier, nous sommes allés à Genève ; c'était très agréable, n'est-ce pas ?"),
    ("chinese", "机器学习模型需要大量数据。今天我们讨论分词器的设计。"),
    ("japanese", "これは日本語のテスト文です。カタカナ、ひらがな、漢字。"),
    ("korean", "안녕하세요, 만나서 반갑습니다. 한국어 문장입니다."),
    ("emoji", "Launch day 🚀🚀 went well 👍🏽; the crab 🦀 and the parrot 🦜 agree. Family: 👩‍👩‍👦 flag: 🇨🇭"),
    ("rare_chars", "ꙮ Ꙭ ᚠᚢᚦᚨᚱᚲ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∮ ⅋ ☃ ♞ ⌘ ¤"),
    ("unicode_spaces", "non\u00a0breaking\u3000ideographic\u2003em\u2009thin\u0085nel\u2028ls end"),
    ("combining", "Cafe\u0301 vs Café, n\u0303, A\u030a, Zalgo z\u0336\u0317a\u0338l\u0335g\u0334o"),
    ("special_strings", "<|begin_of_text|>Hello<|end_of_text|> and <s> </s> <unk> <|eot_id|>x<|endoftext|>"),
    ("special_glued", "before<|end_of_text|><|begin_of_text|>after"),
    ("quotes", "'s at the start, ''double'' and `back`ticks` \"quoted\" “curly” ‘single’ «guillemets»"),
    ("long_word", "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis"),
    ("caps", "THE QUICK BROWN FOX; The Quick Brown Fox; the quick brown fox; tHe QuIcK bRoWn FoX"),
    ("url_path", "See https://example.org/a/b?c=d&e=f#g or C:\\Temp\\x.txt or ~/.config/qtune/rc"),
    ("punct_runs", "Wait... what?!?! -- no way!!! (((nested))) [[x]] {{y}} ;;; ::: ***"),
    ("mixed_scripts", "Москва Moscow 莫斯科 モスクワ 모스크바 Μόσχα مسکو מוסקבה"),
    ("trailing_newline_spaces", "line one   \nline two\t\n   \n"),
    ("stream", " 🦀 中文 ok\n  ꙮé<|end_of_text|> x"),
]

# Token prefixes decoded one length at a time: partial UTF-8 and the SentencePiece space handling.
PREFIX_SAMPLES = ["stream", "leading_space", "special_glued"]


def versions():
    return {"python": sys.version.split()[0], "sentencepiece": spm.__version__, "tokenizers": tokenizers.__version__}


def train_sentencepiece(path):
    prefix = path[: -len(".model")]
    spm.SentencePieceTrainer.train(
        input=TRAIN, model_prefix=prefix, model_type="bpe", vocab_size=1000, byte_fallback=True,
        character_coverage=0.9995, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, max_sentence_length=16384,
        minloglevel=1)
    os.remove(prefix + ".vocab")


def sp_goldens(sp):
    cases = []
    for name, text in SAMPLES:
        ids = sp.encode(text)
        decoded = sp.decode(ids)
        cases.append({
            "name": name,
            "ids": ids,
            "ids_bos_eos": sp.encode(text, add_bos=True, add_eos=True),
            "decoded": decoded,
            "roundtrip": decoded == text,
        })
    decode_cases = []
    bos, eos = sp.bos_id(), sp.eos_id()
    for name, text in SAMPLES:
        if name not in PREFIX_SAMPLES:
            continue
        ids = sp.encode(text)
        decode_cases.append({"prefixes_of": ids, "texts": [sp.decode(ids[:k]) for k in range(len(ids) + 1)]})
    # Special ids anywhere are dropped.
    mixed = [bos] + sp.encode("ab") + [eos, bos] + sp.encode(" c") + [eos]
    decode_cases.append({"ids": mixed, "text": sp.decode(mixed)})
    # Byte pieces that do not form valid UTF-8 (the byte-fallback decoder's replacement characters).
    if sp.piece_to_id("<0xE4>") != sp.unk_id():
        bad = [sp.piece_to_id(f"<0x{b:02X}>") for b in [0xE4, 0xB8, 0x41, 0xF0, 0x9F, 0xA6, 0xFF, 0xC0, 0xAF, 0x42]]
        bad = bad[:3] + sp.encode("ok") + bad[3:]
        decode_cases.append({"ids": bad, "text": sp.decode(bad)})
    return {
        "vocab_size": sp.get_piece_size(),
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "pieces": {str(i): sp.id_to_piece(i) for i in [0, 1, 2, 3, 3 + 0x41, 259, 400, sp.get_piece_size() - 1]},
        "cases": cases,
        "decode_cases": decode_cases,
    }


def build_llama3_style():
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([TRAIN], trainer)
    # Whole words that the merges cannot build (Llama 3's vocabulary has such entries): only
    # ignore_merges emits them, so the goldens tell whether a reader honours the flag.
    spec = json.loads(tok.to_str())
    for word in ["supercalifragilisticexpialidocious", "\u0120pneumonoultramicroscopicsilicovolcanoconiosis"]:
        spec["model"]["vocab"][word] = len(spec["model"]["vocab"])
    tok = Tokenizer.from_str(json.dumps(spec))
    # As in Llama 3, the special tokens come after the model's vocabulary.
    tok.add_special_tokens([BOS, EOS, EOT])
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)]),
    ])
    return tok


def gpt2_style_json(llama3):
    """The same vocabulary and merges as GPT-2 lays them out; checked by loading it back."""
    spec = json.loads(llama3.to_str())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] == EOS]
    for t in spec["added_tokens"]:
        t["content"], t["id"] = "<|endoftext|>", len(spec["model"]["vocab"])
    spec["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    spec["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    spec["model"]["ignore_merges"] = False
    spec["model"]["merges"] = [f"{a} {b}" for a, b in spec["model"]["merges"]]
    return json.dumps(spec, ensure_ascii=False)


def bpe_goldens(tok, eos_token, bos_token):
    cases = []
    for name, text in SAMPLES:
        ids = tok.encode(text, add_special_tokens=False).ids
        decoded = tok.decode(ids, skip_special_tokens=True)
        cases.append({
            "name": name,
            "ids": ids,
            "ids_bos": tok.encode(text, add_special_tokens=True).ids,
            "decoded": decoded,
            "roundtrip": decoded == text,
        })
    decode_cases = []
    for name, text in SAMPLES:
        if name not in PREFIX_SAMPLES:
            continue
        ids = tok.encode(text, add_special_tokens=False).ids
        texts = [tok.decode(ids[:k], skip_special_tokens=True) for k in range(len(ids) + 1)]
        decode_cases.append({"prefixes_of": ids, "texts": texts})
    # Single bytes of a multi-byte character: from_utf8_lossy's replacement characters.
    byte_ids = [tok.token_to_id(c) for c in pre_tokenizers.ByteLevel.alphabet()]
    raw = "🦀中é".encode()
    table = {b: c for b, c in zip(range(256), byte_level_chars())}
    for cut in range(1, len(raw) + 1):
        ids = [tok.token_to_id(table[b]) for b in raw[:cut]]
        decode_cases.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=True)})
    bad = [tok.token_to_id(table[b]) for b in [0xE4, 0x41, 0xF0, 0x9F, 0xA6, 0xFF, 0xC0, 0xAF, 0xED, 0xA0, 0x80, 0x42]]
    decode_cases.append({"ids": bad, "text": tok.decode(bad, skip_special_tokens=True)})
    assert None not in byte_ids
    added = {t.content: i for i, t in tok.get_added_tokens_decoder().items()}
    return {
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "bos_id": added.get(bos_token) if bos_token else None,
        "eos_id": added[eos_token],
        "pieces": {str(i): tok.id_to_token(i) for i in [0, 32, 255, 256, 300, 999, 1000, 1001] + sorted(added.values())},
        "cases": cases,
        "decode_cases": decode_cases,
    }


def byte_level_chars():
    """GPT-2's byte -> printable character table, in byte order (mirrors models/byte_level.cpp)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def write_json(name, obj):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    print("versions:", versions())
    train_text = open(TRAIN, encoding="utf-8").read()
    for name, text in SAMPLES:
        for line in text.splitlines():
            assert len(line) < 20 or line not in train_text, f"sample {name} is not held out"

    sp_path = os.path.join(OUT, "sp_bpe.model")
    train_sentencepiece(sp_path)
    sp = spm.SentencePieceProcessor(model_file=sp_path)

    llama3 = build_llama3_style()
    assert llama3.decoder is not None
    assert sorted(c for c in byte_level_chars()) == sorted(pre_tokenizers.ByteLevel.alphabet())
    llama3_path = os.path.join(OUT, "llama3_style.json")
    llama3.save(llama3_path, pretty=False)
    gpt2_path = os.path.join(OUT, "gpt2_style.json")
    with open(gpt2_path, "w", encoding="utf-8") as f:
        f.write(gpt2_style_json(llama3))
    gpt2 = Tokenizer.from_file(gpt2_path)

    goldens = {
        "versions": versions(),
        "samples": [{"name": n, "text": t} for n, t in SAMPLES],
        "sp_bpe.model": sp_goldens(sp),
        "llama3_style.json": bpe_goldens(llama3, EOS, BOS),
        "gpt2_style.json": bpe_goldens(gpt2, "<|endoftext|>", None),
    }
    write_json("goldens.json", goldens)

    llama2_path = next((p for p in LLAMA2_CANDIDATES if os.path.exists(p)), None)
    if llama2_path:
        llama2 = spm.SentencePieceProcessor(model_file=llama2_path)
        write_json("llama2_goldens.json", {"versions": versions(), "samples": goldens["samples"],
                                           "llama2-tokenizer.model": sp_goldens(llama2)})
    else:
        print(f"llama2-tokenizer.model not found ({LLAMA2_CANDIDATES}): llama2_goldens.json left as it is")
    for p in [sp_path, llama3_path, gpt2_path]:
        print(f"wrote {p} ({os.path.getsize(p)} bytes)")


if __name__ == "__main__":
    main()
