"""Inference benchmark in one command: `python benchmarks/bench_inference.py [--json] [--model RUN] ...`.

Student (4,1) streaming fps (reference step, fast engine, ONNX Runtime, end-to-end predictor), batch fps,
DeepLabv3-ResNet50 teacher fps, the ratio, and streaming peak memory for 100 vs 1,000 frames, all on the
same phantom clip in one run. Same as `echodfkd bench`.
"""

import sys

from echodfkd.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
