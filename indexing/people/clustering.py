"""Clustering tracks into people: cannot-links from faces on screen together, exact and graph average
linkage, the quality rule, centres and stable person ids."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from vidx.configs.config import PeopleConfig
from vidx.configs.spaces import Space, from_similarity, pairwise
from vidx.configs.spaces import distance as rowwise
from vidx.indexing import faces_index
from vidx.indexing.people.files import person_id_for

log = logging.getLogger(__name__)


def co_occurring(tracks: pa.Table) -> np.ndarray:
    """(P, 2) row pairs (i < j) of tracks in one video that share a sampled time (closed
    intervals overlap): two faces on screen together, never one person."""
    import duckdb

    if tracks.num_rows < 2:
        return np.zeros((0, 2), np.int64)
    t = pa.table({"r": pa.array(np.arange(tracks.num_rows), pa.int64()), "v": tracks["video_id"],
                  "s": tracks["start_s"], "e": tracks["end_s"]})
    con = duckdb.connect()
    con.register("t", t)
    pairs = con.execute("SELECT a.r AS i, b.r AS j FROM t a JOIN t b "
                        "ON a.v = b.v AND a.r < b.r AND a.s <= b.e AND b.s <= a.e").fetchnumpy()
    return np.stack([pairs["i"], pairs["j"]], 1).astype(np.int64).reshape(-1, 2)


def constrained_linkage(dist: np.ndarray, cannot: np.ndarray, distance: float,
                        size: np.ndarray | None = None) -> np.ndarray:
    """Average-linkage labels of a dense (n, n) distance matrix, merging while the nearest pair of
    clusters is closer than ``distance``; ``cannot`` (P, 2) pairs are set infinitely far, and the
    average carries that into every cluster that holds one of them, so none is ever merged with a
    cluster holding the other.  ``size``: how many items each row already stands for (a cluster
    resumed, ``dist`` then the average distance between their items; default 1 each).
    Nearest-neighbour bookkeeping: O(n^2) for clusterable data."""
    n = len(dist)
    d = np.array(dist, np.float64, copy=True)
    if len(cannot):
        d[cannot[:, 0], cannot[:, 1]] = np.inf
        d[cannot[:, 1], cannot[:, 0]] = np.inf
    np.fill_diagonal(d, np.inf)
    size = np.ones(n) if size is None else np.asarray(size, np.float64).copy()
    alive = np.ones(n, bool)
    label = np.arange(n)
    nn = d.argmin(1)
    nnd = d[np.arange(n), nn]
    while True:
        i = int(np.argmin(np.where(alive, nnd, np.inf)))
        if not alive[i] or not nnd[i] < distance:
            break
        j = int(nn[i])
        row = (size[i] * d[i] + size[j] * d[j]) / (size[i] + size[j])  # inf stays inf: cannot-link carries
        row[i] = row[j] = np.inf
        d[i], d[:, i] = row, row
        d[j], d[:, j] = np.inf, np.inf
        size[i] += size[j]
        alive[j] = False
        nnd[j] = np.inf
        label[label == j] = i
        stale = alive & ((nn == i) | (nn == j))
        stale[i] = True
        for k in np.flatnonzero(stale):
            nn[k] = int(d[k].argmin())
            nnd[k] = d[k, nn[k]]
        closer = alive & (row < nnd)
        nn[closer], nnd[closer] = i, row[closer]
    return np.unique(label, return_inverse=True)[1].astype(np.int64)


def cluster(emb: np.ndarray, distance: float, neighbours: int = 30, index: faces_index.FaceIndex | None = None,
            track_ids: list[str] | None = None, dense_limit: int = 4000, metric: str = "euclidean",
            cannot: np.ndarray | None = None) -> np.ndarray:
    """Cluster label per row of embeddings: average linkage below ``distance`` (``metric``: euclidean
    for dlib, cosine for SFace), within the connected parts of the kNN graph whose edges are
    shorter than ``distance``: exact (every pair) in parts up to ``dense_limit`` tracks, over the
    kNN edges in larger ones.  ``cannot``: (P, 2) row pairs that must end in different clusters."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(emb)
    if n <= 1:
        return np.zeros(n, np.int64)
    cannot = np.zeros((0, 2), np.int64) if cannot is None else np.asarray(cannot, np.int64).reshape(-1, 2)
    k = min(neighbours + 1, n)
    if index is not None and track_ids is not None:  # reuse the archive's FAISS index
        sims, hits = index.search_ids(emb, k)
        nb = faces_index.IdRows(faces_index.track_hash(track_ids)).rows(hits)
    else:
        import faiss

        flat = faiss.IndexFlatIP(emb.shape[1])
        flat.add(faces_index.unit(emb))
        sims, nb = flat.search(faces_index.unit(emb), k)
    norm = np.linalg.norm(emb, axis=1)
    dist = from_similarity(sims, norm[:, None], norm[np.maximum(nb, 0)], metric)
    rows = np.repeat(np.arange(n), k)
    cols = nb.ravel()
    ok = (cols >= 0) & (rows != cols)
    rows, cols = rows[ok], cols[ok]
    d = dist.ravel()[ok]
    knn = coo_matrix((np.ones(len(d)), (rows, cols)), shape=(n, n)).tocsr()  # the graph's structure
    knn = knn.maximum(knn.T)
    close = d < distance  # a cluster never spans two parts of the graph of edges shorter than that
    graph = coo_matrix((np.ones(close.sum()), (rows[close], cols[close])), shape=(n, n))
    _, part = connected_components(graph, directed=False)
    labels = np.empty(n, np.int64)
    next_label = 0
    order = np.argsort(part, kind="stable")
    bad_pair = part[cannot[:, 0]] == part[cannot[:, 1]] if len(cannot) else np.zeros(0, bool)
    cannot = cannot[bad_pair]  # only pairs inside one part can be violated
    cannot = cannot[np.argsort(part[cannot[:, 0]], kind="stable")] if len(cannot) else cannot
    pair_part = part[cannot[:, 0]] if len(cannot) else np.zeros(0, np.int64)
    for members in np.split(order, np.flatnonzero(np.diff(part[order])) + 1):
        p = part[members[0]]  # this part's pairs only: nothing here may cost the archive's size
        mine = cannot[np.searchsorted(pair_part, p) : np.searchsorted(pair_part, p, side="right")]
        local = _local_pairs(members, mine)
        if len(members) == 1:
            lab = np.zeros(1, np.int64)
        elif len(members) <= dense_limit:  # exact average linkage over every pair
            lab = constrained_linkage(pairwise(emb[members], emb[members], metric), local, distance)
        else:  # large part: average linkage over the kNN graph's edges (approximate, memory ~ n * k)
            sub = knn[members][:, members].tocoo()
            lab = graph_linkage(emb[members], sub.row, sub.col, distance, metric)
            lab = _repair(lab, local, emb[members], distance, metric)
        labels[members] = lab + next_label
        next_label += int(lab.max()) + 1
    return labels


def graph_linkage(emb: np.ndarray, rows: np.ndarray, cols: np.ndarray, distance: float, metric: str) -> np.ndarray:
    """Average linkage over a graph's edges (the clusters scikit-learn's AgglomerativeClustering
    with ``connectivity`` gives: a merged cluster's distance to a neighbour is the size-weighted
    mean of its parts' distances to it, or the one part's when only one is connected), stopping
    at ``distance`` instead of building the whole tree: scikit-learn merges on up to one cluster,
    and its last merges of huge clusters ran past 10 minutes (then stopped) on a million-track
    archive whose confident tracks form one large part of the graph.  Edge lengths are measured exactly."""
    import heapq

    n = len(emb)
    keep = rows < cols  # each undirected edge once
    r, c = rows[keep].astype(np.int64), cols[keep].astype(np.int64)
    d = np.empty(len(r))
    for b in _blocks(len(r), 1 << 18):
        d[b] = rowwise(emb[r[b]], emb[c[b]], metric)
    adj: list[dict[int, float]] = [{} for _ in range(n)]
    for i, j, x in zip(r.tolist(), c.tolist(), d.tolist()):
        adj[i][j] = x
        adj[j][i] = x
    close = d < distance
    heap = list(zip(d[close].tolist(), r[close].tolist(), c[close].tolist()))
    heapq.heapify(heap)
    size = [1] * n
    alive = [True] * n
    parent = list(range(n))
    while heap:
        x, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]) or adj[i].get(j) != x:
            continue  # a stale entry: one side merged since
        if len(adj[i]) < len(adj[j]):
            i, j = j, i  # the cluster with more neighbours absorbs the other
        ni, nj = size[i], size[j]
        ai, aj = adj[i], adj[j]
        del ai[j], aj[i]
        for k, dk in aj.items():
            ak = adj[k]
            del ak[j]
            old = ai.get(k)
            nd = dk if old is None else (ni * old + nj * dk) / (ni + nj)
            ai[k] = ak[i] = nd
            if nd < distance:
                heapq.heappush(heap, (nd, min(i, k), max(i, k)))
        adj[j] = {}
        alive[j] = False
        parent[j] = i
        size[i] = ni + nj
    root = np.array(parent)
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    return np.unique(root, return_inverse=True)[1].astype(np.int64)


def _blocks(n: int, size: int = 131072):
    return (slice(a, min(a + size, n)) for a in range(0, n, size))


def _local_pairs(members: np.ndarray, cannot: np.ndarray) -> np.ndarray:
    """The cannot-link pairs among ``members``, in the members' own numbering."""
    if len(cannot) == 0 or len(members) < 2:
        return np.zeros((0, 2), np.int64)
    by = np.argsort(members, kind="stable")
    sm = members[by]
    at = np.clip(np.searchsorted(sm, cannot), 0, len(sm) - 1)
    ok = (sm[at] == cannot).all(1)
    return by[at[ok]].reshape(-1, 2)


def _repair(lab: np.ndarray, cannot: np.ndarray, emb: np.ndarray, distance: float, metric: str) -> np.ndarray:
    """Re-cluster exactly, with the constraint, every cluster that holds a cannot-link pair."""
    if len(cannot) == 0:
        return lab
    lab = lab.copy()
    nxt = int(lab.max()) + 1
    for c in np.unique(lab[cannot[:, 0]][lab[cannot[:, 0]] == lab[cannot[:, 1]]]):
        members = np.flatnonzero(lab == c)
        sub = constrained_linkage(pairwise(emb[members], emb[members], metric),
                                  _local_pairs(members, cannot), distance)
        lab[members] = np.where(sub == 0, c, sub + nxt - 1)
        nxt += int(sub.max())
    return lab


def _quality(tracks: pa.Table) -> np.ndarray:
    q = tracks["quality"].to_numpy(zero_copy_only=False) if "quality" in tracks.column_names else None
    return np.ones(tracks.num_rows) if q is None else np.nan_to_num(q.astype(np.float64), nan=1.0)


def centres(emb: np.ndarray, labels: np.ndarray, weight: np.ndarray, metric: str) -> np.ndarray:
    """Each label's centre: the weighted mean of its rows (unit rows first for cosine)."""
    from scipy.sparse import csr_matrix

    x = faces_index.unit(emb) if metric == "cosine" else np.asarray(emb, np.float64)
    k = int(labels.max()) + 1 if len(labels) else 0
    m = csr_matrix((np.asarray(weight, np.float64), (labels, np.arange(len(labels)))), shape=(k, len(labels)))
    c = np.asarray(m @ np.asarray(x, np.float64))  # a weighted sum per label (np.add.at: 10x slower)
    return c / np.maximum(np.bincount(labels, weights=weight, minlength=k), 1e-12)[:, None]


def people_labels(emb: np.ndarray, quality: np.ndarray, cannot: np.ndarray, cfg: PeopleConfig, sp: Space,
                  index: faces_index.FaceIndex | None = None, track_ids: list[str] | None = None
                  ) -> tuple[np.ndarray, list[str]]:
    """A person label and a role per track: confident tracks (quality >= min_quality) are clustered
    under the cannot-link constraint (role ``core``); each weaker track, best first, joins the
    person whose centre is nearest if that is below cluster_distance, attach_margin nearer than the
    next person, and none of that person's tracks is on screen with it (``joined``); otherwise it
    is a person of its own (``alone``)."""
    n = len(emb)
    conf = quality >= cfg.min_quality
    ci = np.flatnonzero(conf)
    labels = np.full(n, -1, np.int64)
    role = ["alone"] * n
    if len(ci):
        local = _local_pairs(ci, cannot)
        sub_ids = [track_ids[i] for i in ci] if track_ids is not None else None
        labels[ci] = cluster(emb[ci], cfg.cluster_distance, cfg.neighbours, index if sub_ids else None, sub_ids,
                             metric=sp.metric, cannot=local)
        for i in ci:
            role[i] = "core"
    n_core = int(labels.max()) + 1 if len(ci) else 0
    weak = np.flatnonzero(~conf)
    weak = weak[np.argsort(-quality[weak], kind="stable")]
    if len(weak) and n_core:
        cen = centres(emb[ci], labels[ci], np.maximum(quality[ci], 1e-3), sp.metric)
        for i in join_weak(emb[weak], weak, labels, cen, cannot, cfg, sp.metric):
            role[i] = "joined"
    nxt = n_core
    for i in weak.tolist():
        if labels[i] < 0:
            labels[i] = nxt
            nxt += 1
    return labels, role


def join_weak(x: np.ndarray, weak: np.ndarray, labels: np.ndarray, centre: np.ndarray, cannot: np.ndarray,
              cfg: PeopleConfig, metric: str) -> list[int]:
    """Weak rows ``weak`` (embeddings ``x``, best first) join the person whose centre is nearest
    if that is below cluster_distance, attach_margin nearer than the next person, and none of
    that person's rows (``labels``, updated in place) is on screen with it (``cannot`` pairs);
    returns the rows that joined."""
    two, dd = _nearest_centres(x, centre, metric, min(2, len(centre)))  # exact, without a weak x people matrix
    d1 = dd[:, 0]
    d2 = dd[:, 1] if len(centre) > 1 else np.full(len(weak), np.inf)
    partners: dict[int, list[int]] = {}
    for a, b in cannot.tolist():
        partners.setdefault(a, []).append(b)
        partners.setdefault(b, []).append(a)
    joined = []
    for k, i in enumerate(weak.tolist()):
        p = int(two[k, 0])
        if d1[k] < cfg.cluster_distance and d2[k] - d1[k] >= cfg.attach_margin \
                and not any(labels[j] == p for j in partners.get(i, ())):
            labels[i] = p
            joined.append(i)
    return joined


def _nearest_centres(x: np.ndarray, centre: np.ndarray, metric: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest centres of each row and their distances (exact FAISS search: at a million
    tracks the weak tracks x people matrix would be 55 GB)."""
    import faiss

    x = np.ascontiguousarray(x, np.float32)
    c = np.ascontiguousarray(centre, np.float32)
    if metric == "cosine":
        index = faiss.IndexFlatIP(c.shape[1])
        index.add(faces_index.unit(c))
        sims, nn = index.search(faces_index.unit(x), k)
        return nn, (1.0 - sims).astype(np.float64)
    index = faiss.IndexFlatL2(c.shape[1])
    index.add(c)
    d2, nn = index.search(x, k)
    return nn, np.sqrt(np.maximum(d2, 0)).astype(np.float64)


def stable_ids(labels: np.ndarray, track_ids: list[str], previous: dict[str, str],
               taken: set[str] | None = None) -> list[str]:
    """A person id per cluster: the id most of its tracks had before (bigger clusters choose
    first), else a new one from the cluster's smallest track id.  ``taken``: ids already held by
    people outside these tracks (an incremental refresh), which no cluster here gets."""
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(labels.tolist()):
        groups.setdefault(lab, []).append(i)
    taken = set(taken or ())
    out = [""] * len(track_ids)
    for lab, members in sorted(groups.items(), key=lambda g: (-len(g[1]), min(track_ids[i] for i in g[1]))):
        votes: dict[str, int] = {}
        for i in members:
            p = previous.get(track_ids[i])
            if p and p not in taken:
                votes[p] = votes.get(p, 0) + 1
        if votes:
            pid = max(sorted(votes), key=votes.get)
        else:
            pid = person_id_for([track_ids[i] for i in members], taken=taken)
        taken.add(pid)
        for i in members:
            out[i] = pid
    return out
