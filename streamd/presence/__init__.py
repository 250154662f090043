"""Home Assistant MQTT discovery: entities per source and label, and whether each label is seen."""
