"""Bad input to the `jump` command line: one line on stderr naming the problem (and the fix where it is
known), exit status 2, never a traceback, never a silent success (issue 14, item 8)."""

from __future__ import annotations

import gzip

import pytest
import torch

from pipeline.cli import main

CSV = ["--format", "csv", "--session-col", "session_id", "--item-col", "item_id", "--time-col", "timestamp"]
GOOD = "session_id,item_id,timestamp\ns1,a,1\ns1,b,20\ns2,a,5\ns2,c,50\ns3,b,9\ns3,a,70\n"


def files(tmp):
    (tmp / "good.csv").write_text(GOOD)
    (tmp / "empty.csv").write_text("session_id,item_id,timestamp\n")
    (tmp / "iso.csv").write_text("session_id,item_id,timestamp\ns1,a,2020-01-01T00:00:00\ns1,b,2020-01-01T00:01:00\n")
    (tmp / "semi.csv").write_text(GOOD.replace(",", ";"))
    (tmp / "notgz.csv.gz").write_text(GOOD)
    (tmp / "trunc.csv.gz").write_bytes(gzip.compress(GOOD.encode() * 50)[:40])
    (tmp / "adir").mkdir()
    (tmp / "notjson.txt").write_text("not json\n")
    (tmp / "random.ckpt").write_bytes(bytes(range(256)) * 4)
    torch.save({"a": object()}, tmp / "object.ckpt")
    assert main(["prepare", *CSV, str(tmp / "good.csv"), "--out", str(tmp / "data")]) == 0


# (argv with {tmp} placeholders, environment, what the one line must contain)
CASES = {
    "corrupt gzip": (["prepare", *CSV, "{tmp}/notgz.csv.gz", "--out", "{tmp}/o"], {}, ["notgz.csv.gz", "not a gzip"]),
    "truncated gzip": (
        ["prepare", *CSV, "{tmp}/trunc.csv.gz", "--out", "{tmp}/o"],
        {},
        ["trunc.csv.gz", "cannot read"],
    ),
    "directory as input": (["prepare", *CSV, "{tmp}/adir", "--out", "{tmp}/o"], {}, ["adir", "is a directory"]),
    "empty csv": (["prepare", *CSV, "{tmp}/empty.csv", "--out", "{tmp}/o"], {}, ["no sessions", "empty.csv"]),
    "negative gap": (["prepare", *CSV, "{tmp}/good.csv", "--out", "{tmp}/o", "--gap", "-1"], {}, ["--gap"]),
    "test fraction 2": (
        ["prepare", *CSV, "{tmp}/good.csv", "--out", "{tmp}/o", "--test-fraction", "2"],
        {},
        ["--test-fraction"],
    ),
    "iso without --time-unit": (["prepare", *CSV, "{tmp}/iso.csv", "--out", "{tmp}/o"], {}, ["--time-unit iso"]),
    "wrong delimiter": (["prepare", *CSV, "{tmp}/semi.csv", "--out", "{tmp}/o"], {}, ["--delimiter ';'"]),
    "report on non-JSON": (["report", "{tmp}/notjson.txt", "--out", "{tmp}/r.md"], {}, ["notjson.txt"]),
    "random bytes as checkpoint": (
        ["evaluate", "--data", "{tmp}/data", "--model", "{tmp}/random.ckpt", "--json", "{tmp}/e.json"],
        {},
        ["random.ckpt", "not a readable JUMP checkpoint"],
    ),
    "pickled object as checkpoint": (
        ["evaluate", "--data", "{tmp}/data", "--model", "{tmp}/object.ckpt", "--json", "{tmp}/e.json"],
        {},
        ["object.ckpt", "Python objects"],
    ),
    "train on a bad device": (
        ["train", "--data", "{tmp}/data", "--out", "{tmp}/m.ckpt", "--device", "tpu"],
        {},
        ["tpu"],
    ),
    "JUMP_DEVICE=tpu": (["inference"], {"JUMP_DEVICE": "tpu"}, ["JUMP_DEVICE", "tpu"]),
    "JUMP_LOG_LEVEL=VERBOSE": (["sessionizer"], {"JUMP_LOG_LEVEL": "VERBOSE"}, ["JUMP_LOG_LEVEL", "VERBOSE"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys, monkeypatch):
    files(tmp_path)
    capsys.readouterr()
    argv, env, needles = CASES[case]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"jump {argv[0]}: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "o" / "meta.json").exists() and not (tmp_path / "m.ckpt").exists()
