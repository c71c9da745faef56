"""A tokenizer directory as old BERT repos ship it (vocab.txt and tokenizer_config.json, no
tokenizer.json), and the ids transformers gives for it under several configurations.

Writes tests/fixtures/tokenizer-slow/:
  vocab.txt                the vocabulary of tests/fixtures/tokenizer/ (scripts/make_fixtures.py)
  tokenizer_config.json    {"do_lower_case": false}, as bert-base-multilingual-cased (Bark's) has
  special_tokens_map.json  the five BERT specials
  reference.json           [{"config", "special_tokens_map", "cases": [{"text", "ids",
                           "ids_with_special"}]}] for each
                           configuration below, from transformers' slow, pure-Python tokenizer
                           (BertTokenizerLegacy, what BertTokenizer was before transformers 5)
                           loaded from a directory holding vocab.txt and that config; the script
                           checks that transformers' BertTokenizer built from the same files
                           agrees, text by text.
tests/host/text.rs loads the directory with each config and compares ids exactly.

Made with transformers 5.25.0 and tokenizers 0.23.3 (no torch needed).
Run: python scripts/make_slow_tokenizer_fixtures.py   (pip install transformers)
"""

import json
import shutil
import tempfile
from pathlib import Path

from transformers import BertTokenizer
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
OUT = ROOT / "tokenizer-slow"

SPECIALS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
            "mask_token": "[MASK]"}

# Cased (Bark's), uncased (lowercase and accents stripped), lowercase keeping accents, accents
# stripped without lowercasing and CJK left unsplit, a config that says nothing (BERT's
# defaults: lowercase, strip accents, split CJK), and an unknown token that
# special_tokens_map.json (an AddedToken's form) overrides.
CONFIGS = [
    ({"do_lower_case": False}, SPECIALS),
    ({"do_lower_case": True}, SPECIALS),
    ({"do_lower_case": True, "strip_accents": False}, SPECIALS),
    ({"do_lower_case": False, "strip_accents": True, "tokenize_chinese_chars": False}, SPECIALS),
    ({}, SPECIALS),
    ({"do_lower_case": False, "unk_token": "[PAD]"},
     {"unk_token": {"content": "[MASK]", "lstrip": False, "normalized": False, "rstrip": False,
                    "single_word": False}}),
]

TEXTS = [
    "Hello, my name is Suno.",
    "HELLO hello HeLLo, SUNO!",
    "Bonjour Élodie, ça va? Très bien. ÉLODIE à Besançon",
    "Über-große Straße, Jürgen: sagte \"Wolken\".",
    "¿Dónde está la estación? Mañana... niños!",
    "e\u0301 combining acute, \u00e9 precomposed, Å\u030a double",
    "今天天气很好，我们去公园散步吧。",
    "東京は日本の首都です。ありがとう",
    "안녕하세요, 만나서 반갑습니다.",
    "Привет, как дела? Всё хорошо.",
    "unknownword Zyxwvut ♪ 🎵 ☃",
    "[laughs] ... — [MASK] [CLS] [unk] [UNK]x",
    "a" * 100 + " " + "b" * 101 + " " + "é" * 101,
    "Numbers 1234 and 56.78, emails: someone@example.com!",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u200bzero-width\u0000nul\u0007bell",
    "  spaces   around  ",
    "",
]


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    shutil.copy(ROOT / "tokenizer" / "vocab.txt", OUT / "vocab.txt")
    with open(OUT / "special_tokens_map.json", "w", encoding="utf-8") as f:
        json.dump(SPECIALS, f, indent=1)
        f.write("\n")
    refs = []
    for config, specials in CONFIGS:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(OUT / "vocab.txt", Path(tmp) / "vocab.txt")
            for name, content in [("tokenizer_config.json", config), ("special_tokens_map.json", specials)]:
                with open(Path(tmp) / name, "w", encoding="utf-8") as f:
                    json.dump(content, f)
            slow = BertTokenizerLegacy.from_pretrained(tmp)
            fast = BertTokenizer.from_pretrained(tmp)
            cases = []
            for text in TEXTS:
                ids = slow(text, add_special_tokens=False)["input_ids"]
                with_special = slow(text, add_special_tokens=True)["input_ids"]
                other = fast(text, add_special_tokens=False)["input_ids"]
                assert other == ids, (config, text, ids, other)
                cases.append(dict(text=text, ids=ids, ids_with_special=with_special))
            refs.append(dict(config=config, special_tokens_map=specials, cases=cases))
    with open(OUT / "tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(CONFIGS[0][0], f, indent=1)
        f.write("\n")
    # One case a line: readable in a diff, and small.
    dump = lambda v: json.dumps(v, ensure_ascii=False)
    with open(OUT / "reference.json", "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(
            f' {{"config": {dump(r["config"])}, "special_tokens_map": {dump(r["special_tokens_map"])}, "cases": [\n' + ",\n".join("  " + dump(c) for c in r["cases"]) + "]}"
            for r in refs) + "\n]\n")
    print(f"{OUT}: {len(CONFIGS)} configs x {len(TEXTS)} texts")


if __name__ == "__main__":
    main()
