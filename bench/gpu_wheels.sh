#!/usr/bin/env bash
# The wheels bench/gpu_check.py needs on a bare GPU machine, fetched here into .whl/ (which git ignores, through
# .git/info/exclude), and the one-line command that installs them there and runs the check.
#
#   bash bench/gpu_wheels.sh      # then run the printed command on the GPU machine, carrying .whl (600 s)
#
# The GPU machine has torch (CUDA), transformers 5.17, accelerate 1.15, pyarrow, pandas, xxhash, fsspec,
# huggingface-hub, tokenizers, safetensors and pyyaml (its package list in the device notes), and can download
# nothing. It lacks TRL, datasets and bitsandbytes, and datasets' dill and multiprocess; its peft is of another
# version than ours. transformers travels too, at the version requirements.txt pins, with the regex that
# transformers checks for when imported: the studio is tested on that version, not on 5.17. Nothing is left
# out. The wheels and the working tree travel together and must stay under 64 MiB: the total is printed and
# checked. Should it ever be over, transformers and regex are the ones to leave behind (13 MiB), and the
# machine's own transformers runs the check.
set -euo pipefail
cd "$(dirname "$0")/.."

pin() { grep -E "^$1==" requirements.txt; } # the version requirements.txt pins
WHEELS=(
  "$(pin trl)" "$(pin datasets)" "$(pin peft)" "$(pin bitsandbytes)" "$(pin transformers)"
  dill==0.4.1 multiprocess==0.70.19 # what datasets 5.2 accepts: dill<0.4.2, multiprocess<0.70.20
  regex==2026.12.2                  # transformers 5.23 refuses to import with regex older than 2025.10.22
)

mkdir -p .git/info
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
rm -rf .whl
PLATFORMS=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014; do
  PLATFORMS+=(--platform "${tag}_x86_64")
done # bitsandbytes 0.50.2 is manylinux_2_24
"${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d .whl "${WHEELS[@]}"

"${PYTHON:-python3}" - <<'EOF'
import os
import subprocess

listed = subprocess.run(
    ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], capture_output=True, check=True
).stdout.split(b"\0")
tree = sum(os.path.getsize(name) for name in listed if name and os.path.isfile(name))
wheels = sorted((entry.stat().st_size, entry.name) for entry in os.scandir(".whl"))
for size, name in wheels:
    print(f"{size / 2**20:8.2f} MiB  {name}")
total = tree + sum(size for size, _ in wheels)
print(f"wheels {sum(size for size, _ in wheels) / 2**20:.1f} MiB + working tree {tree / 2**20:.1f} MiB "
      f"= {total / 2**20:.1f} MiB of the 64 MiB a call carries")
if total >= 64 * 2**20:
    raise SystemExit("over 64 MiB: leave transformers and regex out of WHEELS (see the top of this script)")
EOF

echo
echo "On the GPU machine (carry .whl, timeout 600 s), in the repository root:"
echo 'python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 python3 bench/gpu_check.py'
