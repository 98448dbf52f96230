import sys

from pyctr.cli import main

sys.exit(main())
