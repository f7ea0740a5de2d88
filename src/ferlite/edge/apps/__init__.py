"""The commands: fer-edge (cli.py, daemon.py; table.py for --format csv, annotate.py for --annotate),
fer-preview (preview.py), fer-watch (watch.py) and fer-mqtt (mqtt/, with Home Assistant in mqtt/ha.py)."""
