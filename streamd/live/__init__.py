"""The live view: a source's latest picture with what streamd saw in it (boxes, zones, masks,
motion), as ``latest.jpg`` and ``live.mjpeg``, kept and encoded only while someone asks."""
