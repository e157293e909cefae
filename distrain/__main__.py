"""``python -m distrain``: the ``distrain`` command, as every swarm peer runs it."""

from distrain.cli import main
from distrain.logs import exit_now

exit_now(main())
