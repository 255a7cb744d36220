"""Load EchoCLIP (or any open_clip CLIP model) offline-first, with one-line errors and a weights hash.

MODEL strings:
- `hf-hub:ORG/NAME` (default `hf-hub:mkaichristensen/echo-clip`): read from the Hugging Face cache
  first; downloaded only when missing and not offline (`--offline` or HF_HUB_OFFLINE=1).
- `local-dir:DIR` or a plain folder: `DIR/open_clip_config.json` plus a weights file.
- a checkpoint file (.safetensors/.bin/.pt/.pth): its architecture is `arch` (an open_clip config
  name), else a sibling `open_clip_config.json`, else inferred from the weights' shapes (arch.py).
Every route ends in `open_clip.create_model_and_transforms(name, pretrained=FILE)`, so the weights
file that is hashed is exactly the one that is loaded, and the returned validation transform is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from echodfkd.errors import ModelError
from echodfkd.evaluate.echoclip.arch import infer_open_clip_config, strip_prefix
from echodfkd.io.atomic import load_json, save_json
from echodfkd.io.digest import file_sha256 as sha256_of

DEFAULT_MODEL = "hf-hub:mkaichristensen/echo-clip"
CONFIG_NAME = "open_clip_config.json"
# open_clip's own preference among weights files in a model folder.
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth",
                "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
PRECISIONS = ("fp32", "bf16")
_PREPROCESS_KW = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation",
                  "resize_mode": "image_resize_mode"}
_CONFIG_DIR: tempfile.TemporaryDirectory | None = None  # registered configs live for the process


def where_to_put(spec: str) -> str:
    """The hint appended to every 'weights not found' error."""
    repo = spec[len("hf-hub:"):] if spec.startswith("hf-hub:") else DEFAULT_MODEL[len("hf-hub:"):]
    return (f"on a connected machine run `huggingface-cli download {repo}` (fills the Hugging Face cache, "
            f"~/.cache/huggingface/hub or $HF_HUB_CACHE), or pass --echoclip local-dir:DIR "
            f"(open_clip_config.json + weights) or --echoclip CHECKPOINT_FILE")


def _hf_cache_dir() -> str:
    # Read at call time (huggingface_hub reads the environment once, at import).
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def _offline(offline: bool) -> bool:
    return offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_hf(repo_id: str, offline: bool = False) -> tuple[Path, Path]:
    """(config, weights) paths of an HF-hub open_clip model: cache first, download only if allowed."""
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
    except ImportError:
        raise ModelError(f"hf-hub:{repo_id}: huggingface_hub is not installed; {where_to_put('hf-hub:' + repo_id)}")
    cache = _hf_cache_dir()
    cfg = try_to_load_from_cache(repo_id, CONFIG_NAME, cache_dir=cache)
    weights = [w for n in WEIGHT_NAMES if isinstance(w := try_to_load_from_cache(repo_id, n, cache_dir=cache), str)]
    if isinstance(cfg, str) and weights:
        return Path(cfg), Path(weights[0])
    if _offline(offline):
        raise ModelError(f"hf-hub:{repo_id}: weights not in the Hugging Face cache ({cache}) and offline; "
                         + where_to_put("hf-hub:" + repo_id))
    import logging
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # no retry chatter: our error below says it all
    try:
        cfg_path = hf_hub_download(repo_id, CONFIG_NAME, cache_dir=cache)
        last: Exception | None = None
        for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            try:
                return Path(cfg_path), Path(hf_hub_download(repo_id, name, cache_dir=cache))
            except Exception as exc:  # noqa: BLE001 - try the next file name
                last = exc
        raise last or RuntimeError("no weights file")
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one line
        raise ModelError(f"hf-hub:{repo_id}: cannot get the weights (not cached; {_hub_reason(exc)}); "
                         + where_to_put("hf-hub:" + repo_id)) from None
    finally:
        hub_log.setLevel(level)


def _hub_reason(exc: BaseException) -> str:
    """A short reason for a failed hub download."""
    kind, msg = type(exc).__name__, str(exc)
    if kind in ("RepositoryNotFoundError", "GatedRepoError") or "401" in msg or "403" in msg:
        return "repository not found, private or gated: log in with `huggingface-cli login`"
    if kind in ("LocalEntryNotFoundError", "OfflineModeIsEnabled") or "connect" in msg.lower():
        return "the hub is unreachable (no network?); --offline fails at once"
    words = (msg.strip().splitlines() or [kind])[0].split()
    return "hub: " + " ".join(words[:20])


def _weights_in_dir(folder: Path) -> Path | None:
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for s in WEIGHT_SUFFIXES for p in folder.glob(f"*{s}"))
    return found[0] if found else None


def _read_config(path: Path) -> tuple[dict, dict]:
    cfg = load_json(path, ModelError, " (expected an open_clip config)")
    model_cfg = cfg.get("model_cfg", cfg)
    if not all(k in model_cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ModelError(f"{path}: open_clip config lacks embed_dim/vision_cfg/text_cfg")
    return model_cfg, cfg.get("preprocess_cfg", {})


def load_state_dict_file(path: Path) -> dict:
    """Tensors of a .safetensors or torch checkpoint (weights_only), `state_dict` unwrapped."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = load_file(str(path))
        else:
            import torch
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickles, truncation, wrong format: one line
        raise ModelError(f"{path}: not a loadable weights file ({type(exc).__name__}: "
                         f"{(str(exc).splitlines() or [''])[0][:160]})") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ModelError(f"{path}: holds no state dict")
    return strip_prefix(sd)


def resolve(spec: str, arch: str | None = None, offline: bool = False) -> tuple[str | dict, dict, Path, str]:
    """(open_clip arch name or model_cfg dict, preprocess_cfg, weights file, where the config came from)."""
    if spec.startswith("hf-hub:"):
        cfg_path, weights = resolve_hf(spec[len("hf-hub:"):], offline)
        model_cfg, pp = _read_config(cfg_path)
        return (arch or model_cfg), pp, weights, "hub open_clip_config.json"
    path = Path(spec[len("local-dir:"):] if spec.startswith("local-dir:") else spec).expanduser()
    if path.is_dir():
        weights = _weights_in_dir(path)
        if weights is None:
            raise ModelError(f"{path}: no weights file (*.safetensors/*.bin/*.pt/*.pth) in the folder; "
                             + where_to_put(spec))
        if (path / CONFIG_NAME).is_file():
            model_cfg, pp = _read_config(path / CONFIG_NAME)
            return (arch or model_cfg), pp, weights, f"{path / CONFIG_NAME}"
        spec, path = str(weights), weights
    if not path.is_file():
        raise ModelError(f"{spec}: model not found (no such file or folder); " + where_to_put(spec))
    if arch:
        return arch, {}, path, f"--echoclip-arch {arch}"
    if (path.parent / CONFIG_NAME).is_file():
        model_cfg, pp = _read_config(path.parent / CONFIG_NAME)
        return model_cfg, pp, path, f"{path.parent / CONFIG_NAME}"
    return infer_open_clip_config(load_state_dict_file(path)), {}, path, "architecture inferred from the weights"


def register_config(model_cfg: dict) -> str:
    """Register a model_cfg with open_clip under a content-derived name and return that name."""
    global _CONFIG_DIR
    import open_clip
    text = json.dumps(model_cfg, sort_keys=True)
    name = "echodfkd-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    if name not in open_clip.list_models():
        if _CONFIG_DIR is None:
            _CONFIG_DIR = tempfile.TemporaryDirectory(prefix="echodfkd-open-clip-")
        file = Path(_CONFIG_DIR.name) / f"{name}.json"
        file.write_text(text)
        open_clip.add_model_config(file)
    return name


def file_sha256(path: Path, memo_dir: Path | None = None) -> str:
    """SHA-256 of a file, remembered in memo_dir/weights-sha256.json by (path, size, mtime)."""
    real = Path(os.path.realpath(path))
    st = real.stat()
    tag = f"{st.st_size}:{st.st_mtime_ns}"
    memo_file = memo_dir / "weights-sha256.json" if memo_dir else None
    memo = load_json(memo_file, default={}) if memo_file else {}
    memo = memo if isinstance(memo, dict) else {}
    hit = memo.get(str(real))
    if hit and hit.get("tag") == tag:
        return hit["sha256"]
    digest = sha256_of(real)
    if memo_file:
        memo[str(real)] = {"tag": tag, "sha256": digest}
        save_json(memo_file, memo)
    return digest


@dataclass
class ClipModel:
    """An open_clip model ready to embed frames: validation transform, tokenizer, cache key."""

    net: Any
    preprocess: Callable
    tokenizer: Callable
    spec: str
    weights_hash: str
    device: str = "cpu"
    precision: str = "fp32"
    weights_file: str | None = None
    arch: str = ""
    image_calls: int = field(default=0)

    @property
    def key(self) -> str:
        """Cache key: weights + preprocessing + precision (embeddings depend on all three)."""
        pp = getattr(self.net.visual, "preprocess_cfg", {})
        text = f"{self.weights_hash}|{json.dumps(pp, sort_keys=True, default=str)}|{self.precision}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _autocast(self):
        import torch
        if self.precision == "bf16":
            return torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def preprocess_frames(self, frames: np.ndarray) -> Any:
        """Grayscale uint8 (T,H,W) -> the model's validation transform of RGB images, (T,3,S,S)."""
        import torch
        from PIL import Image
        return torch.stack([self.preprocess(Image.fromarray(f).convert("RGB")) for f in np.asarray(frames)])

    def encode_images(self, images: Any) -> np.ndarray:
        """L2-normalised image embeddings (N,D) float32 of preprocessed images."""
        import torch
        self.image_calls += 1
        with torch.inference_mode(), self._autocast():
            feats = self.net.encode_image(images.to(self.device))
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()

    def encode_texts(self, prompts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings (P,D) float32."""
        import torch
        tokens = self.tokenizer(list(prompts)).to(self.device)
        with torch.inference_mode(), self._autocast():
            feats = self.net.encode_text(tokens)
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()


def _short(exc: BaseException) -> str:
    msg = str(exc)
    if "Missing key" in msg or "Unexpected key" in msg or "size mismatch" in msg:
        return "the weights do not match this architecture (missing/unexpected keys or shape mismatch)"
    return f"{type(exc).__name__}: {(msg.strip().splitlines() or [''])[0][:200]}"


def load_clip_model(spec: str = DEFAULT_MODEL, arch: str | None = None, device: str = "cpu",
                    precision: str | None = None, offline: bool = False,
                    hash_dir: str | os.PathLike | None = None) -> ClipModel:
    """Load an open_clip model from a MODEL string (see module doc); errors are one-line ModelErrors."""
    import torch
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"--device {device}: no CUDA device is visible; use --device cpu")
    precision = precision or ("bf16" if device.startswith("cuda") else "fp32")
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    target, pp, weights, source = resolve(spec, arch, offline)
    try:
        import open_clip
    except ImportError:
        raise ModelError("open_clip is not installed: pip install 'echodfkd[echoclip]'") from None
    name = register_config(target) if isinstance(target, dict) else target
    if name not in open_clip.list_models():
        raise ModelError(f"--echoclip-arch {name}: not an open_clip architecture (see open_clip.list_models())")
    kwargs = {_PREPROCESS_KW[k]: (tuple(v) if isinstance(v, list) else v) for k, v in pp.items() if k in _PREPROCESS_KW}
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=str(weights), device=device, precision="fp32", **kwargs)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:  # noqa: BLE001 - open_clip raises many types; report one line
        raise ModelError(f"{weights}: cannot build the open_clip model '{spec}': {_short(exc)}") from None
    net.eval()
    digest = file_sha256(weights, Path(hash_dir) if hash_dir else None)
    if isinstance(target, dict):
        tower = target["vision_cfg"].get("timm_model_name") or "ViT"
        label = f"{tower} image tower, embed dim {target['embed_dim']}; config: {source}"
    else:
        label = f"open_clip architecture {name}"
    return ClipModel(net=net, preprocess=preprocess, tokenizer=tokenizer, spec=spec, weights_hash=digest,
                     device=device, precision=precision, weights_file=str(weights), arch=label)
