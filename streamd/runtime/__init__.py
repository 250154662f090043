"""What keeps the daemon alive and honest, whatever it runs: its lifecycle and signals, the
supervisor of its tasks, systemd and the watchdog, the loop hand-offs, backoff, the per-frame
failure count, process limits."""
