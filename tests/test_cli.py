"""End-to-end tests of the real `vidx` console script, on demo media made at test time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VIDX = shutil.which("vidx", path=str(Path(sys.executable).parent)) or shutil.which("vidx")


def run(*args, check_rc=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    p = subprocess.run([VIDX, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
    if check_rc is not None:
        assert p.returncode == check_rc, (p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    assert VIDX, "the vidx console script is not installed (pip install -e .)"
    out = tmp_path_factory.mktemp("demo")
    run("demo", out, check_rc=0)
    return out


def test_faces_json_and_per_file_messages(demo, tmp_path):
    notimg = tmp_path / "notes.jpg"
    notimg.write_text("not a photo")
    p = run("faces", "--json", demo / "astronaut.jpg", demo / "astronaut_turned.jpg", demo / "blank.png",
            notimg, tmp_path / "missing.png", check_rc=0)
    recs = [json.loads(line) for line in p.stdout.splitlines()]
    assert [Path(r["photo"]).name for r in recs] == ["astronaut.jpg", "astronaut_turned.jpg"]
    for r in recs:
        x1, y1, x2, y2 = r["box"]
        assert x2 - x1 > 60 and y2 - y1 > 60 and r["score"] > 0.5
        assert len(r["landmarks"]) == 5 and len(r["embedding"]) == 128
        assert r["embedder"] == "dlib_resnet_v1" and r["metric"] == "euclidean"
        # the 5 landmarks sit inside (or at the edge of) the face box
        assert all(x1 - 10 <= x <= x2 + 10 and y1 - 10 <= y <= y2 + 10 for x, y in r["landmarks"])
    # the portrait's face is in the upper middle of the 512x512 picture
    assert 120 < recs[0]["box"][0] < 220 and 40 < recs[0]["box"][1] < 120
    assert "blank.png: no face found" in p.stderr
    assert "notes.jpg: not an image" in p.stderr
    assert "missing.png: no such file" in p.stderr


def test_faces_text_output(demo):
    p = run("faces", demo / "astronaut.jpg", check_rc=0)
    lines = p.stdout.splitlines()
    assert "astronaut.jpg: 1 face  (embedder dlib_resnet_v1, euclidean distance)" in lines[0]
    assert lines[1].strip().startswith("face 0  box [")
    assert len(lines[3].split()) == 129  # "embedding" + 128 numbers


def test_nothing_readable_exits_nonzero(tmp_path):
    bad = tmp_path / "a.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # truncated PNG
    p = run("faces", bad, check_rc=1)
    assert "a.png" in p.stderr and "could be read" in p.stderr


def test_compare_same_and_different(demo):
    p = run("faces", "compare", "--json", demo / "astronaut.jpg", demo / "astronaut_turned.jpg", check_rc=0)
    r = json.loads(p.stdout)
    assert r["same_person"] is True and r["distance"] < 0.4 and r["threshold"] == pytest.approx(0.6)
    assert r["embedder"] == "dlib_resnet_v1" and r["metric"] == "euclidean"
    p = run("faces", "compare", demo / "astronaut.jpg", demo / "blank.png", check_rc=1)
    assert "blank.png: no face found" in p.stderr
    p = run("faces", "compare", demo / "astronaut.jpg", check_rc=2)
    assert "usage" in p.stderr


def test_sface_embedder_says_so(demo):
    """--embedder sface: RetinaFace's points, unit vectors, cosine distance, named in the output."""
    p = run("faces", "--json", "--embedder", "sface", demo / "astronaut.jpg", check_rc=0)
    r = json.loads(p.stdout.splitlines()[0])
    assert r["embedder"] == "sface_2021dec" and r["metric"] == "cosine" and "landmarks" not in r
    assert len(r["points"]) == 5 and abs(sum(v * v for v in r["embedding"]) - 1) < 1e-3
    x1, y1, x2, y2 = r["box"]
    assert all(x1 - 10 <= x <= x2 + 10 and y1 - 10 <= y <= y2 + 10 for x, y in r["points"])
    p = run("faces", "compare", "--embedder", "sface", demo / "astronaut.jpg", demo / "astronaut_turned.jpg", check_rc=0)
    assert "same person (cosine distance of sface_2021dec embeddings; threshold 0.55)" in p.stdout
    p = run("faces", "--embedder", "sface", "--detector", "dlib", demo / "astronaut.jpg", check_rc=1)
    assert "5 points" in p.stderr and "retinaface" in p.stderr


def test_bad_options_are_refused(demo):
    p = run("faces", "--upsample", "3", demo / "astronaut.jpg", check_rc=2)
    assert "invalid choice" in p.stderr
    if not __import__("torch").cuda.is_available():
        p = run("faces", "--device", "cuda", demo / "astronaut.jpg", check_rc=1)
        assert "no CUDA GPU" in p.stderr


@pytest.mark.media
def test_compare_real_people(faces_dir):
    r = json.loads(run("faces", "compare", "--json", faces_dir / "fr_obama.jpg", faces_dir / "fr_obama2.jpg",
                       check_rc=0).stdout)
    assert r["same_person"]
    r = json.loads(run("faces", "compare", "--json", faces_dir / "fr_obama.jpg", faces_dir / "fr_biden2.jpg",
                       check_rc=0).stdout)
    assert not r["same_person"]


def test_the_cli_explains_itself(tmp_path):
    """Bare vidx prints help; --version; -v before or after the command; every option of every
    command has help, defaults said; a typo gets the closest choice and no prefix is taken silently."""
    from vidx.jobs import cli

    p = run(check_rc=0)
    assert "usage: vidx" in p.stdout and "vidx actions train" in p.stdout
    assert run("--version", check_rc=0).stdout.startswith("vidx ")
    parsers = [cli.build_parser(), cli.compare_parser(), cli.train_parser(), cli.labels_parser()]
    subs = [sp for sp in parsers[0]._subparsers._group_actions[0].choices.values()]
    for sp in subs + parsers[1:]:
        assert sp.description, f"{sp.prog} has no description"
        for a in sp._actions:
            assert a.help, f"{sp.prog} {a.option_strings or a.dest} has no help"
            d = a.default  # 0 is a default to say; None, False, [] and suppressed ones are not
            if a.option_strings and not (d is None or d is False or d == [] or d == "==SUPPRESS=="):
                assert "default" in sp._get_formatter()._get_help_string(a), \
                    f"{sp.prog} {a.option_strings[-1]} does not say its default"
    assert "(default: 50)" in run("query", "-h", check_rc=0).stdout
    p = run("indx", "x", check_rc=2)
    assert "did you mean 'index'?" in p.stderr
    p = run("index", tmp_path / "a.mp4", "--out", tmp_path / "idx", "--no-action", check_rc=2)
    assert "unrecognized arguments: --no-action" in p.stderr and "did you mean '--no-actions'?" in p.stderr
    p = run("people", "lst", tmp_path, check_rc=2)
    assert "did you mean 'list'?" in p.stderr
    p = run("actions", "labels", "danc", "--verbose", check_rc=0)  # -v after the command
    assert "breakdancing" in p.stdout


def test_every_command_answers_help(capsys):
    from vidx.jobs import cli

    commands = list(cli.build_parser()._subparsers._group_actions[0].choices)
    for argv in [[c] for c in commands] + [["faces", "compare"], ["actions", "train"], ["actions", "labels"]]:
        with pytest.raises(SystemExit) as e:
            cli.main([*argv, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: vidx {' '.join(argv)}") and "options:" in text, argv


def test_missing_inputs_are_refused_before_ray_and_leave_nothing(tmp_path):
    out = tmp_path / "idx"
    p = run("index", tmp_path / "nope.mp4", tmp_path / "gone", "--out", out, "--verbose", check_rc=2)
    assert "no such file or folder" in p.stderr and "nope.mp4" in p.stderr and "Ray" not in p.stderr, p.stderr
    assert not out.exists()


def test_demo_prints_each_file_once(tmp_path):
    p = run("demo", tmp_path / "d", check_rc=0)
    names = [Path(x).name for x in p.stdout.splitlines()]
    assert sorted(names) == sorted(set(names)) and "astronaut.jpg" in names and "wrote" not in p.stderr
