"""What the CLI prints for a person (#37): no argparse internals in --help, progress rates that
say what they include."""

from __future__ import annotations

import io
import sys

import pytest

from streamd.bench.common import Progress
from streamd.commands import build_parser


def test_help_lists_no_hidden_command() -> None:
    text = build_parser().format_help()
    assert "SUPPRESS" not in text and "worker" not in text
    assert "check" in text and "run" in text


def test_the_bench_progress_says_its_rate_includes_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    progress = Progress("(c) pipeline 1/1", 300)
    progress.update(300)
    assert "incl. start-up" in err.getvalue() and "300 frames in" in err.getvalue()
