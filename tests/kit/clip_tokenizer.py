"""A real CLIP tokenizer (the one SD 1.5 uses) built offline from the open_clip_torch wheel.

Why: the SD 1.5 tokenizer lives on the model hub, which tests cannot reach. OpenAI's CLIP BPE
table ships inside the ``open_clip_torch`` wheel on PyPI as ``open_clip/bpe_simple_vocab_16e6.txt.gz``.
We download the wheel without installing it (installing would pull torchvision), read the
table out of the zip, and derive ``vocab.json``/``merges.txt`` exactly the way CLIP's
``SimpleTokenizer`` defines its vocabulary:

* the 256 byte-level symbols of ``bytes_to_unicode`` in that function's order,
* the same 256 symbols with ``</w>`` appended,
* one token per merge rule from lines ``1 .. 49152-256-2`` of the table (line 0 is a header),
* ``<|startoftext|>`` and ``<|endoftext|>``,

which gives 49408 ids, the ``vocab_size`` of SD 1.5's text encoder. ``merges.txt`` keeps the
header line because ``transformers.CLIPTokenizer`` skips the first line when it reads it.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

from .cache import SourceUnavailable, cached_dir, pip_download

OPEN_CLIP_SPEC = "open_clip_torch==3.3.0"
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2
VOCAB_SIZE = 49408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MODEL_MAX_LENGTH = 77


def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible byte -> printable-unicode table, in its defining order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))


def read_bpe_table(downloads: Path) -> list[str]:
    """Return the text lines of CLIP's BPE table, taken from the open_clip_torch wheel."""
    wheel = pip_download(OPEN_CLIP_SPEC, downloads)
    try:
        with zipfile.ZipFile(wheel) as archive:
            raw = archive.read(BPE_MEMBER)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise SourceUnavailable(f"{wheel.name} has no readable {BPE_MEMBER}: {exc}") from exc
    return gzip.decompress(raw).decode("utf-8").split("\n")


def vocab_and_merges(bpe_lines: list[str]) -> tuple[dict[str, int], list[str]]:
    """Derive (token -> id, merge lines) from the BPE table exactly as CLIP's tokenizer does."""
    merges = bpe_lines[1 : NUM_MERGES + 1]
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [symbol + "</w>" for symbol in alphabet]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += [BOS, EOS]
    if len(tokens) != VOCAB_SIZE or len(set(tokens)) != VOCAB_SIZE:
        raise ValueError(f"derived {len(tokens)} tokens ({len(set(tokens))} unique), expected {VOCAB_SIZE}")
    return {token: index for index, token in enumerate(tokens)}, merges


def write_tokenizer_files(out_dir: Path, downloads: Path) -> None:
    """Write a ``transformers`` CLIPTokenizer folder (vocab, merges, configs) into ``out_dir``."""
    from transformers import CLIPTokenizer

    vocab, merges = vocab_and_merges(read_bpe_table(downloads))
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = out_dir / "vocab.json", out_dir / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=MODEL_MAX_LENGTH)
    tokenizer.save_pretrained(str(out_dir))


def build_clip_tokenizer(target: Path, downloads: Path) -> Path:
    """Cached folder loadable with ``CLIPTokenizer.from_pretrained(folder)``."""
    return cached_dir(target, lambda tmp: write_tokenizer_files(tmp, downloads))
