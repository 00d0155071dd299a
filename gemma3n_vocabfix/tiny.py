"""Tiny but real Gemma 3n checkpoints, for the compatibility tests and ``make demo``.

Everything here is built with the real libraries (torch, transformers 5.x, tokenizers, sentencepiece); nothing is
mocked.  The core package never imports this module.

Two id spaces are supported, both in the released layout ``[text | vision | audio]``:

* ``"real"``  -- exactly the released one: T = 262144, V = A = 128 (vocab_size 262400).  The tokenizer carries the
  real special-token strings of google/gemma-3n-E4B-it at the real ids (0 <pad>, 1 <eos>, 2 <bos>, 3 <unk>, 4 <mask>,
  5 [multimodal], 6..104 <unused0..98>, 105 <start_of_turn>, 106 <end_of_turn>, 107..237 newlines / spaces / html tags,
  238..493 byte pieces, 255968..255998 tabs, 255999 <start_of_image>, 256000 <start_of_audio>,
  256001..262143 <unused99..6241>, 262144 <end_of_image>, 262145 <image_soft_token>, <unused_image0..125>,
  262272 <end_of_audio>, 262273 <audio_soft_token>, <unused_audio0..125>).  Its tokenizer_config.json
  ``added_tokens_decoder`` is identical to the one of the published E4B-it checkpoint.
* ``"small"`` -- T = 384, V = A = 128: the same strings at the analogous places of a smaller id space (the first
  special tokens at the start, <start_of_image>/<start_of_audio> near the end of the text range followed by 4
  unused slots, the vision and audio tokens in their ranges).  No byte pieces.

The model is a tiny random ``Gemma3nForConditionalGeneration`` (hidden 16, 4 decoder layers, per-layer width 4,
a one-block audio conformer, timm ``test_efficientnet`` as vision tower; 64x64 images give 4 soft tokens).
A freshly initialised Gemma 3n ignores its per-layer table (altup ``correct_output_scale`` starts at zero) and has
many constant parameters (norm weights, ...); :func:`build_base` adds noise to every constant parameter, so that
changing one row of ``embed_tokens_per_layer`` changes the logits (including row 0, which multimodal ids read).

What stock transformers 5.24 does when a user extends such a checkpoint (measured with :func:`extend`):

* ``tokenizer.add_tokens([...])`` gives the new tokens ids ``T+V+A``, ``T+V+A+1``, ... (after the audio range).
* ``model.resize_token_embeddings(n, pad_to_multiple_of=m)`` grows ``embed_tokens`` (and an untied ``lm_head``) to
  ``n`` rows (rounded up to a multiple of ``m``), sets ``text_config.vocab_size`` to that row count, **and** grows
  ``embed_tokens_per_layer`` from ``T`` rows to the same row count and sets ``text_config.vocab_size_per_layer_input``
  to it (``Gemma3nPreTrainedModel._resize_per_layer_embeddings``).  The added rows (the 256 multimodal ids, the new
  tokens and any padding rows) are drawn from a normal distribution with the mean/covariance of the old rows
  (``mean_resizing=True``).  Consequence: multimodal ids now read fresh per-layer rows instead of row 0, and any
  forward pass containing a new id raises ``IndexError`` (the new ids fall in the unbounded audio mask).
  ``vision_config.vocab_offset`` / ``audio_config.vocab_offset`` and the special ids are not touched.
* ``tokenizer.save_pretrained`` (transformers 5.24, GemmaTokenizer = TokenizersBackend) writes only
  ``tokenizer.json`` and ``tokenizer_config.json``.  It writes no ``tokenizer.model``, no ``special_tokens_map.json``,
  no ``added_tokens.json``, and its tokenizer_config.json has **no** ``added_tokens_decoder`` and no
  ``extra_special_tokens``; it gains ``backend``, ``is_local``, ``local_files_only``, ``mask_token`` and
  ``model_specific_special_tokens`` (the six image/audio token strings).  In tokenizer.json the new tokens are
  appended to ``added_tokens`` (ids T+V+A.., ``normalized: true``, ``special: false``) but are **not** in
  ``model.vocab`` (which keeps its T+V+A entries).  Loading back with AutoTokenizer gives the same ids.
  ``extend(..., tokenizer_files="v4")`` additionally rewrites the files the way transformers 4.5x wrote them
  (tokenizer_config.json with ``added_tokens_decoder`` including the new tokens, special_tokens_map.json,
  added_tokens.json), since most extended checkpoints in the wild were saved that way.
* ``model.save_pretrained`` writes config.json, generation_config.json and safetensors shards (+ index).
"""

from __future__ import annotations

import copy
import itertools
import json
import shutil
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "IdSpace",
    "ID_SPACES",
    "get_id_space",
    "base_token_strings",
    "base_added_tokens",
    "build_base",
    "extend",
    "build_demo",
    "read_tensors",
    "tensor_shards",
    "expected_id_map",
    "to_launch_config",
    "write_tokenizer_files",
    "NEW_TOKENS",
    "PROCESSOR_FILES",
]

# --------------------------------------------------------------------------------------------------------------------
# id spaces and token strings
# --------------------------------------------------------------------------------------------------------------------

# The html tags of google/gemma-3n-E4B-it at ids 168..237 (tokenizer_config.json added_tokens_decoder).
_HTML_TAGS = [
    "<table>", "<caption>", "<thead>", "<tbody>", "<tfoot>", "<tr>", "<th>", "<td>", "</table>", "</caption>",
    "</thead>", "</tbody>", "</tfoot>", "</tr>", "</th>", "</td>", "<h1>", "<h2>", "<h3>", "<h4>", "<h5>", "<h6>",
    "<blockquote>", "</h1>", "</h2>", "</h3>", "</h4>", "</h5>", "</h6>", "</blockquote>", "<strong>", "<em>", "<b>",
    "<i>", "<u>", "<s>", "<sub>", "<sup>", "<code>", "</strong>", "</em>", "</b>", "</i>", "</u>", "</s>", "</sub>",
    "</sup>", "</code>", "<a>", "<html>", "<body>", "<img>", "<span>", "<bbox>", "<ul>", "<li>", "<div>", "<iframe>",
    "<footer>", "</a>", "</html>", "</body>", "</img>", "</span>", "</bbox>", "</ul>", "</li>", "</div>", "</iframe>",
    "</footer>",
]

#: Default new tokens used by the demo and the tests (one looks like a special token, one is plain text).
NEW_TOKENS = ["<tool_call>", "</tool_call>", "zqxj"]

#: Files a Gemma 3n processor needs besides the tokenizer files.
PROCESSOR_FILES = ["processor_config.json", "preprocessor_config.json", "chat_template.jinja"]


@dataclass(frozen=True)
class IdSpace:
    """The released vocabulary layout ``[text T | vision V | audio A]`` plus where the named strings live."""

    name: str
    T: int
    V: int
    A: int
    head: tuple[str, ...]  # added tokens at ids 0.. (specials, unused, turn markers, ...)
    n_byte_pieces: int  # byte-fallback pieces right after the head (256 or 0)
    tail: tuple[str, ...]  # added tokens ending the text range (tabs, soi, soa, unused...)
    special_head: frozenset[str]  # head strings that are "special": true in tokenizer_config.json

    @property
    def vocab_size(self) -> int:
        return self.T + self.V + self.A

    @property
    def vision_offset(self) -> int:
        return self.T

    @property
    def audio_offset(self) -> int:
        return self.T + self.V

    @property
    def end_of_turn_id(self) -> int:
        return self.head.index("<end_of_turn>")

    def special_ids(self) -> dict[str, int]:
        """Top-level config id fields of a released checkpoint in this id space."""
        tail0 = self.T - len(self.tail)
        return {
            "boi_token_id": tail0 + self.tail.index("<start_of_image>"),
            "eoi_token_id": self.T,
            "image_token_id": self.T + 1,
            "boa_token_id": tail0 + self.tail.index("<start_of_audio>"),
            "eoa_token_id": self.T + self.V,
            "audio_token_id": self.T + self.V + 1,
        }


def _tail(n_tabs: int, first_unused: int, n_unused: int) -> tuple[str, ...]:
    return tuple(
        ["\t" * n for n in range(1, n_tabs + 1)]
        + ["<start_of_image>", "<start_of_audio>"]
        + [f"<unused{i}>" for i in range(first_unused, first_unused + n_unused)]
    )


_REAL_HEAD = tuple(
    ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"]
    + [f"<unused{i}>" for i in range(99)]
    + ["<start_of_turn>", "<end_of_turn>"]
    + ["\n" * n for n in range(1, 32)]
    + ["\u2581" * n for n in range(2, 32)]
    + _HTML_TAGS
)
assert len(_REAL_HEAD) == 238

_SMALL_HEAD = tuple(
    ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"]
    + [f"<unused{i}>" for i in range(10)]
    + ["<start_of_turn>", "<end_of_turn>", "\n", "\n\n", "\u2581\u2581", "<table>", "</table>"]
)

_SPECIAL_HEAD = frozenset(["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"])

ID_SPACES: dict[str, IdSpace] = {
    "real": IdSpace("real", 262144, 128, 128, _REAL_HEAD, 256, _tail(31, 99, 6143), _SPECIAL_HEAD),
    "small": IdSpace("small", 384, 128, 128, _SMALL_HEAD, 0, _tail(2, 10, 4), _SPECIAL_HEAD),
}


def get_id_space(id_space: str | IdSpace) -> IdSpace:
    if isinstance(id_space, IdSpace):
        return id_space
    try:
        return ID_SPACES[id_space]
    except KeyError:
        raise ValueError(f"id_space must be one of {sorted(ID_SPACES)}, got {id_space!r}") from None


def _normal_pieces() -> Iterable[str]:
    """Ordinary (BPE) pieces: single characters first, then ever longer lowercase words."""
    lower = string.ascii_lowercase
    singles = ["\u2581"] + list(lower) + list(string.ascii_uppercase) + list(string.digits)
    singles += list(".,!?;:'\"-()[]{}/\\@#$%&*+=_<>|~`^")
    yield from singles
    yield from ("\u2581" + c for c in lower)
    yield from ("".join(p) for p in itertools.product(lower, repeat=2))
    for n in itertools.count(2):
        yield from ("\u2581" + "".join(p) for p in itertools.product(lower, repeat=n))


def base_token_strings(id_space: str | IdSpace) -> list[str]:
    """The string of every id ``0 .. T+V+A-1`` of the base tokenizer."""
    sp = get_id_space(id_space)
    out = list(sp.head)
    out += [f"<0x{b:02X}>" for b in range(sp.n_byte_pieces)]
    n_normal = sp.T - len(sp.tail) - len(out)
    if n_normal < 70:
        raise ValueError("id space too small")
    out += list(itertools.islice(_normal_pieces(), n_normal))
    out += list(sp.tail)
    out += ["<end_of_image>", "<image_soft_token>"] + [f"<unused_image{i}>" for i in range(sp.V - 2)]
    out += ["<end_of_audio>", "<audio_soft_token>"] + [f"<unused_audio{i}>" for i in range(sp.A - 2)]
    assert len(out) == sp.vocab_size and len(set(out)) == len(out)
    return out


def base_added_tokens(id_space: str | IdSpace) -> dict[int, tuple[str, bool]]:
    """``id -> (content, special)`` of the base tokenizer's added tokens, as in the released tokenizer_config.json."""
    sp = get_id_space(id_space)
    strings = base_token_strings(sp)
    ids = list(range(len(sp.head))) + list(range(sp.T - len(sp.tail), sp.vocab_size))
    out = {}
    for i in ids:
        s = strings[i]
        special = s in sp.special_head or s.startswith(("<unused_image", "<unused_audio"))
        out[i] = (s, special)
    return out


def expected_id_map(T: int, V: int, A: int, k: int):
    """The doc's id map pi (old -> new) after moving k appended text tokens in front of the vision range."""

    def pi(i: int) -> int:
        if i < 0:
            raise ValueError(i)
        if i < T:
            return i
        if i < T + V + A:
            return i + k
        if i < T + V + A + k:
            return i - V - A
        raise ValueError(f"id {i} outside the extended vocabulary")

    return pi


# --------------------------------------------------------------------------------------------------------------------
# tokenizer files
# --------------------------------------------------------------------------------------------------------------------

_ADDED_TOKEN_FLAGS = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
_EXTRA_SPECIAL = {
    "audio_token": "<audio_soft_token>",
    "boa_token": "<start_of_audio>",
    "boi_token": "<start_of_image>",
    "eoa_token": "<end_of_audio>",
    "eoi_token": "<end_of_image>",
    "image_token": "<image_soft_token>",
}


def _merges(plain_pieces: list[str], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges that build every ordinary piece from its prefix and its last character."""
    merges = []
    for piece in plain_pieces:
        if len(piece) >= 2 and piece[:-1] in vocab and piece[-1] in vocab:
            merges.append((piece[:-1], piece[-1]))
    return merges


def _write_tokenizer_json(sp: IdSpace, strings: list[str], path: Path) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = {s: i for i, s in enumerate(strings)}
    added = base_added_tokens(sp)
    merges = _merges([s for i, s in enumerate(strings) if i not in added], vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tk.normalizer = normalizers.Replace(" ", "\u2581")
    tk.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tk.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)]
    )
    flags = dict(single_word=False, lstrip=False, rstrip=False, normalized=False)
    tk.add_tokens([AddedToken(added[i][0], special=added[i][1], **flags) for i in sorted(added)])
    for i, (s, _) in added.items():
        assert tk.token_to_id(s) == i, (s, i, tk.token_to_id(s))
    tk.save(str(path))


def _tokenizer_config_v4(sp: IdSpace, extra_added: dict[int, dict] | None = None) -> dict:
    """tokenizer_config.json as the released checkpoints have it (written by transformers 4.53)."""
    decoder = {
        str(i): {"content": s, **_ADDED_TOKEN_FLAGS, "special": special}
        for i, (s, special) in sorted(base_added_tokens(sp).items())
    }
    for i, entry in sorted((extra_added or {}).items()):
        decoder[str(i)] = entry
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "audio_token": "<audio_soft_token>",
        "boa_token": "<start_of_audio>",
        "boi_token": "<start_of_image>",
        "bos_token": "<bos>",
        "clean_up_tokenization_spaces": False,
        "eoa_token": "<end_of_audio>",
        "eoi_token": "<end_of_image>",
        "eos_token": "<eos>",
        "extra_special_tokens": dict(_EXTRA_SPECIAL),
        "image_token": "<image_soft_token>",
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": "<pad>",
        "processor_class": "Gemma3nProcessor",
        "sp_model_kwargs": None,
        "spaces_between_special_tokens": False,
        "tokenizer_class": "GemmaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }


def _special_tokens_map() -> dict:
    full = lambda s: {"content": s, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}  # noqa: E731
    return {
        "audio_token": "<audio_soft_token>",
        "boa_token": "<start_of_audio>",
        "boi_token": "<start_of_image>",
        "bos_token": full("<bos>"),
        "eoa_token": "<end_of_audio>",
        "eoi_token": "<end_of_image>",
        "eos_token": full("<eos>"),
        "image_token": "<image_soft_token>",
        "pad_token": full("<pad>"),
        "unk_token": full("<unk>"),
    }


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_sentencepiece(sp: IdSpace, strings: list[str], path: Path) -> None:
    """A SentencePiece BPE ``tokenizer.model`` with one piece per id (built directly as a ModelProto)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    added = base_added_tokens(sp)
    m = pb.ModelProto()
    ts = m.trainer_spec
    ts.model_type = pb.TrainerSpec.BPE
    ts.vocab_size = len(strings)
    ts.byte_fallback = sp.n_byte_pieces == 256
    ts.split_digits = True
    ts.allow_whitespace_only_pieces = True
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = 3, 2, 1, 0
    ts.unk_piece, ts.bos_piece, ts.eos_piece, ts.pad_piece = "<unk>", "<bos>", "<eos>", "<pad>"
    ns = m.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = False
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    for i, s in enumerate(strings):
        p = m.pieces.add()
        p.piece = s
        if s in ("<pad>", "<eos>", "<bos>"):
            p.type, p.score = pb.ModelProto.SentencePiece.CONTROL, 0.0
        elif s == "<unk>":
            p.type, p.score = pb.ModelProto.SentencePiece.UNKNOWN, 0.0
        elif i in added:
            p.type, p.score = pb.ModelProto.SentencePiece.USER_DEFINED, 0.0
        elif sp.n_byte_pieces and len(sp.head) <= i < len(sp.head) + sp.n_byte_pieces:
            p.type, p.score = pb.ModelProto.SentencePiece.BYTE, 0.0
        else:
            p.type, p.score = pb.ModelProto.SentencePiece.NORMAL, -float(i)
    path.write_bytes(m.SerializeToString())


_CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '

' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '

' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '
' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'audio' -%}
                {{ '<audio_soft_token>' }}
            {%- elif item['type'] == 'image' -%}
                {{ '<image_soft_token>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>
' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model
'}}
{%- endif -%}
"""  # byte-identical to google/gemma-3n-E4B-it chat_template.jinja

# Tiny image / audio geometry: 64x64 images -> test_efficientnet (stride 32) -> 2x2 = 4 soft tokens of width 256.
_IMAGE_SIZE = 64
_VISION_SOFT_TOKENS = 4
_VISION_WIDTH = 256
_AUDIO_SOFT_TOKENS = 188  # as released: 30 s of audio -> 188 soft tokens


def _preprocessor_config() -> dict:
    """preprocessor_config.json of google/gemma-3n-E4B-it, with a 64x64 image size and matching image_seq_length."""
    return {
        "crop_size": None,
        "data_format": "channels_first",
        "default_to_square": False,
        "device": None,
        "dither": 0.0,
        "do_center_crop": None,
        "do_convert_rgb": None,
        "do_normalize": False,
        "do_rescale": True,
        "do_resize": True,
        "feature_extractor_type": "Gemma3nAudioFeatureExtractor",
        "feature_size": 128,
        "fft_length": 1024,
        "fft_overdrive": True,
        "frame_length": 512,
        "hop_length": 160,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessorFast",
        "image_seq_length": _VISION_SOFT_TOKENS,
        "image_std": [0.5, 0.5, 0.5],
        "input_data_format": None,
        "input_scale_factor": 1.0,
        "max_frequency": 7600.0,
        "mel_floor": 1e-05,
        "min_frequency": 125.0,
        "padding_side": "right",
        "padding_value": 0.0,
        "per_bin_mean": None,
        "per_bin_stddev": None,
        "preemphasis": 0.97,
        "preemphasis_htk_flavor": True,
        "processor_class": "Gemma3nProcessor",
        "resample": 2,
        "rescale_factor": 0.00392156862745098,
        "return_attention_mask": False,
        "return_tensors": None,
        "sampling_rate": 16000,
        "size": {"height": _IMAGE_SIZE, "width": _IMAGE_SIZE},
    }


def _write_processor_files(path: Path) -> None:
    _write_json(
        path / "processor_config.json",
        {
            "audio_seq_length": _AUDIO_SOFT_TOKENS,
            "image_seq_length": _VISION_SOFT_TOKENS,
            "processor_class": "Gemma3nProcessor",
        },
    )
    _write_json(path / "preprocessor_config.json", _preprocessor_config())
    (path / "chat_template.jinja").write_text(_CHAT_TEMPLATE, encoding="utf-8")


def write_tokenizer_files(path: str | Path, id_space: str | IdSpace = "small") -> None:
    """Write tokenizer.json, tokenizer.model, tokenizer_config.json, special_tokens_map.json (released style)."""
    sp = get_id_space(id_space)
    path = Path(path)
    strings = base_token_strings(sp)
    _write_tokenizer_json(sp, strings, path / "tokenizer.json")
    _write_sentencepiece(sp, strings, path / "tokenizer.model")
    _write_json(path / "tokenizer_config.json", _tokenizer_config_v4(sp))
    _write_json(path / "special_tokens_map.json", _special_tokens_map())


# --------------------------------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------------------------------


def _config(sp: IdSpace, *, dtype: str, tie: bool):
    from transformers import Gemma3nConfig

    text = dict(
        vocab_size=sp.vocab_size,
        vocab_size_per_layer_input=sp.T,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        hidden_size_per_layer_input=4,
        laurel_rank=4,
        num_kv_shared_layers=2,
        altup_num_inputs=2,
        sliding_window=8,
        max_position_embeddings=1024,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        activation_sparsity_pattern=[0.95, 0.0, 0.0, 0.0],
        initializer_range=0.2,
        tie_word_embeddings=tie,
    )
    audio = dict(
        vocab_size=sp.A,
        vocab_offset=sp.audio_offset,
        input_feat_size=128,
        hidden_size=16,
        conf_num_attention_heads=2,
        conf_num_hidden_layers=1,
        sscp_conv_channel_size=[4, 4],
        conf_attention_chunk_size=12,
        conf_attention_context_left=13,
        conf_positional_bias_size=16,
        conf_reduction_factor=4,
        initializer_range=0.2,
    )
    vision = dict(
        architecture="test_efficientnet",
        hidden_size=_VISION_WIDTH,
        vocab_size=sp.V,
        vocab_offset=sp.vision_offset,
        do_pooling=True,
        initializer_range=0.2,
    )
    cfg = Gemma3nConfig(
        text_config=text,
        audio_config=audio,
        vision_config=vision,
        vision_soft_tokens_per_image=_VISION_SOFT_TOKENS,
        audio_soft_tokens_per_image=_AUDIO_SOFT_TOKENS,
        initializer_range=0.2,
        tie_word_embeddings=tie,
        **sp.special_ids(),
    )
    cfg.dtype = dtype
    return cfg


def _add_noise_to_constants(model, generator) -> list[str]:
    """Give every constant parameter (norm weights, altup correct_output_scale, ...) non-trivial values."""
    import torch

    touched = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().float().reshape(-1)
            if flat.numel() == 1 or bool((flat == flat[0]).all()):
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
                base = flat[0].item() if flat.numel() else 0.0
                scale = 0.5 if base == 0.0 else 0.25 * abs(base)
                p.copy_((p.float() + scale * noise).to(p.dtype))
                touched.append(name)
    return touched


_LAUNCH_KEYS = {
    # key order of google/gemma-3n-E4B-it config.json (written by transformers 4.53.0.dev0)
    "top": ["architectures", "audio_config", "audio_soft_tokens_per_image", "audio_token_id", "boa_token_id",
            "boi_token_id", "eoa_token_id", "eoi_token_id", "eos_token_id", "image_token_id", "initializer_range",
            "model_type", "text_config", "torch_dtype", "transformers_version", "vision_config",
            "vision_soft_tokens_per_image"],
    "text_config": ["activation_sparsity_pattern", "altup_active_idx", "altup_coef_clip", "altup_correct_scale",
                    "altup_lr_multiplier", "altup_num_inputs", "attention_bias", "attention_dropout",
                    "final_logit_softcapping", "head_dim", "hidden_activation", "hidden_size",
                    "hidden_size_per_layer_input", "initializer_range", "intermediate_size", "laurel_rank",
                    "layer_types", "max_position_embeddings", "model_type", "num_attention_heads",
                    "num_hidden_layers", "num_key_value_heads", "num_kv_shared_layers", "query_pre_attn_scalar",
                    "rms_norm_eps", "rope_local_base_freq", "rope_scaling", "rope_theta", "sliding_window",
                    "torch_dtype", "use_cache", "vocab_size", "vocab_size_per_layer_input"],
    "audio_config": ["conf_attention_chunk_size", "conf_attention_context_left", "conf_attention_context_right",
                     "conf_attention_logit_cap", "conf_conv_kernel_size", "conf_num_attention_heads",
                     "conf_num_hidden_layers", "conf_positional_bias_size", "conf_reduction_factor",
                     "conf_residual_weight", "gradient_clipping", "hidden_size", "input_feat_size", "model_type",
                     "rms_norm_eps", "sscp_conv_channel_size", "sscp_conv_eps", "sscp_conv_kernel_size",
                     "sscp_conv_stride_size", "torch_dtype", "vocab_offset", "vocab_size"],
    "vision_config": ["architecture", "do_pooling", "hidden_size", "initializer_range", "label_names",
                      "model_type", "num_classes", "rms_norm_eps", "torch_dtype", "vocab_offset", "vocab_size"],
}


def to_launch_config(cfg: dict, *, end_of_turn_id: int = 106) -> dict:
    """Re-express a transformers-5 config.json dict the way the launch checkpoints wrote it (transformers 4.53).

    ``torch_dtype`` instead of ``dtype``, ``rope_theta``/``rope_local_base_freq``/``rope_scaling`` instead of
    ``rope_parameters``, a scalar ``intermediate_size``, ``sscp_conv_eps``, ``eos_token_id`` [1, <end_of_turn>] at
    the top, no keys the launch files do not have (``tie_word_embeddings`` is kept only when False).
    """
    cfg = copy.deepcopy(cfg)
    dtype = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    text = cfg["text_config"]
    rp = text.get("rope_parameters") or {}
    text["rope_theta"] = rp.get("full_attention", {}).get("rope_theta", 1_000_000.0)
    text["rope_local_base_freq"] = rp.get("sliding_attention", {}).get("rope_theta", 10_000.0)
    text["rope_scaling"] = None
    text.setdefault("altup_lr_multiplier", 1.0)
    text.setdefault("query_pre_attn_scalar", text["head_dim"])
    if isinstance(text.get("intermediate_size"), list) and len(set(text["intermediate_size"])) == 1:
        text["intermediate_size"] = text["intermediate_size"][0]
    audio = cfg["audio_config"]
    audio["sscp_conv_eps"] = audio.pop("sscp_conv_group_norm_eps", 1e-3)
    cfg["eos_token_id"] = [1, end_of_turn_id]
    cfg["transformers_version"] = "4.53.0.dev0"
    out = {}
    for key in _LAUNCH_KEYS["top"]:
        if key in ("text_config", "audio_config", "vision_config"):
            sub = cfg[key]
            sub["torch_dtype"] = dtype
            kept = {k: sub[k] for k in _LAUNCH_KEYS[key] if k in sub}
            if key == "text_config" and sub.get("tie_word_embeddings") is False:
                kept["tie_word_embeddings"] = False
            out[key] = kept
        elif key == "torch_dtype":
            out[key] = dtype
        else:
            out[key] = cfg[key]
    if cfg.get("tie_word_embeddings") is False:
        out["tie_word_embeddings"] = False
    return out


def _generation_config(sp: IdSpace) -> dict:
    return {
        "bos_token_id": 2,
        "cache_implementation": "hybrid",
        "do_sample": True,
        "eos_token_id": [1, sp.end_of_turn_id],
        "pad_token_id": 0,
        "top_k": 64,
        "top_p": 0.95,
        "transformers_version": "4.53.0.dev0",
    }


def build_base(
    path: str | Path,
    *,
    id_space: str = "small",
    dtype: str = "float32",
    tie: bool = True,
    seed: int = 0,
    config_style: str = "launch",
) -> Path:
    """Build and save a tiny random released-layout Gemma 3n checkpoint with its tokenizer and processor files.

    ``path`` must not exist or be empty.  ``config_style="launch"`` rewrites config.json the way the launch
    checkpoints have it (``torch_dtype``, ``rope_theta``, scalar ``intermediate_size`` ...), ``"v5"`` keeps what
    transformers 5 writes.  Returns ``path``.
    """
    import torch
    from transformers import Gemma3nForConditionalGeneration

    sp = get_id_space(id_space)
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be float32 or bfloat16, got {dtype!r}")
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(path)
    path.mkdir(parents=True, exist_ok=True)

    cfg = _config(sp, dtype=dtype, tie=tie)
    torch.manual_seed(seed)
    model = Gemma3nForConditionalGeneration(cfg)
    gen = torch.Generator().manual_seed(seed + 12345)
    _add_noise_to_constants(model, gen)
    with torch.no_grad():
        # nn.Embedding zeroes the padding row (id 0); a trained checkpoint's is not zero, and multimodal ids read
        # per-layer row 0, so give both row 0s values like any other row.
        for emb in (model.get_input_embeddings(), model.get_per_layer_input_embeddings()):
            w = emb.weight
            w[0] = torch.randn(w.shape[1], generator=gen) * w[1:].std()
    if not tie:
        with torch.no_grad():
            head = model.lm_head.weight
            head.copy_(torch.randn(head.shape, generator=gen) * 0.2)
    model = model.to(getattr(torch, dtype))
    model.eval()
    model.save_pretrained(path)
    del model

    if config_style == "launch":
        cfg_path = path / "config.json"
        _write_json(cfg_path, to_launch_config(json.loads(cfg_path.read_text()), end_of_turn_id=sp.end_of_turn_id))
    elif config_style != "v5":
        raise ValueError(f"config_style must be 'launch' or 'v5', got {config_style!r}")
    _write_json(path / "generation_config.json", _generation_config(sp))
    write_tokenizer_files(path, sp)
    _write_processor_files(path)
    return path


# --------------------------------------------------------------------------------------------------------------------
# extension, the way users do it
# --------------------------------------------------------------------------------------------------------------------


def read_tensors(path: str | Path) -> dict:
    """All tensors of a (possibly sharded) safetensors checkpoint folder, as torch tensors."""
    from safetensors.torch import load_file

    path = Path(path)
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def tensor_shards(path: str | Path) -> dict[str, str]:
    """``tensor name -> shard file name`` of a checkpoint folder."""
    from safetensors import safe_open

    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.exists():
        return dict(json.loads(index.read_text())["weight_map"])
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            out.update({k: f.name for k in h.keys()})
    return out


_EMBED = "model.language_model.embed_tokens.weight"
_PER_LAYER = "model.language_model.embed_tokens_per_layer.weight"
_LM_HEAD = "lm_head.weight"


def _bytes_of(t) -> int:
    return t.numel() * t.element_size()


def extend(
    base: str | Path,
    out: str | Path,
    new_tokens: list[str] | None = None,
    *,
    resize: bool = True,
    pad_to_multiple_of: int | None = None,
    untie: bool = False,
    max_shard_size: str | int | None = None,
    seed: int = 1,
    tokenizer_files: str = "v5",
    processor_files: str = "copy",
    config_style: str | None = None,
) -> Path:
    """Extend a released-layout checkpoint with ``new_tokens`` the way users do it with stock transformers.

    ``AutoTokenizer.from_pretrained(base)``, ``tokenizer.add_tokens(new_tokens)`` (ids ``T+V+A..``),
    ``model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=...)`` when ``resize``, then the new tokens'
    rows (``embed_tokens``, ``embed_tokens_per_layer`` when it has them, an untied ``lm_head``) get distinctive
    random "trained" values; ``untie`` unties ``lm_head`` (a copy of ``embed_tokens``; ``tie_word_embeddings=False``
    in the top and text configs so ``lm_head.weight`` is saved).  The model is saved with a ``max_shard_size`` small
    enough that ``embed_tokens`` and ``embed_tokens_per_layer`` land in different shards (asserted), the tokenizer
    with ``tokenizer.save_pretrained``; processor files and the base ``tokenizer.model`` are copied unchanged.

    ``tokenizer_files="v5"`` keeps what transformers 5 writes; ``"v4"`` rewrites the tokenizer files the way
    transformers 4.5x wrote them (added_tokens_decoder with the new tokens, special_tokens_map.json,
    added_tokens.json).  ``processor_files="copy"`` copies the base's processor_config.json /
    preprocessor_config.json / chat_template.jinja; ``"save"`` instead extends ``AutoProcessor.from_pretrained(base)
    .tokenizer`` and calls ``processor.save_pretrained(out)``, which in transformers 5 writes a single
    processor_config.json (feature extractor and image processor nested in it, no preprocessor_config.json),
    chat_template.jinja, tokenizer.json and tokenizer_config.json.  ``config_style`` ("launch"/"v5"/None = like the
    base) re-expresses config.json.
    """
    import torch
    from transformers import AutoTokenizer, Gemma3nForConditionalGeneration

    base, out = Path(base), Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(out)
    new_tokens = list(NEW_TOKENS if new_tokens is None else new_tokens)
    base_cfg = json.loads((base / "config.json").read_text())
    if config_style is None:
        config_style = "launch" if "torch_dtype" in base_cfg and "dtype" not in base_cfg else "v5"

    if processor_files == "save":
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(base)
        tokenizer = processor.tokenizer
    elif processor_files == "copy":
        processor = None
        tokenizer = AutoTokenizer.from_pretrained(base)
    else:
        raise ValueError(f"processor_files must be 'copy' or 'save', got {processor_files!r}")
    n_old = len(tokenizer)
    n_added = tokenizer.add_tokens(new_tokens)
    if n_added != len(new_tokens):
        raise ValueError("some new tokens already exist in the tokenizer")
    new_ids = tokenizer.convert_tokens_to_ids(new_tokens)
    assert new_ids == list(range(n_old, n_old + len(new_tokens))), new_ids

    model = Gemma3nForConditionalGeneration.from_pretrained(base)
    dtype = model.dtype
    text_cfg = model.config.get_text_config()
    if untie:
        with torch.no_grad():
            model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
        model.config.tie_word_embeddings = False
        text_cfg.tie_word_embeddings = False
    if resize:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=pad_to_multiple_of)

    gen = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    tied = sd[_LM_HEAD].data_ptr() == sd[_EMBED].data_ptr() if _LM_HEAD in sd else True
    with torch.no_grad():
        targets = [model.get_input_embeddings().weight]
        per_layer = model.get_per_layer_input_embeddings().weight
        targets.append(per_layer)
        if not tied:
            targets.append(model.lm_head.weight)
        for w in targets:
            for i in new_ids:
                if i < w.shape[0]:
                    w[i] = (torch.randn(w.shape[1], generator=gen) * 0.5 + 1.0).to(dtype)

    out.mkdir(parents=True, exist_ok=True)
    if max_shard_size is None:
        # About four shards, like the released E4B; fall back to "each table in a shard of its own" when the two
        # tables would share one.
        e, p = _bytes_of(model.get_input_embeddings().weight), _bytes_of(per_layer)
        total = sum(_bytes_of(t) for t in model.state_dict().values())
        candidates = [max(total // 4, 1024), max(min(e, p) - 1, 1024)]
    else:
        candidates = [max_shard_size]
    for size in candidates:
        model.save_pretrained(out, max_shard_size=size)
        shards = tensor_shards(out)
        if shards[_EMBED] != shards[_PER_LAYER]:
            break
        for f in list(out.glob("*.safetensors")) + list(out.glob("*.safetensors.index.json")):
            f.unlink()
    assert shards[_EMBED] != shards[_PER_LAYER], "embed_tokens and embed_tokens_per_layer share a shard"
    if not tied:
        assert _LM_HEAD in shards, "untied lm_head was not saved"
    del model

    if config_style == "launch":
        cfg_path = out / "config.json"
        sp_eot = tokenizer.convert_tokens_to_ids("<end_of_turn>")
        _write_json(cfg_path, to_launch_config(json.loads(cfg_path.read_text()), end_of_turn_id=sp_eot))
    if processor is not None:
        processor.save_pretrained(out)  # transformers 5: one processor_config.json + chat template + tokenizer
        copied = ["tokenizer.model", "generation_config.json"]
    else:
        tokenizer.save_pretrained(out)
        copied = PROCESSOR_FILES + ["tokenizer.model", "generation_config.json"]
    for name in copied:
        if (base / name).exists():
            shutil.copyfile(base / name, out / name)
    if tokenizer_files == "v4":
        _rewrite_tokenizer_files_v4(base, out, dict(zip(new_tokens, new_ids, strict=True)))
    elif tokenizer_files != "v5":
        raise ValueError(f"tokenizer_files must be 'v4' or 'v5', got {tokenizer_files!r}")
    return out


def _rewrite_tokenizer_files_v4(base: Path, out: Path, new: dict[str, int]) -> None:
    """Make ``out``'s tokenizer files look like transformers 4.5x's ``save_pretrained`` output."""
    cfg = json.loads((base / "tokenizer_config.json").read_text(encoding="utf-8"))
    decoder = cfg.setdefault("added_tokens_decoder", {})
    for s, i in new.items():
        decoder[str(i)] = {"content": s, **_ADDED_TOKEN_FLAGS, "normalized": True, "special": False}
    _write_json(out / "tokenizer_config.json", cfg)
    if (base / "special_tokens_map.json").exists():
        shutil.copyfile(base / "special_tokens_map.json", out / "special_tokens_map.json")
    _write_json(out / "added_tokens.json", dict(sorted(new.items(), key=lambda kv: kv[1])))


def build_demo(root: str | Path, new_tokens: list[str] | None = None) -> tuple[Path, Path]:
    """Build ``root/base`` (small id space) and ``root/extended`` (3 new tokens, resized) for ``make demo``."""
    root = Path(root)
    base = build_base(root / "base", id_space="small")
    extended = extend(base, root / "extended", new_tokens)
    return base, extended
