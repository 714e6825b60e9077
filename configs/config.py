"""Typed configuration: dataclass defaults, then a YAML preset, then ``--set key=value``.

Presets live beside it in ``configs/`` (default = one machine, gpu, cluster).  Unknown keys and values
of the wrong type or range are refused with a message naming the key.  Distance thresholds
left at 0 take the calibrated value of the chosen embedder (``vidx.configs.spaces``):
distances of SFace (cosine) and dlib (euclidean) are not comparable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from vidx.configs.errors import ConfigError  # noqa: F401 - defined there, raised here


def key(default: Any, help: str, valid: str = "") -> Any:  # noqa: A002 - the word the docs use
    """One config key, declared once: its default, what it means (the config reference prints it)
    and its valid range, a Python expression of ``v`` (checked by ``--set`` and the YAML loader)."""
    return field(default=default, metadata={"help": help, "valid": valid})


@dataclass
class FacesConfig:
    detector: str = key('retinaface',
        "retinaface (small, turned faces; fast) | dlib (exact dlib, CC0)", 'v in ("retinaface", "dlib")')
    embedder: str = key('sface',
        "sface (video faces; needs retinaface) | dlib (exact dlib, CC0; photos)", 'v in ("sface", "dlib")')
    sample_fps: float = key(2.0, 'frames per second sampled for faces', '0 < v <= 120')
    max_side: int = key(1280, 'decode at most this long a side for detection (0 = native)', 'v == 0 or v >= 160')
    upsample: int = key(0, 'dlib detector: 1 finds ~40 px faces at 4x the cost', 'v in (0, 1)')
    min_score: float = key(0.9, 'RetinaFace faces scoring lower are kept as rejected, not embedded', '0 <= v <= 1')
    extend_score: float = key(0.6,
        "a rejected face scoring at least this (RetinaFace) still extends the track whose last box it overlaps "
        "(IoU >= 0.3): it starts no track and is not embedded (>= min_score: off)", '0 <= v <= 1')
    min_size: float = key(20.0, 'faces with a shorter side (decoded pixels) are kept as rejected', 'v >= 0')
    min_sharpness: float = key(0.0, 'blurrier chips (variance of the Laplacian) are kept as rejected', 'v >= 0')
    batch_frames: int = key(16, 'frames decoded and run through the models together', '1 <= v <= 1024')
    full_every: int = key(0,
        "retinaface: a full-frame detection on every full_every-th sampled frame (and at shot changes); between "
        "them only crops around the live tracks are searched (1: every frame; 0: auto, 2 on a CPU actor, 1 on a "
        "GPU, where whole frames run batched)", '0 <= v <= 100')
    embed: str = key('auto',
        "needed: a face one track alone overlaps continues it unembedded | all | auto: needed on a CPU actor, all"
        " on a GPU", 'v in ("auto", "all", "needed")')
    device: str = key('auto',
        "auto: cuda when the actor has a GPU, else cpu", 'v == "auto" or v == "cpu" or v.startswith("cuda")')


@dataclass
class TrackingConfig:
    link_distance: float = key(0.0,
        "max embedding distance to continue a track (0: the embedder's value)", '0 <= v <= 2')
    overlap_distance: float = key(0.0,
        "...for a face that stays in place (IoU >= 0.5) (0: the embedder's value)", '0 <= v <= 2')
    max_gap_s: float = key(1.5, 'close a track unseen for longer than this', 'v >= 0')
    join_distance: float = key(0.0,
        "join tracks across a chunk boundary below this distance (0: the embedder's)", '0 <= v <= 2')
    verify_distance: float = key(0.0,
        "one track, one person: a face stays in a track only this close to the track's own faces (0: the "
        "embedder's)", '0 <= v <= 2')


@dataclass
class ActionsConfig:
    enabled: bool = key(True, 'off: faces only (--no-actions)')
    model: str = key('auto', "i3d (auto: DeepMind's Kinetics-400 I3D, CPU and GPU) or a torchvision video model")
    weights: str = key('', "an explicit weights file (default: VIDX_WEIGHTS_DIR / the model's file name)")
    clip_len: int = key(0,
        "frames per window at the model's rate (i3d 25 fps, torchvision 15); 0 = the model's",
        'v == 0 or 9 <= v <= 512')
    stride: int = key(0,
        "frames between windows; 0 = the model's (i3d: half its clip, torchvision: its clip)", 'v >= 0')
    top_k: int = key(5, 'labels kept per window', '1 <= v <= 400')
    min_score: float = key(0.3, "a window's top label opens a segment at this score", '0 <= v <= 1')
    keep_score: float = key(0.15, '...and keeps it open while it stays above this', '0 <= v <= 1')
    min_duration: float = key(1.0, 'shorter segments are dropped', 'v >= 0')
    per_person: str = key('auto',
        "what each person does: on = classify every face track's own body region; auto = only where two or more "
        "faces share the screen (a person alone takes the frame's label); off = frame-level labels only",
        'v in ("auto", "on", "off")')


@dataclass
class PeopleConfig:
    cluster_distance: float = key(0.0,
        "tracks join one person below this average-linkage distance (0: the embedder's)", '0 <= v <= 2')
    match_distance: float = key(0.0,
        "a photo (enrolled or queried) matches a track below this (0: the embedder's)", '0 <= v <= 2')
    neighbours: int = key(30, 'k of the k-nearest-neighbour graph clustering works on', '1 <= v <= 1000')
    min_quality: float = key(0.25,
        "tracks of this quality (face_tracks.quality, 0-1) and up form people; weaker ones only join a person "
        "clearly nearest to them (docs/internals/identities.md: chosen on the shared clips' tracks)", '0 <= v <= 1')
    attach_margin: float = key(0.1,
        "...nearer by at least this than to any other person (the embedder's metric)", '0 <= v <= 2')
    index_exact_below: int = key(100_000, 'FAISS: exact search below this many tracks, IVF above', 'v >= 0')
    index_codec: str = key('SQ8',
        "IVF code: SQ8 (recall@10 ~0.96) or PQ16x8 / PQ64x8 (smaller, ~0.6-0.8)",
        'v in ("SQ8", "PQ16x8", "PQ32x8", "PQ64x8")')


@dataclass
class RayConfig:
    actors: int = key(0, "actor pool size; 0 = as many as the cluster's CPUs (or GPUs) allow", 'v >= 0')
    num_cpus: float = key(1.0, 'per actor', 'v > 0')
    num_gpus: float = key(0.0, 'per actor; 0 on CPU machines', 'v >= 0')


@dataclass
class Config:
    chunk_seconds: float = key(60.0, 'videos are split into chunks of this length', 'v >= 1')
    max_archive_gb: float = key(64.0,
        "an archive that would expand beyond this is refused (gzip / zip bombs)", 'v > 0')
    faces: FacesConfig = field(default_factory=FacesConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    actions: ActionsConfig = field(default_factory=ActionsConfig)
    people: PeopleConfig = field(default_factory=PeopleConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolve(self) -> "Config":
        """Fill the distance thresholds left at 0 with the embedder's calibrated values (in place)."""
        fill_distances(self.faces.embedder, self.tracking, self.people)
        return self


def fill_distances(embedder: str, tracking: "TrackingConfig | None", people: "PeopleConfig | None") -> None:
    """Thresholds left at 0 take the named embedder's calibrated values (vidx.configs.spaces)."""
    from vidx.configs.spaces import space

    sp = space(embedder)
    for sec, keys in ((tracking, ("link_distance", "overlap_distance", "join_distance", "verify_distance")),
                      (people, ("cluster_distance", "match_distance"))):
        for k in keys if sec is not None else ():
            if not getattr(sec, k):
                setattr(sec, k, getattr(sp, k))


def _rules(obj: Any = None, prefix: str = "") -> dict[str, str]:
    """Each key's valid range, as declared beside it (``key(..., valid)``): full key -> expression of v."""
    obj = obj if obj is not None else Config()
    got: dict[str, str] = {}
    for f in dataclasses.fields(obj):
        sub = getattr(obj, f.name)
        if dataclasses.is_dataclass(sub):
            got.update(_rules(sub, f"{prefix}{f.name}."))
        elif f.metadata.get("valid"):
            got[prefix + f.name] = f.metadata["valid"]
    return got


_RULES = _rules()


def _set(obj: Any, key: str, value: Any, prefix: str = "") -> None:
    name, _, rest = key.partition(".")
    full = prefix + name
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if name not in fields:
        raise ConfigError(f"unknown config key '{full}' (known: {', '.join(prefix + n for n in fields)})")
    cur = getattr(obj, name)
    if dataclasses.is_dataclass(cur):
        if rest:
            return _set(cur, rest, value, full + ".")
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{full}' is a section; give keys under it")
        for k, v in value.items():
            _set(cur, str(k), v, full + ".")
        return
    if rest:
        raise ConfigError(f"config key '{full}' has no sub-keys")
    typ = type(cur)
    if typ is str and isinstance(value, bool):  # YAML reads a bare on / off as a boolean
        value = "on" if value else "off"
    try:
        if typ is bool:
            if not isinstance(value, bool):
                raise TypeError
            v = value
        elif isinstance(value, bool) and typ is not str:
            raise TypeError
        else:
            v = typ(value) if not (typ is int and isinstance(value, float) and not value.is_integer()) else None
        if v is None:
            raise TypeError
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{full}' must be {typ.__name__}, got {value!r}") from None
    rule = _RULES.get(full)
    if rule and not eval(rule, {"__builtins__": {}}, {"v": v}):  # noqa: S307 - our own declared expressions
        raise ConfigError(f"config key '{full}' = {value!r} is out of range (valid: {rule})")
    setattr(obj, name, v)


def preset_path(name: str) -> Path:
    return Path(str(resources.files("vidx.configs") / f"{name}.yaml"))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (a path or a preset name: default, cpu, gpu, cluster), then overrides."""
    cfg = Config()
    if path:
        p = Path(path)
        if not p.exists() and not p.suffix:
            p = preset_path(str(path))
        if not p.is_file():
            raise ConfigError(f"config file {path} not found (presets: default, cpu, gpu, cluster)")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping of keys")
        for k, v in data.items():
            _set(cfg, str(k), v)
    for item in overrides or []:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        _set(cfg, key.strip(), value)
    if cfg.faces.embedder == "sface" and cfg.faces.detector != "retinaface":
        raise ConfigError("faces.embedder=sface aligns faces on RetinaFace's 5 points: use faces.detector=retinaface, "
                          "or faces.embedder=dlib with faces.detector=dlib")
    return cfg.resolve()
