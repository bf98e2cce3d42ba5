import sys

from muxs.cli import main

sys.exit(main())
