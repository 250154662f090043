"""Command line: ``streamd run | check | bench | demo``. Exit codes follow sysexits.h."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from streamd.commands import build_parser
from streamd.config import Config, ConfigError
from streamd.config_file import load_config, read_env_file
from streamd.exits import EX_SOFTWARE, config_failure, startup_failure
from streamd.logging import configure, get_logger
from streamd.runtime.process import limit_malloc_arenas
from streamd.shard import Shard
from streamd.shard import apply as apply_shard


def main(argv: list[str] | None = None) -> int:
    # SIGHUP's default action kills the process: until the daemon installs its reload handler
    # (after the model is compiled), a reload request is ignored rather than fatal.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    limit_malloc_arenas()
    args = build_parser().parse_args(argv)
    if args.command in ("run", "worker"):
        # Clips, snapshots, the MQTT buffer and the switches file are private (0600 files, 0700
        # folders) whatever umask the daemon was started with (the unit sets UMask=0077; a
        # container or a shell usually 0022).
        os.umask(0o077)
    if args.command == "demo":
        configure("auto", "info")
        from streamd.demo.runner import run_demo

        return run_demo(fast=args.fast, prepare_only=args.prepare_only)
    if args.command == "worker":
        from streamd.service.worker import run_worker

        return run_worker(args.config, args.run_dir, args.index)
    configure("auto" if args.command != "run" else "json", "info")
    log = get_logger("streamd")
    try:
        for env_file in getattr(args, "env_file", []):
            os.environ.update(read_env_file(env_file))  # the workers inherit it
        shard = Shard.parse(args.shard) if getattr(args, "shard", None) else None
        load = functools.partial(load_sharded, args.config, shard)
        config = load()
        if shard is not None:
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
        return run(config, load, workers=args.workers, config_path=args.config)
    if args.command == "check":
        from streamd.tools.check import check

        configure(config.log.format, config.log.level)  # its log lines (e.g. device_fallback) as run's
        return check(config, args.verify, (args.box_tolerance, args.score_tolerance), not args.config_only)
    if args.command == "quantize":
        from streamd.tools.quantize import quantize

        out = args.out or config.model.path.parent
        code, report = quantize(config, args.frames, out, args.min_agreement, tuple(args.ignore))
        if report:
            print(json.dumps(report, indent=2))
            if report.get("written"):
                print(f'# in [model]: path = "{report["written"]}"', file=sys.stderr)
        return code
    if args.command == "bench":
        from streamd.bench.run import run_bench

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
            snapshots=args.snapshots,
            recording=args.recording,
            compare_int8=args.compare_int8,
            motion=args.motion,
            workers=args.workers,
            free_model=args.free_model,
            seconds=args.seconds,
            viewers=args.viewers,
            decode=args.decode,
        )
    log.error("unknown_command", command=args.command)
    return EX_SOFTWARE


def load_sharded(path: Path, shard: Shard | None) -> Config:
    """The config file (and ``STREAMD_*``), this instance's share of it with ``--shard``."""
    config = load_config(path)
    return apply_shard(config, shard) if shard is not None else config


def run(
    config: Config,
    load: Callable[[], Config] | None = None,
    workers: Literal["auto"] | int | None = None,
    config_path: Path | None = None,
) -> int:
    """One process, or (``workers`` > 1) a parent and its worker processes (``service/``), which
    read ``config_path`` themselves."""
    from streamd.daemon import Daemon
    from streamd.service.plan import usable_cores, worker_count

    cores = usable_cores()
    count = worker_count(config.daemon.workers if workers is None else workers, len(cores), len(config.sources))
    try:
        if count > 1 and load is not None and config_path is not None:
            from streamd.service.parent import Service

            return asyncio.run(Service(config, load, config_path, count, cores).serve())
        return asyncio.run(Daemon(config, load).serve())
    except Exception as exc:
        return startup_failure(exc)
