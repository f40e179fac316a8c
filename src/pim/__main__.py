import sys

from pim.cli import main

sys.exit(main())
