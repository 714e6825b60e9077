"""Custom actions: fine-tune a torchvision video classifier's head on the user's labelled clips.

Data: a folder with one sub-folder of clips per class, or a CSV with ``video,start,end,label``
(paths relative to the CSV).  Each sample gives one clip of the model's length, sampled at
15 fps from the middle of its span.

Modes:
* default: the backbone (base weights) is frozen; its features are computed once per clip
  and only a new classification head is trained (fast, little data needed);
* ``train_last_block``: the backbone's last block is trained too;
* ``from_scratch``: every weight starts random and is trained (an explicit choice, for small
  domains and for machines without the pretrained file).

The result is a weights file carrying its label set (``{"state_dict", "categories", "arch"}``)
that ``vidx actions --weights`` and ``vidx index --set actions.weights=...`` accept.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models import get_model
from tqdm import tqdm

from vidx.workers import actions, decode
from vidx.configs.errors import TrainingDataError  # noqa: F401 - defined there, raised here

log = logging.getLogger(__name__)


@dataclass
class Sample:
    path: str
    start: float | None
    end: float | None
    label: str


def load_samples(data: Path) -> list[Sample]:
    if data.is_dir():
        out = []
        for cls in sorted(p for p in data.iterdir() if p.is_dir()):
            for f in sorted(cls.rglob("*")):
                if f.is_file() and (f.suffix.lower() in decode.VIDEO_SUFFIXES or decode.sniff(f.read_bytes()[:1024])):
                    out.append(Sample(str(f), None, None, cls.name))
        if not out:
            raise TrainingDataError(f"{data}: no clips found (expected one sub-folder of videos per class)")
        return out
    if data.suffix.lower() == ".csv" and data.is_file():
        out = []
        with open(data, newline="") as f:
            r = csv.DictReader(f)
            missing = {"video", "start", "end", "label"} - set(r.fieldnames or [])
            if missing:
                raise TrainingDataError(f"{data}: missing columns {sorted(missing)} (need video,start,end,label)")
            for i, row in enumerate(r, 2):
                try:
                    s, e = float(row["start"]), float(row["end"])
                except ValueError:
                    raise TrainingDataError(f"{data}:{i}: start/end must be seconds") from None
                if e <= s:
                    raise TrainingDataError(f"{data}:{i}: end {e} is not after start {s}")
                out.append(Sample(str((data.parent / row["video"]).resolve()), s, e, row["label"].strip()))
        return out
    raise TrainingDataError(f"{data}: not a folder of class folders nor a .csv file")


def read_clip(s: Sample, clip_len: int, probed: dict | None = None) -> np.ndarray:
    """One clip of clip_len frames at 15 fps from the middle of the sample's span.  ``probed``
    caches each video's probe (a CSV often cuts many samples from one video)."""
    probed = {} if probed is None else probed
    if s.path not in probed:
        probed[s.path] = decode.probe(s.path)
    info = probed[s.path]
    start, end = (0.0, info.duration) if s.start is None else (s.start, min(s.end, info.duration))
    idx = decode.sample_indices(info.timestamps, start, end, actions.CLIP_FPS)
    if len(idx) == 0:
        raise decode.DecodeError(f"no frames between {start} and {end} s")
    mid = len(idx) // 2
    sel = idx[max(0, mid - clip_len // 2):][:clip_len]
    frames = np.concatenate([f for _, f in decode.read_frames(s.path, info, sel, 256, 64)])
    if len(frames) < clip_len:  # short clip: repeat the last frame
        frames = np.concatenate([frames, np.repeat(frames[-1:], clip_len - len(frames), 0)])
    return frames


def _split(labels: np.ndarray, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified: about val_split of every class (at least one when it has two or more)."""
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in np.unique(labels):
        ids = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(ids) * val_split)) if len(ids) > 1 else 0
        k = max(k, 1) if len(ids) > 1 and val_split > 0 else k
        va += ids[:k].tolist()
        tr += ids[k:].tolist()
    return np.array(tr), np.array(va)


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    rep = {}
    for i, c in enumerate(classes):
        tp = int(((y_pred == i) & (y_true == i)).sum())
        fp = int(((y_pred == i) & (y_true != i)).sum())
        fn = int(((y_pred != i) & (y_true == i)).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        rep[c] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": tp + fn}
    rep["accuracy"] = float((y_true == y_pred).mean()) if len(y_true) else 0.0
    return rep


def train(data: Path, base: str, out: Path, base_weights: str | None = None, from_scratch: bool = False,
          train_last_block: bool = False, epochs: int = 30, val_split: float = 0.25, lr: float = 1e-3,
          batch: int = 8, device: str = "cpu", seed: int = 0) -> dict:
    samples = load_samples(Path(data))
    classes = sorted({s.label for s in samples})
    if len(classes) < 2:
        raise TrainingDataError(f"need at least 2 classes, found {classes}")
    torch.manual_seed(seed)
    w = actions.weights_enum(base)
    model = get_model(base, weights=None, num_classes=len(classes))
    head_keys: set[str] = set()
    if not from_scratch:
        state = torch.load(actions.resolve_weights(base, base_weights), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        own = model.state_dict()
        head_keys = {k for k, v in own.items() if k in state and state[k].shape != v.shape}
        model.load_state_dict({k: v for k, v in state.items() if k not in head_keys}, strict=False)
    else:
        own = model.state_dict()
        head_keys = {k for k, v in get_model(base, weights=None).state_dict().items() if own[k].shape != v.shape}
    head_prefix = sorted(head_keys)[0].rsplit(".", 1)[0]
    transforms = w.transforms()
    clip_len = int(w.meta.get("min_temporal_size") or 16)
    dev = torch.device(device)
    log.info("reading %d clips of %d classes", len(samples), len(classes))
    probed: dict = {}
    clips = np.stack([read_clip(s, clip_len, probed) for s in tqdm(samples, desc="clips", unit="clip")])
    y = np.array([classes.index(s.label) for s in samples])
    tr, va = _split(y, val_split, seed)
    prep = lambda x: transforms(torch.from_numpy(x).permute(0, 1, 4, 2, 3)).to(dev)  # noqa: E731
    model.to(dev)
    history = []
    if not from_scratch and not train_last_block:
        # frozen backbone: features (the head's input, averaged over any space/time left) once
        feats = []
        head_mod = model.get_submodule(head_prefix)

        class _Stop(Exception):
            pass

        def grab(_m, inp):
            feats.append(inp[0].flatten(2).mean(-1) if inp[0].ndim > 2 else inp[0])
            raise _Stop

        h = head_mod.register_forward_pre_hook(grab)
        model.eval()
        with torch.no_grad():
            for i in tqdm(range(0, len(clips), batch), desc="features", unit="batch"):
                try:
                    model(prep(clips[i : i + batch]))
                except _Stop:
                    pass
        h.remove()
        X = torch.cat(feats).float()
        mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-6
        lin = torch.nn.Linear(X.shape[1], len(classes)).to(dev)
        opt = torch.optim.Adam(lin.parameters(), lr=lr * 10)
        Xn, yt = ((X - mu) / sd).to(dev), torch.as_tensor(y, device=dev)
        for _ in tqdm(range(epochs), desc="train head", unit="epoch"):
            loss = F.cross_entropy(lin(Xn[tr]), yt[tr])
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
        with torch.no_grad():
            pred = lin(Xn).argmax(1).cpu().numpy()
            # fold the normalisation into the head and write it in the architecture's own shape
            wt = lin.weight / sd
            bias = lin.bias - (wt * mu).sum(1)
        sd_state = model.state_dict()
        wk = [k for k in head_keys if k.endswith("weight")][0]
        bk = [k for k in head_keys if k.endswith("bias")]
        sd_state[wk] = wt.reshape(sd_state[wk].shape).cpu()
        if bk:
            sd_state[bk[0]] = bias.reshape(sd_state[bk[0]].shape).cpu()
        model.load_state_dict(sd_state)
    else:
        names = [n for n, _ in model.named_parameters()]
        body = [n for n in names if not n.startswith(head_prefix)]
        last = ".".join(body[-1].split(".")[:2]) if body else ""
        for n, p in model.named_parameters():
            p.requires_grad_(from_scratch or n.startswith(head_prefix) or (train_last_block and n.startswith(last)))
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
        for _ in tqdm(range(epochs), desc="train", unit="epoch"):
            model.train()
            perm = np.random.default_rng(len(history)).permutation(tr)
            tot = 0.0
            for i in range(0, len(perm), batch):
                b = perm[i : i + batch]
                loss = F.cross_entropy(model(prep(clips[b])), torch.as_tensor(y[b], device=dev))
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * len(b)
            history.append(tot / max(len(tr), 1))
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(prep(clips[i : i + batch])).argmax(1).cpu() for i in range(0, len(clips), batch)]).numpy()
    report = {"train": per_class_report(y[tr], pred[tr], classes),
              "validation": per_class_report(y[va], pred[va], classes) if len(va) else None,
              "loss_first": history[0], "loss_last": history[-1], "epochs": epochs,
              "mode": "from_scratch" if from_scratch else ("last_block" if train_last_block else "head")}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.cpu().state_dict(), "categories": classes, "arch": base}, out)
    return report
