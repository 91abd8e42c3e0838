"""The W4A8 artifact folder: quant.json, packed weights, and the ONNX deployables.

Layout (see README): quant.json (method, bits, every scale, source and calibration fingerprints,
versions), weights.safetensors (folded float tensors + 4-bit codes packed two per byte, or int8 codes for the layers
calibration gave 7 bits + per-channel scales + the float weight columns of massive-activation input channels),
model.onnx (INT8 QDQ, 4-bit-valued weights: TensorRT's input), model_int4.onnx (weights stored as
INT4), fp32.onnx (the unquantized source, same inputs and outputs).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import platform
from pathlib import Path

import numpy as np
import onnx
import torch
from safetensors.numpy import save_file

from .. import __version__
from ..backbone.pos_embed import interpolate_pos_embed
from ..backbone.vit import DinoVisionTransformer
from .fake_quant import codes, signed_range
from .onnx_graph import GraphSpec, LinearWeights, build_graph
from .pack import pack_int4
from .placement import linear_names
from .qlinear import QuantLinear
from .qwt import CompensatedBlock

FORMAT = "spatialq-w4a8"
FORMAT_VERSION = 1
ONNX_FILES = {"qdq": "model.onnx", "int4": "model_int4.onnx", "cpu": "model_cpu.onnx", "fp32": "fp32.onnx"}


def on_cpu(model: DinoVisionTransformer) -> DinoVisionTransformer:
    """The model itself when all of it is on the CPU, else a CPU copy: artifacts are written from CPU tensors,
    wherever the model was calibrated."""
    if all(t.device.type == "cpu" for t in itertools.chain(model.parameters(), model.buffers())):
        return model
    return copy.deepcopy(model).cpu()


def _block(model: DinoVisionTransformer, i: int):
    block = model.blocks[i]
    return block.block if isinstance(block, CompensatedBlock) else block


def _module(model: DinoVisionTransformer, name: str):
    if name.startswith("blocks."):
        _, i, rest = name.split(".", 2)
        return _block(model, int(i)).get_submodule(rest)
    return model.get_submodule(name)


@torch.no_grad()
def float_tensors(model: DinoVisionTransformer) -> dict[str, np.ndarray]:
    """Every non-Linear tensor in official names (+ QwT corrections); a RoPE model has its periods instead of a
    pos_embed."""
    out = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()
           if k in ("cls_token", "pos_embed", "rope_embed.periods", "register_tokens", "mask_token", "norm.weight",
                    "norm.bias")}
    for i, block in enumerate(model.blocks):
        inner = _block(model, i)
        for part in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "ls1.gamma", "ls2.gamma"):
            out[f"blocks.{i}.{part}"] = inner.get_parameter(part).detach().numpy().astype(np.float32)
        if isinstance(block, CompensatedBlock):
            out[f"blocks.{i}.qwt.weight"] = block.qwt.weight.detach().numpy().astype(np.float32)
            out[f"blocks.{i}.qwt.bias"] = block.qwt.bias.detach().numpy().astype(np.float32)
    return out


@torch.no_grad()
def linear_weights(model: DinoVisionTransformer) -> dict[str, LinearWeights]:
    out = {}
    for name in linear_names(model):
        module = _module(model, name)
        inner = module.inner if isinstance(module, QuantLinear) else module
        weight = inner.weight.detach().reshape(inner.weight.shape[0], -1)
        bias = inner.bias.detach().numpy().astype(np.float32)
        if isinstance(module, QuantLinear) and module.weight_scale.numel():
            scale = module.weight_scale
            weight = module.quantizable_weight().detach().reshape(weight.shape)
            float_part = {}
            if module.float_weight is not None:
                float_part = {"float_channels": module.float_channels.numpy().astype(np.int64),
                              "float_weight": module.float_weight.detach().numpy().astype(np.float32)}
            if module.input_scale.numel():  # per input channel -> per input feature (the conv's (c, ky, kx) order)
                per = weight.shape[1] // module.input_scale.numel()
                float_part["input_affine"] = tuple(np.repeat(t.numpy().astype(np.float32), per)
                                                   for t in (module.input_scale, module.input_shift))
            grid = signed_range(module.weight_bits)
            out[name] = LinearWeights(None, bias, codes(weight, scale[:, None], grid).numpy(),
                                      scale.numpy().astype(np.float32), float(module.act_scale.abs()),
                                      weight_bits=module.weight_bits, act_zero_point=-module.act_low, **float_part)
        else:
            out[name] = LinearWeights(weight.numpy().astype(np.float32), bias)
    return out


def graph_spec(model: DinoVisionTransformer, size: tuple[int, int], facet_layer: int) -> GraphSpec:
    c = model.config
    return GraphSpec(c.embed_dim, c.depth, c.num_heads, c.ffn, c.num_register_tokens, size, facet_layer, c.patch_size,
                     c.pos_encoding, c.layer_norm_eps)


def position_constants(model: DinoVisionTransformer, size: tuple[int, int]
                       ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """What the graph of a fixed (W, H) embeds for positions: the interpolated pos_embed, or the RoPE (sin, cos)."""
    width, height = size
    gh, gw = height // model.patch_size, width // model.patch_size
    rope = model.rope_tables(gh, gw)
    if rope is not None:
        return tuple(t.numpy() for t in rope)
    return interpolate_pos_embed(model.pos_embed, gh, gw, model.config).numpy()


@torch.no_grad()
def export_onnx(model: DinoVisionTransformer, size: tuple[int, int], facet_layer: int, kind: str) -> onnx.ModelProto:
    model = on_cpu(model)
    return build_graph(graph_spec(model, size, facet_layer), float_tensors(model), linear_weights(model),
                       position_constants(model, size), kind)


def write_artifact(folder: Path, qmodel: DinoVisionTransformer, fp32_model: DinoVisionTransformer,
                   meta: dict, size: tuple[int, int], facet_layer: int) -> dict:
    """Write everything into `folder` (an empty temp folder: the caller renames it when all is done).
    The models may be on any device: what is written comes from CPU copies."""
    qmodel, fp32_model = on_cpu(qmodel), on_cpu(fp32_model)
    tensors = float_tensors(qmodel)
    linears = linear_weights(qmodel)
    packed = dict(tensors)
    act_scales, act_zero_points = {}, {}  # zero point: the uint8 code of 0.0 (128: a symmetric window)
    for name, lw in linears.items():
        if lw.weight_bits == 4:
            packed[f"{name}.qweight"] = pack_int4(lw.codes)  # (out * in + 1) // 2 bytes, row-major
        else:
            packed[f"{name}.qweight8"] = lw.codes  # (out, in) int8
        packed[f"{name}.wscale"] = lw.weight_scale
        packed[f"{name}.bias"] = lw.bias
        if lw.input_affine is not None:
            packed[f"{name}.input_scale"], packed[f"{name}.input_shift"] = lw.input_affine
        if lw.float_channels is not None:
            packed[f"{name}.float_channels"] = lw.float_channels
            packed[f"{name}.float_weight"] = lw.float_weight
        act_scales[name] = lw.act_scale
        act_zero_points[name] = lw.act_zero_point
    save_file(packed, str(folder / "weights.safetensors"))
    for kind, file in ONNX_FILES.items():
        onnx.save(export_onnx(fp32_model if kind == "fp32" else qmodel, size, facet_layer, kind), str(folder / file))
    config = qmodel.config
    quant = {
        "format": FORMAT, "format_version": FORMAT_VERSION, **meta,
        "weight_bits": 4, "act_bits": 8, "arch": meta.get("arch"),
        "embed_dim": config.embed_dim, "depth": config.depth, "num_heads": config.num_heads, "ffn": config.ffn,
        "num_register_tokens": config.num_register_tokens, "patch_size": config.patch_size, "size": list(size),
        "family": config.family, "pos_encoding": config.pos_encoding,
        "rope_base": config.rope_base if config.pos_encoding == "rope" else None,
        "layer_norm_eps": config.layer_norm_eps,
        "facet_layer": facet_layer,
        "qwt": any(isinstance(b, CompensatedBlock) for b in qmodel.blocks),
        "act_scales": act_scales,
        "act_zero_points": act_zero_points,
        "weight_scales": {n: lw.weight_scale.tolist() for n, lw in linears.items()},
        "layer_weight_bits": {n: lw.weight_bits for n, lw in linears.items()},
        "float_channels": {n: lw.float_channels.tolist() for n, lw in linears.items() if lw.float_channels is not None},
        "pixel_input": [n for n, lw in linears.items() if lw.input_affine is not None],  # read (p - z)/255
        "versions": {"spatialq_ros": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                     "python": platform.python_version()},
    }
    digest = hashlib.sha256(json.dumps(quant, sort_keys=True).encode())
    digest.update((folder / "weights.safetensors").read_bytes())
    quant["fingerprint"] = digest.hexdigest()
    (folder / "quant.json").write_text(json.dumps(quant, indent=1))
    return quant
