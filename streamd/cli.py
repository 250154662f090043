"""Command line: ``streamd run | check | bench | demo``. Exit codes follow sysexits.h."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from streamd import __version__
from streamd.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config, redact_uri
from streamd.logging import configure, get_logger
from streamd.process import limit_malloc_arenas
from streamd.shard import Shard
from streamd.shard import apply as apply_shard

if TYPE_CHECKING:
    from streamd.inference.engine import Engine

EX_OK = 0
EX_SOFTWARE = 1
EX_UNAVAILABLE = 69
EX_CONFIG = 78

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
    _shard_arg(run)

    check = sub.add_parser(
        "check",
        help="validate config, compile the model, show placement",
        description="Validate the config, load and compile the model, print inputs, "
        "fixed shape, pre-processing, operator placement per device and whether "
        "each source can be opened. Exit 0, 69 or 78.",
    )
    _config_arg(check)
    _shard_arg(check)
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
    bench.add_argument("--frames", type=int, default=2000, help="frames per measurement (default %(default)s)")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bench.add_argument(
        "--sources", type=int, default=0, metavar="N", help="replicate the first file source N times (scale runs)"
    )
    bench.add_argument("--tracking", action="store_true", help="switch tracking on for every source")
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

    demo = sub.add_parser(
        "demo",
        help="run on the bundled demo clip and print detections",
        description="Fetch the default model, make the demo clip, find or start a "
        "broker, run the daemon and print every detection message it publishes.",
    )
    demo.add_argument("--fast", action="store_true", help="process the clip as fast as possible")
    demo.add_argument("--prepare-only", action="store_true", help="only fetch the model and make the clip")
    return parser


def main(argv: list[str] | None = None) -> int:
    # SIGHUP's default action kills the process: until the daemon installs its reload handler
    # (after the model is compiled), a reload request is ignored rather than fatal.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    limit_malloc_arenas()
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        configure("auto", "info")
        from streamd.demo.runner import run_demo

        return run_demo(fast=args.fast, prepare_only=args.prepare_only)
    configure("auto" if args.command != "run" else "json", "info")
    log = get_logger("streamd")
    try:
        config = load_config(args.config)
        if getattr(args, "shard", None):
            shard = Shard.parse(args.shard)
            config = apply_shard(config, shard)
            log.info(
                "shard",
                index=shard.index,
                count=shard.count,
                sources=[s.name for s in config.sources],
                instance=config.mqtt.instance,
            )
    except ConfigError as exc:
        return config_failure(exc)
    if args.command == "run":
        configure(config.log.format, config.log.level)
        return run(config, args.config)
    if args.command == "check":
        return check(config, args.verify, (args.box_tolerance, args.score_tolerance))
    if args.command == "bench":
        from streamd.bench import run_bench

        return run_bench(
            config,
            frames=args.frames,
            as_json=args.json,
            baseline=args.baseline,
            rounds=args.rounds,
            copies=args.sources,
            tracking=args.tracking,
            soak=args.soak,
            sink=args.sink,
        )
    log.error("unknown_command", command=args.command)
    return EX_SOFTWARE


def config_failure(exc: ConfigError) -> int:
    """Every problem found, one line each naming its key; exit 78 (EX_CONFIG)."""
    for line in exc.lines():
        print(f"streamd: config error: {line}", file=sys.stderr)
    return EX_CONFIG


def startup_failure(exc: Exception) -> int:
    """One line on stderr and the exit code for what can go wrong before the first frame."""
    from streamd.inference.model import ModelUnavailable
    from streamd.inference.placement import PlacementError
    from streamd.sinks.mqtt import MqttUnavailable

    if isinstance(exc, ConfigError):
        return config_failure(exc)
    if isinstance(exc, PlacementError):
        print(f"streamd: config error: model.device: {exc}", file=sys.stderr)
        return EX_CONFIG
    if isinstance(exc, ModelUnavailable | MqttUnavailable):
        print(f"streamd: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    raise exc


def run(config: Config, config_path: Path | None = None, engine_class: type[Engine] | None = None) -> int:
    from streamd.daemon import Daemon
    from streamd.inference.engine import Engine as DefaultEngine

    try:
        return asyncio.run(Daemon(config, config_path, engine_class=engine_class or DefaultEngine).serve())
    except Exception as exc:
        return startup_failure(exc)


def check(config: Config, verify_clip: str | None = None, tolerance: tuple[float, float] = (8.0, 0.1)) -> int:
    """Everything ``run`` does before the first frame, printed for a human; with ``verify_clip``
    (``""``: the first file source) the production path is compared with a reference run."""
    import cv2

    from streamd.config import is_file_uri
    from streamd.inference.model import compile_variant, prepare

    try:
        prepared = prepare(config.model)
        variant = compile_variant(prepared, None)
    except Exception as exc:
        return startup_failure(exc)
    image = prepared.image
    placed = variant.placement
    out = [
        "config    ok",
        f"model     {config.model.path} ({prepared.format}, read in {prepared.read_seconds:.2f} s)",
        f"decoder   {prepared.decoder.name} ({len(prepared.decoder.labels)} labels, confidence "
        f"{config.model.confidence})",
        f"input     {image.name}: exported {image.original} -> fixed {image.shape} ({image.layout}, "
        f"{image.element_type.get_type_name()})",
    ]
    out += [f"input     {name}: frozen to a constant" for name in prepared.other_inputs]
    pre = prepared.preprocessing
    out.append(
        f"preproc   {prepared.preprocess_mode}: u8 NHWC BGR frames; "
        + ("resize on the host (cv2), " if prepared.preprocess_mode == "host" else "resize in the graph, ")
        + f"{'BGR->RGB, ' if pre.color_order == 'RGB' else ''}layout {image.layout}"
        + (f", mean {list(pre.mean)}" if pre.mean else "")
        + (f", scale {list(pre.scale)}" if pre.scale else "")
    )
    out.append(
        f"device    requested {placed.requested} -> compiled {placed.device}"
        + (
            f" (absent: {', '.join(placed.dropped)}; fallback)"
            if placed.fallback
            else f" (absent: {', '.join(placed.dropped)})"
            if placed.dropped
            else ""
        )
    )
    precision = ", ".join(f"{d} {p}" for d, p in variant.precision.items()) or "unknown"
    out.append(f"precision {precision} (model.precision = {config.model.precision!r})")
    out.append(
        f"compile   {variant.seconds:.2f} s, {variant.requests} infer requests, hint "
        f"{config.model.performance_hint}, cache {prepared.cache_dir or 'off'}"
    )
    out.append("placement")
    for device, types in placed.summary().items():
        total = sum(types.values())
        listed = ", ".join(f"{t} {n}" for t, n in sorted(types.items(), key=lambda kv: -kv[1]))
        out.append(f"  {device:<6} {total:>5} ops: {listed}")
    # From the affinity actually assigned: operator types of model.cpu_operators that run on the CPU.
    on_cpu = placed.summary().get("CPU", {}) if placed.heterogeneous else {}
    pinned = sorted(t for t in on_cpu if t in set(config.model.cpu_operators))
    if pinned:
        out.append(f"  pinned to CPU: {', '.join(pinned)}")
    if config.mqtt.buffer_dir == "":
        out.append('buffer    memory only (mqtt.buffer_dir = "")')
    else:
        from streamd.sinks.buffer import BufferUnavailable, probe
        from streamd.sinks.mqtt import buffer_path

        path = buffer_path(config.mqtt)
        try:
            out.append(f"buffer    {path}: {probe(path)}")
        except BufferUnavailable as exc:
            print("\n".join(out))
            return config_failure(ConfigError("mqtt.buffer_dir", str(exc)))
    out.append("sources")
    unreachable = 0
    for source in config.sources:
        uri = redact_uri(source.uri)
        if is_file_uri(source.uri):
            cap = cv2.VideoCapture(source.uri, cv2.CAP_FFMPEG) if Path(source.uri).is_file() else None
        else:
            cap = cv2.VideoCapture(source.uri, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000])
        ok = cap is not None and cap.isOpened()
        detail = ""
        if ok and cap is not None:
            detail = (
                f" {int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
                f" @ {cap.get(cv2.CAP_PROP_FPS):.1f} fps"
            )
        if cap is not None:
            cap.release()
        unreachable += not ok
        out.append(f"  {source.name:<16} {'ok ' if ok else 'UNREACHABLE'}{detail}  {uri}")
    if unreachable:
        out.append(
            f"  {unreachable} source(s) unreachable now: run retries streams and devices with backoff; "
            "a file that cannot be read is skipped (state 'failed')"
        )
    print("\n".join(out), flush=True)
    if verify_clip is None:
        return EX_OK
    return _verify(config, verify_clip, tolerance)


def _verify(config: Config, clip_arg: str, tolerance: tuple[float, float]) -> int:
    from streamd.config import is_file_uri
    from streamd.verify import Tolerance, verify

    clip = clip_arg or next((s.uri for s in config.sources if is_file_uri(s.uri)), "")
    if not clip:
        print("streamd: config error: --verify needs a CLIP argument or a file source", file=sys.stderr)
        return EX_CONFIG
    if not Path(clip).is_file():
        print(f"streamd: --verify: no such file: {clip}", file=sys.stderr)
        return EX_CONFIG
    try:
        verdict = verify(config, Path(clip), Tolerance(*tolerance))
    except Exception as exc:
        return startup_failure(exc)
    print(verdict.summary())
    return EX_OK if verdict.ok else EX_SOFTWARE
