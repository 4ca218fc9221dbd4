"""Foreign weights: the reference implementation's checkpoint (`jepa-ep*.pth.tar`) -> our state dict.

Only key names and the patch-embedding shape differ; the frozen sin-cos table `emb_h` is not stored by us (it is
recomputed), so it is checked against our table instead of loaded.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from brainjepa.errors import CheckpointError
from brainjepa.io import no_such
from brainjepa.models.config import ModelConfig
from brainjepa.models.registry import heads_for

# (reference pattern, our name) per module; applied to the key after stripping a leading 'module.'.
_ENCODER_RENAMES = [
    (r"^pos_embed_proj\.predictor_pos_embed_proj\.", "pos_embed.proj."),
]
_PREDICTOR_RENAMES = [
    (r"^predictor_2dpe_proj\.predictor_pos_embed_proj\.", "pos_embed.proj."),
    (r"^predictor_blocks\.", "blocks."),
    (r"^predictor_embed\.", "embed."),
    (r"^predictor_norm\.", "norm."),
    (r"^predictor_proj\.", "proj."),
]
_FIXED_TABLES = re.compile(r"(^|\.)(emb_h|emb_w)$")
MODULES = ("encoder", "predictor", "target_encoder")


def read_reference_checkpoint(path: str | Path) -> dict[str, dict[str, Tensor]]:
    """Load the three state dicts of a reference checkpoint without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(no_such(path, "checkpoint file"))
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            flat = load_file(str(path))
            raw: dict[str, Any] = {m: {} for m in MODULES}
            for key, value in flat.items():
                module, _, rest = key.partition(".")
                if module in raw:
                    raw[module][rest] = value
        else:
            with warnings.catch_warnings():  # torch warns about pickle protocols on its way to refusing a file
                warnings.simplefilter("ignore", UserWarning)
                raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch advises turning the safe load off: never relayed
        raise CheckpointError(f"{path}: cannot read checkpoint: {unpickling_refusal(err)}") from None
    except Exception as err:  # torch/safetensors raise many types for corrupt files
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path}: cannot read checkpoint: empty file") from err
        reason = str(err).strip().splitlines()[0] if str(err).strip() else "truncated file"
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(err).__name__}: {reason})") from err
    missing = [m for m in ("encoder", "predictor") if not raw.get(m)]
    if missing:
        raise CheckpointError(f"{path}: not a Brain-JEPA checkpoint (missing {', '.join(missing)})")
    return {m: _strip_prefix(raw[m]) for m in MODULES if raw.get(m)}


def unpickling_refusal(err: pickle.UnpicklingError) -> str:
    """Why torch.load(weights_only=True) refused a file, without torch's advice to retry with the safe load off
    (which would run any code the file holds): the Python object it would have to create, or what stopped it."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    if found:
        return (f"it holds Python objects other than tensors ({found.group(1)}), which could run code and are never "
                "unpickled; use the official checkpoint or a .safetensors conversion of trusted weights")
    detail = [line.strip() for line in str(err).split("\n\n")[1:2] if line.strip() and "weights_only" not in line]
    return "not a PyTorch checkpoint of tensors" + (f" ({' '.join(detail[0].split())})" if detail else "")


def _strip_prefix(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def reference_rois(sds: dict[str, dict[str, Tensor]]) -> int | None:
    """The ROI count a reference checkpoint was trained with, read off its fixed temporal table: token
    ``roi * P + t`` holds the code of time patch t, so the code of patch 0 comes back every P rows (None: no
    table, or no period)."""
    table = sds["encoder"].get("pos_embed_proj.emb_h")
    if table is None or table.ndim != 2:
        return None
    again = torch.isclose(table, table[:1], atol=1e-6).all(dim=1).nonzero().flatten().tolist()
    period = again[1] if len(again) > 1 else len(table)
    return len(table) // period if len(table) % period == 0 else None


def infer_config(
    sds: dict[str, dict[str, Tensor]], num_rois: int, *, num_heads: int | None = None,
    pred_num_heads: int | None = None,
) -> ModelConfig:
    """Read every dimension off the weights; head counts (invisible in weights) come from presets or arguments."""
    enc, pred = sds["encoder"], sds["predictor"]
    try:
        embed_dim, _, _, patch_size = enc["patch_embed.proj.weight"].shape
        depth = 1 + max(int(k.split(".")[1]) for k in enc if k.startswith("blocks."))
        pred_depth = 1 + max(int(k.split(".")[1]) for k in pred if k.startswith("predictor_blocks."))
        pred_embed_dim = pred["predictor_embed.weight"].shape[0]
        mlp_ratio = enc["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim
        table = enc["pos_embed_proj.emb_h"]
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"unexpected reference checkpoint layout: {err}") from err
    if table.shape[0] % num_rois:
        raise CheckpointError(
            f"checkpoint has {table.shape[0]} tokens, not a multiple of the gradient's {num_rois} ROIs"
        )
    mapping = "pos_embed_proj.predictor_pos_embed_proj.weight" in enc
    if num_heads is not None and not (isinstance(num_heads, int) and num_heads >= 1 and embed_dim % num_heads == 0):
        raise CheckpointError(f"num_heads must be a positive divisor of the encoder width {embed_dim}, got {num_heads}")
    heads = num_heads or heads_for(embed_dim, depth)
    if heads is None:
        raise CheckpointError(
            f"cannot tell the number of attention heads of a {embed_dim}-d, depth-{depth} encoder from its weights "
            "(it matches no preset); load it once in Python with BrainJEPA.load(path, gradient=..., num_heads=N) and "
            "save_pretrained(folder): commands take the folder"
        )
    return ModelConfig(
        num_rois=num_rois,
        num_frames=table.shape[0] // num_rois * patch_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        qkv_bias="blocks.0.attn.qkv.bias" in enc,
        pred_embed_dim=pred_embed_dim,
        pred_depth=pred_depth,
        pred_num_heads=pred_num_heads,
        gradient_dim=enc["pos_embed_proj.predictor_pos_embed_proj.weight"].shape[1] if mapping else 30,
        pos_embed="mapping" if mapping else "sincos",
    )


def convert_reference_state_dict(module: str, sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Rename one reference module's keys to ours. Returns (weights, fixed sin-cos tables by our name)."""
    renames = _PREDICTOR_RENAMES if module == "predictor" else _ENCODER_RENAMES
    out, tables = {}, {}
    for key, value in sd.items():
        if _FIXED_TABLES.search(key):
            tables[key] = value
            continue
        new = key
        for pattern, repl in renames:
            new = re.sub(pattern, repl, new)
        if new == "patch_embed.proj.weight" and value.ndim == 4:
            value = value.reshape(value.shape[0], -1)
        out[new] = value
    return out, tables
