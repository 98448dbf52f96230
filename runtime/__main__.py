import sys

try:  # an interrupt while importing: the exit code of an interrupt, no traceback
    from pyctr.cli import exit_with, main
except KeyboardInterrupt:
    sys.exit(130)

exit_with(main())
