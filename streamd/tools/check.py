"""``streamd check``: everything ``run`` does before the first frame, printed for a human
(and, with ``--verify``, the production path compared with a reference run)."""

from __future__ import annotations

import sys
from pathlib import Path

from streamd.config import Config, ConfigError, MqttConfig
from streamd.exits import EX_CONFIG, EX_OK, EX_SOFTWARE, EX_UNAVAILABLE, config_failure, startup_failure
from streamd.redact import redact_uri


def check(
    config: Config,
    verify_clip: str | None = None,
    tolerance: tuple[float, float] = (8.0, 0.1),
    open_sources: bool = True,
) -> int:
    """Everything ``run`` does before the first frame, printed for a human; with ``verify_clip``
    (``""``: the first file source) the production path is compared with a reference run. Exit
    0; 78 for the config; 69 when the model or a source cannot be opened now (a gate for a
    deployment: ``open_sources=False`` checks everything but the cameras)."""
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
        + (
            f"resize{' and BGR->RGB' if pre.color_order == 'RGB' else ''} on the host (cv2), "
            if prepared.preprocess_mode == "host"
            else f"resize{' and BGR->RGB' if pre.color_order == 'RGB' else ''} in the graph, "
        )
        + f"layout {image.layout}"
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
    lines, clients = _workers(config)
    out += lines
    if config.mqtt.buffer_dir == "":
        out.append('buffer    memory only (mqtt.buffer_dir = "")')
    else:
        from streamd.sinks.buffer import BufferUnavailable, probe
        from streamd.sinks.outbox import buffer_path

        for client in clients:  # each worker's own file
            path = buffer_path(client)
            try:
                out.append(f"buffer    {path}: {probe(path)}")
            except BufferUnavailable as exc:
                print("\n".join(out))
                return config_failure(ConfigError("mqtt.buffer_dir", str(exc)))
    if open_sources:
        lines, unreachable = _sources(config)
        out += lines
    else:
        unreachable = 0
        out.append("sources   not opened (--config-only)")
    print("\n".join(out), flush=True)
    if unreachable:
        print(
            f"streamd: {unreachable} source(s) cannot be opened now (exit 69; `run` would retry them with "
            "backoff; --config-only checks without opening them)",
            file=sys.stderr,
        )
        return EX_UNAVAILABLE
    if verify_clip is None:
        return EX_OK
    return _verify(config, verify_clip, tolerance)


def _sources(config: Config) -> tuple[list[str], int]:
    """Each source opened as ``run`` opens it, and why not where it does not: (lines, how many
    could not be opened)."""
    import cv2

    from streamd.config import is_file_uri
    from streamd.metrics import Metrics
    from streamd.sources.decoding import DecodeChoice
    from streamd.sources.diagnose import describe_failure, diagnose
    from streamd.sources.opening import in_decoder_process, open_capture

    out = ["sources"]
    unreachable = 0
    for source in config.sources:
        uri = redact_uri(source.uri)
        decoding = DecodeChoice(source.name, source.decode, Metrics(), quiet=True)
        missing = is_file_uri(source.uri) and not Path(source.uri).is_file()
        cap = None if missing else open_capture(source.model_copy(update={"read_timeout": 5.0}), None, decoding)
        ok = cap is not None and cap.isOpened()
        verdict = "ok "
        if not ok and not is_file_uri(source.uri):
            verdict = describe_failure(*diagnose(source.uri, 5.0))
        elif not ok:
            verdict = "UNREADABLE" if Path(source.uri).is_file() else "MISSING"
        detail = ""
        if ok and cap is not None:
            detail = (
                f" {int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
                f" @ {cap.get(cv2.CAP_PROP_FPS):.1f} fps"
            )
        if cap is not None:
            cap.release()
        unreachable += not ok
        out.append(f"  {source.name:<16} {verdict}{detail}  {uri}")
        said = f" ({decoding.reason})" if decoding.reason else ""
        where = "in a decoder process" if in_decoder_process(source, decoding.device) else "in the reader thread"
        out.append(f"    decode {source.decode} -> {decoding.device or 'cpu'}{said}, {where}")
        if (rec := source.recording) is not None:
            labels = ", ".join(rec.labels) or "every tracked label"
            out.append(
                f"    recording {labels} -> {rec.directory / source.name} (pre {rec.pre_capture:g} s, "
                f"post {rec.post_capture:g} s; kept {rec.retain_days:g} days, at most {rec.max_bytes / 1e9:g} GB)"
            )
    return out, unreachable


def _workers(config: Config) -> tuple[list[str], list[MqttConfig]]:
    """The worker plan ``run`` would start: how many, which cores and sources each (and each
    worker's MQTT settings, whose buffer files are probed like a single process's)."""
    from streamd.service.plan import format_cores, make_plan, usable_cores, worker_count
    from streamd.sinks.outbox import buffer_path

    cores = usable_cores()
    setting = config.daemon.workers
    count = worker_count(setting, len(cores), len(config.sources))
    lines = [f"workers   {count} (daemon.workers = {setting!r}; {len(cores)} usable cores: {format_cores(cores)})"]
    if count == 1:
        if setting == "auto":
            lines[0] += "; one process below 8 cores"
        return lines, [config.mqtt]
    plan = make_plan([s.name for s in config.sources], count, cores, config.mqtt.instance)
    clients = [config.mqtt.model_copy(update={"client_id": f"{config.mqtt.identity}-w{w.index}"}) for w in plan.workers]
    for worker, mqtt in zip(plan.workers, clients, strict=True):
        buffer = "memory" if config.mqtt.buffer_dir == "" else str(buffer_path(mqtt))
        lines.append(
            f"  worker {worker.index}: cores {format_cores(worker.cores)} "
            f"({config.model.threads or len(worker.cores)} inference threads), "
            f"sources {', '.join(worker.sources)}; client {mqtt.identity}, buffer {buffer}"
        )
    return lines, clients


def _verify(config: Config, clip_arg: str, tolerance: tuple[float, float]) -> int:
    from streamd.config import is_file_uri
    from streamd.tools.verify import Tolerance, verify

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
