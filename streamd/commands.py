"""The command line's shape: the sub-commands, their options and ``--help`` (``cli.py`` runs them)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Literal

from streamd import __version__
from streamd.config import DEFAULT_CONFIG_PATH

EPILOG = """\
examples:
  streamd demo                              detect people in the bundled clip, print MQTT messages
  streamd check -c /etc/streamd/streamd.toml  validate, compile, show operator placement
  streamd run -c /etc/streamd/streamd.toml    run the daemon (systemd: Type=notify)
  streamd bench -c streamd.toml --frames 2000 --json

environment:
  STREAMD_CONFIG            config file (default /etc/streamd/streamd.toml)
  STREAMD_<TABLE>__<KEY>    override any key, e.g. STREAMD_MODEL__DEVICE=CPU,
                            STREAMD_SOURCES__0__URI=rtsp://cam/stream

exit codes:
  0 ok, 1 internal error, 66 every source was a file that could not be read,
  69 a dependency is unavailable at start (model unreadable, broker refused us),
  78 configuration error (one line per problem, each naming its key)

topics:  {prefix}/{instance}/status (retained online|offline),
         {prefix}/{instance}/{source}/detections, {prefix}/{instance}/{source}/state,
         {prefix}/{instance}/stats
"""


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path(os.environ.get("STREAMD_CONFIG", str(DEFAULT_CONFIG_PATH))),
        help="TOML config file (default: $STREAMD_CONFIG or %(default)s)",
    )


def _env_file_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env-file",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="read STREAMD_* variables from FILE first, as the unit's EnvironmentFile= does (e.g. "
        "/etc/streamd/cameras.env with the cameras' URLs); repeatable",
    )


def _shard_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard",
        default=os.environ.get("STREAMD_SHARD"),
        metavar="I/N",
        help="take only this instance's share of [[sources]] (rendezvous hashing); I may be 'auto' to "
        "use a StatefulSet host name's ordinal (default: $STREAMD_SHARD)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamd",
        description="Streaming video analytics: cameras and files -> OpenVINO detector -> MQTT, "
        "with Prometheus metrics.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"streamd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon in the foreground", description="Run the daemon.")
    _config_arg(run)
    _env_file_arg(run)
    _shard_arg(run)
    run.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N|auto",
        help="worker processes, each a whole pipeline for its share of the sources on its own cores "
        "(default: [daemon] workers, itself 'auto': one per 4 usable cores)",
    )

    # No help=: a sub-command given one is listed in --help even as SUPPRESS ("==SUPPRESS==").
    worker = sub.add_parser("worker", description="A worker process (started by run).")
    _config_arg(worker)
    worker.add_argument("--run-dir", type=Path, required=True)
    worker.add_argument("--index", type=int, required=True)

    check = sub.add_parser(
        "check",
        help="validate config, compile the model, show placement",
        description="Validate the config, load and compile the model, print inputs, "
        "fixed shape, pre-processing, operator placement per device and whether "
        "each source can be opened. Exit 0; 78 for a config error; 69 when the model or a source "
        "cannot be opened now.",
    )
    _config_arg(check)
    _env_file_arg(check)
    _shard_arg(check)
    check.add_argument(
        "--config-only",
        action="store_true",
        help="check the config, the model and the buffer without opening the sources (no cameras here)",
    )
    check.add_argument(
        "--verify",
        nargs="?",
        const="",
        metavar="CLIP",
        help="also run the production path over CLIP (default: the first file source) and compare every "
        "frame with a synchronous f32 reference run; exit 1 when they disagree beyond the tolerance",
    )
    check.add_argument(
        "--box-tolerance", type=float, default=8.0, metavar="PX", help="--verify: worst box difference (%(default)s)"
    )
    check.add_argument(
        "--score-tolerance", type=float, default=0.1, metavar="S", help="--verify: worst score difference (%(default)s)"
    )

    bench = sub.add_parser(
        "bench",
        help="measure end-to-end FPS against the model's raw ceiling",
        description="Measure, in one run: the bare model's throughput (the ceiling), "
        "decode-only FPS of the sources, and the full pipeline to a real broker.",
    )
    _config_arg(bench)
    _env_file_arg(bench)
    bench.add_argument("--frames", type=int, default=2000, help="frames per measurement (default %(default)s)")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bench.add_argument(
        "--sources", type=int, default=0, metavar="N", help="replicate the first file source N times (scale runs)"
    )
    bench.add_argument("--tracking", action="store_true", help="switch tracking on for every source")
    bench.add_argument(
        "--snapshots",
        action="store_true",
        help="FPS with tracking alone vs tracking + snapshots, in rounds, and the JPEG cost of each snapshot",
    )
    bench.add_argument(
        "--recording",
        action="store_true",
        help="FPS with tracking alone vs the recording reader and ring vs recording on, in rounds",
    )
    bench.add_argument(
        "--motion",
        type=float,
        nargs="?",
        const=30.0,
        metavar="SECONDS",
        help="motion gating on a mostly empty scene: N sources (--sources, default 8) at 15 fps, with and "
        "without gating (and INT8 with --compare-int8), SECONDS each (default 30): CPU per camera, recall",
    )
    bench.add_argument(
        "--compare-int8",
        type=Path,
        metavar="IR",
        help="FP vs this INT8 model (from streamd quantize): FPS in rounds and detection agreement",
    )
    bench.add_argument(
        "--sink",
        type=int,
        default=0,
        metavar="MESSAGES",
        help="measure only the MQTT sink: throughput with the memory and the disk buffer",
    )
    bench.add_argument("--soak", type=float, metavar="SECONDS", help="run the pipeline this long and report RSS")
    bench.add_argument("--rounds", type=int, default=3, help="ceiling/pipeline rounds; medians used (default 3)")
    bench.add_argument(
        "--baseline", action="store_true", help="also run the naive loop (cv2.read -> sync infer -> publish)"
    )
    bench.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="the service as `streamd run` starts it: 1 worker against N, in alternating rounds of --seconds",
    )
    bench.add_argument(
        "--seconds", type=float, default=20.0, help="--workers, --viewers: seconds per arm (default %(default)s)"
    )
    bench.add_argument(
        "--decode",
        metavar="DEVICE",
        help="decoding on DEVICE (cuda, qsv, vaapi, auto...) vs the CPU, alternating in --rounds: CPU ms per "
        "frame and FPS of each file source read as the reader reads it, scaled to the model's input",
    )
    bench.add_argument(
        "--viewers",
        type=int,
        default=0,
        metavar="N",
        help="the live view's cost: no viewer vs N live.mjpeg viewers per source (inferred FPS), then one "
        "viewer vs none at the clip's pace (CPU per camera), in alternating rounds of --seconds",
    )
    bench.add_argument(
        "--free-model",
        action="store_true",
        help="a detector that costs nothing (TF-OD outputs, one constant box, built in code): streamd's own cost",
    )

    quantize = sub.add_parser(
        "quantize",
        help="INT8 model calibrated on your sources' frames, checked against the FP model",
        description="Post-training INT8 quantisation (NNCF, extra streamd[quantize]) of the configured "
        "model, calibrated on frames sampled from the configured sources; the INT8 model is compared "
        "with the FP one on held-out frames (same detections: label and IoU >= 0.5) and written only "
        "when they agree. Exit 0 written, 1 refused, 69 NNCF missing.",
    )
    _config_arg(quantize)
    quantize.add_argument("--frames", type=int, default=300, help="frames to sample (1 in 4 held out; %(default)s)")
    quantize.add_argument("--out", type=Path, default=None, help="directory (default: beside the model)")
    quantize.add_argument(
        "--min-agreement", type=float, default=0.95, help="refuse to write below this F1 agreement (%(default)s)"
    )
    quantize.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="PATTERN",
        help="node name regex left in FP (repeatable; the decoder adds its post-processing)",
    )

    demo = sub.add_parser(
        "demo",
        help="run on the bundled demo clip and print detections",
        description="Fetch the default model, make the demo clip, find or start a "
        "broker, run the daemon and print every detection message it publishes.",
    )
    demo.add_argument("--fast", action="store_true", help="process the clip as fast as possible")
    demo.add_argument("--prepare-only", action="store_true", help="only fetch the model and make the clip")
    return parser


def _workers(text: str) -> Literal["auto"] | int:
    if text == "auto":
        return "auto"
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("a positive number or 'auto'")
    return int(text)
