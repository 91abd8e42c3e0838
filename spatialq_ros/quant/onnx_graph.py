"""The ViT as an ONNX graph, written node by node from numpy weights (no torch exporter).

One builder makes every deployable: `fp32` (float weights), `qdq` (static INT8 activation
Quantize/DequantizeLinear on every Linear input, weights as int8 initialisers holding 4-bit codes with
per-channel DequantizeLinear: what TensorRT builds into an INT8 engine), `int4` (the same, weights
stored as INT4 at opset 21) and `cpu` (the same numbers with ONNX Runtime's com.microsoft kernels:
MatMulIntegerToFloat, since its CPU provider does not fuse this QDQ pattern and would dequantize the weights
on every call, and MultiHeadAttention for attention). Only `cpu` leaves standard ONNX: TensorRT parses the rest.
LayerNormalization and GELU are one op each (GELU as the opset-20 Gelu op: what torch.onnx.export writes and
TensorRT 10 parses, and half the time of its Erf spelling in ORT); attention, GELU and residual adds are float.
The input size is fixed at export: the interpolated position embedding (DINOv2) or the RoPE sin/cos tables
(DINOv3) are constants. RoPE rotates the qkv Linear's float output (no quantizer on it), before attention:
in standard ONNX ops, or in the cpu graph with ORT's RotaryEmbedding kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .pack import pack_int4

OPSET = 21
# The oldest IR that opset 21 allows. onnx writes its newest IR by default (14 with onnx 1.23), which
# ONNX Runtime 1.30 and older refuse to load, Jetson builds included.
IR_VERSION = 10
KINDS = ("fp32", "qdq", "int4", "cpu")


@dataclass(frozen=True)
class GraphSpec:
    embed_dim: int
    depth: int
    num_heads: int
    ffn: str
    num_register_tokens: int
    size: tuple[int, int]  # (W, H)
    facet_layer: int
    patch_size: int  # px, the backbone's: the graph's patch-embedding conv and its token grid follow it
    pos_encoding: str = "learned"  # or "rope" (DINOv3)
    layer_norm_eps: float = 1e-6  # DINOv3: 1e-5


@dataclass(frozen=True)
class LinearWeights:
    weight: np.ndarray | None  # float (out, in) for fp32
    bias: np.ndarray
    codes: np.ndarray | None = None  # int8 (out, in), values in [-8, 7] (4 bits) or [-64, 63] (7 bits)
    weight_scale: np.ndarray | None = None  # (out,)
    act_scale: float | None = None
    float_channels: np.ndarray | None = None  # int64 input channels that bypass the quantizers
    float_weight: np.ndarray | None = None  # (out, len(float_channels)) their float weight columns
    weight_bits: int = 4
    act_zero_point: int = 128  # the uint8 code of 0.0: the input's codes are [-zero point, 255 - zero point]
    input_affine: tuple[np.ndarray, np.ndarray] | None = None  # (scale, shift) per input feature, applied first

    @property
    def in_features(self) -> int:
        return (self.weight if self.weight is not None else self.codes).shape[1]


class _Builder:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, n_out: int = 1, **attrs) -> str | list[str]:
        outs = [self.name(hint) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def int4(self, values: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.inits.append(helper.make_tensor(name, TensorProto.INT4, values.shape, pack_int4(values).tobytes(),
                                             raw=True))
        return name

    def ints(self, values, hint="shape") -> str:
        return self.const(np.array(values, np.int64), hint)

    def linear(self, x: str, lw: LinearWeights, hint: str) -> str:
        """y = x W^T + b on (1, T, in). Computed on 2-D (T, in) so ORT fuses QDQ + MatMul + Add into
        one quantized Gemm without the 3-D reshape rewrite that breaks on int8 QDQ. Float input channels
        (massive activations) add a small float MatMul of their own."""
        out_dim = lw.bias.shape[0]
        x = self.op("Reshape", [x, self.ints([-1, lw.in_features])], f"{hint}.flat")
        if lw.input_affine is not None:  # the patch embedding reads pixels (quant/pixel_input.py)
            scale, shift = (self.const(t.astype(np.float32), f"{hint}.in_{n}") for t, n in zip(lw.input_affine,
                                                                                               ("scale", "shift")))
            x = self.op("Add", [self.op("Mul", [x, scale], f"{hint}.in_scaled"), shift], f"{hint}.in_pixels")
        y = self.integer_linear(x, lw, hint) if self.kind == "cpu" else self.qdq_linear(x, lw, hint)
        if lw.float_channels is not None:
            picked = self.op("Gather", [x, self.const(lw.float_channels, f"{hint}.float_idx")], f"{hint}.float_in",
                             axis=1)
            side = self.op("MatMul", [picked, self.const(lw.float_weight.T.astype(np.float32), f"{hint}.float_w")],
                           f"{hint}.float_mm")
            y = self.op("Add", [y, side], f"{hint}.with_float")
        return self.op("Reshape", [y, self.ints([1, -1, out_dim])], f"{hint}.out")

    def qdq_linear(self, x: str, lw: LinearWeights, hint: str) -> str:
        """(T, in) -> (T, out): float MatMul (fp32) or the QDQ pattern TensorRT builds INT8 kernels from."""
        if self.kind == "fp32":
            w = self.const(lw.weight.T.astype(np.float32), f"{hint}.w")
            bias = lw.bias
        else:
            # A window that does not start at -128 (zero point 128) is the symmetric one shifted by a whole number of
            # steps: the input moves by that shift before QuantizeLinear (zero point 0, as TensorRT requires), and
            # the bias takes back what the shift removed.
            shift = (128 - lw.act_zero_point) * np.float64(lw.act_scale)
            scale = self.const(np.float32(lw.act_scale), f"{hint}.a_scale")
            zero = self.const(np.int8(0), f"{hint}.a_zero")
            if shift:
                x = self.op("Sub", [x, self.const(np.float32(shift), f"{hint}.a_shift")], f"{hint}.shifted")
            q = self.op("QuantizeLinear", [x, scale, zero], f"{hint}.q")
            x = self.op("DequantizeLinear", [q, scale, zero], f"{hint}.dq")
            codes = lw.codes.T.astype(np.int8)  # (in, out): MatMul's B
            if self.kind == "int4" and lw.weight_bits == 4:
                w_codes = self.int4(codes, f"{hint}.w4")
                w_zero = self.int4(np.zeros(codes.shape[1], np.int8), f"{hint}.w4_zero")
            else:
                w_codes = self.const(codes, f"{hint}.w8")
                w_zero = self.const(np.zeros(codes.shape[1], np.int8), f"{hint}.w_zero")
            w_scale = self.const(lw.weight_scale.astype(np.float32), f"{hint}.w_scale")
            w = self.op("DequantizeLinear", [w_codes, w_scale, w_zero], f"{hint}.w", axis=1)
            bias = lw.bias + shift * (lw.codes.astype(np.float64).sum(axis=1) * lw.weight_scale)
        y = self.op("MatMul", [x, w], f"{hint}.mm")
        return self.op("Add", [y, self.const(bias.astype(np.float32), f"{hint}.b")], f"{hint}.biased")

    def integer_linear(self, x: str, lw: LinearWeights, hint: str) -> str:
        """Same numbers as the QDQ linear, spelled with ONNX Runtime's integer CPU kernels: x -> uint8 codes
        (the window's zero point: 128 for the symmetric one) -> MatMulIntegerToFloat with the int8 weight codes,
        which applies activation scale x per-channel weight scale and the bias in the same kernel."""
        scale = self.const(np.float32(lw.act_scale), f"{hint}.a_scale")
        zero = self.const(np.uint8(lw.act_zero_point), f"{hint}.a_zero")
        q = self.op("QuantizeLinear", [x, scale, zero], f"{hint}.q")
        w = self.const(lw.codes.T.astype(np.int8), f"{hint}.w8")
        w_scale = self.const(lw.weight_scale.astype(np.float32), f"{hint}.w_scale")
        bias = self.const(lw.bias.astype(np.float32), f"{hint}.b")
        return self.op("MatMulIntegerToFloat", [q, w, scale, w_scale, zero, "", bias], f"{hint}.mmi",
                       domain="com.microsoft")


def build_graph(spec: GraphSpec, tensors: dict[str, np.ndarray], linears: dict[str, LinearWeights],
                position: np.ndarray | tuple[np.ndarray, np.ndarray], kind: str) -> onnx.ModelProto:
    """tensors: float tensors in official names (norms, gammas, tokens, QwT); linears: every Linear by name;
    position: for a learned table, the pos_embed (1, 1 + h*w, C) already interpolated to `spec.size`; for RoPE,
    the grid's (sin, cos), each (h*w, head_dim)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if (spec.pos_encoding == "rope") != isinstance(position, tuple):
        raise ValueError(f"{spec.pos_encoding} position encoding: expected "
                         + ("the RoPE (sin, cos) tables" if spec.pos_encoding == "rope" else "a pos_embed table"))
    b = _Builder(kind)
    width, height = spec.size
    p, c = spec.patch_size, spec.embed_dim
    gh, gw = height // p, width // p
    n = gh * gw
    r = spec.num_register_tokens
    heads, hd = spec.num_heads, c // spec.num_heads

    patches = b.op("Reshape", ["image", b.ints([1, 3, gh, p, gw, p])], "patches")
    patches = b.op("Transpose", [patches], "patches_t", perm=[0, 2, 4, 1, 3, 5])
    patches = b.op("Reshape", [patches, b.ints([1, n, 3 * p * p])], "patches_flat")
    x = b.linear(patches, linears["patch_embed.proj"], "patch_embed")
    x = b.op("Concat", [b.const(tensors["cls_token"].astype(np.float32), "cls"), x], "with_cls", axis=1)
    if spec.pos_encoding != "rope":
        x = b.op("Add", [x, b.const(position.astype(np.float32), "pos")], "with_pos")
    if r:
        first = b.op("Slice", [x, b.ints([0]), b.ints([1]), b.ints([1])], "cls_part")
        rest = b.op("Slice", [x, b.ints([1]), b.ints([1 + n]), b.ints([1])], "patch_part")
        x = b.op("Concat", [first, b.const(tensors["register_tokens"].astype(np.float32), "reg"), rest], "with_reg",
                 axis=1)
    t = 1 + r + n
    rope = _rope_tables(b, *position, t, hd) if spec.pos_encoding == "rope" else None
    facet = None
    for i in range(spec.depth):
        pre = f"blocks.{i}."
        block_in = x
        h = _layernorm(b, x, tensors, pre + "norm1", spec.layer_norm_eps)
        qkv = b.linear(h, linears[pre + "attn.qkv"], pre + "qkv")
        if i == spec.facet_layer % spec.depth:
            facet = b.op("Slice", [qkv, b.ints([1 + r, 2 * c]), b.ints([t, 3 * c]), b.ints([1, 2])], "value_facet_s")
        x = _residual(b, x, _attention(b, qkv, rope, t, heads, hd, pre), linears[pre + "attn.proj"],
                      tensors[pre + "ls1.gamma"], pre + "proj", pre + "res1")
        h = _layernorm(b, x, tensors, pre + "norm2", spec.layer_norm_eps)
        if spec.ffn == "swiglu":
            h = b.linear(h, linears[pre + "mlp.w12"], pre + "w12")
            hidden = linears[pre + "mlp.w12"].bias.shape[0] // 2
            x1, x2 = b.op("Split", [h, b.ints([hidden, hidden])], pre + "split", n_out=2, axis=-1)
            silu = b.op("Mul", [x1, b.op("Sigmoid", [x1], pre + "sig")], pre + "silu")
            x = _residual(b, x, b.op("Mul", [silu, x2], pre + "glu"), linears[pre + "mlp.w3"],
                          tensors[pre + "ls2.gamma"], pre + "w3", pre + "res2")
        else:
            h = b.linear(h, linears[pre + "mlp.fc1"], pre + "fc1")
            gelu = b.op("Gelu", [h], pre + "gelu", approximate="none")  # one kernel, not Erf + 3 Mul + Add
            x = _residual(b, x, gelu, linears[pre + "mlp.fc2"], tensors[pre + "ls2.gamma"], pre + "fc2", pre + "res2")
        if pre + "qwt.weight" in tensors:
            x = b.op("Add", [x, _float_linear(b, block_in, tensors, pre + "qwt")], pre + "compensated")
    x = _layernorm(b, x, tensors, "norm", spec.layer_norm_eps)
    patch = b.op("Slice", [x, b.ints([1 + r]), b.ints([t]), b.ints([1])], "patch_s")
    b.nodes.append(helper.make_node("Identity", [patch], ["patch_tokens"]))
    cls = b.op("Gather", [x, b.const(np.int64(0), "idx")], "cls_g", axis=1)
    b.nodes.append(helper.make_node("Identity", [cls], ["cls_token"]))
    b.nodes.append(helper.make_node("Identity", [facet], ["value_facet"]))
    graph = helper.make_graph(
        b.nodes, f"spatialq_vit_{kind}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("patch_tokens", TensorProto.FLOAT, [1, n, c]),
         helper.make_tensor_value_info("cls_token", TensorProto.FLOAT, [1, c]),
         helper.make_tensor_value_info("value_facet", TensorProto.FLOAT, [1, n, c])],
        b.inits)
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid("com.microsoft", 1)] if kind == "cpu" else [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="spatialq_ros", ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model


def _residual(b: _Builder, x: str, branch: str, lw: LinearWeights, gamma: np.ndarray, hint: str, name: str) -> str:
    """x + gamma * Linear(branch): the residual add after a block's LayerScale. The fp32 and cpu graphs fold
    gamma into the Linear's output channels (float weights; MatMulIntegerToFloat's per-channel weight scale,
    which takes any sign), one Mul fewer per branch. The QDQ graphs keep the Mul: a DequantizeLinear scale must
    stay positive for TensorRT, and a LayerScale gamma need not be; TensorRT fuses the Mul anyway."""
    gamma = gamma.astype(np.float32)
    if b.kind in ("fp32", "cpu"):
        return b.op("Add", [x, b.linear(branch, _layer_scaled(lw, gamma), hint)], name)
    scaled = b.op("Mul", [b.linear(branch, lw, hint), b.const(gamma, hint + ".gamma")], hint + ".ls")
    return b.op("Add", [x, scaled], name)


def _layer_scaled(lw: LinearWeights, gamma: np.ndarray) -> LinearWeights:
    """The Linear whose outputs are gamma times lw's: every output channel's weight (or weight scale) and bias."""
    return replace(
        lw, bias=lw.bias * gamma,
        weight=None if lw.weight is None else lw.weight * gamma[:, None],
        weight_scale=None if lw.weight_scale is None else lw.weight_scale * gamma,
        float_weight=None if lw.float_weight is None else lw.float_weight * gamma[:, None])


def _rope_tables(b: _Builder, sin: np.ndarray, cos: np.ndarray, t: int, hd: int) -> tuple[str, ...]:
    """The RoPE tables as constants for every token; the prefix tokens (CLS, registers) get cos 1 and sin 0, i.e.
    no rotation. DINOv3's tables repeat one (T, head_dim / 2) angle table over both halves. The cpu graph gets
    that half table as ORT's RotaryEmbedding caches, with position ids 0..T-1. The others get (T, 1, 1, 2,
    head_dim / 2) tables to broadcast over q/k and the heads of (1, T, 2, heads, 2, head_dim / 2); their sin
    table carries the sign of x cos + [-x2, x1] sin, so the graph only swaps the halves."""
    prefix = t - len(sin)
    cos = np.concatenate([np.ones((prefix, hd), np.float32), cos.astype(np.float32)])
    sin = np.concatenate([np.zeros((prefix, hd), np.float32), sin.astype(np.float32)])
    if b.kind == "cpu":
        return (b.const(np.arange(t, dtype=np.int64)[None], "rope_positions"),
                b.const(np.ascontiguousarray(cos[:, : hd // 2]), "rope_cos"),
                b.const(np.ascontiguousarray(sin[:, : hd // 2]), "rope_sin"))
    sin = sin * np.repeat(np.array([-1.0, 1.0], np.float32), hd // 2)
    shape = (t, 1, 1, 2, hd // 2)
    return b.const(sin.reshape(shape), "rope_sin"), b.const(cos.reshape(shape), "rope_cos")


def _rotate_qk(b: _Builder, qkv: str, rope: tuple[str, ...], t: int, heads: int, hd: int, pre: str) -> str:
    """RoPE on the q and k columns of the qkv Linear's (1, T, 3C) output in standard ONNX, elementwise (halves
    swapped, two Mul, one Add); the v columns pass as they are."""
    sin, cos = rope
    c = heads * hd
    qk = b.op("Slice", [qkv, b.ints([0]), b.ints([2 * c]), b.ints([2])], pre + "qk")
    v = b.op("Slice", [qkv, b.ints([2 * c]), b.ints([3 * c]), b.ints([2])], pre + "v")
    qk = b.op("Reshape", [qk, b.ints([1, t, 2, heads, 2, hd // 2])], pre + "qk_halves")
    first, second = b.op("Split", [qk, b.ints([1, 1])], pre + "qk_split", n_out=2, axis=4)
    swapped = b.op("Concat", [second, first], pre + "qk_swapped", axis=4)
    rotated = b.op("Add", [b.op("Mul", [qk, cos], pre + "qk_cos"), b.op("Mul", [swapped, sin], pre + "qk_sin")],
                   pre + "qk_rope")
    rotated = b.op("Reshape", [rotated, b.ints([1, t, 2 * c])], pre + "qk_rotated")
    return b.op("Concat", [rotated, v], pre + "qkv_rope", axis=2)


def _attention(b: _Builder, qkv: str, rope: tuple[str, ...] | None, t: int, heads: int, hd: int, pre: str) -> str:
    """Softmax attention on the qkv Linear's (1, T, 3C) output, whose columns are (3, heads, head_dim), with
    RoPE on q and k when `rope` is given; returns (1, T, C) in (heads, head_dim) order. The cpu graph hands it
    to ORT's kernels: RotaryEmbedding on q and k (one op each where standard ONNX at opset 21 takes ten per
    block), then MultiHeadAttention (which scales by 1/sqrt(head_dim) itself): one kernel instead of the head
    reshapes, two MatMuls and the softmax. The other graphs keep standard ONNX for TensorRT."""
    c = heads * hd
    if b.kind == "cpu":
        q, k, v = b.op("Split", [qkv, b.ints([c, c, c])], pre + "qkv_split", n_out=3, axis=-1)
        if rope is not None:
            positions, cos, sin = rope
            q, k = (b.op("RotaryEmbedding", [x, positions, cos, sin], pre + f"{name}_rope", domain="com.microsoft",
                         num_heads=heads, interleaved=0) for x, name in ((q, "q"), (k, "k")))
        return b.op("MultiHeadAttention", [q, k, v], pre + "mha", domain="com.microsoft", num_heads=heads)
    if rope is not None:
        qkv = _rotate_qk(b, qkv, rope, t, heads, hd, pre)
    heads_view = b.op("Reshape", [qkv, b.ints([1, t, 3, heads, hd])], pre + "qkv_r")
    heads_view = b.op("Transpose", [heads_view], pre + "qkv_t", perm=[2, 0, 3, 1, 4])
    q, k, v = (b.op("Gather", [heads_view, b.const(np.int64(j), "idx")], pre + "qkv_g", axis=0) for j in range(3))
    q = b.op("Mul", [q, b.const(np.float32(hd**-0.5), "scale")], pre + "q_scaled")
    logits = b.op("MatMul", [q, b.op("Transpose", [k], pre + "kT", perm=[0, 1, 3, 2])], pre + "logits")
    attn = b.op("Softmax", [logits], pre + "attn", axis=-1)
    o = b.op("Transpose", [b.op("MatMul", [attn, v], pre + "attn_v")], pre + "o_t", perm=[0, 2, 1, 3])
    return b.op("Reshape", [o, b.ints([1, t, c])], pre + "o")


def _float_linear(b: _Builder, x: str, tensors: dict[str, np.ndarray], name: str) -> str:
    """The QwT correction stays float in every variant, stored as FP16 as the paper keeps it."""
    w16 = b.const(tensors[name + ".weight"].T.astype(np.float16), name + ".w16")
    w = b.op("Cast", [w16], name + ".w", to=TensorProto.FLOAT)
    return b.op("Add", [b.op("MatMul", [x, w], name + ".mm"), b.const(tensors[name + ".bias"], name + ".b")], name)


def _layernorm(b: _Builder, x: str, tensors: dict[str, np.ndarray], name: str, eps: float) -> str:
    return b.op("LayerNormalization", [x, b.const(tensors[name + ".weight"].astype(np.float32), name + ".g"),
                                       b.const(tensors[name + ".bias"].astype(np.float32), name + ".b")],
                name, axis=-1, epsilon=eps)
