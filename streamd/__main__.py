import signal

# SIGHUP's default action kills the process: ignored before anything is imported (that takes a
# few hundred ms on a busy machine), until the daemon installs its reload handler.
signal.signal(signal.SIGHUP, signal.SIG_IGN)

from streamd.cli import main  # noqa: E402

raise SystemExit(main())
