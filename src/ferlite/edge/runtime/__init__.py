"""The runtime around the algorithm: where frames come from and where results go.

sources.py (cameras, videos, photos; one reopening wrapper), loop.py (the frame loop), sinks.py and feed.py
(stdout and the Unix socket feed), config.py (fer-edge's settings), api.py (assemble(): the one place source,
pipeline and sinks are put together, for the daemon, the preview, the Python API and the benches), backoff.py,
notify.py (systemd), native.py (native libraries' stderr and threads) and testing.py (a replaying camera).
"""
