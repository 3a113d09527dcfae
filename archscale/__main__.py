import sys

from archscale.cli import main

sys.exit(main())
