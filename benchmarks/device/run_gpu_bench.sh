#!/usr/bin/env bash
# The one prepared GPU check of the batched corruption engine (issue 6): fidelity on the GPU, then throughput.
# Budget: under 9 minutes on one H200 (per-step timeouts 180 + 60 + 270 s; typically less).
#
# The device machine has PyTorch, torchvision, numpy, scipy, OpenCV and scikit-image but not vqsa's frost textures
# (they ship in the imagecorruptions-imaug wheel). Carry them in an ignored folder of the checkout, once, here:
#
#   echo /.frost/ >> .git/info/exclude
#   mkdir -p .frost && cp "$(python -c 'from vqsa.corruptions._frost import frost_dir; print(frost_dir())')"/frost[1-5].* .frost/
#
# then call the device tool with:  command="bash benchmarks/device/run_gpu_bench.sh", carry=[".frost"], timeout_s=540
# Results come back under $OUT: gpu_checks.json, gpu_speed.json and the log. Copy the figures into
# docs/batched_corruptions.md with the date and the device line printed at the top.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export VQSA_FROST_DIR="${VQSA_FROST_DIR:-$PWD/.frost}"
OUT="${OUT:-/tmp/vqsa_gpu_bench}"
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1

date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
python -c "import torch, torchvision, numpy, scipy, cv2, skimage; print('torch', torch.__version__, 'cuda', \
torch.version.cuda, '| torchvision', torchvision.__version__, '| numpy', numpy.__version__, '| scipy', \
scipy.__version__, '| cv2', cv2.__version__, '| skimage', skimage.__version__)"
ls "$VQSA_FROST_DIR" || echo "WARNING: no frost textures in $VQSA_FROST_DIR (frost will fail; see the header)"

echo "== fidelity on the GPU (ImageNet profile, 224 px) =="
timeout 180 python benchmarks/device/gpu_checks.py --json "$OUT/gpu_checks.json" || echo "checks exited with $?"

echo "== CUDA-only unit tests (spatter's wet-edge map on the GPU equals OpenCV) =="
timeout 60 python -m pytest -q -p no:cacheprovider tests/corruptions/test_batched_edges.py -k cuda -rs \
  || echo "CUDA tests exited with $?"

echo "== throughput, batch 256, 224 and 32 px, CPU engine per image for the ratio =="
timeout 270 python benchmarks/corruptions_batched_speed.py --device cuda --batch 256 --sizes 224 32 \
  --min-calls 5 --min-time 0.3 --threads 1 --json "$OUT/gpu_speed.json" || echo "speed exited with $?"
date -u
