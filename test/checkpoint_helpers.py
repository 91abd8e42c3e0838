"""Checkpoint files in the real key layouts, built from seeded weights (no real weights exist here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from spatialq_ros.backbone.archs import ARCHS, ViTConfig
from spatialq_ros.backbone.checkpoint import load_backbone, to_torch_state
from spatialq_ros.backbone.synthetic import synthetic_state_dict
from spatialq_ros.backbone.vit import DinoVisionTransformer


def write_official_pth(path: Path, state: dict[str, np.ndarray]) -> Path:
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    return path


def to_huggingface(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Official names -> the names transformers' Dinov2Model / Dinov2WithRegistersModel save."""
    out: dict[str, np.ndarray] = {}
    renames = {
        "cls_token": "embeddings.cls_token",
        "mask_token": "embeddings.mask_token",
        "register_tokens": "embeddings.register_tokens",
        "pos_embed": "embeddings.position_embeddings",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
        "norm.weight": "layernorm.weight",
        "norm.bias": "layernorm.bias",
    }
    block_parts = {
        "attn.proj": "attention.output.dense",
        "ls1.gamma": "layer_scale1.lambda1",
        "ls2.gamma": "layer_scale2.lambda1",
        "mlp.w12": "mlp.weights_in",
        "mlp.w3": "mlp.weights_out",
    }
    for key, value in state.items():
        if key in renames:
            out[renames[key]] = value
            continue
        _, i, rest = key.split(".", 2)
        pre = f"encoder.layer.{i}."
        if rest.startswith("attn.qkv."):
            kind = rest.rsplit(".", 1)[1]
            for name, part in zip(("query", "key", "value"), np.split(value, 3, axis=0)):
                out[f"{pre}attention.attention.{name}.{kind}"] = np.ascontiguousarray(part)
            continue
        for ours, theirs in block_parts.items():
            if rest.startswith(ours):
                rest = theirs + rest[len(ours):]
                break
        out[pre + rest] = value
    return out


def write_huggingface_folder(folder: Path, state: dict[str, np.ndarray], arch: str) -> Path:
    """A folder like `save_pretrained` writes: config.json + model.safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    config = ARCHS[arch]
    registers = config.num_register_tokens
    json_config = {
        "model_type": "dinov2_with_registers" if registers else "dinov2",
        "architectures": ["Dinov2WithRegistersModel" if registers else "Dinov2Model"],
        "hidden_size": config.embed_dim,
        "num_hidden_layers": 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks.")),
        "num_attention_heads": config.num_heads,
        "mlp_ratio": 4,
        "patch_size": 14,
        "image_size": 518,
        "layer_norm_eps": 1e-6,
        "use_swiglu_ffn": config.ffn == "swiglu",
        **({"num_register_tokens": registers} if registers else {}),
    }
    (folder / "config.json").write_text(json.dumps(json_config, indent=2))
    save_file(to_huggingface(state), str(folder / "model.safetensors"))
    return folder


def to_huggingface_dinov3(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Official DINOv3 names -> the names transformers' DINOv3ViTModel saves (its convert_dinov3_vit_to_hf.py):
    q/k/v/o projections with no key bias, gate/up/down MLPs, no bias_mask, no RoPE periods, mask_token (1, 1, C)."""
    out: dict[str, np.ndarray] = {}
    renames = {
        "cls_token": "embeddings.cls_token",
        "storage_tokens": "embeddings.register_tokens",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.bias",
        "norm.weight": "norm.weight",
        "norm.bias": "norm.bias",
    }
    block_parts = {"attn.proj": "attention.o_proj", "ls1.gamma": "layer_scale1.lambda1",
                   "ls2.gamma": "layer_scale2.lambda1", "mlp.fc1": "mlp.up_proj", "mlp.fc2": "mlp.down_proj",
                   "mlp.w1": "mlp.gate_proj", "mlp.w2": "mlp.up_proj", "mlp.w3": "mlp.down_proj"}
    for key, value in state.items():
        if key in renames:
            out[renames[key]] = value
            continue
        if key == "mask_token":
            out["embeddings.mask_token"] = value.reshape(1, 1, -1)
            continue
        if key == "rope_embed.periods" or key.endswith("bias_mask"):
            continue
        _, i, rest = key.split(".", 2)
        pre = f"layer.{i}."
        if rest.startswith("attn.qkv."):
            kind = rest.rsplit(".", 1)[1]
            for name, part in zip("qkv", np.split(value, 3, axis=0)):
                if not (kind == "bias" and name == "k"):
                    out[f"{pre}attention.{name}_proj.{kind}"] = np.ascontiguousarray(part)
            continue
        for ours, theirs in block_parts.items():
            if rest == ours or rest.startswith(ours + "."):
                rest = theirs + rest[len(ours):]
                break
        out[pre + rest] = value
    return out


def write_huggingface_dinov3_folder(folder: Path, state: dict[str, np.ndarray], arch: str) -> Path:
    """A folder like DINOv3ViTModel.save_pretrained writes: config.json + model.safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    config = ARCHS[arch]
    gated = config.ffn == "swiglu"
    hidden = state["blocks.0.mlp.w3.weight" if gated else "blocks.0.mlp.fc1.weight"].shape[1 if gated else 0]
    json_config = {
        "model_type": "dinov3_vit", "architectures": ["DINOv3ViTModel"],
        "hidden_size": config.embed_dim, "intermediate_size": hidden,
        "num_hidden_layers": 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks.")),
        "num_attention_heads": config.num_heads, "patch_size": 16, "image_size": 224, "layer_norm_eps": 1e-5,
        "rope_theta": 100.0, "num_register_tokens": config.num_register_tokens, "use_gated_mlp": gated,
        "hidden_act": "silu" if gated else "gelu", "query_bias": True, "key_bias": False, "value_bias": True,
    }
    (folder / "config.json").write_text(json.dumps(json_config, indent=2))
    save_file(to_huggingface_dinov3(state), str(folder / "model.safetensors"))
    return folder


def outlier_model(depth: int, arch: str = "vits14") -> DinoVisionTransformer:
    """The seeded model with trained-like outliers (synthetic.py) of any arch, DINOv2 or DINOv3, cut to `depth`
    blocks, in eval mode."""
    config = ViTConfig(**{**ARCHS[arch].__dict__, "depth": depth})
    model = DinoVisionTransformer(config)
    model.load_state_dict(to_torch_state(synthetic_state_dict(config, seed=0, outliers=True)))
    return model.eval()


def assert_one_line_errors(folder: Path, problems: dict[str, str]) -> None:
    """Loading each file of `folder` named in `problems` fails with one line naming the file and its problem."""
    from spatialq_ros.errors import SpatialqError

    for name, problem in problems.items():
        with pytest.raises(SpatialqError) as err:
            load_backbone(folder / name)
        message = str(err.value)
        assert name in message and problem in message and "\n" not in message, message
