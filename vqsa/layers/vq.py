"""Vector quantizer with a gradient-learned codebook (VQ-VAE losses), usage statistics and dead-code restarts.

``quantized, indices, loss = vq(z)`` in train and eval alike. The codebook is an ``nn.Parameter`` updated by the VQ
loss ``||z_hat - sg(z)||^2`` (so DDP averages its gradient like any other weight); the encoder is pulled towards
its code by the commitment loss ``||z - sg(z_hat)||^2``. Both are mean squared errors, as in the authors' code.
Nearest codes are found in fp32 (also under autocast), in row chunks so the ``rows x codebook_size`` distance matrix
never exceeds ``chunk_budget`` elements.

Collectives (dead-code restarts, k-means init, ``usage()``) go through :mod:`vqsa.utils.distributed` and are decided
when called, so a quantizer built before ``init_process_group`` still behaves correctly under DDP.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vqsa.utils import distributed as dist

DISTANCES = ("cosine", "l2")
INITS = ("uniform", "normal", "kmeans")

# Per-rank counters: never broadcast by DDP (they are summed over ranks when read instead).
_LOCAL_BUFFERS = ("usage_counts", "window_counts", "steps")


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
            to a handful of used codes with cosine distance, see docs/models.md); ``"normal"`` draws N(0, 1);
            ``"kmeans"`` runs k-means++ / Lloyd on the first training batch (rank 0's, broadcast to all ranks).
        init_range: bounds of the uniform init.
        kmeans_iters: Lloyd iterations of the k-means init.
        dead_code_threshold: when > 0, every ``dead_code_interval`` training steps the codes assigned fewer than
            this many times in that window (summed over ranks) are replaced by features of the current batch
            (drawn on rank 0 and broadcast). 0 disables restarts.
        dead_code_interval: window length in training steps for the restart decision.
        chunk_budget: most elements of one block of the distance matrix (rows x codebook_size).
        seed: seed of the generator used by the k-means init and the restarts (deterministic on rank 0).

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
        dead_code_threshold: float = 0.0,
        dead_code_interval: int = 100,
        chunk_budget: int = 2**24,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for key, val in (("dim", dim), ("codebook_size", codebook_size), ("chunk_budget", chunk_budget),
                         ("dead_code_interval", dead_code_interval)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{key} must be a positive int, got {val!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if not commitment_weight >= 0:
            raise ValueError(f"commitment_weight must be >= 0, got {commitment_weight!r}")
        if not dead_code_threshold >= 0:
            raise ValueError(f"dead_code_threshold must be >= 0, got {dead_code_threshold!r}")
        if kmeans_iters < 0:
            raise ValueError(f"kmeans_iters must be >= 0, got {kmeans_iters!r}")
        lo, hi = init_range
        if not lo < hi:
            raise ValueError(f"init_range must be (low, high) with low < high, got {init_range!r}")
        self.dim, self.codebook_size = dim, codebook_size
        self.commitment_weight = float(commitment_weight)
        self.distance, self.init = distance, init
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = float(dead_code_threshold)
        self.dead_code_interval = dead_code_interval
        self.chunk_budget = chunk_budget
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

        self.codebook = nn.Parameter(torch.empty(codebook_size, dim))
        if init == "normal":
            nn.init.normal_(self.codebook)
        else:  # "kmeans" starts uniform too, so an un-initted codebook is still usable in eval
            nn.init.uniform_(self.codebook, lo, hi)
        self.register_buffer("initted", torch.tensor(init != "kmeans"))
        self.register_buffer("usage_counts", torch.zeros(codebook_size, dtype=torch.int64), persistent=False)
        self.register_buffer("window_counts", torch.zeros(codebook_size, dtype=torch.int64), persistent=False)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64), persistent=False)
        self._ddp_params_and_buffers_to_ignore = list(_LOCAL_BUFFERS)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, codebook_size={self.codebook_size}, distance={self.distance!r}, init={self.init!r}, "
            f"commitment_weight={self.commitment_weight}, dead_code_threshold={self.dead_code_threshold}"
        )

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
            rows = max(1, self.chunk_budget // self.codebook_size)
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
        """Quantize ``z``: returns ``(quantized, indices, loss[, LossBreakdown])``; the loss is 0 in eval."""
        flat, lead = self._flatten(z)
        if self.training:
            if not bool(self.initted):
                self._kmeans_init(flat)
            if self.dead_code_threshold > 0:
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

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        """Initialise the codebook by k-means on rank 0's batch, broadcast to every rank."""
        codes = torch.empty_like(self.codebook, dtype=torch.float32)
        if dist.get_rank() == 0:
            codes.copy_(self._kmeans(flat.detach().float()))
        dist.broadcast(codes, src=0)
        self.codebook.copy_(codes)
        self.initted.fill_(True)

    def _kmeans(self, x: torch.Tensor) -> torch.Tensor:
        """k-means++ seeding then Lloyd iterations with the quantizer's own distance; centres are the mean of
        their raw members.

        With no more rows than codes, every row is a centre already (Lloyd would not move them) and the surplus
        centres are repeated rows with a small jitter, so that they are distinct (pair this with
        ``dead_code_threshold`` to recycle the codes that stay unused).
        """
        n = self.codebook_size
        m = min(n, x.shape[0])
        unit = F.normalize(x, dim=-1) if self.distance == "cosine" else None

        def distance_to(i: torch.Tensor) -> torch.Tensor:  # squared L2, or 1 - cosine similarity, to row i
            if unit is not None:
                return (1 - unit @ unit[i]).clamp_min(0)
            return (x - x[i]).pow(2).sum(-1)

        first = torch.randint(x.shape[0], (), generator=self._generator)
        centres = [x[first]]
        gap = distance_to(first)
        for _ in range(m - 1):  # k-means++: draw the next centre with probability proportional to its distance
            if float(gap.sum()) <= 0:
                break
            pick = torch.multinomial(gap.cpu().double(), 1, generator=self._generator)[0]
            centres.append(x[pick])
            gap = torch.minimum(gap, distance_to(pick))
        seeds = torch.stack(centres)
        if seeds.shape[0] < n:
            extra = self._sample_rows(x, n - seeds.shape[0])
            noise = torch.randn(extra.shape, generator=self._generator).to(x.device)
            seeds = torch.cat([seeds, extra + noise * x.std(0, keepdim=True).clamp_min(1e-6) * 0.01])
            return seeds
        for _ in range(self.kmeans_iters):
            assign = self._nearest(x, seeds)
            sums = torch.zeros_like(seeds).index_add_(0, assign, x)
            counts = torch.bincount(assign, minlength=n).unsqueeze(1)
            seeds = torch.where(counts > 0, sums / counts.clamp_min(1), seeds)
        return seeds

    @torch.no_grad()
    def _maybe_restart(self, flat: torch.Tensor) -> None:
        """Every ``dead_code_interval`` steps, replace codes under the usage threshold by batch features."""
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
            repl.copy_(self._sample_rows(flat.detach().float(), dead.numel()))
        dist.broadcast(repl, src=0)
        self.codebook[dead] = repl.to(self.codebook.dtype)

    def quantization_error(self, z: torch.Tensor) -> torch.Tensor:
        """Mean squared distance between ``z`` and its nearest code (no side effects, no gradient)."""
        flat, _ = self._flatten(z)
        with torch.no_grad():
            codes = self.codebook.detach()[self.nearest(flat)].float()
            return (flat.float() - codes).pow(2).mean()
