"""Every bad input to `chatbot` is one line on stderr and exit code 2: never a traceback, never
several lines, never minutes of work that a check could have refused at the start.

Each case below was once a traceback (exit 1), several lines, a silent success that did the
wrong thing (a file replaced by a checkpoint, a plot written under another name), or an error
found only after the work. They run in-process (`bot.cli.main`); a few also through the
installed command.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from bot.cli import main
from nlp import checkpoint
from nlp.seq2seq import Seq2Seq

ROOT = os.geteuid() == 0  # root writes to read-only directories: those cases need another user
WELL_FORMED_TOKEN = "987654321:" + "Z" * 35


@dataclass
class Place:
    """A working directory of its own, and what the cases are made of."""

    root: Path
    model: Path  # the session's tiny model: copied before any edit
    pairs: Path
    database: Path  # an SQLite file at the newest schema
    _held: list[socket.socket] = field(default_factory=list)

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.root / name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    def directory(self, name: str, *files: str) -> Path:
        path = self.root / name
        path.mkdir()
        for item in files:
            (path / item).write_text("keep me")
        return path

    def checkpoint(
        self,
        name: str,
        edit: Callable[[dict[str, Any]], object] | None = None,
        *,
        digest: str = "fixed",
    ) -> Path:
        """A copy of the tiny model; `edit` changes its config.json, whose own digest is then
        `fixed` (recomputed), `stale` (left as it was) or `none` (an old-style config)."""
        path = Path(shutil.copytree(self.model, self.root / name))
        if edit is not None:
            config = json.loads((path / "config.json").read_text())
            edit(config)
            if digest == "fixed":
                config[checkpoint.CONFIG_SHA256] = checkpoint._config_digest(config)
            elif digest == "none":
                config.pop(checkpoint.CONFIG_SHA256)
            (path / "config.json").write_text(json.dumps(config))
        return path

    def busy_port(self) -> int:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        self._held.append(sock)
        return int(sock.getsockname()[1])

    def not_sqlite(self) -> dict[str, str]:
        path = self.file("not-sqlite.db", "this is a text file, not a database\n" * 50)
        return {"CHATBOT_DATABASE_URL": f"sqlite:///{path}"}

    def migrated(self, **env: str) -> dict[str, str]:
        return {"CHATBOT_DATABASE_URL": f"sqlite:///{self.database}", **env}

    def close(self) -> None:
        for sock in self._held:
            sock.close()


# What a case gives: the arguments, the environment, and a phrase the one line must hold.
Case = Callable[[Place], tuple[list[str], dict[str, str], str]]


def _hidden(size: int) -> Callable[[dict[str, Any]], None]:
    return lambda config: config["model"].update(hidden_size=size)


def _train(p: Place, *options: str, out: Path | str = "out") -> list[str]:
    return ["train", "--data", str(p.pairs), "--out", str(out), "--quiet", *options]


def _reply(p: Place, *options: str, model: Path | None = None) -> list[str]:
    return ["reply", str(model or p.model), "hello", *options]


def _eval(p: Place, model: Path, *options: str) -> list[str]:
    return ["eval", str(model), "--out", str(p.root / "result"), *options]


def _webhook(*options: str) -> list[str]:
    return ["telegram", "--webhook-url", "https://bot.example.org/hook", *options]


WEBHOOK_ENV = {
    "CHATBOT_TELEGRAM_TOKEN": WELL_FORMED_TOKEN,
    "CHATBOT_TELEGRAM__WEBHOOK_SECRET_TOKEN": "secret",
}


def _spacy(config: dict[str, Any]) -> None:
    config["text"]["spacy_model"] = "xx_nonexistent"


def _bigger(config: dict[str, Any]) -> None:
    # Within ModelSettings' bounds, and the digest recomputed: only the weight file's shapes
    # tell. Allocating it took 75 s and several GB before the shapes were checked first.
    config["model"].update(embedding_dim=4096, hidden_size=4096, num_layers=8)


CASES: list[Any] = [
    # ---- decoding options: finite numbers only ---------------------------------------------
    pytest.param(
        lambda p: (_reply(p, "--sample", "--temperature", "inf"), {}, "finite"), id="t-inf"
    ),
    pytest.param(lambda p: (_reply(p, "--temperature", "1e309"), {}, "finite"), id="t-1e309"),
    pytest.param(lambda p: (_reply(p, "--temperature", "nan"), {}, "finite"), id="t-nan"),
    pytest.param(lambda p: (_reply(p, "--temperature", "-1"), {}, "temperature"), id="t-neg"),
    pytest.param(lambda p: (_reply(p, "--mmi-weight", "nan"), {}, "finite"), id="mmi-weight-nan"),
    # A finite temperature can still overflow the logits divided by it: 0.01..100 only.
    pytest.param(
        lambda p: (_reply(p, "--sample", "--temperature", "1e-300"), {}, "temperature"),
        id="t-tiny",
    ),
    pytest.param(
        lambda p: (_reply(p, "--rerank", "4", "--temperature", "1e300"), {}, "temperature"),
        id="t-huge",
    ),
    pytest.param(
        lambda p: (_eval(p, p.model, "--sample", "--temperature", "1e-300"), {}, "temperature"),
        id="eval-t-tiny",
    ),
    pytest.param(
        lambda p: (["chat", "--model", str(p.model), "--temperature", "1e300"], {}, "temperature"),
        id="chat-t-huge",
    ),
    pytest.param(
        lambda p: (_reply(p, "--rerank", "4", "--mmi", str(p.model)), {}, "reverse model"),
        id="mmi-forward-model",
    ),
    pytest.param(
        lambda p: (
            _eval(
                p,
                p.model,
                *("--prompts", str(p.file("prompts.txt", "hello\n"))),
                *("--compare-decoding", '{"temperature": Infinity}'),
            ),
            {},
            "Infinity",
        ),
        id="compare-decoding-infinity",
    ),
    pytest.param(
        lambda p: (
            _reply(p),
            {"CHATBOT_DECODING__BLOCKLIST_PATH": str(p.root / "no.txt")},
            "blocklist",
        ),
        id="blocklist-missing",
    ),
    pytest.param(
        lambda p: (_reply(p), {"CHATBOT_DECODING__BLOCKLIST_PATH": str(p.root)}, "blocklist"),
        id="blocklist-directory",
    ),
    pytest.param(
        lambda p: (
            _reply(p),
            {"CHATBOT_DECODING__BLOCKLIST_PATH": str(p.file("b.txt", b"\xff\xfe\x00"))},
            "not UTF-8",
        ),
        id="blocklist-binary",
    ),
    pytest.param(
        lambda p: (
            ["chat", "--model", str(p.model)],
            {"CHATBOT_RETRAIN__BLOCKLIST_PATH": str(p.root / "no.txt")},
            "blocklist",
        ),
        id="chat-retrain-blocklist-missing",
    ),
    pytest.param(
        lambda p: (
            ["retrain", "--force"],
            p.migrated(CHATBOT_RETRAIN__BLOCKLIST_PATH=str(p.file("r.txt", b"\xff\xfe\x00"))),
            "not UTF-8",
        ),
        id="retrain-blocklist-binary",
    ),
    # ---- checkpoints: refused before anything is allocated ---------------------------------
    pytest.param(
        lambda p: (
            _reply(p, model=p.checkpoint("stale", _hidden(10**9), digest="stale")),
            {},
            "checksum",
        ),
        id="config-edited-digest-stale",
    ),
    pytest.param(
        lambda p: (
            _reply(p, model=p.checkpoint("old", _hidden(10**9), digest="none")),
            {},
            "hidden_size",
        ),
        id="config-old-style-huge",
    ),
    pytest.param(
        lambda p: (
            _reply(p, model=p.checkpoint("neg", _hidden(-5), digest="none")),
            {},
            "hidden_size",
        ),
        id="config-old-style-negative",
    ),
    pytest.param(
        lambda p: (_reply(p, model=p.checkpoint("big", _bigger)), {}, "does not fit"),
        id="config-sizes-unlike-weights",
    ),
    pytest.param(
        lambda p: (
            _reply(p, model=p.checkpoint("sha", lambda c: c.update(sha256=[1]))),
            {},
            "sha256",
        ),
        id="config-sha256-not-a-mapping",
    ),
    pytest.param(
        lambda p: (_reply(p, model=p.checkpoint("spacy", _spacy)), {}, "xx_nonexistent"),
        id="checkpoint-spacy-model-missing",
    ),
    # ---- settings ---------------------------------------------------------------------------
    pytest.param(
        lambda p: (_reply(p), {"CHATBOT_TELEGRAM__ADMIN_IDS": "[1,"}, "CHATBOT_ADMIN_IDS"),
        id="env-admin-ids-nested",
    ),
    pytest.param(
        lambda p: (_reply(p), {"CHATBOT_ADMIN_IDS": "[1,"}, "admin_ids"), id="env-admin-ids"
    ),
    pytest.param(
        lambda p: (_reply(p), {"CHATBOT_DECODING": "{"}, "decoding"), id="env-decoding-json"
    ),
    pytest.param(
        lambda p: (_reply(p), {"_DOTENV": "\xff\xfeCHATBOT_X=1"}, ".env"), id="dotenv-not-utf8"
    ),
    # ---- train: data, output, options ------------------------------------------------------
    pytest.param(
        lambda p: (
            ["train", "--data", str(p.file("b.tsv", bytes(range(256)) * 8)), "--out", "m"],
            {},
            "b.tsv:2: not UTF-8",
        ),
        id="train-binary-tsv",
    ),
    pytest.param(
        lambda p: (
            [
                "train",
                "--data",
                str(p.file("l.tsv", "caf\xe9\tyes\n".encode("latin-1"))),
                "--out",
                "m",
            ],
            {},
            "l.tsv:1: not UTF-8",
        ),
        id="train-latin1-tsv",
    ),
    pytest.param(
        lambda p: (_train(p, out="/proc/chatbot-model"), {}, "cannot write"),
        id="train-out-unwritable",
    ),
    pytest.param(
        lambda p: (_train(p, out=p.file("notes.txt", "mine")), {}, "is a file"),
        id="train-out-is-a-file",
    ),
    pytest.param(
        lambda p: (_train(p, out=p.file("notes.txt", "mine") / "model"), {}, "not a directory"),
        id="train-out-under-a-file",
    ),
    pytest.param(
        lambda p: (_train(p, out=p.directory("photos", "cat.jpg")), {}, "refusing"),
        id="train-out-directory-of-other-files",
    ),
    pytest.param(lambda p: (_train(p, out="."), {}, "new directory"), id="train-out-dot"),
    pytest.param(lambda p: (_train(p, "--lr", "inf"), {}, "finite"), id="train-lr-inf"),
    pytest.param(
        lambda p: (_train(p, "--time-budget", "nan"), {}, "finite"), id="train-budget-nan"
    ),
    pytest.param(
        lambda p: (_train(p, "--time-budget", "-1"), {}, "greater than 0"), id="train-budget-neg"
    ),
    pytest.param(
        lambda p: (_train(p, "--max-steps", "-1"), {}, "at least 1"), id="train-steps-neg"
    ),
    pytest.param(lambda p: (_train(p, "--seed", "-1"), {}, "--seed"), id="train-seed-neg"),
    pytest.param(lambda p: (_train(p, "--seed", str(2**70)), {}, "--seed"), id="train-seed-huge"),
    pytest.param(
        lambda p: (_train(p, "--device", "cuda"), {}, "no CUDA GPU"),
        id="train-device-cuda-without-gpu",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
    ),
    pytest.param(
        lambda p: (_train(p, "--device", "cuda:99"), {}, "cuda:99"), id="train-device-cuda99"
    ),
    pytest.param(
        lambda p: (_train(p, "--device", "tpu9"), {}, "unknown device"), id="train-device-tpu9"
    ),
    pytest.param(
        lambda p: (_train(p, "--device", "meta"), {}, "not supported"), id="train-device-meta"
    ),
    pytest.param(
        lambda p: (_train(p, "--device", ""), {}, "unknown device"), id="train-device-empty"
    ),
    pytest.param(
        lambda p: (_train(p), {"CHATBOT_TRAINING__DEVICE": "tpu9"}, "unknown device"),
        id="env-training-device",
    ),
    pytest.param(
        lambda p: (_train(p), {"CHATBOT_TEXT__SPACY_MODEL": "xx_nonexistent"}, "xx_nonexistent"),
        id="env-spacy-model-missing",
    ),
    pytest.param(
        lambda p: (
            ["train", "--data", str(p.pairs), "--resume", "--out", str(_bad_optimizer(p))],
            {},
            "optimizer.safetensors",
        ),
        id="train-resume-corrupt-optimizer",
    ),
    pytest.param(
        lambda p: (_train(p, "--init-from", str(p.root / "nothing")), {}, "no checkpoint in"),
        id="train-init-from-missing",
    ),
    pytest.param(
        lambda p: (_train(p, "--init-from", str(p.model), "--resume"), {}, "use one of them"),
        id="train-init-from-and-resume",
    ),
    pytest.param(
        lambda p: (
            _train(p, "--init-from", str(p.model), "--hidden-size", "64", "--max-length", "9"),
            {},
            "--max-length, --hidden-size come from the checkpoint",
        ),
        id="train-init-from-with-sizes",
    ),
    pytest.param(
        lambda p: (_train(p, "--init-from", str(p.model), "--reverse"), {}, "drop --reverse"),
        id="train-init-from-direction",
    ),
    pytest.param(
        lambda p: (
            ["train", "--data", str(p.pairs), "--init-from", str(p.model), "--out", str(p.model)],
            {},
            "another --out",
        ),
        id="train-init-from-into-itself",
    ),
    # ---- eval and attention: output paths before work --------------------------------------
    pytest.param(
        lambda p: (["eval", str(p.model), "--out", "/proc/chatbot-eval.json"], {}, "cannot write"),
        id="eval-out-unwritable",
    ),
    pytest.param(
        lambda p: (
            _eval(p, _metrics_is_a_directory(p), "--split", "train", "--record"),
            {},
            "metrics.json",
        ),
        id="eval-record-metrics-unwritable",
    ),
    pytest.param(
        lambda p: (
            _eval(p, _read_only(p), "--split", "train", "--record"),
            {},
            "permission denied",
        ),
        id="eval-record-read-only-checkpoint",
        marks=pytest.mark.skipif(ROOT, reason="root writes to read-only directories"),
    ),
    pytest.param(
        lambda p: (["attention", str(p.model), "hello", "--out", "x.txt"], {}, ".png"),
        id="attention-out-txt",
    ),
    pytest.param(
        lambda p: (["attention", str(p.model), "hello", "--out", "plot"], {}, ".png"),
        id="attention-out-no-suffix",
    ),
    pytest.param(
        lambda p: (
            ["attention", str(p.model), "hello", "--out", "no/such/a.png"],
            {},
            "does not exist",
        ),
        id="attention-out-missing-directory",
    ),
    pytest.param(
        lambda p: (
            ["attention", str(p.model), "hello", "--out", "/proc/a.png"],
            {},
            "cannot write",
        ),
        id="attention-out-unwritable",
    ),
    pytest.param(
        lambda p: (
            ["attention", str(p.model), "hello", "--out", str(p.directory("a.png"))],
            {},
            "is a directory",
        ),
        id="attention-out-is-a-directory",
    ),
    # ---- a database that is not one -------------------------------------------------------
    pytest.param(lambda p: (["db", "current"], p.not_sqlite(), "not a database"), id="db-current"),
    pytest.param(lambda p: (["db", "upgrade"], p.not_sqlite(), "not a database"), id="db-upgrade"),
    pytest.param(lambda p: (["model", "list"], p.not_sqlite(), "not a database"), id="model-list"),
    pytest.param(
        lambda p: (["schedule", "list"], p.not_sqlite(), "not a database"), id="schedule-list"
    ),
    pytest.param(lambda p: (["retrain"], p.not_sqlite(), "not a database"), id="retrain"),
    pytest.param(
        lambda p: (["chat", "--model", str(p.model)], p.not_sqlite(), "not a database"), id="chat"
    ),
    pytest.param(
        lambda p: (["db", "prune"], p.migrated(CHATBOT_STORAGE__RETENTION_DAYS="-5"), "RETENTION"),
        id="db-prune-negative-days",
    ),
    pytest.param(
        lambda p: (
            ["db", "prune"],
            p.migrated(CHATBOT_STORAGE__RETENTION_DAYS="100000000"),
            "RETENTION",
        ),
        id="db-prune-days-overflow",
    ),
    # ---- telegram: ports and the webhook server, before the model loads ---------------------
    pytest.param(lambda p: (["telegram", "--port", "99999"], {}, "1..65535"), id="port-99999"),
    pytest.param(lambda p: (["telegram", "--port", "0"], {}, "1..65535"), id="port-0"),
    pytest.param(lambda p: (["telegram", "--port", "-1"], {}, "1..65535"), id="port-negative"),
    pytest.param(
        lambda p: (_webhook("--port", str(p.busy_port())), p.migrated(**WEBHOOK_ENV), "in use"),
        id="webhook-port-in-use",
    ),
    pytest.param(
        lambda p: (
            _webhook("--listen", "no-such-host.invalid"),
            p.migrated(**WEBHOOK_ENV),
            "cannot listen",
        ),
        id="webhook-unknown-host",
    ),
    pytest.param(
        lambda p: (_webhook("--listen", "192.0.2.1"), p.migrated(**WEBHOOK_ENV), "cannot listen"),
        id="webhook-address-not-here",
    ),
    pytest.param(
        lambda p: (_webhook("--url-path", "/healthz"), p.migrated(**WEBHOOK_ENV), "/healthz"),
        id="webhook-path-healthz",
    ),
]


def _bad_optimizer(p: Place) -> Path:
    path = p.checkpoint("resume")
    (path / "optimizer.safetensors").write_bytes(b"not safetensors")
    return path


def _metrics_is_a_directory(p: Place) -> Path:
    path = p.checkpoint("record")
    (path / "metrics.json").unlink()
    (path / "metrics.json").mkdir()
    return path


def _read_only(p: Place) -> Path:
    path = p.checkpoint("read-only")
    path.chmod(0o555)
    return path


@pytest.fixture
def place(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    tiny_pairs_file: Path,
    sqlite_template: Path,
) -> Iterator[Place]:
    """No CHATBOT_* variables and no developer's .env: a directory of our own."""
    for key in list(os.environ):
        if key.startswith("CHATBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path))
    database = tmp_path / "chatbot.db"
    shutil.copyfile(sqlite_template, database)
    found = Place(tmp_path, tiny_model_dir, tiny_pairs_file, database)
    yield found
    found.close()
    for path in tmp_path.iterdir():  # what a case made read-only, pytest must still remove
        path.chmod(0o755)


def _run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def _assert_one_line(code: int, err: str, expected: str) -> None:
    assert "Traceback" not in err, err
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("chatbot"), err
    assert expected in err, err


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_2(
    case: Case,
    place: Place,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv, env, expected = case(place)
    for key, value in env.items():
        if key == "_DOTENV":
            (place.root / ".env").write_bytes(value.encode("latin-1"))
        else:
            monkeypatch.setenv(key, value)

    code, err = _run_main(argv, capsys)

    _assert_one_line(code, err, expected)


@pytest.mark.parametrize(
    ("edit", "digest"),
    [(_hidden(10**9), "stale"), (_hidden(10**9), "none"), (_bigger, "fixed")],
    ids=["digest-stale", "old-style-absurd", "digest-recomputed"],
)
def test_a_tampered_config_is_refused_before_a_model_is_allocated(
    place: Place,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[dict[str, Any]], None],
    digest: str,
) -> None:
    def only_on_meta(*args: Any, **kwargs: Any) -> Seq2Seq:
        # Inside `with torch.device("meta")` new tensors are shapes without memory.
        assert torch.empty(0).device.type == "meta", "a model was allocated before the check"
        return Seq2Seq(*args, **kwargs)

    monkeypatch.setattr("nlp.checkpoint.Seq2Seq", only_on_meta)
    model = place.checkpoint("tampered", edit, digest=digest)

    code, err = _run_main(["reply", str(model), "hello"], capsys)

    _assert_one_line(code, err, str(model))


@pytest.mark.slow  # starts the installed command four times
def test_the_installed_command_reports_bad_input_in_one_line(place: Place) -> None:
    chatbot = Path(sys.executable).parent / "chatbot"
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    binary = place.file("b.tsv", bytes(range(256)) * 8)
    runs = [
        (["train", "--data", str(binary), "--out", "m"], {}, "not UTF-8"),
        (["db", "current"], place.not_sqlite(), "not a database"),
        (["reply", str(place.model), "hi", "--temperature", "inf"], {}, "finite"),
        (["reply", str(place.model), "hi"], {"CHATBOT_DECODING": "{"}, "decoding"),
    ]
    for argv, env, expected in runs:
        result = subprocess.run(
            [str(chatbot), *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=place.root,
            env={**base, "CHATBOT_DATA_DIR": str(place.root), **env},
        )
        _assert_one_line(result.returncode, result.stderr, expected)
