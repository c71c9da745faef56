#!/usr/bin/env python3
"""Builds the small Bark checkpoints and reference outputs under tests/fixtures/.

Regenerate (from the repository root; the virtualenv lives OUTSIDE the repository, never commit it):

    python3 -m venv /tmp/venv
    /tmp/venv/bin/pip install torch transformers safetensors numpy tokenizers
    /tmp/venv/bin/python scripts/make_fixtures.py

Made with torch 2.15, transformers 5.23 and tokenizers 0.23 (CPU, float32). Every random draw comes
from a seeded torch.Generator, so a rerun with the same versions rewrites the same bytes.

What it writes
--------------
tests/fixtures/<variant>/ for two variants of a random BarkModel with the REAL vocabulary sizes
(semantic in 129600 / out 10048, coarse 12096/12096, fine 1056/1056 with n_codes_total 8 and
n_codes_given 1) but tiny hidden sizes:

  tiny       bias=False like the published checkpoints; hidden 16, 2 layers, 2 heads, block_size 1024;
             stored in float32.
  tiny-bias  bias=True; hidden 8, 3 layers, 2 heads, block_size 256 (so nothing may assume 1024);
             stored in float16 (the references are computed in float32 from the float16-rounded
             weights, so they are exact for the stored values).

Both share one codec: an EncodecModel for 24 kHz (upsampling 8,5,4,2, hop 320, 2-layer LSTM,
weight norm) with tiny channel counts (hidden_size 8 = codebook_dim, num_filters 2) and
target_bandwidths [1.5, 3.0, 6.0], so it has 8 quantizers (Bark decodes with 8).

All weights are redrawn here (transformers initialises layer norms to 1/0, biases to 0 and the codebooks
to 0, which would hide mistakes that swap or drop them).

Files per variant:
  config.json, model.safetensors   save_pretrained (parametrized weight-norm
      names `*.parametrizations.weight.original0/1`, fine `lm_heads.*` dropped as tied, the causal
      `*.attn.bias` mask buffers included).
  pytorch_model.bin   torch.save of the state dict as 2023 files have it: legacy weight-norm names
      `*.weight_g` / `*.weight_v`, the tied fine heads `lm_heads.{j}` written too (sharing storage
      with `input_embeds_layers.{j+1}`). tiny omits the `*.attn.bias` masks (4 MiB of bools, to keep
      the fixtures small); tiny-bias keeps them (BoolStorage). tiny's is an OrderedDict carrying
      `_metadata` (as module.state_dict() returns it), tiny-bias's a plain dict. The script checks
      that transformers loads this .bin back to bit-identical outputs.
  reference.safetensors   float32 outputs of transformers (ids as int64):
      semantic.input_ids (1,8)            semantic.logits (1,8,10048)      causal forward, no cache
      semantic.cached.prefill_logits (1,5,10048)   use_cache=True on ids[:, :5]
      semantic.cached.step_logits (1,3,10048)      then ids[:, 5], ids[:, 6], ids[:, 7], one token
                                                    per call, each with the cache of the previous call
      coarse.input_ids (1,8)  coarse.logits (1,8,12096)  coarse.cached.prefill_logits (1,5,12096)
      coarse.cached.step_logits (1,3,12096)
      fine.input_ids (1,10,8)  fine.logits.{k} (1,10,1056) for codebook_idx k = 1..7
      codec.decode.codes (1,8,5)  codec.decode.embeddings (1,8,5) (quantizer.decode)
      codec.decode.audio (1,1,1600) (decoder of those embeddings)
      codec.encode.audio (1,1,2000)  codec.encode.embeddings (1,8,7) (encoder output)
      codec.encode.codes (1,8,7)     (encode(audio, bandwidth=6.0).audio_codes[0])
      weight_norm.<name>.weight   for every weight-norm conv of the codec: the folded weight
          transformers uses (parametrization removed), <name> being the checkpoint name without
          `.parametrizations.weight.original*`, e.g. weight_norm.codec_model.decoder.layers.0.conv.weight

  generation_config.json   BarkGenerationConfig() (Bark's constants), written by hand.
  tiny only: generation.safetensors + generation.json   greedy end-to-end generation by the model
      as from_pretrained loads it, checked equal to BarkModel.generate(do_sample=False,
      semantic_max_new_tokens=24) on GENERATION_TEXT through BarkProcessor and the tokenizer below:
      input_ids (1,256) attention_mask (1,256)   the processor's output
      prompt.semantic_prompt (40)  prompt.coarse_prompt (2,60)  prompt.fine_prompt (8,60)  a random voice
      {greedy,prompted}.semantic (1,24)  .coarse (1,72)  .fine (1,8,36)  .audio (1,11520)
          greedy: no history prompt; prompted: history_prompt = the prompt.* tensors.
      NB transformers' coarse step for the 2nd codebook masks only ids below 11024, so it can pick
      12048..12095 (pad/infer ids; greedy.coarse has one); the original Bark allows only 11024..12047.

tests/fixtures/tokenizer/ (shared by both variants):
  tokenizer.json, vocab.txt, tokenizer_config.json  a small cased BERT WordPiece tokenizer built here
      ([PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4; no lower-casing, no accent stripping, CJK split).
  tokenizer_reference.json  [{"text", "ids", "ids_with_special"}] from transformers' BertTokenizerFast
      (ids: add_special_tokens=False as Bark's processor uses it; ids_with_special: True).
"""

import json
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BarkConfig, BarkModel, BarkProcessor, BertTokenizerFast
from transformers.models.bark.generation_configuration_bark import (
    BarkCoarseGenerationConfig,
    BarkFineGenerationConfig,
    BarkGenerationConfig,
    BarkSemanticGenerationConfig,
)

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"

CODEC = dict(
    model_type="encodec",
    hidden_size=8,
    num_filters=2,
    target_bandwidths=[1.5, 3.0, 6.0],
)

VARIANTS = {
    "tiny": dict(hidden_size=16, num_layers=2, num_heads=2, block_size=1024, bias=False, seed=1,
                 dtype=torch.float32, bin_masks=False, bin_ordered=True, generation=True),
    "tiny-bias": dict(hidden_size=8, num_layers=3, num_heads=2, block_size=256, bias=True, seed=2,
                      dtype=torch.float16, bin_masks=True, bin_ordered=False, generation=False),
}


def bark_config(v):
    sub = dict(hidden_size=v["hidden_size"], num_layers=v["num_layers"], num_heads=v["num_heads"],
               block_size=v["block_size"], bias=v["bias"], dropout=0.0)
    return BarkConfig(
        semantic_config=dict(input_vocab_size=129600, output_vocab_size=10048, **sub),
        coarse_acoustics_config=dict(input_vocab_size=12096, output_vocab_size=12096, **sub),
        fine_acoustics_config=dict(input_vocab_size=1056, output_vocab_size=1056, n_codes_total=8,
                                   n_codes_given=1, **sub),
        codec_config=dict(CODEC),
    )


def randomize(model, gen):
    """Redraws every float parameter and buffer with values that make each one matter."""
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.dtype.is_floating_point:
                continue
            shape = t.shape
            if name.endswith("original0"):  # weight-norm magnitude g: positive
                new = 0.5 + torch.rand(shape, generator=gen)
            elif name.endswith("codebook.inited"):
                new = torch.ones(shape)
            elif name.endswith("codebook.cluster_size"):
                new = 1.0 + torch.rand(shape, generator=gen)
            elif "layernorm" in name and name.endswith("weight"):
                new = 1.0 + 0.2 * torch.randn(shape, generator=gen)
            elif t.dim() >= 2:
                fan_in = shape[1] if "embeds" not in name and "codebook" not in name else 1
                new = torch.randn(shape, generator=gen) / (fan_in ** 0.5)
            else:  # biases
                new = 0.1 * torch.randn(shape, generator=gen)
            t.copy_(new)


def legacy_state_dict(model, with_masks, ordered):
    """The state dict as 2023 torch.save files hold it: weight_g / weight_v, tied fine heads kept.
    `ordered`: an OrderedDict carrying `_metadata` as module.state_dict() returns it (pickled with a
    BUILD of that attribute), else a plain dict."""
    sd = model.state_dict()
    out = OrderedDict() if ordered else {}
    if ordered:
        out._metadata = sd._metadata
    for k, t in sd.items():
        if k.endswith(".attn.bias") and not with_masks:
            continue
        k = k.replace(".parametrizations.weight.original0", ".weight_g")
        k = k.replace(".parametrizations.weight.original1", ".weight_v")
        out[k] = t
    # The tied heads must share storage with the embeddings, as in the original files.
    fine = model.fine_acoustics
    for j in range(len(fine.lm_heads)):
        assert out[f"fine_acoustics.lm_heads.{j}.weight"].data_ptr() == \
            out[f"fine_acoustics.input_embeds_layers.{j + 1}.weight"].data_ptr()
    return out


def folded_weight_norms(model):
    """The weights transformers computes from g and v, read from the parametrization itself."""
    out = {}
    for mname, module in model.codec_model.named_modules():
        if hasattr(module, "parametrizations") and "weight" in module.parametrizations:
            out[f"weight_norm.codec_model.{mname}.weight"] = module.weight.detach().clone()
    return out


def causal_refs(prefix, model, vocab, gen, refs, t=8, prefill=5):
    ids = torch.randint(0, vocab, (1, t), generator=gen)
    refs[f"{prefix}.input_ids"] = ids
    refs[f"{prefix}.logits"] = model(input_ids=ids, use_cache=False).logits
    out = model(input_ids=ids[:, :prefill], use_cache=True)
    refs[f"{prefix}.cached.prefill_logits"] = out.logits
    past, steps = out.past_key_values, []
    for i in range(prefill, t):
        out = model(input_ids=ids[:, i:i + 1], past_key_values=past, use_cache=True)
        past = out.past_key_values
        steps.append(out.logits)
    refs[f"{prefix}.cached.step_logits"] = torch.cat(steps, dim=1)


def make_variant(name, v):
    gen = torch.Generator().manual_seed(v["seed"])
    model = BarkModel(bark_config(v)).eval()
    randomize(model, gen)
    if v["dtype"] != torch.float32:
        # Round every weight to the stored precision first, so the float32 references are exact for it.
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                if t.dtype.is_floating_point:
                    t.copy_(t.to(v["dtype"]).float())

    refs = {}
    with torch.no_grad():
        causal_refs("semantic", model.semantic, 129600, gen, refs)
        causal_refs("coarse", model.coarse_acoustics, 12096, gen, refs)
        fine_ids = torch.randint(0, 1056, (1, 10, 8), generator=gen)
        refs["fine.input_ids"] = fine_ids
        for k in range(1, 8):
            refs[f"fine.logits.{k}"] = model.fine_acoustics(k, input_ids=fine_ids).logits

        codec = model.codec_model
        codes = torch.randint(0, 1024, (1, 8, 5), generator=gen)
        emb = codec.quantizer.decode(codes.transpose(0, 1))
        refs["codec.decode.codes"] = codes
        refs["codec.decode.embeddings"] = emb
        refs["codec.decode.audio"] = codec.decoder(emb)
        audio = 0.3 * torch.randn((1, 1, 2000), generator=gen)
        refs["codec.encode.audio"] = audio
        refs["codec.encode.embeddings"] = codec.encoder(audio)
        refs["codec.encode.codes"] = codec.encode(audio, bandwidth=6.0).audio_codes[0]
        refs.update(folded_weight_norms(model))

    out_dir = ROOT / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    refs = {k: (t if t.dtype == torch.int64 else t.float()).contiguous() for k, t in refs.items()}
    save_file(refs, str(out_dir / "reference.safetensors"))

    model = model.to(v["dtype"])
    model.save_pretrained(out_dir)
    # Bark's generation constants, as the published generation_config.json holds them (written by
    # hand: transformers 5.23 cannot save a BarkGenerationConfig).
    with open(out_dir / "generation_config.json", "w", encoding="utf-8") as f:
        json.dump(BarkGenerationConfig().to_dict(), f, indent=2, sort_keys=True)
        f.write("\n")
    if v["generation"]:
        make_generation(out_dir)
    torch.save(legacy_state_dict(model, v["bin_masks"], v["bin_ordered"]), out_dir / "pytorch_model.bin")
    check_bin_loads(out_dir, refs)


def check_bin_loads(out_dir, refs):
    """transformers itself must read the legacy .bin back to the same model (it renames weight_g/v)."""
    with tempfile.TemporaryDirectory() as tmp:
        for f in ["config.json", "pytorch_model.bin"]:
            shutil.copy(out_dir / f, tmp)
        model = BarkModel.from_pretrained(tmp, use_safetensors=False, dtype=torch.float32).eval()
    with torch.no_grad():
        got = model.semantic(input_ids=refs["semantic.input_ids"], use_cache=False).logits
        assert torch.equal(got, refs["semantic.logits"]), "semantic logits from the .bin differ"
        got = model.codec_model.decoder(model.codec_model.quantizer.decode(refs["codec.decode.codes"].transpose(0, 1)))
        assert torch.equal(got, refs["codec.decode.audio"]), "codec audio from the .bin differs"


GENERATION_TEXT = "Hello, my name is Suno. [laughs] Bonjour Élodie!"
SEMANTIC_MAX_NEW_TOKENS = 24


def run_stages(model, inputs, history):
    """BarkModel.generate's stages one by one (greedy), keeping each stage's output."""
    gc = model.generation_config
    sem_cfg = BarkSemanticGenerationConfig(**gc.semantic_config)
    coarse_cfg = BarkCoarseGenerationConfig(**gc.coarse_acoustics_config)
    fine_cfg = BarkFineGenerationConfig(**gc.fine_acoustics_config)
    semantic = model.semantic.generate(inputs["input_ids"], history_prompt=history, semantic_generation_config=sem_cfg,
                                       attention_mask=inputs["attention_mask"], max_new_tokens=SEMANTIC_MAX_NEW_TOKENS,
                                       do_sample=False)
    coarse = model.coarse_acoustics.generate(semantic, history_prompt=history, semantic_generation_config=sem_cfg,
                                             coarse_generation_config=coarse_cfg, codebook_size=gc.codebook_size,
                                             do_sample=False)
    fine = model.fine_acoustics.generate(coarse, history_prompt=history, semantic_generation_config=sem_cfg,
                                         coarse_generation_config=coarse_cfg, fine_generation_config=fine_cfg,
                                         codebook_size=gc.codebook_size, do_sample=False)
    audio = model.codec_decode(fine)
    whole = model.generate(**inputs, history_prompt=history, do_sample=False,
                           semantic_max_new_tokens=SEMANTIC_MAX_NEW_TOKENS)
    assert torch.equal(whole, audio), "the stages differ from BarkModel.generate"
    return dict(semantic=semantic, coarse=coarse, fine=fine, audio=audio)


def make_generation(out_dir):
    """Greedy end-to-end generation, without and with a (random) voice prompt, by the model as
    from_pretrained loads it from out_dir (which is how BarkModel.generate expects its config)."""
    model = BarkModel.from_pretrained(out_dir, dtype=torch.float32).eval()
    tok = BertTokenizerFast(tokenizer_file=str(ROOT / "tokenizer" / "tokenizer.json"), do_lower_case=False)
    inputs = BarkProcessor(tokenizer=tok)(GENERATION_TEXT)
    gen = torch.Generator().manual_seed(3)
    prompt = dict(semantic_prompt=torch.randint(0, 10000, (40,), generator=gen),
                  coarse_prompt=torch.randint(0, 1024, (2, 60), generator=gen),
                  fine_prompt=torch.randint(0, 1024, (8, 60), generator=gen))
    out = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    out.update({f"prompt.{k}": t for k, t in prompt.items()})
    with torch.no_grad():
        for case, history in [("greedy", None), ("prompted", prompt)]:
            for stage, t in run_stages(model, inputs, history).items():
                out[f"{case}.{stage}"] = t
    out = {k: (t.to(torch.int64) if not t.dtype.is_floating_point else t.float()).contiguous() for k, t in out.items()}
    save_file(out, str(out_dir / "generation.safetensors"))
    with open(out_dir / "generation.json", "w", encoding="utf-8") as f:
        json.dump(dict(text=GENERATION_TEXT, semantic_max_new_tokens=SEMANTIC_MAX_NEW_TOKENS, do_sample=False,
                       shapes={k: list(t.shape) for k, t in out.items()}), f, ensure_ascii=False, indent=1)
        f.write("\n")


TOKENIZER_CORPUS = [
    "Hello, my name is Suno. And, uh — and I like pizza. [laughs]",
    "But I also have other interests such as playing tic tac toe.",
    "The quick brown fox jumps over the lazy dog while the dogs are sleeping.",
    "Bonjour, je m'appelle Élodie et j'habite à Besançon près de la forêt.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein, sagte Jürgen.",
    "¿Dónde está la estación? Mañana iremos a la playa con niños.",
    "今天天气很好，我们去公园散步吧。",
    "東京は日本の首都です。ありがとうございます。",
    "안녕하세요, 만나서 반갑습니다.",
    "Привет, как дела? Всё хорошо.",
    "Numbers like 1234 and 56.78 appear too, as do emails: someone@example.com!",
]

TOKENIZER_TESTS = [
    "Hello, my name is Suno.",
    "Bonjour Élodie, ça va? Très bien.",
    "Über-große Straße",
    "今天天气很好",
    "東京ありがとう",
    "  spaces   and\ttabs\nnewline  ",
    "unknownword Zyxwvut ♪ 🎵",
    "[laughs] ... — [MASK] [CLS]",
    "",
]


def make_tokenizer():
    out_dir = ROOT / "tokenizer"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                            lowercase=False)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # The vocabulary is built, not trained (the WordPiece trainer breaks ties in hash order, so
    # it is not reproducible): every character of the corpus alone and as a "##" continuation,
    # the corpus's words, and a few pieces that make unseen words split into several tokens.
    words = [w for text in TOKENIZER_CORPUS
             for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))]
    chars = [c for w in words for c in w]
    pieces = ["Str", "Wol", "gro", "##ken", "##ing", "##s", "##en", "##e", "##ße", "##ions", "##ra", "##ar"]
    vocab = {}
    for t in specials + chars + ["##" + c for c in chars] + words + pieces:
        vocab.setdefault(t, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.decoder = decoders.WordPiece(prefix="##")
    assert [tok.token_to_id(s) for s in specials] == [0, 1, 2, 3, 4]
    tok.save(str(out_dir / "tokenizer.json"))

    hf = BertTokenizerFast(tokenizer_file=str(out_dir / "tokenizer.json"), do_lower_case=False,
                           strip_accents=None, tokenize_chinese_chars=True)
    hf.save_pretrained(str(out_dir))
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    with open(out_dir / "vocab.txt", "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t, _ in vocab))
    cases = []
    for text in TOKENIZER_TESTS:
        cases.append(dict(text=text,
                          ids=hf(text, add_special_tokens=False)["input_ids"],
                          ids_with_special=hf(text, add_special_tokens=True)["input_ids"]))
    with open(out_dir / "tokenizer_reference.json", "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    make_tokenizer()
    for name, v in VARIANTS.items():
        make_variant(name, v)
    total = 0
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            size = os.path.getsize(os.path.join(dirpath, f))
            total += size
            print(f"{size / 1e6:8.3f} MB  {os.path.relpath(os.path.join(dirpath, f), ROOT)}")
    print(f"{total / 1e6:8.3f} MB  total")


if __name__ == "__main__":
    main()
