"""The run: checks before any work, the plan, the pool, the commit, in that order."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor


from vidx.configs.config import Config
from vidx.configs.errors import IndexJobError
from vidx.configs.spaces import space
from vidx.indexing import schemas
from vidx.indexing.lease import writes_index
from vidx.indexing.store import Store
from vidx.indexing.tables import (
    VIDEO_TABLES,
    create_all,
)
from vidx.workers import face_weights
from vidx.workers.sources import list_inputs

from vidx.jobs.index.commit import _ChunkParts, _commit, _comparable
from vidx.jobs.index.plan import chunk_tasks, plan_all
from vidx.jobs.index.pool import _fan_out, _Pool, ray_output_to_file
from vidx.jobs.index.state import Run, Summary

log = logging.getLogger(__name__)


@writes_index("index")
def run_index(srcs: list[str], out: str, cfg: Config, progress: bool | None = None, quiet: bool = True) -> Summary:
    """Index ``srcs`` into ``out``.  ``quiet``: Ray's own output goes to OUT/logs/ (vidx's lines
    and the progress bar stay on the terminal); False shows everything (``vidx --verbose``)."""
    t_start = time.time()
    cfg.resolve()  # thresholds left at 0 take the embedder's values
    store = Store(out)
    bucket = store.missing_bucket()  # before any work: workers would each fail on it
    if bucket:
        raise IndexJobError(f"the bucket {bucket!r} of {out} does not exist "
                         "(vidx never creates buckets: create it first)")
    if cfg.faces.detector == "retinaface":  # before any work, as for the action weights below
        try:
            face_weights.retinaface_onnx_bytes()
        except face_weights.RetinaFaceWeightsError as e:
            raise IndexJobError(f"{e}") from None
    if cfg.faces.embedder == "sface":
        try:
            face_weights.sface_onnx_bytes()
        except face_weights.SFaceWeightsError as e:
            raise IndexJobError(f"{e}") from None
    actions = None
    if cfg.actions.enabled:  # before any work: the weights must be there (or fetchable)
        from vidx.workers import actions as act

        try:
            name, wpath = act.resolve_for_index(cfg.actions.model, cfg.actions.weights, cfg.ray.num_gpus > 0)
        except act.ActionWeightsError as e:
            raise IndexJobError(f"{e}") from None
        actions = {"model": name, "weights_path": str(wpath), "stride": cfg.actions.stride, "clip_len": cfg.actions.clip_len,
                   "top_k": cfg.actions.top_k, "per_person": cfg.actions.per_person,
                   "labels": act.categories(name, wpath)}
    manifest = store.read_manifest() or {"schema_version": schemas.SCHEMA_VERSION, "commit": 0, "videos": {}}
    emb = space(cfg.faces.embedder)
    built = manifest.get("embedder")
    if built and built != emb.model:
        other = space(built).name
        raise IndexJobError(f"{space(built).built_with(out)}; its distances are not comparable with "
                         f"{emb.name}'s. Index into a new folder (--out NEW) to use {emb.name}, or keep this index's "
                         f"embedder with --set faces.embedder={other}"
                         + (" --detector dlib" if other == "dlib" and cfg.faces.detector != "dlib" else ""))
    manifest["embedder"] = emb.model
    before = _comparable(manifest)
    inputs = list_inputs(srcs, int(cfg.max_archive_gb * (1 << 30)))
    summary = Summary()
    for inp in inputs:
        if inp.skip:
            log.warning("skipped %s: %s", inp.uri, inp.skip)
            summary.skipped.append((inp.uri, inp.skip))
    inputs = [i for i in inputs if not i.skip]
    if not inputs:
        raise IndexJobError(f"no videos found in {' '.join(srcs)}"
                         + "".join(f"\n  skipped: {u}: {w}" for u, w in summary.skipped))
    # New names are likely work: Ray and its actors start (and load the models) while this
    # process hashes and probes the inputs in a thread; a rerun over known names plans first.
    known = {p for v in manifest["videos"].values() for p in (v.get("paths") or [v.get("path")])}
    early = any(i.uri not in known for i in inputs)
    per_person = actions and actions["per_person"] != "off"
    tables = create_all(store)
    for name in VIDEO_TABLES:  # refused before any work when another engine changed what vidx writes
        tables[name].snapshot(write=True)
    tables["videos"].snapshot(write=True)
    run = Run(cfg, store, tables, _ChunkParts(tables), manifest, before, actions, summary=summary)
    with contextlib.ExitStack() as stack:
        pool, term = None, sys.stderr

        def start_pool() -> _Pool:  # Ray's own output to its log file from here on
            nonlocal term
            term = stack.enter_context(ray_output_to_file(store, quiet))
            return stack.enter_context(_Pool(cfg, out, actions, quiet))

        if early:
            with ThreadPoolExecutor(1, thread_name_prefix="vidx-plan") as ex:
                planned = ex.submit(plan_all, inputs, cfg.chunk_seconds)
                try:
                    pool = start_pool()
                finally:
                    plans = planned.result()
        else:
            plans = plan_all(inputs, cfg.chunk_seconds)
        run.plans = plans
        todo = []
        needed = ["face_detections", "track_segments", "shots"] + (["action_windows"] if actions else []) + (
            ["person_windows"] if per_person else [])
        for vp in plans.values():
            entry = manifest["videos"].setdefault(vp.video_id, {})
            entry["path"] = vp.uri
            entry["paths"] = list(dict.fromkeys([vp.uri, *vp.aliases, *entry.get("paths", [])]))  # every name kept
            if vp.error:
                continue
            entry["chunk_seconds"] = cfg.chunk_seconds
            for task in chunk_tasks(vp, cfg):
                if run.parts.done(task.key, needed):
                    summary.chunks_skipped += 1
                    continue
                todo.append(task)
        if todo:
            pool = pool or start_pool()
            _fan_out(run, todo, pool, progress, term)
    _commit(run)
    from vidx.indexing import people  # FAISS index + identities; a no-op when nothing changed

    t_people = time.time()
    summary.people = people.refresh(out, cfg.people).people
    summary.people_s = time.time() - t_people
    summary.wall_s = time.time() - t_start
    return summary
