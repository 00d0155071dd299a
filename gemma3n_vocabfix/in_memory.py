"""The rewrite on a loaded model: `fix_model` and `add_tokens` (issue 8; strategies "shift" and "unused"; every init
mode).

A model extended the transformers way (`tokenizer.add_tokens` + `model.resize_token_embeddings`) is fixed where it is,
in memory, with the same layout (layout.py), the same row plan (rows.plan_table: the function-preserving rule) and
the same config and tokenizer renumbering (config_files.py, plan.py, tokenizer_files.py) as `vocabfix rewrite`:
- the vocabulary tables (`embed_tokens`, `embed_tokens_per_layer`, an untied `lm_head`) get their rows in the new
  order, in place (each Parameter keeps its identity, dtype, device and `requires_grad`; a tied `lm_head` stays
  tied because it is the same Parameter);
- `model.config` (and the text/vision/audio sub-configs), `model.generation_config` and every cached copy of a
  layout field in the modules (the embedders' `vocab_offset`, `num_embeddings`, `vocab_size`...) are updated;
- the tokenizer (or processor) is saved to a temporary folder, its files renumbered by the rewrite's own code, and
  loaded back as a new object of the same class: `VocabResult.tokenizer`.

torch and transformers are imported inside the functions only (`vocabfix inspect` must not pay for them).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import JSON_TOKENIZER_FILES, SENTENCEPIECE_FILE, Checkpoint, Weights, read_bytes, read_json
from .config_files import FieldChange, rewrite_config, rewrite_generation_config
from .errors import NotGemma3nError, UsageError
from .id_map import IdMap
from .layout import CANONICAL_NAMES, Layout, TableRole
from .placement import check_strategy
from .plan import check_initialisable, parse_init, resolve_init
from .rewrite import checked_layout
from .rows import CopyRows, InitRows, PadRow, TablePlan, plan_table
from .safetensors_header import TensorInfo

IN_MEMORY_LABEL = "the loaded model"


@dataclass
class VocabResult:
    """What `fix_model` / `add_tokens` did.

    `tokenizer`: the tokenizer or processor to use from now on (a new object of the class passed in, or the one
    passed in when nothing had to change); `token_ids`: the new ids of the appended tokens, in order;
    `id_map`: old id -> new id (`id_map(old)`); `changed`: whether the model was modified.
    """

    tokenizer: Any
    token_ids: list[int]
    id_map: IdMap
    changed: bool = True


def fix_model(model, tokenizer_or_processor, *, init: str = "mean", reinit: bool = False, strategy: str = "shift",
              slots: list[int] | None = None) -> VocabResult:
    """Put a loaded `Gemma3nForConditionalGeneration` (or a `peft.PeftModel` around one) that was extended the
    transformers way into the layout stock transformers runs, in place, and renumber its tokenizer.

    `init` / `reinit` as for `vocabfix rewrite --init / --reinit`: how rows the model does not have are made
    ("mean", "zeros", "normal", "subtoken", "copy:TOKEN"), and whether the appended tokens' rows it has are replaced.
    `strategy` / `slots` as for `vocabfix rewrite --strategy / --slots`: "shift" moves the appended tokens to the
    end of the text range and the image and audio ids up; "unused" puts each on an `<unusedN>` slot and keeps the
    released shapes, config and image/audio ids.

    Raises NotGemma3nError for another model, UsageError for tables it cannot re-row (quantized, offloaded, wrapped
    by an adapter) or a bad init, LayoutError / RewriteRefused when the layout cannot be reconciled (as
    `vocabfix rewrite` does).
    """
    parsed = parse_init(init, reinit)
    check_strategy(strategy, slots)
    base = _gemma3n_model(model)
    tables = _vocab_modules(base)
    with tempfile.TemporaryDirectory(prefix="vocabfix-") as tmp:
        folder = Path(tmp)
        tokenizer_or_processor.save_pretrained(folder)
        ckpt = _in_memory_checkpoint(base, tables, folder)
        layout = checked_layout(ckpt, strategy=strategy, slots=slots, tied=TableRole.LM_HEAD not in tables)
        moved = [layout.id_map(i) for i in layout.moved_ids]
        if layout.is_consistent:
            return VocabResult(tokenizer_or_processor, [], layout.id_map, changed=False)
        resolved = resolve_init(parsed, layout, folder / "tokenizer.json")
        plans = [plan_table(t, layout, resolved) for t in layout.tables]
        check_initialisable(plans)
        new_tokenizer = _renumber_tokenizer(ckpt, layout, folder, tokenizer_or_processor)
    _reorder_tables(base, tables, plans)
    _update_configs(base, layout)
    return VocabResult(new_tokenizer, moved, layout.id_map)


def add_tokens(model, tokenizer_or_processor, tokens: list[str], special: bool = False, strategy: str = "shift",
               init: str = "mean") -> VocabResult:
    """Add `tokens` to the tokenizer and the model so that nothing breaks: the new tokens go to the end of the text
    range (strategy "shift"), the vision and audio ids move up behind them, or each takes an `<unusedN>` slot of
    the text range, lowest ids first (strategy "unused": the config, shapes and image/audio ids stay as
    released), and the new rows of every vocabulary
    table are made by `init`: "mean" (of its text rows), "zeros", "normal" (transformers' mean_resizing), "subtoken"
    (the mean of the rows of the pieces the tokenizer split the token into before) or "copy:TOKEN" (that token's
    rows). Tokens the tokenizer already has keep their id.

    The object passed in is not modified: `result.tokenizer` is a new one of the same class. `result.token_ids` are
    the ids of `tokens`, in order. Raises UsageError for an unknown strategy, too few free `<unusedN>` slots or a
    bad init, and what `fix_model` raises.
    """
    check_strategy(strategy, None)
    parse_init(init)
    if isinstance(tokens, str) or not all(isinstance(t, str) and t for t in tokens):
        raise UsageError("tokens must be a list of non-empty strings")
    _vocab_modules(_gemma3n_model(model))  # refuse a model that cannot be fixed before touching anything
    with tempfile.TemporaryDirectory(prefix="vocabfix-") as tmp:
        tokenizer_or_processor.save_pretrained(tmp)
        extended = type(tokenizer_or_processor).from_pretrained(tmp)
    _text_tokenizer(extended).add_tokens(list(tokens), special_tokens=special)
    # The model is not resized: rows for the new ids are made by the plan (InitRows: no runtime could read them).
    result = fix_model(model, extended, init=init, strategy=strategy)
    result.token_ids = list(_text_tokenizer(result.tokenizer).convert_tokens_to_ids(list(tokens)))
    return result


# --- the model ---------------------------------------------------------------------------------------------------


def _gemma3n_model(model):
    """The Gemma3nForConditionalGeneration to fix: the model itself, or the base model of a PEFT wrapper."""
    from transformers import Gemma3nForConditionalGeneration

    seen = model
    for _ in range(3):  # PeftModel -> LoraModel -> the transformers model
        if isinstance(model, Gemma3nForConditionalGeneration):
            return model
        inner = model.get_base_model() if hasattr(model, "get_base_model") else getattr(model, "model", None)
        if inner is None or inner is model:
            break
        model = inner
    raise NotGemma3nError(f"{type(seen).__name__} is not a Gemma3nForConditionalGeneration; vocabfix fixes multimodal "
                          "Gemma 3n models", hint="pass the model loaded with Gemma3nForConditionalGeneration or "
                          "AutoModelForImageTextToText")


def _vocab_modules(base) -> dict[TableRole, Any]:
    """role -> the nn.Embedding / nn.Linear holding that table; no LM_HEAD when it is tied to embed_tokens."""
    import torch

    lm = base.model.language_model
    found = {TableRole.EMBED_TOKENS: lm.embed_tokens, TableRole.PER_LAYER: lm.embed_tokens_per_layer,
             TableRole.VISION: base.model.embed_vision.embedding, TableRole.AUDIO: base.model.embed_audio.embedding}
    if base.lm_head.weight is not lm.embed_tokens.weight:
        found[TableRole.LM_HEAD] = base.lm_head
    for role, module in found.items():
        kind = torch.nn.Linear if role is TableRole.LM_HEAD else torch.nn.Embedding
        if not isinstance(module, kind):
            raise UsageError(f"{role.value} is a {type(module).__name__}, not a plain {kind.__name__}: vocabfix cannot "
                             "re-row an adapter-wrapped or quantized table",
                             hint="fix the model before adding adapters (or merge them first)")
        weight = module.weight
        if type(weight).__name__ in ("Params4bit", "Int8Params") or not weight.is_floating_point() \
                or weight.dtype not in _torch_dtypes():
            raise UsageError(f"{role.value} is quantized ({type(weight).__name__} {weight.dtype}); vocabfix cannot "
                             "re-row a quantized table",
                             hint="load the model unquantized (bfloat16 or float32), fix it, then quantize")
        if weight.device.type == "meta":
            raise UsageError(f"{role.value} is offloaded (on the meta device); vocabfix needs its rows in memory",
                             hint="load the model without disk offload, fix it, then save it")
    return found


def _torch_dtypes() -> dict:
    """torch dtype -> safetensors dtype, for the floating-point tables the plan can re-row."""
    import torch

    return {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64"}


def _tensor_info(role: TableRole, weight) -> TensorInfo:
    """A stand-in for the safetensors header entry the table would have (the plan reads names, dtypes, shapes)."""
    dtype = _torch_dtypes()[weight.dtype]
    nbytes = weight.numel() * weight.element_size()
    return TensorInfo(CANONICAL_NAMES[role], dtype, tuple(weight.shape), Path(IN_MEMORY_LABEL), 0, nbytes)


def _in_memory_checkpoint(base, tables: dict[TableRole, Any], folder: Path) -> Checkpoint:
    """What analyse() needs, from the model's config and tables and the tokenizer files saved in `folder`."""
    weights = Weights(shards=[], index=None)
    for role, module in tables.items():
        info = _tensor_info(role, module.weight)
        weights.tensors[info.name] = info
    config = _as_json(base.config)
    files = {name: read_json(folder / name) if (folder / name).is_file() else None for name in JSON_TOKENIZER_FILES}
    sp = folder / SENTENCEPIECE_FILE
    return Checkpoint(
        root=Path(IN_MEMORY_LABEL), config=config, generation_config=None,
        tokenizer_json=files["tokenizer.json"], tokenizer_config=files["tokenizer_config.json"],
        added_tokens=files["added_tokens.json"], special_tokens_map=files["special_tokens_map.json"],
        sentencepiece=read_bytes(sp) if sp.is_file() else None, weights=weights,
        files=sorted(p.name for p in folder.iterdir() if p.is_file()))


# --- rows ----------------------------------------------------------------------------------------------------------


def table_reader(weight):
    """read(first, count) for init_rows.RowMaker: rows of a torch table as a float32 numpy array (float64 for a
    float64 table), copied to the CPU chunk by chunk."""
    import torch

    as_float = torch.float64 if weight.dtype == torch.float64 else torch.float32

    def read(first: int, count: int):
        return weight[first:first + count].detach().to("cpu", as_float).reshape(count, -1).numpy()
    return read


def _init_values(maker, seg: InitRows, weight):
    """`seg`'s rows as a tensor of `weight`'s dtype and device (torch's float32 -> bf16 rounding: the writer's)."""
    import torch

    chunks = [torch.from_numpy(values.copy()) for values in maker.rows(seg)]
    return torch.cat(chunks).reshape(seg.count, *weight.shape[1:]).to(weight.device, weight.dtype)


def reorder_rows(weight, plan: TablePlan):
    """The output table of `plan` made from the input table `weight` (a torch tensor): CopyRows are slices, PadRow
    repeats row 0, InitRows are made by init_rows.RowMaker (the writer's code) from `weight`'s rows.

    Leading rows that stay where they are (the text rows) are not copied: when the table does not grow, the other
    rows are written over the tail of `weight` itself and the result is a view of its first `rows_out` rows, so the
    largest table (embed_tokens_per_layer) is never held twice.
    """
    import torch

    from .init_rows import RowMaker

    segments = list(plan.segments)
    lead = segments[0].count if segments and segments[0] == CopyRows(0, segments[0].count) else 0
    if lead:
        segments = segments[1:]
    maker = RowMaker(plan, table_reader(weight)) if any(isinstance(s, InitRows) for s in segments) else None
    width = weight.shape[1:]
    parts = []
    for seg in segments:
        if isinstance(seg, CopyRows):
            parts.append(weight[seg.first_row:seg.first_row + seg.count])
        elif isinstance(seg, PadRow):
            parts.append(weight[:1].expand(seg.count, *width))
        elif isinstance(seg, InitRows):
            parts.append(_init_values(maker, seg, weight))
    if not parts:
        return weight[:plan.rows_out]
    tail = torch.cat(parts)  # a copy: safe to write over rows it was read from
    if plan.rows_out <= weight.shape[0]:
        weight[lead:plan.rows_out] = tail
        return weight[:plan.rows_out]
    return torch.cat([weight[:lead], tail])


def _reorder_tables(base, tables: dict[TableRole, Any], plans: list[TablePlan]) -> None:
    import torch

    by_role = {p.table.role: p for p in plans}
    with torch.no_grad():
        for role, module in tables.items():
            plan = by_role[role]
            if not plan.changed:
                continue
            param = module.weight
            param.data = reorder_rows(param.data, plan)  # the same Parameter: tying and requires_grad are kept
            param.grad = None
            if isinstance(module, torch.nn.Embedding):
                module.num_embeddings = plan.rows_out
            else:
                module.out_features = plan.rows_out


# --- configs -------------------------------------------------------------------------------------------------------


def _as_json(config) -> dict:
    """A config as config.json holds it (JSON keys: an id2label's int keys become strings)."""
    return json.loads(config.to_json_string(use_diff=False))


def _apply(target, changes: list[FieldChange]) -> None:
    for change in changes:
        *parents, key = change.key.split(".")
        node = target
        for p in parents:
            node = node[p] if isinstance(node, dict) else getattr(node, p)
        if isinstance(node, dict):
            node[key] = change.new
        else:
            setattr(node, key, change.new)


def _update_configs(base, layout: Layout) -> None:
    """config, generation config, and the copies of layout fields the modules made when they were built."""
    _, changes = rewrite_config(_as_json(base.config), layout)
    _apply(base.config, changes)
    text = base.config.get_text_config()
    for module in base.modules():  # a sub-module holding its own copy of a config (not the case in 5.24)
        config = getattr(module, "config", None)
        if config is not None and config is not base.config and type(config) is type(text) and config is not text:
            _apply(config, [FieldChange(c.file, c.key.split(".", 1)[1], c.old, c.new) for c in changes
                            if c.key.startswith("text_config.")])
    if getattr(base, "generation_config", None) is not None:
        _, gen_changes = rewrite_generation_config(_as_json(base.generation_config), layout.id_map)
        _apply(base.generation_config, gen_changes)
    inner, lm = base.model, base.model.language_model
    for owner in (base, inner, lm):
        if "vocab_size" in vars(owner):
            owner.vocab_size = layout.new_total
    inner.vocab_size_per_layer_input = layout.new_text_size
    inner.embed_vision.vocab_offset = layout.new_vision_offset
    inner.embed_audio.vocab_offset = layout.new_audio_offset
    for emb in (lm.embed_tokens, lm.embed_tokens_per_layer):
        if emb.padding_idx is not None:
            emb.padding_idx = layout.id_map(emb.padding_idx)
    if hasattr(lm, "padding_idx") and isinstance(lm.padding_idx, int):
        lm.padding_idx = layout.id_map(lm.padding_idx)


# --- the tokenizer -------------------------------------------------------------------------------------------------


def _text_tokenizer(tokenizer_or_processor):
    return getattr(tokenizer_or_processor, "tokenizer", tokenizer_or_processor)


def _renumber_tokenizer(ckpt: Checkpoint, layout: Layout, folder: Path, original):
    """The tokenizer files in `folder` renumbered as `vocabfix rewrite` renumbers them, loaded as a new object of
    `original`'s class."""
    from .plan import rewrite_small_files

    outputs, _ = rewrite_small_files(ckpt, layout)
    for name, content in outputs.items():
        if content is None or name == "config.json" or not (folder / name).is_file():
            continue
        parts = content if isinstance(content, list) else [content]
        (folder / name).write_bytes(b"".join(parts))
    return type(original).from_pretrained(folder)
