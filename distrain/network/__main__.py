"""``python -m distrain.network``: the ``distrain dht`` command alone (see ``bootstrap.main``)."""

from distrain.logs import exit_now
from distrain.network.bootstrap import main

exit_now(main())
