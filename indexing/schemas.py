"""Arrow schemas of every table vidx writes: the single source of truth.

Times are seconds (float64) from the stream's presentation timestamps.  Boxes are pixel
coordinates in the video's own frame size ([x1, y1, x2, y2], dlib's inclusive rectangles
scaled back from the detection resolution).  Embeddings are 128-d, from the embedder the index
records in its manifest: SFace (unit vectors, cosine distance; the default) or dlib (raw
descriptors, euclidean distance; same person below 0.6).
"""

from __future__ import annotations

import pyarrow as pa

EMBED_DIM = 128
SCHEMA_VERSION = 5  # 2: quality gates (sharpness, rejected); 3: the detector's 5 points, the embedder recorded;
# 4: face and track quality, tracks end at shot changes, every path of a video; 5: the tables are Delta tables
# (the manifest no longer names parts)

VIDEOS = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),  # content-derived, stable across renames
    pa.field("path", pa.string(), nullable=False),  # where it was found (last run)
    pa.field("paths", pa.list_(pa.string())),  # every place this content was found (files, archive members)
    pa.field("size_bytes", pa.int64()),
    pa.field("status", pa.string(), nullable=False),  # ok | partial | failed
    pa.field("error", pa.string()),  # why it failed (or which chunk failed)
    pa.field("duration_s", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("frames", pa.int64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("codec", pa.string()),
    pa.field("decoder", pa.string()),  # decord | pyav
    pa.field("chunks", pa.int32()),
    pa.field("chunks_done", pa.int32()),
    pa.field("tracks", pa.int32()),
])

FACE_DETECTIONS = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("chunk", pa.int32(), nullable=False),
    pa.field("frame", pa.int64(), nullable=False),  # index of the frame in the stream
    pa.field("t", pa.float64(), nullable=False),  # presentation time, seconds
    pa.field("x1", pa.float32()), pa.field("y1", pa.float32()),
    pa.field("x2", pa.float32()), pa.field("y2", pa.float32()),
    pa.field("score", pa.float32()),
    pa.field("landmarks", pa.list_(pa.float32(), 10)),  # dlib's 5 (x, y) points, video pixels (null: not computed)
    # the detector's own 5 points (RetinaFace: eye centres, nose tip, mouth corners), video pixels; SFace
    # aligns on them (null: the dlib detector)
    pa.field("points", pa.list_(pa.float32(), 10)),
    pa.field("embedding", pa.list_(pa.float32(), EMBED_DIM)),  # null when rejected
    pa.field("segment_id", pa.string()),  # its chunk-level track (null when rejected, unless a weak face continued one)
    pa.field("sharpness", pa.float32()),  # variance of the Laplacian of the aligned grey chip (null: not aligned)
    pa.field("rejected", pa.string()),  # null: embedded and tracked; else the gate: score | size | blur
    # 0-1: size x detector score x sharpness x how frontal (workers.tracking.face_quality); null when rejected
    pa.field("quality", pa.float32()),
])

# One row per track inside one chunk; the commit joins segments cut by chunk boundaries.
TRACK_SEGMENTS = pa.schema([
    pa.field("segment_id", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("chunk", pa.int32(), nullable=False),
    pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()),
    pa.field("detections", pa.int32()),
    pa.field("weight", pa.float32()),  # sum of detection quality weights
    pa.field("embedding", pa.list_(pa.float32(), EMBED_DIM)),  # quality-weighted mean of detections
    pa.field("first_box", pa.list_(pa.float32(), 4)), pa.field("last_box", pa.list_(pa.float32(), 4)),
    pa.field("first_embedding", pa.list_(pa.float32(), EMBED_DIM)),
    pa.field("last_embedding", pa.list_(pa.float32(), EMBED_DIM)),
    pa.field("best_quality", pa.float32()),  # its best detection's quality
    pa.field("quality", pa.float32()),  # the mean quality of its best 3 detections
    pa.field("thumbnail", pa.binary()),  # JPEG of the best detection's face
    pa.field("thumbnail_t", pa.float64()),
])

FACE_TRACKS = pa.schema([
    pa.field("track_id", pa.string(), nullable=False),  # the first segment's id
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()),
    pa.field("detections", pa.int32()),
    pa.field("embedding", pa.list_(pa.float32(), EMBED_DIM)),  # mean of detections weighted by quality^2
    pa.field("thumbnail", pa.binary()),  # JPEG
    pa.field("thumbnail_t", pa.float64()),
    pa.field("segments", pa.list_(pa.string())),  # segment_ids joined into this track
    # 0-1: the mean quality of its best 3 detections x (1: 0.5, 2: 0.75, 3+ detections: 1)
    # (workers.tracking.track_quality); people are formed from tracks of quality >= people.min_quality
    pa.field("quality", pa.float32()),
])

# Top-k labels of every classified window (kept for re-thresholding without re-running models).
# Shots (per chunk): the stretches between cuts, found on every frame the reader decodes (workers/shots.py).
# One row per shot and chunk; a shot that spans a chunk boundary has a row in each chunk, the later
# one with a null score.  score: PySceneDetect's ContentDetector score of the cut that starts the shot
# (null: the shot starts where the chunk does, not at a cut).  Times on vidx's clock.
SHOTS = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("chunk", pa.int32(), nullable=False),
    pa.field("shot", pa.int32(), nullable=False),  # in the chunk, from 0
    pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()),
    pa.field("score", pa.float32()),
])

ACTION_WINDOWS = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("chunk", pa.int32(), nullable=False),
    pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()),
    pa.field("label_ids", pa.list_(pa.int32())),  # best first
    pa.field("scores", pa.list_(pa.float32())),
    pa.field("model", pa.string()),
])

# Per-person windows (actions.per_person): one row per face track segment and window.
PERSON_WINDOWS = pa.schema([
    pa.field("segment_id", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("chunk", pa.int32(), nullable=False),
    pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()),
    pa.field("label_ids", pa.list_(pa.int32())),
    pa.field("scores", pa.list_(pa.float32())),
    pa.field("model", pa.string()),
    pa.field("source", pa.string()),  # crop: the person's own tube; scene: alone on screen, the frame's window
])

# What each person does: per face track, windows merged by the same rules as action_segments.
PERSON_ACTIONS = pa.schema([
    pa.field("track_id", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()),
    pa.field("label", pa.string()),
    pa.field("label_id", pa.int32()),
    pa.field("score", pa.float32()),
    pa.field("model", pa.string()),
    pa.field("source", pa.string()),  # crop (any window from the person's own tube) | scene
])

ACTION_SEGMENTS = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()),
    pa.field("label", pa.string()),
    pa.field("label_id", pa.int32()),
    pa.field("score", pa.float32()),  # mean score of the label over the segment's windows
    pa.field("model", pa.string()),
])
