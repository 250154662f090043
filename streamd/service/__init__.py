"""Worker processes: a parent that owns the service (systemd, HTTP, the status topic) and N
worker pipelines, each on its own cores with its own share of the sources."""
