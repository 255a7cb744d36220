"""Inference benchmark in one command: `python benchmarks/bench_inference.py [--json] [--student RUN] ...`.

Same as `echodfkd bench`: student (4,1) streaming fps for every engine and precision (reference step, fast
engine, compiled engine, ONNX Runtime, end-to-end predictor) at the run's infer_size (`--model-size` to
override), batch fps, the fp32 DeepLabv3-ResNet50
teacher's fps (batched and single-frame) and the ratios, the Dice of each reduced precision's masks vs
fp32, and streaming peak memory for 100 vs 1,000 frames, all in one run. Unless --check-clips is given,
the masks are checked on the real clips of the project's ../shared/fixtures when that folder exists
(echonet_dev/ and the two A4C clips, the 582x582 one framed by the sector conversion).
"""

import sys
from pathlib import Path

from echodfkd.cli import main

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--check-clips" not in args and (FIXTURES / "echonet_dev").is_dir():
        args += ["--check-clips", str(FIXTURES / "echonet_dev"), str(FIXTURES)]
    sys.exit(main(["bench", *args]))
