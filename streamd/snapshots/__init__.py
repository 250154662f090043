"""Per track, the best frame as a JPEG on MQTT (and on disk), published before the track's end."""
