"""The runtime around the algorithm: where frames come from and where results go.

sources/ (cameras, videos, photos; one reopening wrapper; InputSettings), loop.py (the frame loop), sinks.py
and feed.py (stdout and the Unix socket feed; FeedSettings), config.py (fer-edge's EdgeConfig, composed of the
parts), api.py (assemble(): the one place source, pipeline and sinks are put together, for the daemon, the
preview, the Python API and the benches), backoff.py, notify.py (systemd) and testing.py (a replaying camera).
"""
