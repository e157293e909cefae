"""``python -m distrain.network``: the ``distrain dht`` command alone (see ``bootstrap.main``)."""

import sys

from distrain.network.bootstrap import main

sys.exit(main())
