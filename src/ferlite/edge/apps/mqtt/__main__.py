"""`python -m ferlite.edge.apps.mqtt`: fer-mqtt."""

import sys

from .app import main

sys.exit(main())
