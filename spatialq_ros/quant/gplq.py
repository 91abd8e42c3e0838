"""GPLQ calibration ("activations first, weights later") and the plain min-max baseline, one code path.

gplq:   the patch embedding reads the frame's 8-bit pixels (pixel_input) -> per block, a Hadamard rotation of the
        heads' outputs where it halves the projection's W4A8 output error (head_rotation) -> per layer, the folding
        strength and the float input channels that minimise its W4A8 output error (layer_search) -> fold
        post-LayerNorm ranges into the norms, and the projections' input ranges into the value rows (fold) -> A8
        windows from percentiles of the quantized channels (input_window: the 256 codes go where the values are),
        massive-activation input channels kept float too -> stage 1: one pass of LSQ activation QAT (weights FP32,
        optionally trained at a tiny LR) on a spatially weighted PCA feature-mimicking loss -> stage 2: per-channel
        W4 (MSE scales, error-feedback rounding), then 7-bit codes for the layers whose 4-bit weights cost the final
        tokens most per weight (mixed_precision) -> optional QwT block compensation.
minmax: A8 scales from the absolute max, W4 from each row's max; no folding, no training.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..backbone.preprocess import IMAGENET_MEAN, IMAGENET_STD
from ..backbone.vit import DinoVisionTransformer
from .device import exact_float32
from .fake_quant import INT8
from .fold import fold_post_layernorm, fold_value_ranges
from .head_rotation import choose_rotations, rotate_head_outputs
from .input_window import clipping_level, input_window
from .layer_search import ALPHAS, LayerChoice, choose, subsample
from .mixed_precision import WIDE_BITS, widen_where_it_pays
from .pixel_input import read_pixels
from .placement import get_module, linear_names, post_layernorm_pairs, value_projections, wrap
from .qwt import CompensatedBlock, fit_compensation
from .spatial_weights import corner_map, spatial_weights
from .error_feedback import InputHessian, quantize_with_feedback
from .stats import collect_input_stats
from .weight_scales import weight_scales

METHODS = ("gplq", "minmax")


@dataclass
class CalibrationConfig:
    method: str = "gplq"
    alpha: float | None = None  # post-LayerNorm folding strength (1.0 = RepQ-ViT); None: chosen per layer
    value_alpha: float = 0.5  # the projections' input ranges folded into the value rows at this strength (0: none)
    float_search: bool = True  # float input channels chosen per layer from its output error
    act_percentile: float = 99.99
    batch_size: int = 8
    pass_tokens: int = 2400  # stage 1 runs a batch in passes of at most this many tokens (memory ~ tokens)
    lr_scales: float = 1e-5
    lr_weights: float = 1e-6  # GPLQ lets the FP32 weights drift a little; 0 freezes them
    beta: float = 2.0  # feature-edge weight
    gamma: float = 1.0  # Harris-corner weight
    mimic_blocks: tuple[int, ...] = (-4,)  # besides the final tokens
    pca_variance: float = 0.6
    qwt: bool = False
    qwt_frames: int = 64
    error_feedback: bool = True  # stage 2 rounds the 4-bit weights GPTQ-style (False: to nearest)
    massive_factor: float = 16.0  # input channels above this x the clipping level stay float (0: none)
    max_float_channels: int = 8  # per layer
    wide_share: float = 0.5  # at most this share of the quantized weights at 7 bits, where measured to pay (0: none)
    head_rotation: bool = True  # rotate the heads' outputs in the blocks where it halves the projection's error
    facet_layer: int = -1  # the block whose value facet the artifact outputs: never rotated, nor value-folded


@dataclass
class CalibrationLog:
    losses: list[float]
    act_scales: dict[str, float]
    float_channels: dict[str, list[int]]
    layer_choices: dict[str, dict] = field(default_factory=dict)  # what layer_search chose, per Linear
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, in order: where the time goes
    wide: dict[str, float] = field(default_factory=dict)  # layers given 7-bit weights -> share of error removed
    probe_error: tuple[float, float] | None = None  # the sensitivity probe's error: every layer at 4 bits, and after
    rotated_heads: list[int] = field(default_factory=list)  # blocks whose heads' outputs were rotated


class _StageClock:
    """Wall time per stage; on CUDA the queued work is waited for first, so each stage gets its own."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, stage: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 3)
        self._last = now


def calibrate(
    model: DinoVisionTransformer,
    images: torch.Tensor,
    rgbs: list[np.ndarray],
    config: CalibrationConfig,
    progress: bool = True,
    on_step: Callable[[str, int, int], None] | None = None,
    device: torch.device | str | None = None,
) -> tuple[DinoVisionTransformer, CalibrationLog]:
    """FP32 model + preprocessed frames (N, 3, H, W) and their RGB -> fake-quant W4A8 model (a new object).

    Everything runs on `device` (default: the model's); the returned model lives there too."""
    if config.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    with exact_float32(device):
        return _calibrate(model, images.to(device), rgbs, config, progress, on_step, device)


def _calibrate(model, images, rgbs, config, progress, on_step, device):
    clock = _StageClock(device)
    teacher = copy.deepcopy(model).to(device).eval()
    student = copy.deepcopy(model).to(device).eval()
    batches = list(images.split(config.batch_size))
    names = linear_names(student)
    step = on_step or (lambda *_: None)

    step("statistics", 0, 1)
    stats = collect_input_stats(student, names, batches)
    choices: dict[str, LayerChoice] = {}
    rotated = (choose_rotations(student, stats, config.act_percentile,
                                config.max_float_channels if config.float_search else 0, config.facet_layer)
               if config.method == "gplq" and config.head_rotation else [])
    if rotated:
        rotate_head_outputs(student, rotated)
        stats = collect_input_stats(student, names, batches)
    if config.method == "gplq":
        value_alpha = ({n: config.value_alpha for n in value_projections(student, config.facet_layer)}
                       if config.value_alpha > 0 else {})
        if config.alpha is None or config.float_search:
            choices = _search_layers(student, stats, config, value_alpha, progress)
        alpha = config.alpha if config.alpha is not None else {n: c.alpha for n, c in choices.items()
                                                               if c.alpha is not None}
        fold_post_layernorm(student, stats, alpha)
        fold_value_ranges(student, stats, value_alpha)
        stats = collect_input_stats(student, names, batches)
    reference = copy.deepcopy(student).eval()  # folded FP32: same function as the teacher
    layers = wrap(student)
    with torch.no_grad():
        for name, layer in layers.items():
            if config.method == "gplq" and name == "patch_embed.proj":
                read_pixels(layer, IMAGENET_MEAN, IMAGENET_STD)
            elif config.method == "gplq":
                _place_input_quantizer(layer, stats[name], choices.get(name), config)
            else:
                layer.act_scale.fill_(max(stats[name].tensor_max, 1e-6) / INT8[1])
    clock.mark("statistics")

    losses: list[float] = []
    if config.method == "gplq":
        losses = _activation_qat(student, teacher, batches, rgbs, config, progress, step)
        clock.mark("stage 1")
    hessians = _input_hessians(student, layers, batches) if config.method == "gplq" and config.error_feedback else {}
    if hessians:
        clock.mark("hessians")
    with torch.no_grad():
        for layer in layers.values():
            layer.set_weight_scale(weight_scales(layer.quantizable_weight(),
                                                 "mse" if config.method == "gplq" else "minmax"))
        floats = ({n: layer.inner.weight.detach().clone() for n, layer in layers.items()}
                  if config.method == "gplq" and config.wide_share > 0 else {})
    if hessians:
        step("stage 2: error-feedback rounding", 0, 1)
        quantize_with_feedback(layers, hessians)
    wide, probe_errors = {}, None
    if floats:
        found = widen_where_it_pays(student, teacher, layers, floats, images, config.wide_share,
                                    lambda chosen: _widen(chosen, floats, hessians), progress, step)
        wide, probe_errors = {n: round(g, 4) for n, g in found.gains.items()}, (found.error, found.error_after)
    clock.mark("stage 2")
    if config.method == "gplq" and config.qwt:
        _compensate(student, reference, images[: config.qwt_frames], progress, step)
        clock.mark("qwt")
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    return student, CalibrationLog(losses, {n: float(layer.act_scale.abs()) for n, layer in layers.items()},
                                   {n: layer.float_channels.tolist() for n, layer in layers.items()
                                    if layer.float_channels.numel()},
                                   {n: c.as_dict() for n, c in choices.items()}, clock.seconds, wide, probe_errors,
                                   rotated)


@torch.no_grad()
def _widen(layers: dict, floats: dict[str, torch.Tensor], hessians: dict) -> None:
    """These layers back to their float weights, then onto the 7-bit grid (MSE scales, error feedback when on)."""
    for name, layer in layers.items():
        layer.inner.weight.copy_(floats[name])
        layer.weight_bits = WIDE_BITS
        layer.set_weight_scale(weight_scales(layer.quantizable_weight(), "mse", bits=WIDE_BITS))
    if hessians:
        quantize_with_feedback(layers, {n: hessians[n] for n in layers})


def _search_layers(student, stats, config, value_alpha: dict[str, float], progress) -> dict[str, LayerChoice]:
    """layer_search's choice for every Linear of the blocks, from rows of its calibration input. The projections
    that fold into the value rows (value_alpha: name -> strength) are scored at the strength they will get."""
    alphas = {linear: ALPHAS if config.alpha is None else (config.alpha,)
              for _, linear in post_layernorm_pairs(student)}
    alphas.update({name: (strength,) for name, strength in value_alpha.items()})
    max_float = config.max_float_channels if config.float_search else 0
    names = [n for n in linear_names(student) if n != "patch_embed.proj"]
    return {name: choose(stats[name].row_sample(), get_module(student, name).weight.detach(),
                         stats[name].channel_max if name in alphas else None, config.act_percentile, max_float,
                         alphas.get(name, ALPHAS))
            for name in tqdm(names, desc="layer search", unit="layer", disable=not progress)}


def _place_input_quantizer(layer, stats, choice: LayerChoice | None, config) -> None:
    """The INT8 window of a layer's quantized input channels (input_window), and the channels that go around it:
    the search's choice, plus any massive-activation channel above massive_factor x the clipping level."""
    values = stats.values()
    channels = torch.tensor(choice.float_channels if choice else (), dtype=torch.long, device="cpu")
    if isinstance(layer.inner, torch.nn.Linear):
        if len(channels):
            values = _values_without(stats, channels)
        if config.massive_factor > 0:
            massive = stats.massive_channels(clipping_level(values, config.act_percentile), config.massive_factor,
                                             config.max_float_channels)
            extra = massive[~torch.isin(massive, channels)]
            if len(extra):
                channels = torch.cat([channels, extra.cpu()])[: max(config.max_float_channels, len(channels))]
                values = _values_without(stats, channels)
        if len(channels):
            layer.keep_float(torch.sort(channels).values)
    step, layer.act_low = input_window(values, config.act_percentile)
    layer.act_scale.fill_(step)


def _values_without(stats, channels: torch.Tensor) -> torch.Tensor:
    """Input values of the sampled rows, these channels left out."""
    rows = stats.row_sample()
    keep = torch.ones(rows.shape[1], dtype=torch.bool, device=rows.device)
    keep[channels.to(rows.device)] = False
    return subsample(rows[:, keep])


def _pca_basis(features: torch.Tensor, variance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and the top components of teacher features covering `variance`, a multiple of 32 wide."""
    flat = features.reshape(-1, features.shape[-1]).double()
    mean = flat.mean(dim=0)
    s, vt = _singular(flat - mean, tall=flat.is_cuda)
    ratio = (s**2).cumsum(0) / (s**2).sum()
    k = int((ratio < variance).sum()) + 1
    k = min(len(s), max(32, int(np.ceil(k / 32) * 32)))
    return mean.float(), vt[:k].T.float()


def _singular(x: torch.Tensor, tall: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values and right singular vectors of x (rows >> columns). cuSOLVER's SVD of a tall matrix
    (every token of every frame) is slow, so on CUDA it runs on R of x = QR, which has the same s and V."""
    if tall and x.shape[0] > x.shape[1]:
        x = torch.linalg.qr(x, mode="r").R
    _, s, vt = torch.linalg.svd(x, full_matrices=False)
    return s, vt


def _activation_qat(student, teacher, batches, rgbs, config, progress, step) -> list[float]:
    depth = len(student.blocks)
    blocks = tuple(sorted({b % depth for b in config.mimic_blocks}))
    with torch.no_grad():
        targets = [teacher.extract(b, layers=blocks) for b in batches]
    finals = torch.cat([t.patch_tokens for t in targets])
    grid = finals.shape[1:3]
    bases = {"final": _pca_basis(finals, config.pca_variance),
             "cls": _pca_basis(torch.cat([t.cls_token for t in targets]), config.pca_variance)}
    for b in blocks:
        bases[b] = _pca_basis(torch.cat([t.intermediate[b] for t in targets]), config.pca_variance)
    corners = np.stack([corner_map(rgb, grid, teacher.patch_size) for rgb in rgbs])
    corners = torch.from_numpy(corners).float().to(finals.device)

    scale_params = [p for n, p in student.named_parameters() if n.endswith("act_scale") and p.requires_grad]
    weight_params = [p for n, p in student.named_parameters() if not n.endswith("act_scale")]
    groups = [{"params": scale_params, "lr": config.lr_scales}]
    if config.lr_weights > 0:
        groups.append({"params": weight_params, "lr": config.lr_weights})
    else:
        for p in weight_params:
            p.requires_grad_(False)
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    student.train()
    losses = []
    offset = 0
    bar = tqdm(list(zip(batches, targets)), desc="stage 1: activation QAT", unit="batch", disable=not progress)
    tokens_per_frame = finals.shape[1] * finals.shape[2] + 1  # patches + CLS (registers: a few more)
    frames_per_pass = max(1, config.pass_tokens // tokens_per_frame)
    for i, (batch, target) in enumerate(bar):
        n = len(batch)
        weights = spatial_weights(target.patch_tokens, corners[offset : offset + n], config.beta, config.gamma)
        offset += n
        norms = {"final": _norm(target.patch_tokens, bases["final"]), "cls": _norm(target.cls_token, bases["cls"]),
                 **{b: _norm(target.intermediate[b], bases[b]) for b in blocks}}
        optimizer.zero_grad()
        loss_value = 0.0
        # The batch's loss is a sum over frames, so passes of a few frames each add up to the same
        # gradient; a 448x448 batch of 8 in one pass kept ~10 GB of activations for backward.
        for part in (slice(j, j + frames_per_pass) for j in range(0, n, frames_per_pass)):
            out = student.extract(batch[part], layers=blocks)
            loss = _mimic(out.patch_tokens, target.patch_tokens[part], bases["final"], weights[part], norms["final"])
            loss = loss + _mimic(out.cls_token, target.cls_token[part], bases["cls"], None, norms["cls"])
            for b in blocks:
                loss = loss + _mimic(out.intermediate[b], target.intermediate[b][part], bases[b], weights[part],
                                     norms[b])
            loss.backward()
            loss_value += float(loss.detach())
        optimizer.step()
        losses.append(loss_value)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        step("stage 1", i + 1, len(batches))
    student.eval()
    return losses


def _norm(teacher: torch.Tensor, basis) -> float:
    """What a mimicking term is divided by: the whole batch's token count x its mean projected energy."""
    mean, v = basis
    energy = ((teacher - mean) @ v).pow(2).sum(dim=-1)
    return energy.numel() * float(energy.mean().clamp_min(1e-8))


def _mimic(student, teacher, basis, weights, norm: float) -> torch.Tensor:
    """Weighted ||(f_s - mu) V - (f_t - mu) V||^2 summed over these frames' tokens, over `_norm` of the batch:
    the error relative to the teacher's projected energy."""
    mean, v = basis
    err = ((student - mean) @ v - (teacher - mean) @ v).pow(2).sum(dim=-1)
    if weights is not None:
        err = err * weights
    return err.sum() / norm


@torch.no_grad()
def _input_hessians(student, layers: dict, batches) -> dict:
    """Every quantized layer's input Hessian on the calibration frames (activations quantized, weights float)."""
    collectors = {name: InputHessian(layer) for name, layer in layers.items()}
    student.eval()
    for batch in batches:
        student.extract(batch)
    return {name: c.close() for name, c in collectors.items()}


@torch.no_grad()
def _compensate(student, reference, images, progress, step) -> None:
    """Block by block: fit the correction on the quantized stream, then move the stream on through it."""
    x = student.prepare_tokens(images)
    run = student.block_call(*student.grid(images))
    for i in tqdm(range(len(student.blocks)), desc="stage 2: QwT", unit="block", disable=not progress):
        quantized, _ = run(student.blocks[i], x)
        exact, _ = run(reference.blocks[i], x)
        w, b = fit_compensation(x, exact - quantized)
        block = CompensatedBlock(student.blocks[i], x.shape[-1])
        block.qwt.weight.copy_(w)
        block.qwt.bias.copy_(b)
        student.blocks[i] = block
        x, _ = run(block, x)
        step("QwT", i + 1, len(student.blocks))
