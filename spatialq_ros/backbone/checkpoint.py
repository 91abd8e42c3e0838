"""Loading DINOv2 and DINOv3 checkpoints: the official torch-hub `.pth` files and Hugging Face `Dinov2Model` /
`DINOv3ViTModel` safetensors (folder or bare file).

Family, layout, size, patch and registers are read from the tensors themselves. Every problem with a file is one
SpatialqError naming the file, never a traceback from torch or safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ..errors import SpatialqError
from ..hashing import file_sha256
from .archs import HEADS_BY_DIM, ViTConfig, arch_name
from .layers.rope import rope_periods
from .layers.swiglu_ffn import swiglu_hidden
from .synthetic import synthetic_state_dict
from .vit import DinoVisionTransformer

DEFAULT_CHECKPOINT = "dinov2_vits14_pretrain.pth"
SYNTHETIC_SEED = 0
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    arch: str
    config: ViTConfig
    layout: str  # "official" | "huggingface" | "synthetic"
    sha256: str
    trained: bool

    @property
    def num_register_tokens(self) -> int:
        return self.config.num_register_tokens


def load_backbone(path: str | os.PathLike) -> tuple[DinoVisionTransformer, CheckpointInfo]:
    """Checkpoint file or Hugging Face folder -> eval-mode model on CPU and what it is."""
    weights_file, hf_config = _resolve(Path(path))
    raw = _read_tensors(weights_file)
    state, layout = to_official_layout(raw, weights_file, hf_config)
    config = infer_config(state, weights_file, hf_config)
    model = DinoVisionTransformer(config)
    _check_and_load(model, state, weights_file)
    info = CheckpointInfo(str(weights_file), arch_name(config), config, layout, file_sha256(weights_file), True)
    return model.eval(), info


def default_backbone() -> tuple[DinoVisionTransformer, CheckpointInfo]:
    """models/dinov2_vits14_pretrain.pth when present; otherwise the seeded UNTRAINED ViT-S/14."""
    real = find_default_checkpoint()
    if real is not None:
        return load_backbone(real)
    return synthetic_backbone()


def synthetic_backbone(arch: str = "vits14") -> tuple[DinoVisionTransformer, CheckpointInfo]:
    state = synthetic_state_dict(arch, seed=SYNTHETIC_SEED)
    config = infer_config(state, Path("<synthetic>"), None)
    model = DinoVisionTransformer(config)
    model.load_state_dict(to_torch_state(state))
    digest = hashlib.sha256(f"synthetic:{arch}:{SYNTHETIC_SEED}".encode()).hexdigest()
    return model.eval(), CheckpointInfo("<synthetic>", arch_name(config), config, "synthetic", digest, False)


def named_backbone(name: str) -> tuple[DinoVisionTransformer, CheckpointInfo]:
    """A model of the manifest (`spatialq models list`) by name: its file when present in the models folder,
    otherwise the seeded UNTRAINED model of its arch."""
    from ..zoo.manifest import find_entry, load_manifest

    entry = find_entry(name, load_manifest())
    real = find_checkpoint(entry.file)
    return load_backbone(real) if real is not None else synthetic_backbone(entry.arch)


def backbone_for(model: str | None) -> tuple[DinoVisionTransformer, CheckpointInfo]:
    """What `--model` names: nothing (the default), a checkpoint path, or a manifest model name such as
    `dinov3_vits16` when no file of that name exists."""
    if model is None:
        return default_backbone()
    if not Path(model).exists():
        from ..zoo.manifest import load_manifest

        if model in load_manifest():
            return named_backbone(model)
    return load_backbone(model)


def find_default_checkpoint() -> Path | None:
    return find_checkpoint(DEFAULT_CHECKPOINT)


def find_checkpoint(file_name: str) -> Path | None:
    """file_name in $SPATIALQ_MODELS_DIR, ./models or the source checkout's models/, first found."""
    dirs = [os.environ.get("SPATIALQ_MODELS_DIR"), "models", Path(__file__).resolve().parents[2] / "models"]
    for d in dirs:
        if d and (Path(d) / file_name).is_file():
            return Path(d) / file_name
    return None


def _resolve(path: Path) -> tuple[Path, dict | None]:
    if not path.exists():
        raise SpatialqError(f"{path}: no such checkpoint file or folder")
    if path.is_dir():
        config_file = path / "config.json"
        hf_config = _read_hf_config(config_file) if config_file.is_file() else None
        for name in HF_WEIGHT_FILES:
            if (path / name).is_file():
                return path / name, hf_config
        raise SpatialqError(f"{path}: folder has no {' or '.join(HF_WEIGHT_FILES)}")
    sibling = path.parent / "config.json"
    hf_config = _read_hf_config(sibling) if path.suffix == ".safetensors" and sibling.is_file() else None
    return path, hf_config


def _read_hf_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SpatialqError(f"{path}: unreadable config.json ({exc})") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.stat().st_size == 0:
        raise SpatialqError(f"{path}: empty file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(path))
        else:
            tensors = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for damaged files
        kind = type(exc).__name__
        raise SpatialqError(f"{path}: cannot read checkpoint, truncated or corrupt ({kind})") from None
    return _unwrap(tensors, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Training checkpoints nest the weights ({'model': ...}, {'teacher': ...}); hub files do not."""
    for key in ("teacher", "model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SpatialqError(f"{path}: not a state dict of tensors")
    return {re.sub(r"^(module\.|backbone\.)", "", k): v for k, v in obj.items()}


def to_official_layout(state: Mapping[str, torch.Tensor], path: Path, hf_config: dict | None = None
                       ) -> tuple[dict[str, torch.Tensor], str]:
    """Any known layout -> the official one of its family (DINOv2 or DINOv3), and which layout it was."""
    if "cls_token" in state and "patch_embed.proj.weight" in state:
        return dict(state), "official"
    cls_key = next((k for k in state if k.endswith("embeddings.cls_token")), None)
    if cls_key is None:
        sample = ", ".join(sorted(state)[:3]) or "no tensors"
        raise SpatialqError(f"{path}: not a DINOv2/DINOv3 checkpoint (keys like {sample})")
    prefix = cls_key[: -len("embeddings.cls_token")]
    inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if "embeddings.patch_embeddings.weight" in inner:  # DINOv3ViTModel: a bare Conv2d, no `.projection`
        return from_huggingface_dinov3(inner, path, hf_config), "huggingface"
    return from_huggingface(inner), "huggingface"


_HF_RENAMES = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.mask_token$", "mask_token"),
    (r"^embeddings\.register_tokens$", "register_tokens"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.layer_scale1\.lambda1$", r"blocks.\1.ls1.gamma"),
    (r"^encoder\.layer\.(\d+)\.layer_scale2\.lambda1$", r"blocks.\1.ls2.gamma"),
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_in\.", r"blocks.\1.mlp.w12."),
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_out\.", r"blocks.\1.mlp.w3."),
    (r"^encoder\.layer\.(\d+)\.(norm1|norm2|mlp\.fc1|mlp\.fc2)\.", r"blocks.\1.\2."),
    (r"^layernorm\.", "norm."),
]
_HF_QKV = re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$")


def from_huggingface(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF names -> official names; separate q, k, v are concatenated into one qkv (in that order)."""
    out, qkv = _rename(state, _HF_RENAMES, _HF_QKV, ("query", "key", "value"))
    for (block, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            out[f"encoder.layer.{block}.attention.attention.{kind}"] = next(iter(parts.values()))
            continue
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return out


# transformers' DINOv3ViTModel (as its convert_dinov3_vit_to_hf.py writes it) -> official DINOv3 names.
_HF3_RENAMES = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.mask_token$", "mask_token"),
    (r"^embeddings\.register_tokens$", "storage_tokens"),
    (r"^embeddings\.patch_embeddings\.", "patch_embed.proj."),
    (r"^layer\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
    (r"^layer\.(\d+)\.layer_scale(1|2)\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (r"^layer\.(\d+)\.mlp\.gate_proj\.", r"blocks.\1.mlp.w1."),
    (r"^layer\.(\d+)\.mlp\.down_proj\.", r"blocks.\1.mlp.DOWN."),
    (r"^layer\.(\d+)\.mlp\.up_proj\.", r"blocks.\1.mlp.UP."),
    (r"^layer\.(\d+)\.(norm1|norm2)\.", r"blocks.\1.\2."),
    (r"^norm\.", "norm."),
]
_HF3_QKV = re.compile(r"^layer\.(\d+)\.attention\.(q|k|v)_proj\.(weight|bias)$")


def from_huggingface_dinov3(state: Mapping[str, torch.Tensor], path: Path, hf_config: dict | None
                            ) -> dict[str, torch.Tensor]:
    """DINOv3ViTModel names -> official ones. HF keeps no key bias where the official model masks it: the
    missing k bias becomes zeros with the official bias_mask. The RoPE periods, not stored by HF (its inv_freq
    is recomputed), are computed from rope_theta (default 100)."""
    state = {k: v for k, v in state.items() if not k.startswith("rope_embeddings.")}
    out, qkv = _rename(state, _HF3_RENAMES, _HF3_QKV, ("q", "k", "v"))
    gated = any(".mlp.w1." in k for k in out)
    for key in [k for k in out if ".mlp.UP." in k or ".mlp.DOWN." in k]:
        names = {"UP": "w2", "DOWN": "w3"} if gated else {"UP": "fc1", "DOWN": "fc2"}
        part = "UP" if ".mlp.UP." in key else "DOWN"
        out[key.replace(f".mlp.{part}.", f".mlp.{names[part]}.")] = out.pop(key)
    if "mask_token" in out:
        out["mask_token"] = out["mask_token"].reshape(1, -1)
    for (block, kind), parts in qkv.items():
        if kind == "bias" and set(parts) == {"q", "v"}:
            zeros = torch.zeros_like(parts["q"])
            out[f"blocks.{block}.attn.qkv.bias"] = torch.cat([parts["q"], zeros, parts["v"]])
            ones = torch.ones_like(zeros)
            out[f"blocks.{block}.attn.qkv.bias_mask"] = torch.cat([ones, zeros, ones])
        elif set(parts) == {"q", "k", "v"}:
            out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
        else:
            out[f"layer.{block}.attention.{next(iter(parts))}_proj.{kind}"] = next(iter(parts.values()))
    if "cls_token" in out:
        dim = out["cls_token"].shape[-1]
        heads = _heads(dim, path, hf_config)
        out["rope_embed.periods"] = rope_periods(dim // heads, float((hf_config or {}).get("rope_theta", 100.0)))
    return out


def _rename(state: Mapping[str, torch.Tensor], renames: list[tuple[str, str]], qkv_pattern: re.Pattern,
            parts: tuple[str, str, str]) -> tuple[dict[str, torch.Tensor], dict[tuple[str, str], dict]]:
    """Renamed tensors, and the separate q/k/v projections gathered by (block, weight|bias) for concatenation;
    a name no rule knows is kept as it is, for the strict key check to report."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = qkv_pattern.match(key)
        if match and match.group(2) in parts:
            qkv.setdefault((match.group(1), match.group(3)), {})[match.group(2)] = value
            continue
        for pattern, repl in renames:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            out[key] = value
    return out, qkv


def _heads(dim: int, path: Path, hf_config: dict | None) -> int:
    heads = (hf_config or {}).get("num_attention_heads") or HEADS_BY_DIM.get(dim)
    if heads is None:
        raise SpatialqError(f"{path}: unknown width {dim}; give a config.json with num_attention_heads")
    return int(heads)


def infer_config(state: Mapping[str, object], path: Path, hf_config: dict | None) -> ViTConfig:
    """The architecture, read from the tensors: DINOv3 by its RoPE periods, DINOv2 by its position table."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise SpatialqError(f"{path}: not a DINOv2/DINOv3 checkpoint (missing {key})")
        return tuple(state[key].shape)  # type: ignore[attr-defined]

    dim = shape("cls_token")[-1]
    patch = shape("patch_embed.proj.weight")[-1]
    rope = "rope_embed.periods" in state
    if not rope:
        pos = shape("pos_embed")[1] - 1
        grid = int(round(pos**0.5))
        if grid * grid != pos:
            raise SpatialqError(f"{path}: pos_embed has {pos} positions, not a square grid")
    depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    if depth == 0:
        raise SpatialqError(f"{path}: not a DINOv2/DINOv3 checkpoint (no transformer blocks)")
    tokens = next((k for k in ("register_tokens", "storage_tokens") if k in state), None)
    registers = shape(tokens)[1] if tokens else 0
    swiglu = "blocks.0.mlp.w12.weight" in state or "blocks.0.mlp.w1.weight" in state
    hidden = shape("blocks.0.mlp.w3.weight")[1] if swiglu else shape("blocks.0.mlp.fc1.weight")[0]
    heads = _heads(dim, path, hf_config)
    if not rope:
        mlp_ratio = 4.0 if swiglu else hidden / dim
        antialias, offset = (True, 0.0) if registers else (False, 0.1)
        return ViTConfig(dim, depth, heads, mlp_ratio, "swiglu" if swiglu else "mlp", registers, patch, grid,
                         antialias, offset)
    mlp_ratio = hidden * 1.5 / dim if swiglu else hidden / dim  # SwiGLU keeps 2/3 of dim * ratio
    if swiglu and swiglu_hidden(dim, mlp_ratio) != hidden:
        raise SpatialqError(f"{path}: SwiGLU width {hidden} is not one of the official ones for width {dim}")
    periods = state["rope_embed.periods"]
    head_dim = dim // heads
    if tuple(periods.shape) != (head_dim // 4,):  # type: ignore[attr-defined]
        raise SpatialqError(f"{path}: tensor rope_embed.periods has shape {tuple(periods.shape)}, "  # type: ignore
                            f"expected {(head_dim // 4,)}")
    base = (hf_config or {}).get("rope_theta") or (
        round(float(periods[1]) ** (head_dim / 4), 3) if head_dim >= 8 else 100.0)  # type: ignore[index]
    eps = float((hf_config or {}).get("layer_norm_eps", 1e-5))
    return ViTConfig(dim, depth, heads, mlp_ratio, "swiglu" if swiglu else "mlp", registers, patch, pos_grid=0,
                     pos_encoding="rope", rope_base=float(base), mask_k_bias="blocks.0.attn.qkv.bias_mask" in state,
                     layer_norm_eps=eps)


def _check_and_load(model: DinoVisionTransformer, state: dict[str, torch.Tensor], path: Path) -> None:
    state = model.to_model_layout(state)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise SpatialqError(f"{path}: missing tensor {missing[0]}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    if unexpected:
        raise SpatialqError(f"{path}: unexpected tensor {unexpected[0]}, not part of a {arch_name(model.config)}")
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise SpatialqError(f"{path}: tensor {key} has shape {tuple(state[key].shape)}, expected {tuple(ref.shape)}")
        if not state[key].is_floating_point():
            raise SpatialqError(f"{path}: tensor {key} is {state[key].dtype}, expected floating point")
    model.load_state_dict({k: v.float() for k, v in state.items()})


def to_torch_state(state: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
