"""The one HTTP server (aiohttp.web): /metrics and the probes, the clips, the live view, the API
and the page, behind HTTP Basic auth when ``[http] username`` is set."""
