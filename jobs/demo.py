"""Self-contained demo media, made from what installed packages ship.

scikit-image bundles NASA's public-domain portrait of astronaut Eileen Collins; from it we
make photos and clips with known answers: the portrait, the same face mirrored and turned on
a wider canvas (same person), a blank frame (no face), a clip where the face is on screen from
1 s to 6 s, and a clip with no face.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from vidx.configs.errors import DemoError

log = logging.getLogger(__name__)


def astronaut() -> np.ndarray:
    try:
        from skimage import data
    except ImportError:
        raise DemoError("vidx demo needs scikit-image: pip install 'vidx[demo]'") from None
    return data.astronaut()


def make_demo_video(path: Path, seconds: float = 6.0, fps: int = 10, size: tuple[int, int] = (640, 360),
                    face_from: float = 0.0, face_to: float | None = None) -> Path:
    """An MPEG-4 clip: the astronaut's head gliding across a grey frame between face_from and
    face_to seconds (the whole clip by default), empty frames otherwise.  Encoded with PyAV's
    bundled FFmpeg (H.264 through libx264, which browsers play; MPEG-4 part 2 where the build
    lacks it), one frame at a time, so any length costs the same memory."""
    import av

    w, h = size
    face_to = seconds if face_to is None else face_to
    head = Image.fromarray(astronaut()).crop((130, 20, 330, 220)).resize((170, 170), Image.BILINEAR)
    head_px = np.asarray(head)
    n = int(round(seconds * fps))
    with av.open(str(path), "w") as c:
        if "libx264" in av.codecs_available:  # H.264 plays in browsers (vidx serve); no B-frames
            st = c.add_stream("libx264", rate=fps, options={"bf": "0", "preset": "veryfast", "crf": "20"})
        else:
            st = c.add_stream("mpeg4", rate=fps)
            st.bit_rate = 2_000_000
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            t = i / fps
            frame = np.full((h, w, 3), 90, np.uint8)
            if face_from <= t < face_to:
                x = int((w - 170) * (0.5 + 0.4 * np.sin(t * 0.8)))
                y = (h - 170) // 2
                frame[y : y + 170, x : x + 170] = head_px
            for pkt in st.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    return path


def make_demo_media(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(astronaut())
    paths = []
    p = out / "astronaut.jpg"
    img.save(p, quality=92)
    paths.append(p)
    turned = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(
        12, resample=Image.BILINEAR, fillcolor=(90, 90, 90))
    canvas = Image.new("RGB", (800, 560), (90, 90, 90))
    canvas.paste(turned, (250, 30))
    p = out / "astronaut_turned.jpg"
    canvas.save(p, quality=92)
    paths.append(p)
    p = out / "blank.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(p)
    paths.append(p)
    videos = out / "videos"
    videos.mkdir(exist_ok=True)
    paths.append(make_demo_video(videos / "astronaut_walk.mp4", seconds=8.0, face_from=1.0, face_to=6.0))
    paths.append(make_demo_video(videos / "empty_room.mp4", seconds=4.0, face_from=99.0))
    for p in paths:
        log.debug("wrote %s", p)
    return paths


def make_motion_clip(path: Path, direction: str | list[str], frames: int = 18, fps: int = 15,
                     seed: int = 0) -> Path:
    """A bright square moving left, right, up or down on grey: synthetic clips with known
    actions, for training tests.  A list of directions makes one clip of consecutive parts
    of ``frames`` frames each."""
    import av

    rng = np.random.default_rng(seed)
    w, h, size = 172, 128, 20
    moves = {"right": (0, 4), "left": (0, -4), "down": (4, 0), "up": (-4, 0)}
    with av.open(str(path), "w") as c:
        st = c.add_stream("mpeg4", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for d in [direction] if isinstance(direction, str) else direction:
            y0, x0 = int(rng.integers(40, 70)), int(rng.integers(60, 100))
            dy, dx = moves[d]
            for t in range(frames):
                frame = np.full((h, w, 3), 60, np.uint8)
                yy = int(np.clip(y0 + dy * (t - frames // 2), 0, h - size))
                xx = int(np.clip(x0 + dx * (t - frames // 2), 0, w - size))
                frame[yy : yy + size, xx : xx + size] = 230
                for pkt in st.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    return path


def make_people_clip(path: Path, faces: list[np.ndarray], motions: list[str], size: tuple[int, int] = (640, 360),
                     seconds: float = 6.0, fps: int = 15, xs: list[float] | None = None, face_px: int = 48,
                     tube: bool = False, seed: int = 0, boxes: list | None = None, amplitude: float = 0.6,
                     period: float = 0.6, colour: tuple[int, int, int] | None = None) -> Path:
    """Synthetic people: each a face (an RGB crop) on a coloured body, at ``xs`` (fractions of the
    width), doing ``motions[i]``: "bounce" (up and down by ``amplitude`` face heights every ``period``
    seconds) or "still"; bodies in ``colour`` (default: one of four per person).
    ``tube``: one person drawn as vidx's person tube sees them (``workers.tubes``' body region,
    3 x 7 face sizes, letterboxed in black in a square ``size``).  ``boxes``: a list that receives
    each frame's (time, [face box per person]), the answer a detector should find."""
    import av

    from vidx.workers import tubes

    rng = np.random.default_rng(seed)
    w, h = size
    colours = [(200, 60, 60), (60, 90, 200), (60, 170, 80), (190, 150, 40)]
    xs = xs or [(i + 0.5) / len(faces) for i in range(len(faces))]
    phase = rng.uniform(0, 2 * np.pi, len(faces))
    fw = int(round(h / tubes.BODY_HEIGHT)) if tube else face_px  # in a tube the region fills the height
    heads = [np.asarray(Image.fromarray(f).resize((fw, fw), Image.BILINEAR)) for f in faces]
    with av.open(str(path), "w") as c:
        st = c.add_stream("mpeg4", rate=fps)
        st.bit_rate = 3_000_000
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for i in range(int(round(seconds * fps))):
            t = i / fps
            if tube:
                frame = np.zeros((h, w, 3), np.uint8)
                rw = int(round(fw * tubes.BODY_WIDTH))
                frame[:, (w - rw) // 2 : (w - rw) // 2 + rw] = 110
            else:
                frame = np.full((h, w, 3), 110, np.uint8)
            for k, (head, motion) in enumerate(zip(heads, motions)):
                dy = int(amplitude * fw * np.sin(2 * np.pi * t / period + phase[k])) if motion == "bounce" else 0
                cx = w // 2 if tube else int(xs[k] * w)
                y = (int(tubes.BODY_ABOVE * fw) if tube else int(0.2 * h)) + dy
                body_w, body_h = 2 * fw, int(4.5 * fw)
                by = y + fw + fw // 10
                frame[max(0, by) : max(0, min(h, by + body_h)), cx - body_w // 2 : cx + body_w // 2] = colour or colours[(k + seed) % 4]
                y1, y2 = max(0, y), min(h, y + fw)
                frame[y1:y2, cx - fw // 2 : cx - fw // 2 + fw] = head[y1 - y : y2 - y]
                if boxes is not None:
                    if k == 0:
                        boxes.append((t, []))
                    boxes[-1][1].append([cx - fw // 2, y, cx - fw // 2 + fw - 1, y + fw - 1])
            for pkt in st.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    return path


def write_clip(path: Path, frames: np.ndarray, fps: int = 15) -> Path:
    """(T, H, W, 3) uint8 RGB frames as an MPEG-4 clip."""
    import av

    with av.open(str(path), "w") as c:
        st = c.add_stream("mpeg4", rate=fps)
        st.bit_rate = 3_000_000
        st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    return path
