"""On the lent NVIDIA machine (the device tool): a source decoded on cuda in a decoder process gives the model
the same inputs as decoding on cuda in the reader thread; CPU per frame of each (parent + child).

    python3 benchmarks/device/decode_in_cuda.py t1080.mp4 t1080h.mp4   # writes $OUT/decode_in_cuda.json
"""

import json
import os
import sys
import time
from pathlib import Path

from av.codec.hwaccel import HWAccel, hwdevices_available

from streamd.images import one_thread_per_call
from streamd.sources.decoder_process import DecoderProcess, ProcessCapture
from streamd.sources.packets import PacketCapture

one_thread_per_call()
T = ((300, 300), True)


def child_cpu(pid):
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def thread_run(clip, device):
    said = []
    cap = PacketCapture(
        clip, None, 10, "tcp", 2, HWAccel(device, allow_software_fallback=True) if device else None, said.append
    )
    out = []
    while True:  # steady state: CPU between frames 50 and 400 (no start-up, no tear-down)
        if len(out) == 50:
            c0 = time.process_time()
            t0 = time.perf_counter()
        if len(out) == 400:
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        ok, p = cap.read()
        if not ok:
            break
        out.append(p.scaled(*T))
    cap.release()
    return out, cpu, wall, said


def process_run(clip, device, pictures=True):
    said = []
    d = DecoderProcess("gpu")
    cap = ProcessCapture(d, clip, 10, "tcp", 2, device, said.append, T, lambda: pictures)
    pid = d.pid
    out = []
    while True:
        if len(out) == 50:
            cc0 = child_cpu(pid)
            c0 = time.process_time()
            t0 = time.perf_counter()
        if len(out) == 400:
            cpu = time.process_time() - c0 + child_cpu(pid) - cc0
            wall = time.perf_counter() - t0
        ok, p = cap.read()
        if not ok:
            break
        out.append(p.scaled(*T))
    cap.release()
    d.close()
    return out, cpu, wall, said


report = {"hwdevices": list(hwdevices_available())}
for clip in sys.argv[1:]:
    name = Path(clip).name
    r = {}
    runs = []
    for label, fn, dev in [
        ("thread_cpu", thread_run, None),
        ("thread_cuda", thread_run, "cuda"),
        ("process_cpu", process_run, None),
        ("process_cuda", process_run, "cuda"),
        ("process_cpu_input_only", lambda c, d: process_run(c, d, False), None),
        ("process_cuda_input_only", lambda c, d: process_run(c, d, False), "cuda"),
    ]:
        runs.append((label, fn, dev))
    import statistics

    got = {label: [] for label, _, _ in runs}
    for _ in range(3):  # alternating rounds, medians
        for label, fn, dev in runs:
            out, cpu, wall, said = fn(clip, dev)
            got[label].append((1000 * cpu / 350, 350 / wall))
            r.setdefault("_inputs", {})[label] = out
            r[label] = {"frames": len(out), "fallback": said}
    for label, values in got.items():
        r[label]["cpu_ms_per_frame"] = round(statistics.median(v[0] for v in values), 3)
        r[label]["cpu_ms_rounds"] = [round(v[0], 3) for v in values]
        r[label]["fps"] = round(statistics.median(v[1] for v in values), 1)
    ins = r.pop("_inputs")
    r["process_cuda_equals_thread_cuda"] = sum(
        int((a == b).all()) for a, b in zip(ins["process_cuda"], ins["thread_cuda"], strict=True)
    )
    r["input_only_cuda_equals_thread_cuda"] = sum(
        int((a == b).all()) for a, b in zip(ins["process_cuda_input_only"], ins["thread_cuda"], strict=True)
    )
    r["process_cuda_equals_process_cpu"] = sum(
        int((a == b).all()) for a, b in zip(ins["process_cuda"], ins["process_cpu"], strict=True)
    )
    report[name] = r
print(json.dumps(report, indent=1))
Path(os.environ.get("OUT", "/tmp"), "decode_in_cuda.json").write_text(json.dumps(report, indent=1))
