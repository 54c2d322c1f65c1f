"""VQSAClassifier: backbone -> global pool -> codebook -> fusion -> (self-attention) -> 2-layer head.

Every row of the paper's Table 1 is this class with a different ``fusion``/``attention``; heads per row:

========================  ==========================================================  =====================
row                       path after the pooled feature z (d-dim)                     head
========================  ==========================================================  =====================
fine-tune (``vq=False``)  z                                                           fc: d -> classes
replace                   z_hat                                                       d -> d + ReLU -> fc
add                       z + z_hat                                                   d -> d + ReLU -> fc
concat                    [z_hat, z]                                                  2d -> d + ReLU -> fc
concat + SA (default)     SelfAttention(z_hat, z), flattened                          2d -> d + ReLU -> fc
========================  ==========================================================  =====================

``fc`` is the backbone's own classifier (pretrained when it fits), as in the authors' code.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vqsa.layers import Fusion, InputNormalize, TokenSelfAttention, VectorQuantizer, attach_aux_loss


@dataclass
class VQSAOutput:
    """What ``model(x, return_aux=True)`` returns.

    Attributes:
        logits: (B, num_classes) (the pre-logits features when called with ``pre_logits=True``).
        aux_loss: ``L_vq + beta * L_cmt`` (a 0-dim tensor, 0 in eval and without a codebook).
        losses: the unweighted terms ``{"codebook": L_vq, "commitment": L_cmt}`` (empty without a codebook).
        indices: (B,) code indices, None without a codebook.
        features: the pooled backbone feature z, (B, d).
        quantized: the code z_hat (straight-through), (B, d), None without a codebook.
    """

    logits: torch.Tensor
    aux_loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    indices: torch.Tensor | None = None
    features: torch.Tensor | None = None
    quantized: torch.Tensor | None = None


def _pool_size(backbone: nn.Module, channels: int) -> tuple[int, int] | None:
    """The spatial size of ``forward_features`` at the backbone's input size (timm's ``pool_size``; None for
    token outputs): the backbone's own value (torchvision adapter, timm or vqsa ``pretrained_cfg``), else measured
    with one forward pass of a blank image."""
    if getattr(backbone, "pool_size", None):
        return tuple(backbone.pool_size)
    timm_cfg = getattr(getattr(backbone, "model", None), "pretrained_cfg", None) or {}
    if "pool_size" in timm_cfg:
        return tuple(timm_cfg["pool_size"]) if timm_cfg["pool_size"] else None
    was_training = backbone.training
    try:
        with torch.no_grad():
            feats = backbone.eval().forward_features(torch.zeros(1, channels, *backbone.input_size[1:]))
    finally:
        backbone.train(was_training)
    return tuple(int(v) for v in feats.shape[-2:]) if feats.ndim == 4 else None


class VQSAClassifier(nn.Module):
    """Image classifier with an optional codebook between the pooled backbone feature and the head.

    Build it with :func:`vqsa.create_model`. Inputs are float images in [0, 1], (B, 3, H, W); the backbone's
    mean/std normalisation happens inside (``model.normalize``). ``model(x)`` returns logits in train and eval.

    Attributes:
        check_inputs: when True (default) ``forward`` rejects NaN/Inf input and warns on values outside [0, 1];
            this costs one device synchronisation per call, so a training loop on a GPU may turn it off. Graphs
            traced by ``torch.compile`` / ``torch.export`` leave the value check out (shape and dtype checks stay).
    """

    def __init__(
        self,
        backbone: nn.Module,
        classifier: nn.Module,
        num_classes: int,
        *,
        vq: VectorQuantizer | None,
        fusion: str,
        attention: bool,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        model_config: dict[str, Any],
    ) -> None:
        super().__init__()
        if (vq is None) != (fusion == "none"):
            raise ValueError("fusion 'none' goes with no codebook (vq=None) and only with it")
        if attention and fusion != "concat":
            raise ValueError(f"attention needs fusion='concat' (two tokens), got fusion={fusion!r}")
        d = backbone.num_features
        self.num_classes = num_classes
        self.num_features = int(getattr(backbone, "map_channels", d))  # channels of forward_features, as timm
        self.head_hidden_size = d  # width of the pooled feature z and of the pre-logits, as timm
        self.check_inputs = True
        self.normalize = InputNormalize(mean, std)
        self.backbone = backbone
        self.vq = vq
        self.fusion = Fusion(fusion)
        self.attn = TokenSelfAttention(d) if attention else None
        if fusion == "none":
            self.fc_fuse: nn.Module = nn.Identity()
        else:
            self.fc_fuse = nn.Sequential(nn.Linear(self.fusion.out_features(d), d), nn.ReLU(inplace=True))
        self.fc = classifier
        self._model_config = dict(model_config)
        # What timm's resolve_data_config reads: the backbone's preprocessing (size, crop, interpolation), but no
        # outer normalisation, since the model takes [0, 1] images.
        self.pretrained_cfg = {
            "input_size": (len(mean), *backbone.input_size[1:]),
            "crop_pct": 0.875,
            "interpolation": "bilinear",
            **getattr(backbone, "data_cfg", {}),
            "mean": (0.0,) * len(mean),
            "std": (1.0,) * len(std),
            "num_classes": num_classes,
            "classifier": "fc",
            "first_conv": next((n for n, m in self.named_modules() if isinstance(m, nn.Conv2d)), None),
            "pool_size": _pool_size(backbone, len(mean)),
        }
        self.pretrained_cfg["input_size"] = (len(mean), *self.pretrained_cfg["input_size"][1:])  # in_chans
        if vq is not None:
            self._ddp_params_and_buffers_to_ignore = [f"vq.{n}" for n in vq._ddp_params_and_buffers_to_ignore]

    # ------------------------------------------------------------------------------------------ properties
    @property
    def model_config(self) -> dict[str, Any]:
        """JSON-able config: ``vqsa.create_model(**model.model_config)`` rebuilds this architecture."""
        return copy.deepcopy(self._model_config)

    @property
    def default_cfg(self) -> dict[str, Any]:
        """Alias of ``pretrained_cfg`` (older timm name)."""
        return self.pretrained_cfg

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the final ``d -> classes`` layer (0 removes it: ``model(x)`` then returns pre-logits).

        ``global_pool`` (timm's signature) may only name the pooling the backbone has (or be None): the codebook was
        fitted to the features that pooling gives."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        current = self._pool_type()
        if global_pool not in (None, current):
            raise ValueError(f"global_pool={global_pool!r}: this model pools with {current!r}, and vqsa models keep "
                             f"their pooling (the codebook was fitted to its features); pass None or {current!r}")
        device = next(self.parameters()).device
        self.fc = nn.Linear(self.head_hidden_size, num_classes).to(device) if num_classes else nn.Identity()
        self.num_classes = num_classes
        self.pretrained_cfg["num_classes"] = num_classes
        self._model_config["num_classes"] = num_classes

    def _network(self) -> tuple[nn.Module, str]:
        """The backbone's own network (a timm model, or a torchvision model's body) and its parameter-name prefix."""
        attr = "model" if hasattr(self.backbone, "model") else "body"
        return getattr(self.backbone, attr), f"backbone.{attr}."

    def _pool_type(self) -> str:
        """The backbone's global pooling as timm names it (``"avg"``, ``"token"``, ...); torchvision: ``"avg"``."""
        inner, _ = self._network()
        for holder in (inner, getattr(inner, "head", None)):
            pool = getattr(holder, "global_pool", None)
            if isinstance(pool, str):
                return pool
            if isinstance(getattr(pool, "pool_type", None), str):
                return pool.pool_type
        return "avg"

    def no_weight_decay(self) -> set[str]:
        """Parameter names timm's ``create_optimizer_v2`` should not decay: the codebook (decay would pull the codes
        to 0) and what the backbone itself names (timm also skips every 1-D parameter)."""
        names = {f"vq.{n}" for n, _ in self.vq.named_parameters()} if self.vq is not None else set()
        inner, prefix = self._network()
        if callable(getattr(inner, "no_weight_decay", None)):
            names |= {prefix + n for n in inner.no_weight_decay()}
        return names

    def group_matcher(self, coarse: bool = False) -> Callable[[str], tuple[int, ...]]:
        """timm's parameter grouping, for layer-wise lr decay (``create_optimizer_v2(model, layer_decay=...)``):
        the backbone's own groups (timm's ``group_matcher``; stem / stages / blocks for the torchvision ResNets and
        RegNets and vqsa's CIFAR ResNets), then the codebook, fusion, attention and classifier as the last group."""
        from timm.models import group_parameters

        inner, prefix = self._network()
        if callable(getattr(inner, "group_matcher", None)):
            spec = inner.group_matcher(coarse)
        else:
            blocks = ([(r"^layer(\d+)", None), (r"^trunk_output\.block(\d+)", None)] if coarse else  # ResNet, RegNet
                      [(r"^layer(\d+)\.(\d+)", None), (r"^trunk_output\.block(\d+)\.block\d+-(\d+)", None)])
            spec = {"stem": r"^(?:conv1|bn1|stem)\.", "blocks": blocks}
        layer_of = group_parameters(inner, spec, reverse=True)
        head = max(layer_of.values(), default=-1) + 1

        def match(name: str) -> tuple[int, ...]:
            return (layer_of.get(name[len(prefix):], head) if name.startswith(prefix) else head,)

        return match

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing in the backbone (timm's method); timm backbones only."""
        inner, _ = self._network()
        if not callable(getattr(inner, "set_grad_checkpointing", None)):
            raise NotImplementedError(f"{type(self.backbone).__name__} has no gradient checkpointing; use a timm "
                                      "backbone (e.g. 'resnet50' rather than 'tv:resnet50')")
        inner.set_grad_checkpointing(enable)

    def cam_target_layers(self) -> list[nn.Module]:
        """The layers Grad-CAM should hook: the backbone's last block."""
        return [self.backbone.cam_layer]

    # --------------------------------------------------------------------------------------------- forward
    def _check(self, x: torch.Tensor) -> None:
        if isinstance(x, torch.fx.Proxy):
            return  # symbolic tracing (torch.fx, torchvision's create_feature_extractor): nothing to check yet
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a tensor of images, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"expected float images in [0, 1], got dtype {x.dtype} (convert uint8 with x / 255)")
        channels = self.normalize.mean.shape[1]
        if x.ndim != 4 or x.shape[1] != channels:
            raise ValueError(f"expected images (B, {channels}, H, W), got shape {tuple(x.shape)}")
        if not self.check_inputs or x.numel() == 0 or torch.compiler.is_compiling():
            return  # the value check syncs with the host: not inside a torch.compile / torch.export graph
        lo, hi = torch.stack([x.min(), x.max()]).tolist()  # one synchronisation; NaN propagates through min/max
        if not (lo == lo and hi == hi) or abs(lo) == float("inf") or abs(hi) == float("inf"):
            raise ValueError("input contains NaN or Inf values")
        if lo < -1e-3 or hi > 1 + 1e-3:
            warnings.warn(
                f"input values lie in [{lo:.3g}, {hi:.3g}]; vqsa models expect images in [0, 1] and normalise "
                "internally (do not apply mean/std outside)",
                stacklevel=3,
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise and run the backbone: the unpooled feature map (timm's semantics)."""
        self._check(x)
        return self.backbone.forward_features(self.normalize(x))

    def forward_intermediates(self, x: torch.Tensor, indices=None, norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False):
        """timm's ``forward_intermediates`` of the backbone, on images in [0, 1]: the feature maps of the stages in
        ``indices`` and, unless ``intermediates_only``, the final feature map (``forward_head`` takes it). For timm
        backbones and vqsa's own; torchvision backbones raise ``NotImplementedError``."""
        self._check(x)
        net = getattr(self.backbone, "model", None)
        if not callable(getattr(net, "forward_intermediates", None)):
            raise NotImplementedError(f"{self._model_config.get('name')}: its backbone has no forward_intermediates "
                                      "(torchvision backbones); use torchvision's create_feature_extractor")
        return net.forward_intermediates(self.normalize(x), indices=indices, norm=norm, stop_early=stop_early,
                                         output_fmt=output_fmt, intermediates_only=intermediates_only)

    def forward_head(
        self, feats: torch.Tensor, pre_logits: bool = False, return_aux: bool = False
    ) -> torch.Tensor | VQSAOutput:
        """Pool, quantize, fuse, attend and classify the output of :meth:`forward_features`.

        ``pre_logits=True`` stops before the final layer (the d-dim feature the classifier sees).
        """
        z = self.backbone.pool(feats)
        z_hat = indices = None
        losses: dict[str, torch.Tensor] = {}
        if self.vq is not None:
            z_hat, indices, aux_loss, parts = self.vq(z, return_loss_breakdown=True)
            losses = {"codebook": parts.codebook, "commitment": parts.commitment}
        else:
            aux_loss = z.new_zeros((), dtype=torch.float32)
        h = self.fusion(z, z_hat)
        if self.attn is not None:
            h = self.attn(h)
        h = self.fc_fuse(h.flatten(1))
        out = h if pre_logits else self.fc(h)
        if not return_aux:
            return attach_aux_loss(out, aux_loss)  # a loss on the logits alone also trains the codebook
        return VQSAOutput(out, aux_loss, losses, indices, z, z_hat)

    def forward(self, x: torch.Tensor, return_aux: bool = False) -> torch.Tensor | VQSAOutput:
        """Logits (B, num_classes) for images in [0, 1]; a :class:`VQSAOutput` with ``return_aux=True``.

        Training either way trains the codebook, with one contract per call:

        - ``model(x)``: in training mode the logits carry ``L_vq + beta * L_cmt`` in their backward pass, so
          ``cross_entropy(model(x), y).backward()`` trains the codebook and commits the backbone (as timm's and most
          training scripts compute the loss; DDP needs no ``find_unused_parameters``).
        - ``model(x, return_aux=True)``: the logits carry nothing; add ``out.aux_loss`` to your loss yourself (this
          is what ``vqsa train`` does, and the way to go when the loss is scaled: GradScaler, accumulation).
        """
        if isinstance(return_aux, torch.fx.Proxy):  # symbolic tracing makes every argument an input: trace logits
            return_aux = False
        return self.forward_head(self.forward_features(x), return_aux=return_aux)
