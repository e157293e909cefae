import sys

from distrain.cli import main

sys.exit(main())
