"""streamd: asynchronous video analytics daemon (sources -> queue -> OpenVINO -> MQTT)."""

__version__ = "0.1.0"
