"""The tools around the daemon: ``check`` (and ``--verify``), ``quantize``; ``bench/`` and ``demo/`` beside them."""
