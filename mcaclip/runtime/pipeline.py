"""The edit pipeline over a bundle: prompts -> e_t, seeds -> w, (w, prompts) -> edits.

One call edits n latents with P prompts: fusion and mapper run on the n*P (latent, prompt)
pairs, and the masked generator runs the original stream once for the n latents and the edited
stream for the n*P pairs (see :class:`mcaclip.nn.editor.MaskedSynthesis`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcaclip.bundle import Bundle, BundleError
from mcaclip.errors import McaError, PromptError
from mcaclip.prompts import check_prompts, tokenize
from mcaclip.runtime.backends import BACKEND_NAMES, HOST_BACKENDS
from mcaclip.runtime.backends.base import BackendError, GraphRunner
from mcaclip.runtime.io import check_finite, seed_latents, to_uint8

log = logging.getLogger(__name__)


@dataclass
class EditBatch:
    indices: list[int]  # positions of these latents in the input
    images: np.ndarray  # [n, P, 3, H, W] in [-1, 1]; pixels: [n, P, H, W, 3] uint8
    originals: np.ndarray  # [n, 3, H, W]; pixels: [n, H, W, 3] uint8
    masks: list[np.ndarray]  # per styled conv [n, P, 1, H_l, W_l]; [] without masks


class EditPipeline:
    """Edit latents with a bundle. A context manager; graphs are opened on first use."""

    def __init__(
        self,
        bundle: Bundle | str | Path,
        backend: str = "onnxruntime",
        providers: list[str] | None = None,
        device: str | None = None,
        precision: str | None = None,
        cuda_graphs: bool | None = None,
        compile: bool | str = False,
        channels_last: bool | None = None,
        fold_blur: bool | None = None,
        fuse_tails: bool | None = None,
        stack_streams: bool | None = None,
        subpixel: bool | None = None,
        phase_conv: bool | None = None,
        cudnn_benchmark: bool | None = None,
        triton_masks: bool | None = None,
        triton_epilogues: bool | None = None,
        triton_convs: bool | str | None = None,
        pad_batches: bool | None = None,
        threads: int | None = None,
        streams: int | None = None,
    ):
        """``device``: torch/TensorRT device (default: cuda when PyTorch sees a GPU, else cpu);
        ``precision``/``cuda_graphs``/``compile`` configure the torch backend (CUDA graphs
        default to on with a GPU; ``compile``: True or "default", or "max-autotune"; precision
        default fp32) and pick the FP16 engines of the tensorrt backend; the openvino backend
        takes ``precision`` fp32, bf16 or fp16 (default: its measured default where the CPU
        computes it, see :mod:`mcaclip.runtime.backends.openvino`), ``threads`` and
        ``streams``;
        ``channels_last``/``fold_blur``/``fuse_tails``/``stack_streams``/``subpixel``/
        ``phase_conv``/``cudnn_benchmark``/``triton_masks``/``triton_epilogues``/
        ``triton_convs`` (or ``"auto"``) are the torch backend's speed switches (see
        :mod:`mcaclip.runtime.backends.torch`). ``pad_batches`` (default: with CUDA graphs or
        ``compile``): :meth:`edit` fills a last, smaller batch up to the batch size, so that it
        replays the same CUDA graph instead of capturing (and
        compiling) one for a new shape."""
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        if backend not in BACKEND_NAMES:
            raise BackendError(f"backend {backend!r}: choose one of {', '.join(BACKEND_NAMES)}")
        self.backend = backend
        self.providers = providers
        if device is None:
            import torch

            host = backend in HOST_BACKENDS
            device = "cuda" if not host and torch.cuda.is_available() else "cpu"
        self.device = device
        if (threads is not None or streams is not None) and backend != "openvino":
            raise BackendError(f"threads and streams are settings of openvino, not {backend}")
        self.threads, self.streams = threads, streams
        if backend == "openvino":  # checked here: a missing OpenVINO or precision fails now
            from mcaclip.runtime.backends import openvino

            precision = openvino.resolve_precision(precision, openvino.ov_device(device))
        self.precision = precision or "fp32"
        self.cuda_graphs = device.startswith("cuda") if cuda_graphs is None else cuda_graphs
        self.compile = compile
        if pad_batches is None:  # a new batch shape costs a capture, or a minute of compiling
            pad_batches = backend not in HOST_BACKENDS and bool(self.cuda_graphs or compile)
        self.pad_batches = pad_batches
        self.switches = dict(  # handed to the torch backend as they are (TORCH_SWITCHES)
            fold_blur=fold_blur,
            channels_last=channels_last,
            subpixel=subpixel,
            phase_conv=phase_conv,
            fuse_tails=fuse_tails,
            stack_streams=stack_streams,
            cudnn_benchmark=cudnn_benchmark,
            triton_masks=triton_masks,
            triton_epilogues=triton_epilogues,
            triton_convs=triton_convs,
        )
        gen = self.bundle.preset["generator"]
        self.style_dim = int(gen["style_dim"])
        self.n_latent = 2 * (int(gen["size"]).bit_length() - 1) - 2
        self.size = int(gen["size"])
        self._runners: dict[str, GraphRunner] = {}
        self._cache = self.bundle.prompt_cache()
        self._editor = None
        if self.bundle.random_weights:
            log.warning(
                "bundle %s has RANDOM weights (built with --random-weights): its edits are "
                "noise, for tests and benchmarks only",
                self.bundle.root,
            )

    # -- plumbing ----------------------------------------------------------------------------

    def __enter__(self) -> EditPipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
        self._editor = None

    @property
    def device_editor(self):
        """The backend object that runs a whole edit on the device (torch, tensorrt), or None
        (onnxruntime, openvino: the graphs run one after the other through host arrays)."""
        if self.backend in HOST_BACKENDS:
            return None
        if self._editor is None:
            if self.backend == "tensorrt":
                from mcaclip.runtime.backends.tensorrt import TrtEditor

                self._editor = TrtEditor(self.bundle, self.device, cuda_graphs=self.cuda_graphs)
            else:
                from mcaclip.runtime.backends.torch import TorchEditor

                self._editor = TorchEditor(
                    self.bundle.root,
                    self.bundle.random_weights,
                    self.device,
                    precision=self.precision,
                    cuda_graphs=self.cuda_graphs,
                    compile=self.compile,
                    **self.switches,
                )
        return self._editor

    @property
    def max_batch(self) -> int:
        return int(self.bundle.batch_profile["max"])

    @property
    def max_prompts(self) -> int:
        return int(self.bundle.batch_profile["max_prompts"])

    def runner(self, name: str) -> GraphRunner:
        if name not in self._runners:
            entry = self.bundle.graphs.get(name)
            if entry is None:
                raise BundleError(f"{self.bundle.root}: has no {name} graph")
            inputs = [t["name"] for t in entry["inputs"]]
            outputs = [t["name"] for t in entry["outputs"]]
            if self.backend in ("torch", "tensorrt"):
                self._runners[name] = self.device_editor.runner(name, inputs, outputs)
            elif self.backend == "openvino":
                from mcaclip.runtime.backends.openvino import OvRunner

                self._runners[name] = OvRunner(
                    name,
                    self.bundle.graph_path(name, "fp32"),
                    self.precision,
                    cache_dir=self.bundle.root / "ov_cache",
                    threads=self.threads,
                    streams=self.streams,
                    device=self.device,
                )
            else:
                from mcaclip.runtime.backends.onnxruntime import OrtRunner

                self._runners[name] = OrtRunner(
                    name,
                    self.bundle.graph_path(name, "fp32"),
                    self.providers,
                    cache_dir=self.bundle.root / "ort_cache",
                )
        return self._runners[name]

    # -- stages ------------------------------------------------------------------------------

    def tokenize(self, prompts: list[str]) -> np.ndarray:
        return tokenize(prompts, self.bundle.manifest["text"]["context_length"]).numpy()

    def embed(self, prompts: list[str]) -> np.ndarray:
        """Text embeddings [P, D_text]: from the bundle's cache, else the text_encoder graph."""
        check_prompts(prompts, self.bundle.manifest["text"]["context_length"])
        missing = [p for p in prompts if p not in self._cache]
        if missing:
            if "text_encoder" not in self.bundle.graphs:
                raise PromptError(
                    f"prompt {missing[0]!r} is not in the bundle's cache and the bundle has no "
                    "text encoder; rebuild it with --prompt for that prompt (or without "
                    "--no-text-encoder)"
                )
            tokens = self.tokenize(missing)
            out = self.runner("text_encoder").infer({"tokens": tokens})["e_t"]
            self._cache.update(zip(missing, out))
        return np.stack([self._cache[p] for p in prompts]).astype(np.float32)

    def seeds_to_latents(self, seeds: list[int], truncation: float = 0.7) -> np.ndarray:
        """W+ latents [N, L, D] of the mapping network for each seed, truncated; a bundle with
        a latent bank (the toy world's held-out faces) returns its latent number ``seed``."""
        bank = self.bundle.manifest.get("latent_bank")
        if bank:
            latents = np.load(self.bundle.root / bank["file"], allow_pickle=False)
            bad = [s for s in seeds if not 0 <= s < len(latents)]
            if bad:
                raise McaError(
                    f"seed {bad[0]}: this bundle's seeds pick one of its {len(latents)} "
                    f"held-out latents; use seeds 0-{len(latents) - 1}"
                )
            return latents[seeds]
        z = seed_latents(seeds, self.style_dim)
        out = []
        for start in range(0, len(z), self.max_batch):
            chunk = z[start : start + self.max_batch]
            n = len(chunk)
            if self.pad_batches and n < self.max_batch < len(z):  # one captured shape
                chunk = pad_rows(chunk, self.max_batch)
            trunc = np.full((len(chunk), 1), truncation, np.float32)
            w = self.runner("mapping").infer({"z": chunk, "truncation": trunc})["w_plus"]
            out.append(w[:n])
        return np.concatenate(out)

    @property
    def has_encoder(self) -> bool:
        return "encoder" in self.bundle.graphs

    @property
    def encoder_size(self) -> int:
        """Side of the aligned faces the bundle's photo encoder reads."""
        if not self.has_encoder:
            raise BundleError(
                f"{self.bundle.root}: has no photo encoder; rebuild it with mcaexport "
                "build-engine --encoder e4e_ffhq_encode.pt"
            )
        return int(self.bundle.graphs["encoder"]["inputs"][0]["shape"][-1])

    def encode(self, faces: np.ndarray) -> np.ndarray:
        """Aligned faces [N, 3, S, S] float32 in [-1, 1] -> W+ latents [N, L, D]."""
        size = self.encoder_size
        if faces.ndim != 4 or faces.shape[1:] != (3, size, size):
            raise McaError(f"faces must be [N, 3, {size}, {size}], got {list(faces.shape)}")
        check_finite(faces, "faces")
        runner = self.runner("encoder")
        out = []
        for start in range(0, len(faces), self.max_batch):
            chunk = np.ascontiguousarray(faces[start : start + self.max_batch], np.float32)
            n = len(chunk)
            if self.pad_batches and n < self.max_batch < len(faces):
                chunk = pad_rows(chunk, self.max_batch)
            out.append(runner.infer({"image": chunk})["w_plus"][:n])
        return np.concatenate(out) if out else np.zeros((0, self.n_latent, self.style_dim))

    def edit_batch(
        self,
        w: np.ndarray,
        e: np.ndarray,
        masks: bool = True,
        pixels: bool = False,
        keep: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, list]:
        """w [n, L, D] with every embedding e [P, D_t] -> images [n, P, 3, H, W], originals,
        per-layer masks (``masks=False``: [], and a device backend does not copy them out:
        at 1024 px they are most of an edit's device-to-host bytes). ``pixels``: images
        [n, P, H, W, 3] and originals [n, H, W, 3] as uint8 for PNG files (a device backend
        converts before copying: a quarter of the bytes). ``keep``: the results of the first
        ``keep`` latents only (a padded batch; a device backend copies only those)."""
        editor = self.device_editor
        if editor is not None:  # one device call, no host copies between the stages
            return editor.edit(w, e, masks, pixels, keep)
        n, p = len(w), len(e)
        w_rep = np.repeat(w, p, axis=0)
        e_rep = np.tile(e, (n, 1))
        t_w = self.runner("fusion").infer({"w": w_rep, "e_t": e_rep})["t_w"]
        w_edit = self.runner("mapper").infer({"w": w_rep, "t_w": t_w})["w_edit"]
        out = self.runner("masked_generator").infer(
            {
                "w": w,
                "w_edit": w_edit.reshape(n, p, *w.shape[1:]),
                "e_t": e_rep.reshape(n, p, -1),
            },
            None if masks else ["image", "original"],  # masks: not fetched unless asked
        )
        rows = slice(keep)  # slice(None): all
        layer_masks = [
            out[k][rows] for k in sorted(out) if k.startswith("mask_")
        ]  # [] unless asked
        image, original = out["image"][rows], out["original"][rows]
        if pixels:
            return to_uint8(image), to_uint8(original), layer_masks
        return image, original, layer_masks

    def check_request(self, w: np.ndarray, n_prompts: int, batch_size: int) -> None:
        if w.ndim != 3 or w.shape[1:] != (self.n_latent, self.style_dim):
            raise McaError(
                f"latents must be [N, {self.n_latent}, {self.style_dim}] for this bundle, "
                f"got {list(w.shape)}"
            )
        check_finite(w, "latents")
        self.check_batch(batch_size, n_prompts)

    def check_batch(self, batch_size: int, n_prompts: int = 1) -> None:
        """Latents per call and prompts per latent must fit the bundle's batch profile."""
        if not 1 <= batch_size <= self.max_batch:
            raise McaError(
                f"batch size {batch_size} is outside the bundle's batch profile "
                f"1..{self.max_batch}; lower --batch-size or rebuild with --max-batch {batch_size}"
            )
        if n_prompts > self.max_prompts:
            raise McaError(
                f"{n_prompts} prompts per latent is above the bundle's {self.max_prompts}; "
                f"rebuild with --max-prompts {n_prompts} or edit in several runs"
            )
        if n_prompts == 0:
            raise PromptError("no prompt: pass --prompt at least once")

    def edit(
        self,
        w: np.ndarray,
        prompts: list[str],
        batch_size: int = 4,
        masks: bool = True,
        pixels: bool = False,
    ) -> Iterator[EditBatch]:
        """Edit every latent w [N, L, D] with every prompt, ``batch_size`` latents per call
        (``masks=False``: batches carry no masks; ``pixels``: uint8 pictures, see
        :meth:`edit_batch`). With ``pad_batches`` a last, smaller batch is filled up with
        copies of its last latent (their results dropped): every call has one shape."""
        self.check_request(w, len(prompts), batch_size)
        e = self.embed(prompts)
        for start in range(0, len(w), batch_size):
            chunk = w[start : start + batch_size]
            n = len(chunk)
            if self.pad_batches and n < batch_size < len(w):
                chunk = pad_rows(chunk, batch_size)
            keep = n if len(chunk) > n else None
            images, originals, layer_masks = self.edit_batch(chunk, e, masks, pixels, keep)
            yield EditBatch(list(range(start, start + n)), images, originals, layer_masks)


def pad_rows(chunk: np.ndarray, size: int) -> np.ndarray:
    """``chunk`` [n, ...] filled up to ``size`` rows with copies of its last row (a padded
    batch: the same call shape as the full ones; the copies' results are dropped)."""
    return np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
