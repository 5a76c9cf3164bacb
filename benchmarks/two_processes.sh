#!/bin/bash
# Does this machine run two single-thread trainings side by side at full speed? ResNet-20, bf16 autocast,
# batch 128, 12 timed steps after 3 warm-up steps: once alone, then two at once. Run on an idle machine:
#   benchmarks/two_processes.sh        (from the checkout, with .venv installed)
set -e
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
run() {
  OMP_NUM_THREADS=1 "$PY" - "$1" <<'PYEOF'
import sys, time
import torch
import torch.nn.functional as F
from slimlab.models import build
torch.set_num_threads(1)
torch.manual_seed(0)
m = build("resnet20").to(memory_format=torch.channels_last)
opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (128,))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(m(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
for _ in range(3):
    step()
t = time.perf_counter()
for _ in range(12):
    step()
print(sys.argv[1], round(12 * 128 / (time.perf_counter() - t)), "img/s", flush=True)
PYEOF
}
date -u +%FT%TZ
run alone
run pairA & run pairB; wait
