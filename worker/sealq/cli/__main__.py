import sys

from sealq.cli.main import main

sys.exit(main())
