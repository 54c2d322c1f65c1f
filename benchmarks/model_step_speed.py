"""Training-step speed of VQSA relative to the plain backbone (the fine-tuning baseline), in the same process.

    python benchmarks/model_step_speed.py                      # tv:resnet50 at 8 x 224 and cifar_resnet20 at 128 x 32
    python benchmarks/model_step_speed.py --model tv:resnet50 --batch-size 256 --amp   # on a GPU

One step = forward + cross-entropy (+ the VQ loss) + backward + Adam step on random [0, 1] images. The two models
are timed in alternating rounds (so drifting machine load hits both) and the median step time is reported.
Ratio = baseline step time / VQSA step time (1.0 = VQSA costs nothing; the goal on a GPU is >= 0.98).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import vqsa


def _step(model, opt, x, y, amp_dtype):
    with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        out = model(x, return_aux=True)
        loss = F.cross_entropy(out.logits, y) + out.aux_loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _time(model, opt, x, y, amp_dtype, steps):
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        _step(model, opt, x, y, amp_dtype)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def bench(name, num_classes, codebook_size, batch, side, device, amp_dtype, rounds, steps, **kwargs):
    models = {
        "baseline": vqsa.create_model(name, num_classes, vq=False, **kwargs),
        "vqsa": vqsa.create_model(name, num_classes, codebook_size=codebook_size, **kwargs),
    }
    x = torch.rand(batch, 3, side, side, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    runs, times = {}, {k: [] for k in models}
    for key, model in models.items():
        model.to(device).train().check_inputs = False
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        runs[key] = (model, opt)
        _step(model, opt, x, y, amp_dtype)  # warm-up
    for _ in range(rounds):
        for key, (model, opt) in runs.items():
            times[key].append(_time(model, opt, x, y, amp_dtype, steps))
    base, ours = statistics.median(times["baseline"]), statistics.median(times["vqsa"])
    print(f"{name:<16} batch {batch:>3} x {side:>3}px n={codebook_size:<6} "
          f"baseline {base * 1e3:8.1f} ms/step ({batch / base:7.1f} img/s)  "
          f"vqsa {ours * 1e3:8.1f} ms/step ({batch / ours:7.1f} img/s)  ratio {base / ours:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="one backbone (default: tv:resnet50 and cifar_resnet20)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--codebook-size", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2, help="steps per timed round")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    amp = torch.bfloat16 if args.amp else None
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, amp {args.amp}, "
          f"{time.strftime('%Y-%m-%d')}")
    if args.model:
        bench(args.model, 1000, args.codebook_size, args.batch_size or 8, args.input_size or 224, args.device, amp,
              args.rounds, args.steps)
        return
    bench("tv:resnet50", 1000, args.codebook_size, args.batch_size or 8, 224, args.device, amp, args.rounds,
          args.steps)
    bench("cifar_resnet20", 10, 1000, 128, 32, args.device, amp, args.rounds, args.steps * 3)


if __name__ == "__main__":
    main()
