"""`python -m ferlite.edge.mqtt`: fer-mqtt."""

import sys

from .app import main

sys.exit(main())
