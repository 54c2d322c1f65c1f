"""Vector quantizer with a gradient-learned (VQ-VAE losses) or EMA codebook, data-driven inits, usage statistics and
dead-code restarts.

``quantized, indices, loss = vq(z)`` in train and eval alike. By default (``codebook_update="loss"``, the paper) the
codebook is an ``nn.Parameter`` updated by the VQ loss ``||z_hat - sg(z)||^2`` (so DDP averages its gradient like any
other weight); the encoder is pulled towards its code by the commitment loss ``||z - sg(z_hat)||^2``. Both are mean
squared errors, as in the authors' code. With ``codebook_update="ema"`` the codebook is a buffer set, after every
training step, to the exponential moving average of the features assigned to each code (cluster sizes and sums
all-reduced over ranks, Laplace-smoothed sizes); the loss is then ``beta * L_cmt`` alone.

Nearest codes are found in fp32 (also under autocast), in row chunks so the ``rows x codebook_size`` distance matrix
never exceeds ``chunk_budget`` elements.

Collectives (dead-code restarts, data-driven inits, EMA statistics, ``usage()``) go through
:mod:`vqsa.utils.distributed` and are decided when called, so a quantizer built before ``init_process_group`` still
behaves correctly under DDP.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vqsa.utils import distributed as dist

DISTANCES = ("cosine", "l2")
INITS = ("uniform", "normal", "kmeans", "features")
DATA_INITS = ("kmeans", "features")  # inits computed from observed features
CODEBOOK_UPDATES = ("loss", "ema")
# Pseudo-count a code starts with in the EMA statistics (at construction, after an init from data, after a restart):
# the code acts as the mean of one feature sitting at its position until real assignments outweigh it.
_EMA_PRIOR_COUNT = 1.0

# Per-rank state: never broadcast by DDP (counters are summed over ranks when read; the restart feature buffer is
# drawn from on rank 0 only; the restart count is the same on every rank by construction).
_LOCAL_BUFFERS = ("usage_counts", "window_counts", "steps", "restart_features", "restart_ptr", "restart_filled",
                  "restarted_codes")


class LossBreakdown(NamedTuple):
    """Unweighted loss terms: ``codebook`` = ||z_hat - sg(z)||^2, ``commitment`` = ||z - sg(z_hat)||^2."""

    codebook: torch.Tensor
    commitment: torch.Tensor


@dataclass(frozen=True)
class CodebookUsage:
    """Code assignments counted since the last ``reset_usage()`` (summed over ranks)."""

    counts: torch.Tensor  # (codebook_size,) int64, on the CPU
    total: int
    perplexity: float  # exp(entropy) of the assignment distribution: 1 (collapsed) .. codebook_size (uniform)
    fraction_used: float  # codes assigned at least once / codebook_size
    codes_used: int

    def __repr__(self) -> str:  # the counts would print thousands of numbers
        return (f"CodebookUsage(codes_used={self.codes_used}/{self.counts.numel()}, fraction_used="
                f"{self.fraction_used:.3f}, perplexity={self.perplexity:.2f}, total={self.total})")

    def as_dict(self) -> dict[str, float | int]:
        """The scalar statistics as a JSON-able dict (for logs)."""
        return {
            "total": self.total,
            "perplexity": self.perplexity,
            "fraction_used": self.fraction_used,
            "codes_used": self.codes_used,
        }


def usage_from_counts(counts: torch.Tensor) -> CodebookUsage:
    """Perplexity and fraction used from per-code assignment counts."""
    counts = counts.detach().to("cpu", torch.int64)
    total = int(counts.sum())
    used = int((counts > 0).sum())
    if total == 0:
        return CodebookUsage(counts, 0, 0.0, 0.0, 0)
    p = counts[counts > 0].double() / total
    perplexity = float(torch.exp(-(p * p.log()).sum()))
    return CodebookUsage(counts, total, perplexity, used / counts.numel(), used)


class VectorQuantizer(nn.Module):
    """Nearest-code vector quantization with a straight-through estimator.

    Args:
        dim: feature dimension d.
        codebook_size: number of codes n.
        commitment_weight: beta in ``loss = L_vq + beta * L_cmt`` (0.25 as VQ-VAE and the paper).
        distance: ``"cosine"`` picks the nearest code on L2-normalised feature and codes but returns the
            un-normalised code (the authors' choice); ``"l2"`` picks the Euclidean nearest.
        init: ``"uniform"`` draws codes from U(init_range) (the authors' U(0, 3): paper-faithful, but it collapses
            to a handful of used codes with cosine distance, see docs/codebook_health.md); ``"normal"`` draws
            N(0, 1); ``"kmeans"`` runs k-means++ seeding then ``kmeans_iters`` Lloyd iterations on observed
            features; ``"features"`` takes random rows of observed features. The two data-driven inits run on the
            first training batch (gathered from every rank), or earlier through :meth:`init_from_features` /
            ``vqsa.models.presets.init_codebook_from_data`` (a pass over a DataLoader; ``vqsa train`` does it when
            ``init_samples > 0``).
        init_range: bounds of the uniform init.
        kmeans_iters: Lloyd iterations of the k-means init (0: k-means++ seeding alone).
        init_samples: features a data pass gathers (over all ranks) for a data-driven init before training;
            0 leaves the init to the first training batch.
        codebook_update: ``"loss"`` (the paper: a parameter trained by L_vq) or ``"ema"`` (a buffer, EMA of the
            assigned features' means; L_vq is not used).
        decay: EMA decay of the cluster sizes and sums (``"ema"`` only).
        eps: Laplace smoothing of the EMA cluster sizes, ``(N_k + eps) / (N + n eps) * N`` (``"ema"`` only).
        dead_code_threshold: when > 0, every ``dead_code_interval`` training steps the codes assigned fewer than
            this many times in that window (summed over ranks) are replaced by recent features (drawn on rank 0 and
            broadcast); with ``"ema"`` their statistics are reset too. 0 disables restarts.
        dead_code_interval: window length in training steps for the restart decision.
        dead_code_buffer: rows of recent training features (per rank, a ring buffer) that restarts draw from;
            0 draws from the current batch only.
        chunk_budget: most elements of one block of the distance matrix (rows x codebook_size).
        seed: seed of the generator used by the data-driven inits and the restarts (deterministic on rank 0).

    Inputs: (B, D), (B, N, D) or channel-first (B, D, H, W); indices have shape (B,), (B, N) or (B, H, W);
    ``quantized`` has the input's shape and dtype.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        commitment_weight: float = 0.25,
        distance: str = "cosine",
        init: str = "uniform",
        *,
        init_range: tuple[float, float] = (0.0, 3.0),
        kmeans_iters: int = 10,
        init_samples: int = 0,
        codebook_update: str = "loss",
        decay: float = 0.99,
        eps: float = 1e-5,
        dead_code_threshold: float = 0.0,
        dead_code_interval: int = 100,
        dead_code_buffer: int = 0,
        chunk_budget: int = 2**24,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for key, val in (("dim", dim), ("codebook_size", codebook_size), ("chunk_budget", chunk_budget),
                         ("dead_code_interval", dead_code_interval)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{key} must be a positive int, got {val!r}")
        for key, val in (("kmeans_iters", kmeans_iters), ("init_samples", init_samples),
                         ("dead_code_buffer", dead_code_buffer)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 0:
                raise ValueError(f"{key} must be an int >= 0, got {val!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if codebook_update not in CODEBOOK_UPDATES:
            raise ValueError(f"codebook_update must be one of {CODEBOOK_UPDATES}, got {codebook_update!r}")
        if not commitment_weight >= 0:
            raise ValueError(f"commitment_weight must be >= 0, got {commitment_weight!r}")
        if not dead_code_threshold >= 0:
            raise ValueError(f"dead_code_threshold must be >= 0, got {dead_code_threshold!r}")
        if not 0 < decay < 1:
            raise ValueError(f"decay must lie in (0, 1), got {decay!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        if init_samples and init not in DATA_INITS:
            raise ValueError(f"init_samples={init_samples} needs a data-driven init {DATA_INITS}, got init={init!r}")
        lo, hi = init_range
        if not lo < hi:
            raise ValueError(f"init_range must be (low, high) with low < high, got {init_range!r}")
        self.dim, self.codebook_size = dim, codebook_size
        self.commitment_weight = float(commitment_weight)
        self.distance, self.init = distance, init
        self.kmeans_iters, self.init_samples = kmeans_iters, init_samples
        self.codebook_update, self.decay, self.eps = codebook_update, float(decay), float(eps)
        self.dead_code_threshold = float(dead_code_threshold)
        self.dead_code_interval = dead_code_interval
        self.chunk_budget = chunk_budget
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

        codebook = torch.empty(codebook_size, dim)
        if init == "normal":
            nn.init.normal_(codebook)
        else:  # the data-driven inits start uniform too, so an un-initted codebook is still usable in eval
            nn.init.uniform_(codebook, lo, hi)
        if codebook_update == "loss":
            self.codebook = nn.Parameter(codebook)
        else:
            self.register_buffer("codebook", codebook)
            self.register_buffer("ema_cluster_size", torch.full((codebook_size,), _EMA_PRIOR_COUNT))
            self.register_buffer("ema_embed_sum", codebook * _EMA_PRIOR_COUNT)
        self.register_buffer("initted", torch.tensor(init not in DATA_INITS))
        self._initted_seen = bool(self.initted)  # host-side copy of `initted`: no sync (or graph break) per step
        self.register_buffer("usage_counts", torch.zeros(codebook_size, dtype=torch.int64), persistent=False)
        self.register_buffer("window_counts", torch.zeros(codebook_size, dtype=torch.int64), persistent=False)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64), persistent=False)
        rows = dead_code_buffer if dead_code_threshold > 0 else 0
        self.register_buffer("restart_features", torch.zeros(rows, dim), persistent=False)
        self.register_buffer("restart_ptr", torch.zeros((), dtype=torch.int64), persistent=False)
        self.register_buffer("restart_filled", torch.zeros((), dtype=torch.int64), persistent=False)
        self.register_buffer("restarted_codes", torch.zeros((), dtype=torch.int64), persistent=False)
        # EMA state is updated from all-reduced statistics, identically on every rank: DDP need not re-broadcast it.
        synced = ("codebook", "ema_cluster_size", "ema_embed_sum") if codebook_update == "ema" else ()
        self._ddp_params_and_buffers_to_ignore = [*_LOCAL_BUFFERS, *synced]

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, codebook_size={self.codebook_size}, distance={self.distance!r}, init={self.init!r}, "
            f"codebook_update={self.codebook_update!r}, commitment_weight={self.commitment_weight}, "
            f"dead_code_threshold={self.dead_code_threshold}"
        )

    @property
    def needs_data_init(self) -> bool:
        """True while a data-driven init (``"kmeans"`` / ``"features"``) has not run yet."""
        return self.init in DATA_INITS and not bool(self.initted)

    # ----------------------------------------------------------------------------------------------- lookup
    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Indices of the nearest codes for rows of ``flat`` (M, D), computed in fp32 in row chunks."""
        return self._nearest(flat, self.codebook)

    @torch.no_grad()
    def _nearest(self, flat: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        with torch.autocast(flat.device.type, enabled=False):
            codes = codes.detach().float()
            flat = flat.detach().float()
            if self.distance == "cosine":
                codes = F.normalize(codes, dim=-1)
                flat = F.normalize(flat, dim=-1)
                bias = None
            else:  # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; ||z||^2 does not change the argmin
                bias = codes.pow(2).sum(-1)
            rows = max(1, self.chunk_budget // codes.shape[0])
            out = torch.empty(flat.shape[0], dtype=torch.int64, device=flat.device)
            for start in range(0, flat.shape[0], rows):
                block = flat[start:start + rows]
                if bias is None:
                    out[start:start + rows] = (block @ codes.T).argmax(-1)
                else:
                    out[start:start + rows] = torch.addmm(bias, block, codes.T, alpha=-2.0).argmin(-1)
        return out

    def get_codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for integer ``indices`` of any shape: returns ``(*indices.shape, dim)``."""
        if not isinstance(indices, torch.Tensor) or indices.dtype not in (torch.int32, torch.int64):
            raise TypeError("indices must be an int32/int64 tensor")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(f"indices must lie in [0, {self.codebook_size})")
        return F.embedding(indices, self.codebook)

    # ---------------------------------------------------------------------------------------------- forward
    def _flatten(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"VectorQuantizer expects a tensor, got {type(z).__name__}")
        if not z.is_floating_point():
            raise TypeError(f"VectorQuantizer expects a floating-point tensor, got {z.dtype}")
        if z.ndim not in (2, 3, 4):
            raise ValueError(f"expected (B, D), (B, N, D) or (B, D, H, W), got shape {tuple(z.shape)}")
        feat_dim = 1 if z.ndim == 4 else -1
        if z.shape[feat_dim] != self.dim:
            raise ValueError(f"feature dimension {z.shape[feat_dim]} does not match the codebook dim {self.dim}")
        if z.ndim == 4:
            z = z.permute(0, 2, 3, 1)
        return z.reshape(-1, self.dim), tuple(z.shape[:-1])

    def forward(self, z: torch.Tensor, return_loss_breakdown: bool = False) -> tuple:
        """Quantize ``z``: returns ``(quantized, indices, loss[, LossBreakdown])``; the loss is 0 in eval.

        Under symbolic tracing (``torch.fx``, torchvision's ``create_feature_extractor``) the quantizer is one
        ``call_module`` node, as a leaf module: its data-dependent steps run when the traced graph runs."""
        if isinstance(z, torch.fx.Proxy):
            return z.tracer.create_proxy("call_module", z.tracer.path_of_module(self), (z,),
                                         {"return_loss_breakdown": return_loss_breakdown})
        flat, lead = self._flatten(z)
        if self.training:
            if not self._initted_seen:
                if not bool(self.initted):
                    self.init_from_features(flat)
                self._initted_seen = True
            if self.dead_code_threshold > 0:
                self._remember(flat)
                self._maybe_restart(flat)
        indices = self.nearest(flat)
        self.usage_counts += torch.bincount(indices, minlength=self.codebook_size)
        if self.training:
            self.window_counts += torch.bincount(indices, minlength=self.codebook_size)
            self.steps += 1

        with torch.autocast(flat.device.type, enabled=False):
            zf = flat.float()
            codes = F.embedding(indices, self.codebook).float()
            if self.training:
                codebook_loss = F.mse_loss(codes, zf.detach())
                commitment_loss = F.mse_loss(zf, codes.detach())
                if self.codebook_update == "ema":  # L_vq is reported but not used: the EMA moves the codes
                    loss = self.commitment_weight * commitment_loss
                    self._ema_update(zf, indices)
                else:
                    loss = codebook_loss + self.commitment_weight * commitment_loss
            else:
                codebook_loss = commitment_loss = loss = zf.new_zeros(())
            quantized = zf + (codes - zf).detach()  # straight-through: forward = code, backward = identity
        quantized = quantized.to(z.dtype).reshape(*lead, self.dim)
        if z.ndim == 4:
            quantized = quantized.permute(0, 3, 1, 2)
        indices = indices.reshape(lead)
        if return_loss_breakdown:
            return quantized, indices, loss, LossBreakdown(codebook_loss, commitment_loss)
        return quantized, indices, loss

    # -------------------------------------------------------------------------------------------------- EMA
    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        """One EMA step from this batch's assignments, with sizes and sums all-reduced over ranks (one collective)."""
        stats = torch.zeros(self.codebook_size, self.dim + 1, device=flat.device, dtype=torch.float32)
        stats[:, :self.dim].index_add_(0, indices, flat.detach().float())
        stats[:, self.dim] = torch.bincount(indices, minlength=self.codebook_size).float()
        dist.all_reduce_sum(stats)
        self.ema_cluster_size.mul_(self.decay).add_(stats[:, self.dim], alpha=1 - self.decay)
        self.ema_embed_sum.mul_(self.decay).add_(stats[:, :self.dim], alpha=1 - self.decay)
        size = self.ema_cluster_size
        total = size.sum()
        smoothed = (size + self.eps) / (total + self.codebook_size * self.eps) * total  # Laplace smoothing
        self.codebook.copy_(self.ema_embed_sum / smoothed.unsqueeze(1))

    @torch.no_grad()
    def _reset_ema(self, rows: torch.Tensor | None = None) -> None:
        """Make codes ``rows`` (all when None) the mean of ``_EMA_PRIOR_COUNT`` pseudo-features at their position."""
        if self.codebook_update != "ema":
            return
        rows = slice(None) if rows is None else rows
        self.ema_cluster_size[rows] = _EMA_PRIOR_COUNT
        self.ema_embed_sum[rows] = self.codebook[rows].float() * _EMA_PRIOR_COUNT

    # ------------------------------------------------------------------------------------------------ usage
    def usage(self) -> CodebookUsage:
        """Assignment statistics since ``reset_usage()``, summed over ranks (a collective when distributed)."""
        counts = dist.all_reduce_sum(self.usage_counts.clone())
        return usage_from_counts(counts)

    def reset_usage(self) -> None:
        """Zero the usage counters (call on every rank)."""
        self.usage_counts.zero_()

    # -------------------------------------------------------------------------------------- init / restarts
    def _sample_rows(self, flat: torch.Tensor, k: int) -> torch.Tensor:
        """``k`` rows of ``flat`` drawn with the module's generator (without replacement when possible)."""
        n = flat.shape[0]
        if k <= n:
            idx = torch.randperm(n, generator=self._generator)[:k]
        else:
            idx = torch.randint(n, (k,), generator=self._generator)
        return flat[idx.to(flat.device)]

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._initted_seen = bool(self.initted)

    @torch.no_grad()
    def init_from_features(self, features: torch.Tensor, method: str | None = None) -> None:
        """Set the codebook from observed features of every rank; a collective: call it on every rank.

        The features (any shape ``forward`` accepts; their number may differ between ranks, 0 included) are gathered
        from all ranks, rank 0 computes the codes and broadcasts them, so every rank ends with the same codebook.

        Args:
            features: this rank's features.
            method: ``"kmeans"`` (k-means++ seeding, then ``kmeans_iters`` Lloyd iterations with the quantizer's
                distance) or ``"features"`` (random rows); default: the quantizer's ``init`` when data-driven, else
                ``"kmeans"``.
        """
        method = method or (self.init if self.init in DATA_INITS else "kmeans")
        if method not in DATA_INITS:
            raise ValueError(f"method must be one of {DATA_INITS}, got {method!r}")
        flat, _ = self._flatten(features)
        x = dist.all_gather_cat(flat.detach().float().contiguous())
        if x.shape[0] == 0:
            raise ValueError("init_from_features got no features on any rank")
        codes = torch.empty(self.codebook_size, self.dim, device=self.codebook.device, dtype=torch.float32)
        if dist.get_rank() == 0:
            codes.copy_(self._kmeans(x) if method == "kmeans" else self._pad_codes(x, x[:0]))
        dist.broadcast(codes, src=0)
        self.codebook.copy_(codes)
        self._reset_ema()
        self.initted.fill_(True)

    def _pad_codes(self, x: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """Complete ``seeds`` to ``codebook_size`` codes with random rows of ``x`` (without replacement when there
        are enough); with more codes than rows the repeats get a 1 % jitter (per-dimension std) to stay distinct."""
        missing = self.codebook_size - seeds.shape[0]
        if missing <= 0:
            return seeds
        extra = self._sample_rows(x, missing)
        if self.codebook_size > x.shape[0]:
            noise = torch.randn(extra.shape, generator=self._generator).to(x.device)
            scale = x.std(0, keepdim=True).nan_to_num(0.0).clamp_min(1e-6) * 0.01
            extra = extra + noise * scale
        return torch.cat([seeds, extra])

    def _kmeans(self, x: torch.Tensor) -> torch.Tensor:
        """k-means++ seeding then Lloyd iterations with the quantizer's own distance, on ``x``'s device; centres are
        the mean of their raw members.

        Seeding draws with ``searchsorted`` on the cumulative distances (uniforms from the module's generator), so
        it never waits for the device. With no more rows than codes every row is a centre already (Lloyd would not
        move them) and the surplus codes are jittered copies: pair this with ``dead_code_threshold``.
        """
        n, m = self.codebook_size, x.shape[0]
        unit = F.normalize(x, dim=-1) if self.distance == "cosine" else None

        def distance_to(i: torch.Tensor) -> torch.Tensor:  # squared L2, or 1 - cosine similarity, to row i
            if unit is not None:
                return (1 - unit @ unit[i]).clamp_min(0)
            return (x - x[i]).pow(2).sum(-1)

        if m <= n:
            return self._pad_codes(x, x[torch.randperm(m, generator=self._generator).to(x.device)])
        draws = torch.rand(n, generator=self._generator, dtype=torch.float64).to(x.device)
        picks = torch.empty(n, dtype=torch.int64, device=x.device)
        picks[0] = (draws[0] * m).long().clamp_max(m - 1)
        gap = distance_to(picks[0])
        for k in range(1, n):  # k-means++: the next centre with probability proportional to its distance
            cum = gap.double().cumsum(0)
            picks[k] = torch.searchsorted(cum, draws[k:k + 1] * cum[-1], right=True)[0].clamp_max(m - 1)
            gap = torch.minimum(gap, distance_to(picks[k]))
        seeds = x[picks]
        for _ in range(self.kmeans_iters):
            assign = self._nearest(x, seeds)
            sums = torch.zeros_like(seeds).index_add_(0, assign, x)
            counts = torch.bincount(assign, minlength=n).unsqueeze(1)
            seeds = torch.where(counts > 0, sums / counts.clamp_min(1), seeds)
        return seeds

    @torch.no_grad()
    def _remember(self, flat: torch.Tensor) -> None:
        """Append the batch to the ring buffer of recent features (no device synchronisation)."""
        rows = self.restart_features.shape[0]
        if rows == 0:
            return
        x = flat.detach()[-rows:].float()
        pos = (self.restart_ptr + torch.arange(x.shape[0], device=x.device)) % rows
        self.restart_features[pos] = x
        self.restart_ptr.add_(x.shape[0]).remainder_(rows)
        self.restart_filled.add_(x.shape[0]).clamp_(max=rows)

    @torch.no_grad()
    def _maybe_restart(self, flat: torch.Tensor) -> None:
        """Every ``dead_code_interval`` steps, replace codes under the usage threshold by recent features."""
        steps = int(self.steps)
        if steps == 0 or steps % self.dead_code_interval:
            return
        counts = dist.all_reduce_sum(self.window_counts.clone())
        dead = (counts < self.dead_code_threshold).nonzero().squeeze(1)
        self.window_counts.zero_()
        if dead.numel() == 0:
            return
        repl = torch.empty(dead.numel(), self.dim, device=flat.device, dtype=torch.float32)
        if dist.get_rank() == 0:
            pool = self.restart_features[:int(self.restart_filled)] if self.restart_features.shape[0] else flat
            repl.copy_(self._sample_rows(pool.detach().float(), dead.numel()))
        dist.broadcast(repl, src=0)
        self.codebook[dead] = repl.to(self.codebook.dtype)
        self._reset_ema(dead)
        self.restarted_codes += dead.numel()

    def quantization_error(self, z: torch.Tensor) -> torch.Tensor:
        """Mean squared distance between ``z`` and its nearest code (no side effects, no gradient)."""
        flat, _ = self._flatten(z)
        with torch.no_grad():
            codes = self.codebook.detach()[self.nearest(flat)].float()
            return (flat.float() - codes).pow(2).mean()
