"""Clips around tracked objects from the camera's own compressed stream (no re-encode):
packets.py reads the camera once (packets for the clips, frames for the detector), ring.py
keeps the last seconds of packets, recorder.py opens and closes clips as tracks start and end
(clip.py writes one; streamd/retention.py keeps the folder within its budget), stage.py hears
the tracks and announces clips on MQTT, serve.py serves them over HTTP."""
