import sys

from wgpy.cli import main

sys.exit(main())
