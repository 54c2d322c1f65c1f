import sys

from vqsa.cli.main import main

sys.exit(main())
