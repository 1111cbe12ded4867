import sys

from adamkit.cli import main

sys.exit(main())
