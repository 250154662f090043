"""``streamd bench``: the pipeline measured against the model's own ceiling, in one run.

(a) ceiling: the bare model at its fixed shape, an AsyncInferQueue over pre-allocated inputs
    and no Python work per frame, with the optimal request count and with the pipeline's own
    (the better is the ceiling), and ``benchmark_app`` on the same model, shape and precision;
(b) decode only: the configured file sources read as fast as OpenCV can, one thread each;
(c) pipeline: the real daemon (decode -> queue -> infer -> decode -> MQTT to a real broker);
(d) latency: the pipeline again with sources paced at 80 % of (c)'s throughput;
(e) with ``--baseline``, the loop a newcomer writes with the libraries' defaults.
(a), (c) and (e) alternate in rounds; ``ratio`` = (c) / min(max((a), benchmark_app), (b)).

``--workers N`` measures the service as ``streamd run`` starts it, one worker against N;
``--free-model`` swaps in a detector that costs nothing, so what is left is streamd's own cost;
``--decode DEVICE`` compares decoding on DEVICE with the CPU (``decode.py``); ``--viewers N``
what the live view costs (``viewers.py``). ``run.py`` picks among them; the modules import
what they measure with only when asked (``decode.py`` runs where OpenVINO is not installed).
"""
